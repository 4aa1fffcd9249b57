"""Cross-domain transfer: a source domain (ML-1M) helps a target domain (config.data, ML-100K)
whose training interactions are thinned to 100%, 20% and 5%.

Users of the two domains are disjoint (checked); items meet in the language model's text
space (the same template on both sides) and, where titles and years match, by title.

Compared at each sparsity, all trained through the one Trainer on the same thinned split:
  pop                 popularity on the thinned train part;
  mf                  the target's own MF-BPR (IDs only);
  two-tower (target)  a two-tower whose item tower reads MiniLM text + item ID, target data only;
  transfer (init)     the same two-tower, its item tower (text -> vector) pre-trained on the
                      source and fine-tuned on the target;
  transfer (init+kd)  that, plus a feature-distillation term pulling the target item vectors
                      towards the source model's vectors of the same items (text through the
                      source item tower; title-matched items also with their source ID);
  transfer (MF ids)   the target's MF with its item table initialised from an MF fitted on the
                      source: a title-matched item starts from its source item's embedding, an
                      unmatched one from its text mapped into that embedding space (a ridge map
                      from MiniLM text vectors to source item embeddings, fitted on the source's
                      items); user vectors start fresh (the users are disjoint).
With `mf_tune`, mf and transfer (MF ids) get the same Optuna budget at every fraction and seed
(with `two_tower_tune`, the three two-tower arms do too), chosen on that thinned split's
validation part (a thin train part wants other batch sizes and learning rates than the full
one); the final fit then trains the selected settings.
Every trained arm also gets a "<arm> + pop" row: its scores blended with popularity, both
z-scored per user, popularity's weight w in (0, 0.1, ..., 1) chosen on valid NDCG@10 (w = 0 is
the arm, w = 1 popularity): on thin data popularity is the model to beat, and a blend is how a
user would serve it. The target-only arms get the same blend, so the comparison stays even.
Lift is relative to two-tower (target): the same architecture and inputs without the source;
"lift vs best target-only" compares with the best target-only model (pop, mf, two-tower
(target) and their blends) at that sparsity.
The source models are fitted once (seed 0) and reused for every seed and sparsity.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import nn

from distillrec.config import PrunerName
from distillrec.errors import DataError
from distillrec.scenarios import SCENARIOS, ScenarioContext, ScenarioResult, mean_std
from distillrec.scenarios.common import (StrictParams, encode_texts, item_texts, parse_params,
                                         subsample_train)
from distillrec.teachers.templates import DEFAULT_ITEM_TEMPLATE

METRIC = "ndcg@10"
BASELINE = "two-tower (target)"
#: "<arm> + pop": the arm blended with popularity (weight chosen on valid).
WITH_POP = " + pop"
#: popularity's weights tried in a blend, z-scores on both sides (0: the arm alone, 1: popularity).
POP_WEIGHTS = tuple(round(0.1 * step, 1) for step in range(11))
TARGET_EASE, JOINT_EASE, JOINT_STUDENT = "ease (target)", "transfer (joint EASE)", "transfer (MF from joint EASE)"
TARGET_ONLY = ("pop", "mf", BASELINE, TARGET_EASE, "mf" + WITH_POP, BASELINE + WITH_POP, TARGET_EASE + WITH_POP)
#: the trained arms a run may ask for, in table order; the EASE pair is opt-in (`arms`).
ArmName = Literal["mf", "transfer (MF ids)", "two-tower (target)", "transfer (init)", "transfer (init+kd)",
                  "ease (target)", "transfer (joint EASE)", "transfer (MF from joint EASE)"]
DEFAULT_ARMS = ("mf", "transfer (MF ids)", BASELINE, "transfer (init)", "transfer (init+kd)")
#: the joint EASE's one setting beyond EASE's own, searched beside them within the same trials:
#: how much a source user counts against a target user (0 would be the target-only EASE).
SOURCE_WEIGHT_SPACE = {"params.source_weight": {"low": 0.001, "high": 1.0, "log": True}}
_ARTICLES = re.compile(r"^(.*), (the|a|an|les|la|le|il|el|die|das|der)$")


class TrainParams(StrictParams):
    params: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)


class TuneParams(StrictParams):
    trials: int = Field(ge=1, description="Optuna trials per model, fraction and seed")
    space: dict[str, Any] = Field(default_factory=dict, description="overrides of the model's default "
                                                                    "space (distillrec.tuning.space)")
    pruner: PrunerName = "median"


class CrossDomainParams(StrictParams):
    source: str = Field("ml-1m", description="source dataset (built-in name or path)")
    fractions: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [1.0, 0.2, 0.05],
                                                                 min_length=1)
    template: str = DEFAULT_ITEM_TEMPLATE
    encoder: str | None = None
    source_split_seed: int = 0
    #: the two-tower shared by the source model and the target two-towers.
    two_tower: TrainParams = Field(default_factory=lambda: TrainParams(
        params={"dim": 64, "hidden": 128, "id_dropout": 0.5, "similarity": "cosine", "temperature": 0.1,
                "rec_loss": "softmax"},
        train={"epochs": 40, "lr": 0.003, "patience": 3, "num_threads": 1}))
    # Two epochs over ML-1M: the source model is bounded to minutes on a busy 2-core machine.
    source_train: dict[str, Any] = Field(default_factory=lambda: {"epochs": 2, "lr": 0.003, "patience": 2,
                                                                  "num_threads": 1})
    mf: TrainParams = Field(default_factory=lambda: TrainParams(
        params={"dim": 64}, train={"epochs": 100, "patience": 5, "num_threads": 1}))
    kd_weight: float = Field(0.1, ge=0)
    #: the source MF whose item table seeds "transfer (MF ids)" (params.mf's params).
    source_mf_train: dict[str, Any] = Field(default_factory=lambda: {"epochs": 100, "patience": 5,
                                                                     "num_threads": 1})
    #: equal tuning budget for the two MF arms (mf, transfer (MF ids)); None: params.mf as given.
    mf_tune: TuneParams | None = None
    #: the same for the three two-tower arms (two-tower (target), transfer (init), transfer (init+kd)).
    two_tower_tune: TuneParams | None = None
    #: L2 penalty of the ridge map from text vectors to source MF item embeddings (unmatched items).
    text_map_ridge: float = Field(1.0, gt=0)
    #: which trained arms run (pop always does). "ease (target)" is EASE (+ text) on the thinned
    #: target; "transfer (joint EASE)" the same EASE whose Gram matrix also counts the source's
    #: users on the title-matched items: a teacher fitted on source and target together.
    arms: list[ArmName] = Field(default_factory=lambda: list(DEFAULT_ARMS), min_length=1)
    #: both EASE arms' settings (the model "ease": l2, text_weight) and their shared tuning budget.
    ease: TrainParams = Field(default_factory=TrainParams)
    ease_tune: TuneParams | None = None
    #: "transfer (MF from joint EASE)": the target MF (params.mf, tuned with mf_tune) distilled
    #: from the joint EASE's knowledge with this spec; the spec's terms are tuned with the MF's.
    joint_kd: dict[str, Any] = Field(default_factory=lambda: {"ranking": 0.5})

    @model_validator(mode="after")
    def _student_needs_its_teacher(self) -> "CrossDomainParams":
        if JOINT_STUDENT in self.arms and (JOINT_EASE not in self.arms
                                           or self.arms.index(JOINT_EASE) > self.arms.index(JOINT_STUDENT)):
            raise ValueError(f"arms: {JOINT_STUDENT!r} distils {JOINT_EASE!r}, which must come before it")
        return self


@SCENARIOS.register("cross-domain")
def run(context: ScenarioContext) -> ScenarioResult:
    from distillrec.data.sources import load_dataset
    from distillrec.params import make_train_config

    params = parse_params(CrossDomainParams, context.params, "cross-domain")
    for options in (params.two_tower.train, params.source_train, params.mf.train, params.source_mf_train):
        make_train_config(options, 0)  # bad training options fail before any work
    from distillrec.tuning import search_space

    for key, model in (("mf_tune", "mf"), ("two_tower_tune", "two-tower"), ("ease_tune", "ease")):
        if (tune := getattr(params, key)) is not None:  # a bad space fails before any work
            search_space(model, None, tune.space, where=f"scenario.params.{key}.space")
    return cross_domain(context, load_dataset(params.source), params)


def cross_domain(context: ScenarioContext, source, params: CrossDomainParams) -> ScenarioResult:
    """The scenario with the source dataset given (`run` loads it from `params.source`)."""
    target, split = context.dataset, context.split
    check_disjoint_users(source, target)
    matches = match_titles(source.items, target.items)
    started = time.perf_counter()
    source_text = encode_texts(item_texts(source.items, params.template), params.template, params.encoder)
    target_text = encode_texts(item_texts(target.items, params.template), params.template, params.encoder)
    on_source = source_split(source, params)
    sources = SourceKnowledge()
    if {"transfer (init)", "transfer (init+kd)"} & set(params.arms):
        sources.model, sources.entry = fit_source(source, on_source, source_text, params,
                                                  context.out / "source", context.progress)
        sources.item_vectors = source_item_vectors(sources.model, target_text, matches)
    if "transfer (MF ids)" in params.arms:
        source_mf, sources.mf_entry = fit_source_mf(source, on_source, params, context.out / "source-mf",
                                                    context.progress)
        sources.mf_items = transferred_item_table(source_mf.item_embedding.weight.detach(), source_text,
                                                  target_text, matches, params.text_map_ridge)
    if JOINT_EASE in params.arms:
        sources.cooccurrence = source_cooccurrence(source.interactions, matches, source.n_users, source.n_items)
    source_seconds = time.perf_counter() - started

    per_seed: dict[tuple[float, str], list[dict]] = {}
    for fraction in params.fractions:
        for seed in context.seeds:
            thin = subsample_train(split, fraction, seed)
            where = _seed_dir(context.out, fraction, seed)
            for name, result in _target_models(target, thin, target_text, sources, params, seed, where,
                                               context.progress).items():
                per_seed.setdefault((fraction, name), []).append(result)
    table = _table(per_seed, params.fractions)
    paired = _paired(context.out, params.fractions, context.seeds, {name for _, name in per_seed})
    n_matched = int((matches >= 0).sum())
    notes = (f"Source {params.source} ({source.n_users:,} users, {source.n_items:,} items) -> target "
             f"{context.config.data.dataset} ({target.n_users:,} users, {target.n_items:,} items); users disjoint; "
             f"{n_matched:,} of {target.n_items:,} target items match a source title+year. Target train part "
             f"thinned per user (valid/test unchanged); test {METRIC}, mean and std over seeds {context.seeds}; "
             f"lift vs {BASELINE} and vs the best target-only model. Dropped train interactions are neither "
             f"masked nor ground truth, so every model (pop too) scores lower when thinned. The source models are "
             f"fitted once (seed 0) and reused for every seed and sparsity" + "".join(
                 f"; source test {METRIC}, {name}: {entry['test'][METRIC]:.4f}"
                 for name, entry in (("two-tower", sources.entry), ("MF", sources.mf_entry)) if entry) + ".")
    details = {"matched_titles": n_matched, "target_items": target.n_items, "source_items": source.n_items,
               "source": {"dataset": params.source, **_source_facts(sources.entry),
                          "mf": _source_facts(sources.mf_entry)},
               "source_seconds": source_seconds,
               "per_seed": [{"train_fraction": f, "model": m, "runs": r} for (f, m), r in per_seed.items()],
               "paired": paired}
    return ScenarioResult(table=table, notes=notes, details=details)


@dataclass
class SourceKnowledge:
    """What the source domain hands the target arms; each part only when an arm asks for it."""

    model: Any = None                         # the source two-tower (transfer (init), (init+kd))
    entry: dict | None = None                 # its metrics entry
    item_vectors: torch.Tensor | None = None  # target items through its item tower
    mf_entry: dict | None = None              # the source MF's metrics entry
    mf_items: torch.Tensor | None = None      # the target item table from the source MF (MF ids)
    cooccurrence: np.ndarray | None = None    # source users' co-occurrences on target items (joint EASE)


def _source_facts(entry: dict | None) -> dict:
    if entry is None:
        return {}
    return {"test": entry["test"], "train_seconds": entry.get("train_seconds"), "best_epoch": entry.get("best_epoch")}


# --- alignment --------------------------------------------------------------------------

def check_disjoint_users(source, target) -> None:
    shared = np.intersect1d(source.user_ids.astype(str), target.user_ids.astype(str))
    if len(shared):
        raise DataError(f"cross-domain source {source.name!r}", f"{len(shared)} user ids also in the target "
                        f"(e.g. {shared[0]!r})", field="user_id",
                        expected="disjoint users (prefix the source's ids)")


def normalise_title(title: Any) -> str:
    """'Usual Suspects, The' and 'The Usual Suspects' -> 'the usual suspects' (letters and digits)."""
    if not isinstance(title, str):
        return ""
    title = title.strip()
    moved = _ARTICLES.match(title.lower())
    text = f"{moved.group(2)} {moved.group(1)}" if moved else title.lower()
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split())


def match_titles(source_items: pd.DataFrame, target_items: pd.DataFrame) -> np.ndarray:
    """For each target item, the source item with the same normalised title and year, or -1.
    Keys that occur more than once on either side are left unmatched (ambiguous)."""
    def keys(items: pd.DataFrame) -> pd.Series:
        years = items["year"] if "year" in items.columns else pd.Series(np.nan, index=items.index)
        return pd.Series([f"{normalise_title(t)}|{'' if pd.isna(y) else int(y)}"
                          for t, y in zip(items["title"], years)])

    source_keys, target_keys = keys(source_items), keys(target_items)
    unique_source = source_keys[~source_keys.duplicated(keep=False) & ~source_keys.str.startswith("|")]
    lookup = pd.Series(unique_source.index, index=unique_source.values)
    ambiguous = target_keys.duplicated(keep=False)
    found = target_keys.map(lookup)
    found[ambiguous] = np.nan
    return found.fillna(-1).to_numpy(np.int64)


# --- the source model -------------------------------------------------------------------

def source_split(source, params: CrossDomainParams):
    """The random split both source models train and stop early on."""
    from distillrec.data.splitting import make_split

    return make_split(source, "random", seed=params.source_split_seed)


def fit_source(source, split, text: torch.Tensor, params: CrossDomainParams, out: Path, progress: bool):
    """The two-tower on the whole source (early stopping on its validation), items read as
    text only: its item tower is what travels."""
    from distillrec.students.two_tower import TwoTower

    model = TwoTower.build(source, split, content=text, seed=0, **{**params.two_tower.params, "item_columns": ()})
    return _fit_on_source(source, split, params, "source", "two-tower", model, params.two_tower.params,
                          params.source_train, out, progress)


def fit_source_mf(source, split, params: CrossDomainParams, out: Path, progress: bool):
    """The target's MF (params.mf's params) on the whole source, early stopping on its
    validation: its item table is what travels."""
    from distillrec.students.mf import MatrixFactorization

    model = MatrixFactorization.build(source, split, seed=0, **params.mf.params)
    return _fit_on_source(source, split, params, "source-mf", "mf", model, params.mf.params,
                          params.source_mf_train, out, progress)


def _fit_on_source(source, split, params: CrossDomainParams, name: str, kind: str, model,
                    model_params: dict, train: dict, out: Path, progress: bool):
    """(the trained model in eval mode, its metrics entry): one run directory under `out`."""
    from distillrec import experiment
    from distillrec.params import make_train_config

    train_config = make_train_config(train, 0)
    config = {"command": "scenario cross-domain", "model": kind, "dataset": params.source,
              "split": split.name, "split_params": split.params, "seed": 0,
              "train": train_config.model_dump(mode="json")}
    metrics = experiment.fit_model(type(model), name, source, split, model_params=model_params,
                                   train_config=train_config, run_dir=out, config=config, progress=progress,
                                   model=model)
    return model.eval(), metrics["models"][name]


def source_cooccurrence(interactions: pd.DataFrame, matches: np.ndarray, n_source_users: int,
                        n_source_items: int) -> np.ndarray:
    """[n_target_items, n_target_items]: how many source users interacted with both items,
    counting only source items whose title matched a target item (`matches`); the joint EASE
    adds it to the target's Gram matrix, as if the source's users were target users."""
    import scipy.sparse

    to_target = np.full(n_source_items, -1, dtype=np.int64)
    matched = np.flatnonzero(matches >= 0)
    to_target[matches[matched]] = matched
    items = to_target[interactions["item"].to_numpy(np.int64)]
    keep = items >= 0
    users = interactions["user"].to_numpy(np.int64)[keep]
    x = scipy.sparse.csr_matrix((np.ones(int(keep.sum())), (users, items[keep])),
                                shape=(n_source_users, len(matches)))
    x.data[:] = 1.0  # a repeated (user, item) pair counts once, as in the target's matrix
    return (x.T @ x).toarray()


@torch.no_grad()
def transferred_item_table(source_items: torch.Tensor, source_text: torch.Tensor, target_text: torch.Tensor,
                           matches: np.ndarray, ridge: float = 1.0) -> torch.Tensor:
    """[n_target_items, d]: a matched target item's source embedding; an unmatched one's text
    through the ridge map (with intercept) from text vectors to the source item embeddings,
    fitted on every source item."""
    if len(source_items) != len(source_text) or len(matches) != len(target_text):
        raise DataError("cross-domain transfer", f"{len(source_items)} source item vectors for "
                        f"{len(source_text)} source texts, {len(matches)} matches for {len(target_text)} "
                        "target texts", expected="one vector and one text per item")
    x, y = source_text.double(), source_items.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    gram = xc.T @ xc + ridge * torch.eye(x.shape[1], dtype=x.dtype)
    weights = torch.linalg.solve(gram, xc.T @ (y - y_mean))
    table = ((target_text.double() - x_mean) @ weights + y_mean).to(source_items.dtype)
    matched = torch.as_tensor(np.flatnonzero(matches >= 0))
    table[matched] = source_items[torch.as_tensor(matches[matches >= 0])]
    return table


@torch.no_grad()
def source_item_vectors(source_model, target_text: torch.Tensor, matches: np.ndarray) -> torch.Tensor:
    """[n_target_items, d]: target items through the source item tower: from their text alone,
    and with their source item's trained ID where the title matched."""
    vectors = source_model.encode_items({}, target_text)  # the source item tower reads no side features
    matched = np.flatnonzero(matches >= 0)
    if len(matched):
        source_ids = torch.as_tensor(matches[matched])
        tower = source_model.item_tower
        with_id = tower(source_model.item_table.rows(source_ids), target_text[torch.as_tensor(matched)],
                        ids=source_ids, has_id=source_model.item_has_id[source_ids])
        vectors[torch.as_tensor(matched)] = with_id
    return vectors


# --- the target models ------------------------------------------------------------------

class SourceItemDistillation(nn.Module):
    """extra_loss: weight x (1 - cosine) between the target model's vectors of the batch's items
    (positives and negatives) through a learned projector and the source model's vectors."""

    def __init__(self, teacher_items: torch.Tensor, student_dim: int, weight: float, seed: int = 0):
        from distillrec.distill.losses.feature import Projector

        super().__init__()
        self.register_buffer("teacher", teacher_items.detach().clone())
        with torch.random.fork_rng(devices=[]):  # the projector's init depends on the seed alone
            torch.manual_seed(seed)
            self.projector = Projector(student_dim, teacher_items.shape[1])
        self.weight = weight

    def forward(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from distillrec.distill.losses.feature import feature_loss

        items = batch["pos"] if "neg" not in batch else torch.cat([batch["pos"], batch["neg"].reshape(-1)])
        items = items.unique()
        return self.weight * feature_loss(model.item_vectors(items), self.teacher[items], self.projector,
                                          kind="cosine")


def _target_models(target, split, target_text, sources: SourceKnowledge, params: CrossDomainParams,
                   seed: int, out: Path, progress: bool) -> dict[str, dict]:
    from distillrec import experiment
    from distillrec.console import console
    from distillrec.evaluation.baselines import PopularityScorer
    from distillrec.evaluation.scoring import baseline_scorer, evaluate_scorer, make_evaluator
    from distillrec.distill.objective import DistillObjective, normalise_spec
    from distillrec.params import check_kd, check_model_params, make_train_config, model_schema
    from distillrec.teachers.knowledge import extract_knowledge
    from distillrec.students.mf import MatrixFactorization
    from distillrec.students.two_tower import TwoTower
    from distillrec.teachers.ease import EASETeacher
    from distillrec.tuning import apply, search_space, tune_model

    def fit(name: str, model_cls, model, model_params: dict, train: dict, extra_loss=None) -> dict:
        train_config = make_train_config(train, seed)
        config = {"command": "scenario cross-domain", "model": name, "dataset": target.name,
                  "split": split.name, "split_params": split.params, "seed": seed,
                  "train": train_config.model_dump(mode="json")}
        metrics = experiment.fit_model(model_cls, name, target, split, model_params=model_params,
                                       train_config=train_config,
                                       run_dir=out / _slug(name), config=config, progress=progress, model=model,
                                       extra_loss=extra_loss)
        entry = metrics["models"][name]
        return {"seed": seed, "test": {k: entry["test"][k] for k in (METRIC, "recall@10")},
                "valid": {METRIC: entry["valid"][METRIC]}, "best_epoch": entry.get("best_epoch"),
                "train_seconds": entry.get("train_seconds")}

    def say(name: str):
        where = f"{out.parent.name}, {out.name}"  # train-<fraction>, seed-<seed>
        return (lambda line: console.print(f"  tune {name}, {where}: {line}")) if progress else (lambda line: None)

    trained = {}

    def arm(name: str, model_name: str, build, base: TrainParams, tune: TuneParams | None, extra_loss=None,
            extra_space: dict | None = None, kd: dict | None = None, knowledge=None) -> dict:
        """One trained model: build(params) -> model, tuned first when `tune` is set (every arm of
        an architecture gets the same budget and space, plus `extra_space` for settings of its
        own, and a distillation spec's terms when `kd` is given), then fitted with the selected
        settings."""
        model_params, train, tuning = dict(base.params), dict(base.train), None
        if tune is not None:
            space = search_space(model_name, kd, tune.space, extra_space, knowledge=knowledge)
            tuning = tune_model(out / f"{_slug(name)}-tune", model_name, target, split, params=model_params,
                                train=train, trials=tune.trials, space=space, kd=kd, knowledge=knowledge,
                                seed=seed, pruner=tune.pruner, build=build, extra_loss=extra_loss, say=say(name))
            model_params, train, kd = apply(tuning["selected"], model_params, train, kd)
        model = build(model_params)
        if kd:
            extra = DistillObjective(normalise_spec(check_kd(kd)), knowledge, model, seed=seed)
        else:
            extra = extra_loss(model) if extra_loss else None
        result = fit(name, type(model), model, model_params, train, extra)
        trained[name] = model
        if tuning is not None:
            result["tuned"] = {key: tuning[key] for key in ("trials", "selected", "valid", "pruned")}
        return result

    def mf(start_items: torch.Tensor | None):
        def build(model_params: dict) -> MatrixFactorization:
            model_params = check_model_params("mf", model_params, "tuned params")
            model = MatrixFactorization.build(target, split, seed=seed, **model_params)
            if start_items is not None:  # the users start fresh: they are disjoint
                model.item_embedding.weight.data.copy_(start_items)
            return model
        return build

    def two_tower(pretrained: bool):
        def build(model_params: dict) -> TwoTower:
            model_params = check_model_params("two-tower", model_params, "tuned params")
            model = TwoTower.build(target, split, content=target_text, seed=seed,
                                   **{**model_params, "item_columns": ()})
            if pretrained:  # the item tower's text path and MLP come from the source; target IDs start fresh
                model.item_tower.content.load_state_dict(sources.model.item_tower.content.state_dict())
                model.item_tower.mlp.load_state_dict(sources.model.item_tower.mlp.state_dict())
            return model
        return build

    ease_defaults = {name: param.default for name, param in model_schema(EASETeacher).params.items()}

    def ease(cooccurrence: np.ndarray | None):
        def build(model_params: dict) -> EASETeacher:
            own = {key: value for key, value in model_params.items() if key != "source_weight"}
            extra = None if cooccurrence is None else float(model_params.get("source_weight", 1.0)) * cooccurrence
            return EASETeacher.solve(target, split, cooccurrence=extra,
                                     **{**ease_defaults, **check_model_params("ease", own, "tuned params")})
        return build

    def distill_towards_source(model) -> SourceItemDistillation:
        # the item tower's output width, read off its last layer rather than by encoding every item
        return SourceItemDistillation(sources.item_vectors, model.item_tower.mlp[-1].out_features,
                                      params.kd_weight, seed)

    pop = evaluate_scorer(baseline_scorer("pop", split, seed), split, target)
    results = {"pop": {"seed": seed, "test": {k: pop["test"][k] for k in (METRIC, "recall@10")},
                       "valid": {METRIC: pop["valid"][METRIC]}}}
    def joint_student(name: str) -> dict:  # the joint EASE's knowledge, for this thinned split's users
        knowledge = extract_knowledge(trained[JOINT_EASE], split, target, top_k=min(100, split.n_items),
                                      knn=min(20, split.n_items - 1), importance=False, seed=seed)
        return arm(name, "mf", mf(None), params.mf, params.mf_tune, kd=params.joint_kd, knowledge=knowledge)

    arms = {  # name -> how it trains; every arm of a model gets that model's budget and space
        "mf": lambda name: arm(name, "mf", mf(None), params.mf, params.mf_tune),
        "transfer (MF ids)": lambda name: arm(name, "mf", mf(sources.mf_items), params.mf, params.mf_tune),
        BASELINE: lambda name: arm(name, "two-tower", two_tower(False), params.two_tower, params.two_tower_tune),
        "transfer (init)": lambda name: arm(name, "two-tower", two_tower(True), params.two_tower,
                                            params.two_tower_tune),
        "transfer (init+kd)": lambda name: arm(name, "two-tower", two_tower(True), params.two_tower,
                                               params.two_tower_tune, distill_towards_source),
        TARGET_EASE: lambda name: arm(name, "ease", ease(None), params.ease, params.ease_tune),
        JOINT_EASE: lambda name: arm(name, "ease", ease(sources.cooccurrence), params.ease, params.ease_tune,
                                     extra_space=SOURCE_WEIGHT_SPACE),
        JOINT_STUDENT: joint_student,
    }
    for name in params.arms:
        results[name] = arms[name](name)
    evaluator, popularity = make_evaluator(split, target), PopularityScorer(split)  # shared by the blends
    for name, model in trained.items():  # the blend adds no training: the arm's budget is its budget
        blend = with_popularity(model, split, evaluator, popularity, out / _slug(name + WITH_POP))
        results[name + WITH_POP] = {"seed": seed, **blend, **({"tuned": results[name]["tuned"]}
                                                               if "tuned" in results[name] else {})}
    return results


def with_popularity(model, split, evaluator, popularity, run_dir: Path) -> dict:
    """A trained model blended with `popularity` (a scorer), (1 - w) z(model) + w z(pop), w from
    POP_WEIGHTS with the best valid NDCG@10; the test part is scored once, for that w (its
    per-user values written to run_dir for the paired tests)."""
    from distillrec.evaluation.scoring import model_scorer, write_per_user
    from distillrec.scenarios.common import best, blend_scorer

    valid = model_scorer(model, split, "valid")
    weight, values = best(POP_WEIGHTS, lambda w: evaluator.evaluate(blend_scorer(valid, popularity, w),
                                                                    "valid")[METRIC])
    test_scorer = blend_scorer(model_scorer(model, split, "test"), popularity, weight)  # after valid: one history at a time
    write_per_user(run_dir, evaluator, test_scorer)
    test = evaluator.evaluate(test_scorer, "test")
    return {"test": {k: test[k] for k in (METRIC, "recall@10")}, "valid": {METRIC: max(values)},
            "popularity weight": weight, "valid by weight": dict(zip(map(str, POP_WEIGHTS), values))}


#: (base, transferred) pairs tested at every fraction: each transfer against its own
#: architecture trained on the target alone.
PAIRS = tuple((base + suffix, other + suffix) for suffix in ("", WITH_POP)
              for base, other in ((BASELINE, "transfer (init)"), (BASELINE, "transfer (init+kd)"),
                                  ("mf", "transfer (MF ids)"), (TARGET_EASE, JOINT_EASE), ("mf", JOINT_STUDENT)))


def _seed_dir(out: Path, fraction: float, seed: int) -> Path:
    """Where one (fraction, seed)'s target models are trained, each in `_slug(name)` below it."""
    return out / f"train-{fraction:g}" / f"seed-{seed}"


def _run_dir(out: Path, fraction: float, seed: int, name: str) -> Path:
    return _seed_dir(out, fraction, seed) / _slug(name)


def _paired(out: Path, fractions: list[float], seeds: list[int], ran: set[str]) -> list[dict]:
    """PAIRS at every fraction: per seed, paired over the test users (Wilcoxon, from each
    run's per_user.parquet), then the seeds' means paired (t): in `per_split`, as the
    resampled scenarios report them."""
    from distillrec.evaluation.scoring import read_per_user
    from distillrec.evaluation.significance import paired_splits, paired_users

    rows = []
    for fraction in fractions:
        for base, other in (pair for pair in PAIRS if set(pair) <= ran):
            cells = [paired_users(read_per_user(_run_dir(out, fraction, seed, base)),
                                  read_per_user(_run_dir(out, fraction, seed, other))) for seed in seeds]
            rows.append({"model": other, "vs": base, "metric": f"test {METRIC} at {fraction:g} of the target",
                         **paired_splits([c["base"] for c in cells], [c["other"] for c in cells]),
                         "per_split": [{"seed": seed, **cell} for seed, cell in zip(seeds, cells)]})
    return rows


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def _table(per_seed: dict[tuple[float, str], list[dict]], fractions: list[float]) -> list[dict]:
    """One row per sparsity and model: test metrics (mean, std over seeds), the lift over the
    same two-tower without the source, and over the best target-only model of that sparsity
    (TARGET_ONLY by mean, named in "best target-only"; the strongest is the hardest to beat)
    with a paired t-test over the seeds: negative there means the source did not pay.
    "tuning trials": each seed's tuning budget (0: the configured settings as given)."""
    from distillrec.evaluation.significance import paired_splits

    rows = []
    for fraction in fractions:
        means = {name: mean_std([r["test"][METRIC] for r in runs])[0]
                 for (f, name), runs in per_seed.items() if f == fraction}
        best_own = max((name for name in TARGET_ONLY if name in means), key=means.get)
        best_values = [r["test"][METRIC] for r in per_seed[(fraction, best_own)]]
        for name, mean in means.items():
            runs = per_seed[(fraction, name)]
            values = [r["test"][METRIC] for r in runs]
            std = mean_std(values)[1]
            recall, recall_std = mean_std([r["test"]["recall@10"] for r in runs])
            transferred = name not in TARGET_ONLY
            rows.append({"train fraction": fraction, "model": name, METRIC: mean, f"{METRIC} std": std,
                         "recall@10": recall, "recall@10 std": recall_std,
                         "lift": _lift(mean, means[BASELINE]) if BASELINE in means else None,
                         "lift vs best target-only": _lift(mean, means[best_own]) if transferred else None,
                         "best target-only": best_own if transferred else None,
                         "p vs best target-only": paired_splits(best_values, values)["t_p"] if transferred else None,
                         # the budget behind the row, so the report shows which sides were tuned
                         "tuning trials": runs[0].get("tuned", {}).get("trials", 0)})
    return rows


def _lift(value: float, base: float) -> float | None:
    return value / base - 1 if base else None
