"""What a fitted teacher hands to students: the Knowledge artifact.

- representations: the teacher's user and item tower vectors, and the language model's item
  text embeddings;
- rankings: each user's top-K items over the full catalog by the teacher's full score (towers
  and item-to-item term; the user's visible history masked),
  with the teacher's scores and confidences: the softmax probability of each listed item over
  every item the user has not seen (the distribution a full-softmax teacher was trained to
  output, restricted to the candidates a student ranks);
- relations: an item-item k-nearest-neighbour graph in teacher space (cosine, self excluded);
- per-step rankings (a sequential teacher, `step_top_k`): at every training step, the
  teacher's top-K next items from the items before it (those masked), so a sequential student
  can learn the teacher's ranking at each of its own positions, as DLLM2Rec distils one list
  per training sequence, not one per user;
- feature importance by permutation: the drop in validation NDCG@10 when one input is shuffled
  across entities (a side-feature column, the whole text embedding, or one text field of the
  template, re-rendered and re-encoded). Permutation rather than gradients, because text fields
  enter through a language model and a tokeniser, where no gradient reaches a field.

Scores are computed in chunks of users: memory stays at chunk x n_items, never users x items.

Under torchrun (`distillrec.train.distributed`) `extract_knowledge` is collective: each rank
ranks a contiguous share of the users, finds the neighbours of a share of the items and
measures the importance of a share of the inputs; the pieces are gathered on every rank, so
all hold the same Knowledge as one process would (`teachers.sharded.extract_and_save` then
writes it once).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from distillrec import artifacts
from distillrec.data.dataset import Dataset
from distillrec.data.split import Split
from distillrec.errors import ArtifactError, DistillrecError
from distillrec.evaluation.evaluator import Evaluator, rank_top_k, rows_per_chunk
from distillrec.students.sequential import SequentialRecommender
from distillrec.teachers.models import LMTeacher
from distillrec.train.batches import sequence_windows
from distillrec.train import distributed

KIND = "knowledge"
TENSORS = "knowledge.safetensors"
META = "knowledge.json"
IMPORTANCE_METRIC = "ndcg@10"
#: tensors every Knowledge holds (name -> what it is).
TENSOR_NAMES = {
    "user": "user representations [n_users, d]",
    "item": "item representations [n_items, d]",
    "text": "language-model text embeddings of the items [n_items, t]",
    "top_items": "each user's top-K items, best first [n_users, K] (-1: fewer candidates than K)",
    "top_scores": "teacher scores of top_items [n_users, K] (-inf where top_items is -1)",
    "top_confidence": "softmax probability of each top item over the user's unseen items [n_users, K]",
    "knn_items": "each item's nearest items in teacher space, nearest first [n_items, knn]",
    "knn_similarity": "cosine similarity of knn_items [n_items, knn]",
}
#: tensors a Knowledge may hold (a sequential teacher extracted with step_top_k).
OPTIONAL_TENSOR_NAMES = {
    "step_top_items": "at each training step (row of train sorted by user and time) the teacher's top-K next "
                      "items from the steps before it, best first [n_train, K] (-1: a user's first step, no context)",
    "step_top_scores": "teacher scores of step_top_items [n_train, K] (-inf where step_top_items is -1)",
}


@dataclass
class Knowledge:
    tensors: dict[str, torch.Tensor]
    #: feature importance: input name -> drop of validation NDCG@10 when it is permuted.
    importance: dict[str, float] = field(default_factory=dict)
    #: how it was extracted: model, k, knn, importance method, timings, data fingerprint.
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        missing = sorted(set(TENSOR_NAMES) - set(self.tensors))
        if missing:
            raise ArtifactError(f"knowledge lacks tensor(s) {', '.join(missing)}")

    def save(self, directory: str | Path) -> Path:
        """Write knowledge.safetensors, knowledge.json and manifest.json into a new directory,
        atomically: it appears whole or not at all."""
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()):
            raise ArtifactError(f"{directory}: already exists and is not empty; choose a new directory")
        if directory.exists():
            directory.rmdir()  # an empty directory is replaced by the complete one
        with artifacts.atomic_directory(directory) as tmp:
            artifacts.write_tensors(tmp / TENSORS, self.tensors)
            described = {**TENSOR_NAMES, **{k: v for k, v in OPTIONAL_TENSOR_NAMES.items() if k in self.tensors}}
            artifacts.write_json(tmp / META, {"importance": self.importance, "info": self.info,
                                              "tensors": described})
            artifacts.write_manifest(tmp, kind=KIND, extra={"data_fingerprint": self.info.get("data_fingerprint")})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Knowledge":
        """Read a saved Knowledge, refusing it if any file differs from its manifest."""
        directory = Path(directory)
        manifest = artifacts.verify_manifest(directory)
        if manifest.get("kind") != KIND:
            raise ArtifactError(f"{directory}: a {manifest.get('kind')!r} artifact, expected {KIND!r}")
        meta = artifacts.read_json(directory / META)
        return cls(artifacts.read_tensors(directory / TENSORS), meta["importance"], meta["info"])


def extract_knowledge(model: LMTeacher, split: Split, dataset: Dataset, top_k: int = 100, knn: int = 20,
                      chunk: int = 1024, *, importance: bool = True, text_fields: Sequence[str] | None = None,
                      seed: int = 0, step_top_k: int | None = None) -> Knowledge:
    """Everything a student may learn from `model`, fitted on `split.train`.

    The model sees the training history (train + revealed), which is also what each user's
    ranking masks. text_fields: template fields whose permutation importance is measured
    (None: every field of the model's template that is an item column; needs the model's
    language model). importance=False skips feature importance (it costs one validation per
    input, plus one re-encode of the catalog per text field). step_top_k: also the per-step
    rankings of a sequential teacher (module docstring), that many items per step.
    """
    if not 1 <= top_k <= split.n_items or not 1 <= knn < split.n_items:
        raise DistillrecError(f"top_k must be in 1..{split.n_items} and knn in 1..{split.n_items - 1}, "
                              f"got top_k={top_k}, knn={knn}")
    if step_top_k is not None:
        _check_step_teacher(model, step_top_k, split.n_items)
    if chunk < 1:
        raise DistillrecError(f"chunk must be >= 1, got {chunk}")
    chunk = rows_per_chunk(chunk, split.n_items)  # no score matrix above the evaluator's cap
    model.eval()
    visible = split.history("valid")
    model.set_history(visible)
    timings = {}
    with torch.no_grad():
        started = time.perf_counter()
        representations = model.representations()
        timings["representations_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        mine = distributed.shard_range(split.n_users)
        top_items, top_scores, top_confidence = (
            distributed.gather_rows(part, split.n_users)
            for part in top_k_rankings(model.score, visible, split.n_users, split.n_items, top_k, chunk, rows=mine))
        timings["top_k_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        mine = distributed.shard_range(split.n_items)
        knn_items, knn_similarity = (distributed.gather_rows(part, split.n_items)
                                     for part in nearest_items(representations["item"], knn, chunk, rows=mine))
        timings["knn_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        scores = permutation_importance(model, split, dataset, text_fields, seed) if importance else {}
        timings["importance_seconds"] = time.perf_counter() - started

    tensors = {"user": representations["user"], "item": representations["item"],
               "text": model.text_embeddings, "top_items": top_items, "top_scores": top_scores,
               "top_confidence": top_confidence, "knn_items": knn_items, "knn_similarity": knn_similarity}
    info = {"model": type(model).__name__, "parameters": model.num_parameters(), "top_k": top_k, "knn": knn,
            "history": "train + revealed (masked in rankings)", "step_top_k": None,
            "n_train": len(split.train),
            "confidence": "softmax over the user's unseen items",
            "importance_method": f"permutation: drop in valid {IMPORTANCE_METRIC} (seed {seed}, 1 repeat)"
            if importance else "not computed",
            "timings": timings, "data_fingerprint": dataset.fingerprint, "n_users": split.n_users,
            "n_items": split.n_items}
    knowledge = Knowledge({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, scores, info)
    if step_top_k is not None:
        # Every rank computes all steps (no collective): the teacher is the same everywhere.
        knowledge = with_step_rankings(knowledge, model, split, step_top_k)
    return knowledge


def with_step_rankings(knowledge: Knowledge, model: SequentialRecommender, split: Split, k: int) -> Knowledge:
    """`knowledge` plus its sequential teacher's per-step rankings, k items a step, over
    `split.train` (module docstring): for `extract_knowledge(step_top_k=k)`, and for a
    distillation that needs them from a Knowledge extracted without them."""
    _check_step_teacher(model, k, split.n_items)
    model.eval()
    started = time.perf_counter()
    with torch.no_grad():
        items, scores = step_rankings(model, split.train, split.n_users, split.n_items, k)
    timings = {**knowledge.info.get("timings", {}), "step_top_k_seconds": time.perf_counter() - started}
    info = {**knowledge.info, "step_top_k": k, "n_train": len(split.train), "timings": timings}
    return Knowledge({**knowledge.tensors, "step_top_items": items, "step_top_scores": scores},
                     knowledge.importance, info)


def _check_step_teacher(model, k: int, n_items: int) -> None:
    if not isinstance(model, SequentialRecommender):
        raise DistillrecError(f"step_top_k needs a sequential teacher (e.g. lm-seq-teacher); "
                              f"{type(model).__name__} has no per-step states")
    if not 1 <= k <= n_items:
        raise DistillrecError(f"step_top_k must be in 1..{n_items}, got {k}")


# --- rankings and relations -----------------------------------------------------------------

def top_k_rankings(scorer, seen: pd.DataFrame, n_users: int, n_items: int, k: int,
                   chunk: int = 1024, rows: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k items per user with `seen` (user, item) pairs masked, in chunks of users.

    Returns (items [n_users, k] int64, scores, confidences): ties go to the lower item index
    (the Evaluator's rule); confidence is the softmax probability over the unseen items.
    rows=(start, stop): only those users (a rank's share); the outputs then have stop - start rows."""
    first, stop = rows if rows is not None else (0, n_users)
    seen_users = torch.tensor(seen["user"].to_numpy(np.int64))
    seen_items = torch.tensor(seen["item"].to_numpy(np.int64))
    order = torch.argsort(seen_users, stable=True)
    seen_users, seen_items = seen_users[order], seen_items[order]
    bounds = torch.searchsorted(seen_users, torch.arange(n_users + 1))
    items_out = torch.empty(stop - first, k, dtype=torch.long)
    scores_out = torch.empty(stop - first, k)
    confidence_out = torch.empty(stop - first, k)
    for start in range(first, stop, chunk):
        users = torch.arange(start, min(start + chunk, stop))
        scores = scorer(users).float().clone()
        span = slice(int(bounds[start]), int(bounds[users[-1] + 1]))
        scores[(seen_users[span] - start).to(scores.device), seen_items[span].to(scores.device)] = float("-inf")
        top = rank_top_k(scores, k)
        top_scores = scores.gather(1, top)
        confidence = (top_scores - torch.logsumexp(scores, dim=1, keepdim=True)).exp().nan_to_num(0.0)
        empty = torch.isinf(top_scores)
        out_rows = users - first
        items_out[out_rows] = top.masked_fill(empty, -1).cpu()
        scores_out[out_rows] = top_scores.cpu()
        confidence_out[out_rows] = confidence.masked_fill(empty, 0.0).cpu()
    return items_out, scores_out, confidence_out


def step_rankings(model: SequentialRecommender, train: pd.DataFrame, n_users: int, n_items: int, k: int,
                  max_cells: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's top-k next items at every training step: (items [n_train, k] int64,
    scores [n_train, k]), row r for row r of `train` sorted by user and time (stable), the
    order `sequence_windows` numbers steps in. The teacher reads the windows it was trained on
    (`max_len + 1` items), so a step sees as much context as in training; the items before the
    step in its window are masked (the evaluation's rule: a seen item is not recommended).
    A user's first step has nothing before it: -1 items, -inf scores."""
    _, windows, steps = sequence_windows(train, n_users, model.max_len + 1)
    items_out = torch.full((len(train), k), -1, dtype=torch.long)
    scores_out = torch.full((len(train), k), float("-inf"))
    length = model.max_len
    table = model.item_table()
    chunk = rows_per_chunk(len(windows) or 1, length * n_items, max_cells)
    for start in range(0, len(windows), chunk):
        inputs = windows[start:start + chunk, :-1].to(table.device)  # position p predicts slot p + 1
        targets = steps[start:start + chunk, 1:]
        scores = model.encode(inputs, table) @ table[1:].T  # [c, L, n_items]
        # An item is seen at position p if it fills any slot <= p: a running max of one-hot rows.
        seen = torch.zeros(*inputs.shape, n_items + 1, dtype=torch.bool, device=scores.device)
        seen.scatter_(2, inputs.unsqueeze(2), True)
        seen = seen.cummax(dim=1).values[..., 1:]  # column 0 is padding
        keep = (inputs > 0).cpu() & (targets >= 0)
        scores = scores.masked_fill(seen, float("-inf"))[keep.to(scores.device)]
        top = rank_top_k(scores, k)
        top_scores = scores.gather(1, top)
        rows = targets[keep]
        items_out[rows] = top.masked_fill(torch.isinf(top_scores), -1).cpu()
        scores_out[rows] = top_scores.cpu()
    return items_out, scores_out


def nearest_items(item_vectors: torch.Tensor, knn: int, chunk: int = 1024,
                  rows: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's `knn` most cosine-similar other items: (indices, similarities) [n_items, knn].
    rows=(start, stop): only those items (a rank's share), as stop - start rows."""
    unit = F.normalize(item_vectors.float(), dim=-1)
    first, stop = rows if rows is not None else (0, len(unit))
    indices = torch.empty(stop - first, knn, dtype=torch.long)
    similarity = torch.empty(stop - first, knn)
    for start in range(first, stop, chunk):
        items = torch.arange(start, min(start + chunk, stop), device=unit.device)
        sims = unit[items] @ unit.T
        sims[torch.arange(len(items)), items] = float("-inf")  # an item is not its own neighbour
        top = rank_top_k(sims, knn)
        indices[(items - first).cpu()] = top.cpu()
        similarity[(items - first).cpu()] = sims.gather(1, top).cpu()
    return indices, similarity


# --- feature importance ---------------------------------------------------------------------

def permutation_importance(model: LMTeacher, split: Split, dataset: Dataset,
                           text_fields: Sequence[str] | None = None, seed: int = 0) -> dict[str, float]:
    """Drop in validation NDCG@10 when one input is shuffled across users or items.

    Inputs: every user and item side-feature column ("user.age", "item.genres" ...), the whole
    item text embedding ("item.text"), and each text field of the template
    ("item.text.title" ...: that column shuffled, the texts re-rendered and re-encoded).
    Positive: the model relies on the input; about zero: it does not.
    Distributed: every rank draws every permutation (the same streams as one process) but
    measures only the inputs i with i % world == rank; the values are then summed over ranks."""
    evaluator = Evaluator(split, ks=(10,))
    model.eval()
    model.set_history(split.history("valid"))
    rank, world = distributed.rank(), distributed.world_size()

    def ndcg() -> float:
        return evaluator.evaluate(model.score, "valid")[IMPORTANCE_METRIC]

    def measured_here() -> bool:  # the next input (number len(out)) is this rank's
        return len(out) % world == rank

    base = ndcg()
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    for side, table in (("user", model.user_table), ("item", model.item_table)):
        for name in table.names:
            buffer = getattr(table, f"column_{name}")
            permuted = buffer[torch.randperm(len(buffer), generator=generator).to(buffer.device)]
            if not measured_here():
                out[f"{side}.{name}"] = 0.0
                continue
            with _replaced(table, f"column_{name}", permuted):
                out[f"{side}.{name}"] = base - ndcg()
    text = model.text_embeddings
    permuted = text[torch.randperm(len(text), generator=generator).to(text.device)]
    if measured_here():
        with _replaced(model, "text_embeddings", permuted):
            out["item.text"] = base - ndcg()
    else:
        out["item.text"] = 0.0
    fields = _template_fields(model, dataset) if text_fields is None else list(text_fields)
    for name in fields:
        if name not in dataset.items.columns:
            raise DistillrecError(f"text field {name!r} is not a column of the item table; "
                                  f"available: {', '.join(map(str, dataset.items.columns))}")
        if not measured_here():
            out[f"item.text.{name}"] = 0.0
            continue
        items = dataset.items.copy()
        rng = np.random.default_rng([seed, len(out)])
        items[name] = items[name].to_numpy()[rng.permutation(len(items))]
        with _replaced(model, "text_embeddings", model.item_text_embeddings(items)):
            out[f"item.text.{name}"] = base - ndcg()
    if world > 1:  # each value was measured by one rank, 0.0 elsewhere: the sum is that value
        names = list(out)
        summed = distributed.all_reduce_sum(torch.tensor([out[n] for n in names], dtype=torch.float64))
        out = dict(zip(names, summed.tolist()))
    return out


def _template_fields(model: LMTeacher, dataset: Dataset) -> list[str]:
    from distillrec.teachers.templates import TextTemplate

    template = getattr(model, "template", None)
    if template is None:
        return []
    return [name for name in TextTemplate(template).fields if name in dataset.items.columns]


@contextmanager
def _replaced(module: torch.nn.Module, buffer: str, value: torch.Tensor) -> Iterator[None]:
    """Swap a buffer for the duration of the block; always restored."""
    original = getattr(module, buffer)
    setattr(module, buffer, value)
    try:
        yield
    finally:
        setattr(module, buffer, original)
