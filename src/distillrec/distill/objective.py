"""The distillation objective: the weighted sum of KD terms the Trainer adds to a student's loss.

`DistillObjective(spec, knowledge, student)` is an `nn.Module` passed to the Trainer as
`extra_loss`; per batch it returns one named term per distillation method ("kd/<method>"),
each already weighted and scheduled, so the Trainer logs them separately and sums them into
the total. Its own parameters (projectors into the teacher's space, learned loss weights) are
optimised and checkpointed with the student; the teacher's Knowledge is held in non-persistent
buffers and detached everywhere: gradients never reach it.

A spec maps a method name to a weight or to options:
    {"feature": 1.0, "ranking": {"weight": 0.5, "k": 20, "lam": 10, "weighting": "dllm2rec"}}
Method names are the `METHODS` names, plus the short aliases in `ALIASES`. Every option
except "weight" and "schedule" belongs to the method (see each term's docstring).

Students: MF, two-tower and SASRec. For SASRec a batch row is a training window and its user
state is the encoder output after the window's last item (what scoring uses for the newest
window); the batch's `user` column indexes the teacher's knowledge. A sequential student also
has a state at every position of a window: `step-ranking-distillation` reads the teacher's
per-step rankings there, keyed by the batch's `step` column.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from distillrec.distill.losses import (
    Projector, feature_loss, importance_weights, info_nce, neighbour_graph,
    rank_discrepancy_weights, ranking_distillation, relaxed_ranking, rkd_angle, rkd_distance,
    similarity_preserving, soft_target_kl,
)
from distillrec.distill.weighting import SCHEDULES, WEIGHTINGS, confidence_weights
from distillrec.errors import DistillrecError
from distillrec.registry import Registry

if TYPE_CHECKING:
    from distillrec.teachers.knowledge import Knowledge

#: short names accepted in a spec (the CLI's `--kd ranking=0.5`).
ALIASES = {"ranking": "ranking-distillation", "relaxed": "relaxed-ranking", "response": "soft-target-kl",
           "contrastive": "info-nce", "graph": "neighbour-graph"}
#: spec options handled by the objective itself rather than by a method.
_COMMON_OPTIONS = ("weight", "schedule")


def resolve_method(name: str) -> str:
    """The METHODS name of a spec name; unknown names list every valid one."""
    canonical = ALIASES.get(name, name)
    if canonical not in METHODS:
        valid = sorted(set(METHODS.names()) | set(ALIASES))
        raise DistillrecError(f"unknown distillation method {name!r}; expected one of: {', '.join(valid)}")
    return canonical


def normalise_spec(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{name: weight | options} -> {canonical name: options with a float "weight"}."""
    if not isinstance(spec, Mapping) or not spec:
        raise DistillrecError(f"a distillation spec maps method names to weights, e.g. "
                              f"{{'feature': 1.0, 'ranking': 0.5}}; got {spec!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, value in spec.items():
        canonical = resolve_method(str(name))
        if canonical in out:
            raise DistillrecError(f"distillation method {canonical!r} is given twice in the spec")
        options = dict(value) if isinstance(value, Mapping) else {"weight": value}
        weight = options.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise DistillrecError(f"distillation method {name!r}: weight must be a number > 0, got {weight!r}")
        options["weight"] = float(weight)
        out[canonical] = options
    return out


def step_top_k(spec: Mapping[str, Any]) -> int | None:
    """How many items per step the spec's per-step terms read from the teacher's per-step
    rankings (the largest k, defaults included); None when no term reads them."""
    terms = normalise_spec(spec) if spec else {}
    ks = [{**METHODS.get(name).defaults, **options}["k"] for name, options in terms.items()
          if METHODS.get(name).per_step]
    return max(ks, default=None)


def parse_spec(text: str) -> dict[str, Any]:
    """A spec from the command line: "feature=1.0,ranking=0.5" or a JSON object
    ('{"ranking": {"weight": 0.5, "k": 50}}'). Names are checked by `normalise_spec`."""
    import json

    text = text.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DistillrecError(f"--kd: not a valid JSON object ({exc.msg} at column {exc.colno})") from None
        return normalise_spec(spec)
    spec: dict[str, Any] = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = None
        if not sep or not name.strip() or value is None:
            raise DistillrecError(f"--kd: '{part}' is not of the form METHOD=WEIGHT "
                                  "(e.g. --kd feature=1.0,ranking=0.5)")
        spec[name.strip()] = value
    return normalise_spec(spec)


class BatchView:
    """What the terms share for one batch, computed at most once: user rows, their student
    vectors and the student's full item table."""

    def __init__(self, model: nn.Module, batch: Mapping[str, torch.Tensor]):
        self.model, self.batch = model, batch
        self.users = batch["user"]
        self._user_vectors: torch.Tensor | None = None
        self._item_table: torch.Tensor | None = None
        self._step_states: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def user_vectors(self) -> torch.Tensor:
        if self._user_vectors is None:
            self._user_vectors = self.model.distill_user_vectors(self.batch)
        return self._user_vectors

    @property
    def item_table(self) -> torch.Tensor:
        if self._item_table is None:
            self._item_table = self.model.item_vectors()
        return self._item_table

    def scores(self, items: torch.Tensor) -> torch.Tensor:
        """Student scores of per-row candidates [B, C]."""
        return self.model.similarity(self.user_vectors, self.item_table[items])

    @property
    def step_states(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A sequential student's state at each position with context and the step it predicts:
        ([N, d], [N])."""
        if self._step_states is None:
            if "step" not in self.batch or not hasattr(self.model, "distill_step_states"):
                raise DistillrecError(f"{type(self.model).__name__} has no per-step states: per-step "
                                      "distillation needs a sequential student (sasrec, gru4rec)")
            self._step_states = self.model.distill_step_states(self.batch)
        return self._step_states


# --- the terms -------------------------------------------------------------------------------

class Term(nn.Module):
    """One distillation method. `forward` returns a per-user-row loss [B] (so confidence
    weights can apply) or a scalar (item- and batch-level losses). `defaults` lists the
    method's options (typed by their values; `params_schema` adds ranges, choices and types
    for None defaults, checked when a config is loaded: distillrec.params); `self.options`
    holds them merged with the spec's."""

    name = ""
    per_user = True
    per_step = False  # reads the teacher's per-step rankings (a sequential teacher's)
    defaults: dict[str, Any] = {}

    def __init__(self, knowledge: "_KnowledgeBuffers", student_dim: int, options: Mapping[str, Any]):
        super().__init__()
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise DistillrecError(f"{self.name}: unknown option(s) {', '.join(unknown)}; "
                                  f"expected {', '.join(sorted(self.defaults)) or 'none'}")
        self.knowledge = knowledge
        self.options = {**self.defaults, **options}

    @classmethod
    def option_limits(cls, tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """The largest value each bounded option can take with this knowledge (its tensors by
        name), so a search space never proposes what the term would refuse."""
        return {}

    def forward(self, view: BatchView, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError


#: the distillation methods a config can name, each a Term class registered by its `name`.
METHODS: Registry[type[Term]] = Registry("distillation method")


def _term(cls: type[Term]) -> type[Term]:
    return METHODS.register(cls.name)(cls)


def _unique_rows(view: BatchView) -> torch.Tensor:
    """Row index of the first occurrence of each distinct user in the batch; for sequence
    windows, the rows of users' newest windows (one per user): the state the teacher's user
    vector, taken after the whole training history, describes."""
    newest = view.batch.get("newest")
    if newest is not None:
        return newest.nonzero().squeeze(1)
    users = view.users
    order = torch.argsort(users, stable=True)
    first = torch.ones_like(users, dtype=torch.bool)
    first[1:] = users[order][1:] != users[order][:-1]
    return order[first]


_ON = ("both", "user", "item")


def _check_on(name: str, on: str) -> None:
    if on not in ("both", "user", "item"):
        raise DistillrecError(f"{name}: on must be both, user or item, got {on!r}")


def _subsample(index: torch.Tensor, limit: int, generator: torch.Generator | None) -> torch.Tensor:
    if len(index) <= limit:
        return index
    return index[torch.randperm(len(index), generator=generator, device="cpu")[:limit].to(index.device)]


@_term
class FeatureTerm(Term):
    """FitNets on the batch's users and items: projected student vectors vs the teacher's
    representations. Options: kind ("mse" | "cosine"), hidden (projector MLP width or None),
    on ("both" | "user" | "item")."""

    name, per_user = "feature", False
    defaults = {"kind": "cosine", "hidden": None, "on": "both"}
    params_schema = {"kind": {"choices": ("mse", "cosine")}, "hidden": {"type": int | None, "ge": 1},
                     "on": {"choices": _ON}}

    def __init__(self, knowledge, student_dim, options):
        super().__init__(knowledge, student_dim, options)
        _check_on(self.name, self.options["on"])
        self.projector = Projector(student_dim, knowledge.item.shape[1], self.options["hidden"])

    def forward(self, view, generator):
        o, losses = self.options, []
        if o["on"] in ("both", "user"):
            rows = _unique_rows(view)
            losses.append(feature_loss(view.user_vectors[rows], self.knowledge.user[view.users[rows]],
                                       self.projector, kind=o["kind"]))
        if o["on"] in ("both", "item"):
            items = view.model.distill_items(view.batch)
            losses.append(feature_loss(view.item_table[items], self.knowledge.item[items], self.projector,
                                       kind=o["kind"]))
        return sum(losses) / len(losses)


@_term
class ContrastiveTerm(Term):
    """InfoNCE alignment of the batch's distinct users and items with their teacher vectors
    (in-batch negatives). Options: temperature, symmetric, hidden (projector), max_rows."""

    name, per_user = "info-nce", False
    defaults = {"temperature": 0.1, "symmetric": True, "hidden": None, "max_rows": 512}
    params_schema = {"temperature": {"gt": 0}, "hidden": {"type": int | None, "ge": 1}, "max_rows": {"ge": 2}}

    def __init__(self, knowledge, student_dim, options):
        super().__init__(knowledge, student_dim, options)
        self.projector = Projector(student_dim, knowledge.item.shape[1], self.options["hidden"])

    def forward(self, view, generator):
        o = self.options
        rows = _subsample(_unique_rows(view), o["max_rows"], generator)
        items = _subsample(view.model.distill_items(view.batch), o["max_rows"], generator)
        user_loss = info_nce(self.projector(view.user_vectors[rows]), self.knowledge.user[view.users[rows]],
                             o["temperature"], o["symmetric"])
        item_loss = info_nce(self.projector(view.item_table[items]), self.knowledge.item[items],
                             o["temperature"], o["symmetric"])
        return (user_loss + item_loss) / 2


class _RelationTerm(Term):
    """A relational loss on a sample of the batch's distinct items (and users): the student's
    pairwise structure against the teacher's. Options: on ("both" | "item" | "user"), max_rows."""

    per_user = False
    defaults = {"on": "both", "max_rows": 256}
    params_schema = {"on": {"choices": _ON}, "max_rows": {"ge": 2}}
    loss = staticmethod(rkd_distance)

    def __init__(self, knowledge, student_dim, options):
        super().__init__(knowledge, student_dim, options)
        _check_on(self.name, self.options["on"])

    def forward(self, view, generator):
        o, losses = self.options, []
        if o["on"] in ("both", "item"):
            items = _subsample(view.model.distill_items(view.batch), o["max_rows"], generator)
            losses.append(self.loss(view.item_table[items], self.knowledge.item[items]))
        if o["on"] in ("both", "user"):
            rows = _subsample(_unique_rows(view), o["max_rows"], generator)
            losses.append(self.loss(view.user_vectors[rows], self.knowledge.user[view.users[rows]]))
        return sum(losses) / len(losses)


@_term
class DistanceTerm(_RelationTerm):
    """RKD distance: the student's pairwise distances match the teacher's (options: as _RelationTerm)."""

    name = "rkd-distance"


@_term
class AngleTerm(_RelationTerm):
    """RKD angle: the angles of the student's triplets match the teacher's (options: as _RelationTerm)."""

    name = "rkd-angle"
    defaults = {"on": "both", "max_rows": 48}  # O(rows^3) memory
    loss = staticmethod(rkd_angle)


@_term
class SimilarityTerm(_RelationTerm):
    """Similarity-preserving KD: the student's batch similarity matrix matches the teacher's
    (options: as _RelationTerm)."""

    name = "similarity-preserving"
    loss = staticmethod(similarity_preserving)


@_term
class NeighbourGraphTerm(Term):
    """The teacher's item k-NN graph on anchors drawn from the batch's items, each scored
    against the whole catalog. Options: anchors (count), k (neighbours used), temperature."""

    name, per_user = "neighbour-graph", False
    defaults = {"anchors": 256, "k": 10, "temperature": 0.1}
    params_schema = {"anchors": {"ge": 1}, "k": {"ge": 1}, "temperature": {"gt": 0}}

    def __init__(self, knowledge, student_dim, options):
        super().__init__(knowledge, student_dim, options)
        if not 1 <= self.options["k"] <= knowledge.knn_items.shape[1]:
            raise DistillrecError(f"neighbour-graph: k must be in 1..{knowledge.knn_items.shape[1]} "
                                  f"(the knowledge's graph), got {self.options['k']}")

    @classmethod
    def option_limits(cls, tensors):
        return {"k": tensors["knn_items"].shape[1]}

    def forward(self, view, generator):
        o = self.options
        anchors = _subsample(view.model.distill_items(view.batch), o["anchors"], generator)
        return neighbour_graph(view.item_table, self.knowledge.knn_items[anchors, :o["k"]],
                               temperature=o["temperature"], anchors=anchors)


class _TopKTerm(Term):
    """Shared by the terms reading the teacher's top-K list: checks k against the knowledge."""

    def __init__(self, knowledge, student_dim, options):
        super().__init__(knowledge, student_dim, options)
        k, available = self.options["k"], knowledge.top_items.shape[1]
        if not 1 <= k <= available:
            raise DistillrecError(f"{self.name}: k must be in 1..{available} (the knowledge's top-K), got {k}")
        short = int((knowledge.top_items[:, :k] < 0).any(dim=1).sum())
        if short:
            raise DistillrecError(f"{self.name}: the teacher ranks fewer than k={k} items for {short} users "
                                  "(they have seen almost the whole catalog); lower k")

    @classmethod
    def option_limits(cls, tensors):
        return {"k": tensors["top_items"].shape[1]}

    def top_items(self, view: BatchView) -> torch.Tensor:
        return self.knowledge.top_items[view.users, :self.options["k"]]

    def random_items(self, view: BatchView, count: int, generator: torch.Generator | None) -> torch.Tensor:
        n_items = self.knowledge.item.shape[0]
        return torch.randint(n_items, (len(view.users), count), generator=generator, device="cpu").to(view.users.device)


def catalogue_ranks(candidate_scores: torch.Tensor, catalogue_scores: torch.Tensor) -> torch.Tensor:
    """0-based rank of each candidate [B, K] among a full row of scores [B, N]: the number of
    items scored strictly higher. `student_ranks` gives the same counts from a [B, K, N]
    comparison; sorting once per row costs O(N log N) memory-light work instead."""
    ordered = catalogue_scores.detach().sort(dim=1).values
    not_above = torch.searchsorted(ordered, candidate_scores.detach().contiguous(), right=True)
    return (catalogue_scores.shape[1] - not_above).float()


@_term
class RankingTerm(_TopKTerm):
    """Ranking distillation (Tang & Wang 2018; DLLM2Rec) over the teacher's top-k for each row's
    user: the student scores them as weighted positives. Options: k, lam (position decay),
    weighting ("position" | "hybrid" | "dllm2rec"), mu (hybrid), beta (dllm2rec position),
    pairwise (score each top item against a random item, BPR-style, instead of alone: the
    term is then scale-free and cannot be met by inflating every score)."""

    name = "ranking-distillation"
    defaults = {"k": 20, "lam": 10.0, "weighting": "position", "mu": 0.1, "beta": 10.0, "pairwise": False}
    params_schema = {"k": {"ge": 1}, "lam": {"gt": 0}, "weighting": {"choices": ("position", "hybrid", "dllm2rec")},
                     "mu": {"ge": 0}, "beta": {"gt": 0}}

    def __init__(self, knowledge, student_dim, options):
        super().__init__(knowledge, student_dim, options)
        _check_weighting(self.name, self.options["weighting"])

    def forward(self, view, generator):
        o = self.options
        users, top = view.users, self.top_items(view)
        scores = view.scores(top)
        margins = scores - view.scores(self.random_items(view, o["k"], generator)) if o["pairwise"] else scores
        return _weighted_ranking(margins, scores, lambda: view.model.similarity(view.user_vectors, view.item_table),
                                 lambda: self.knowledge.top_scores[users, :o["k"]], o)


def _check_weighting(name: str, weighting: str) -> None:
    if weighting not in ("position", "hybrid", "dllm2rec"):
        raise DistillrecError(f"{name}: weighting must be position, hybrid or dllm2rec, got {weighting!r}")


def _weighted_ranking(margins: torch.Tensor, scores: torch.Tensor, catalogue_scores, teacher_scores,
                      o: Mapping[str, Any]) -> torch.Tensor:
    """Ranking distillation per row under `o["weighting"]`: the student `scores` [R, k] of the
    teacher's list (`margins`: what the loss reads, the scores or pairwise margins);
    `catalogue_scores()` the rows' scores of every item and `teacher_scores()` the teacher's
    scores of its list, both called only when the weighting needs them."""
    if o["weighting"] == "position":
        return ranking_distillation(margins, lam=o["lam"], reduction="none")
    if o["weighting"] == "hybrid":
        with torch.no_grad():  # where the student ranks the teacher's items, over the full catalog
            ranks = catalogue_ranks(scores, catalogue_scores())
        weights = rank_discrepancy_weights(ranks, o["lam"], o["mu"])
    else:
        with torch.no_grad():
            consistent = in_catalogue_top_k(scores, catalogue_scores(), o["k"])
        positions = torch.arange(1, o["k"] + 1, device=scores.device).expand_as(scores)
        weights = importance_weights(positions, teacher_scores(), consistent, beta=o["beta"])
    return ranking_distillation(margins, weights, reduction="none")


def in_catalogue_top_k(candidate_scores: torch.Tensor, catalogue_scores: torch.Tensor, k: int) -> torch.Tensor:
    """`catalogue_ranks(...) < k` [B, K] without sorting the rows: fewer than k items score
    strictly higher than a candidate exactly when it scores at least the row's k-th best."""
    kth = catalogue_scores.detach().topk(k, dim=1).values[:, -1:]
    return candidate_scores.detach() >= kth


@_term
class StepRankingTerm(Term):
    """Ranking distillation at every training step of a sequential student, the way DLLM2Rec
    distils one teacher list per training sequence: the student's state at each position of
    a window scores the teacher's top-k next items for that step (the Knowledge's per-step
    rankings, `teachers.knowledge.step_rankings`) as weighted positives, weighted as in
    ranking-distillation. One mean over the batch's steps; a user's newest window is not
    special here. Options: k, lam (position decay), weighting ("position" | "hybrid" |
    "dllm2rec"), mu (hybrid), beta (dllm2rec position)."""

    name, per_user, per_step = "step-ranking-distillation", False, True
    defaults = {"k": 10, "lam": 10.0, "weighting": "dllm2rec", "mu": 0.1, "beta": 10.0}
    params_schema = {"k": {"ge": 1}, "lam": {"gt": 0}, "weighting": {"choices": ("position", "hybrid", "dllm2rec")},
                     "mu": {"ge": 0}, "beta": {"gt": 0}}

    def __init__(self, knowledge, student_dim, options):
        super().__init__(knowledge, student_dim, options)
        if not hasattr(knowledge, "step_top_items"):
            raise DistillrecError(f"{self.name}: the knowledge has no per-step rankings; a sequential "
                                  "teacher's are added when a student is distilled from its run, or "
                                  "extracted with `distillrec teacher extract --step-top-k K`")
        k, available = self.options["k"], knowledge.step_top_items.shape[1]
        if not 1 <= k <= available:
            raise DistillrecError(f"{self.name}: k must be in 1..{available} (the knowledge's step_top_k), got {k}")
        listed = knowledge.step_top_items[:, :k] >= 0
        short = int((listed.any(dim=1) & ~listed.all(dim=1)).sum())
        if short:
            raise DistillrecError(f"{self.name}: the teacher ranks fewer than k={k} items at {short} steps; lower k")
        _check_weighting(self.name, self.options["weighting"])

    def forward(self, view, generator):
        o = self.options
        states, steps = view.step_states
        top = self.knowledge.step_top_items[steps, :o["k"]]
        if bool((top < 0).any()):
            raise DistillrecError(f"{self.name}: a batch step has no teacher ranking: the knowledge was "
                                  "extracted from other training data than the student's")
        scores = view.model.similarity(states, view.item_table[top])
        per_step = _weighted_ranking(scores, scores, lambda: view.model.similarity(states, view.item_table),
                                     lambda: self.knowledge.step_top_scores[steps, :o["k"]], o)
        return per_step.mean() if len(per_step) else states.sum() * 0.0


@_term
class RelaxedRankingTerm(_TopKTerm):
    """DE-RRD's relaxed ranking: the teacher's top-k order ahead of `negatives` random items.
    Options: k, negatives."""

    name = "relaxed-ranking"
    defaults = {"k": 10, "negatives": 100}
    params_schema = {"k": {"ge": 1}, "negatives": {"ge": 1}}

    def forward(self, view, generator):
        top = self.top_items(view)
        rest = self.random_items(view, self.options["negatives"], generator)
        return relaxed_ranking(view.scores(top), view.scores(rest), reduction="none")


@_term
class ResponseTerm(_TopKTerm):
    """Soft-target KL between teacher and student score distributions over candidates: the
    teacher's top-k plus `negatives` random items, or the whole catalog (candidates="full").
    Teacher scores of non-top items are the Knowledge's user . item dot products.
    Options: k, negatives, candidates ("sampled" | "full"), temperature."""

    name = "soft-target-kl"
    defaults = {"k": 20, "negatives": 100, "candidates": "sampled", "temperature": 1.0}
    params_schema = {"k": {"ge": 1}, "negatives": {"ge": 0}, "candidates": {"choices": ("sampled", "full")},
                     "temperature": {"gt": 0}}

    def __init__(self, knowledge, student_dim, options):
        super().__init__(knowledge, student_dim, options)
        if self.options["candidates"] not in ("sampled", "full"):
            raise DistillrecError(f"{self.name}: candidates must be sampled or full, "
                                  f"got {self.options['candidates']!r}")
        # Full candidates: every row needs its user's whole score row, so compute them once
        # ([n_users, n_items]; a constant, like the rest of the knowledge).
        full = knowledge.user @ knowledge.item.T if self.options["candidates"] == "full" else None
        self.register_buffer("teacher_scores", full, persistent=False)

    def forward(self, view, generator):
        o, users, k = self.options, view.users, self.options["k"]
        if o["candidates"] == "full":
            student = view.model.similarity(view.user_vectors, view.item_table)
            teacher = self.teacher_scores[users]
        else:
            rest = self.random_items(view, o["negatives"], generator)
            student = view.scores(torch.cat([self.top_items(view), rest], dim=1))
            teacher_rest = torch.einsum("bd,bcd->bc", self.knowledge.user[users], self.knowledge.item[rest])
            teacher = torch.cat([self.knowledge.top_scores[users, :k], teacher_rest], dim=1)
        return soft_target_kl(student, teacher, o["temperature"], reduction="none")


# --- the objective ---------------------------------------------------------------------------

class _KnowledgeBuffers(nn.Module):
    """The Knowledge tensors a student reads, as non-persistent buffers: they follow the
    objective to its device but are neither trained nor written into checkpoints."""

    def __init__(self, knowledge: "Knowledge"):
        super().__init__()
        for name in ("user", "item", "top_items", "top_scores", "knn_items", "step_top_items", "step_top_scores"):
            if name in knowledge.tensors:  # the per-step rankings only from a sequential teacher
                self.register_buffer(name, knowledge.tensors[name].detach().clone(), persistent=False)


def _make_weighting(kind: str, name: str, weight: float) -> nn.Module:
    """One weighting per term (both registered weightings are sums of independent per-term
    parts, so this equals one joint weighting and gives each term's own contribution)."""
    cls = WEIGHTINGS.get(kind)
    if kind == "uncertainty":
        # exp(-s) is the learned weight: start it at the spec's weight.
        return cls([name], initial_log_variance=-math.log(weight))
    if kind == "fixed":
        return cls({name: weight})
    raise DistillrecError(f"weighting {kind!r} is not supported by the objective; use fixed or uncertainty")


def _make_schedule(name: str, spec: Any):
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise DistillrecError(f"{name}: schedule must be a name or {{'name': ..., options}}, got {spec!r}")
    options = {key: value for key, value in spec.items() if key != "name"}
    try:
        return SCHEDULES.get(spec["name"])(**options)
    except TypeError as exc:
        raise DistillrecError(f"{name}: bad options for schedule {spec['name']!r} ({exc})") from None


class DistillObjective(nn.Module):
    """sum_i schedule_i(step) * weighting_i(L_i) over the spec's methods; see the module docstring.

    weighting: "fixed" (the spec's weights) or "uncertainty" (learned, started at them).
    confidence: weight each user row of per-user terms by the teacher's confidence in its
    top-K (1 - entropy of its renormalised top-K probabilities; mean 1 over the batch).
    Schedules (a spec option, e.g. {"name": "linear-warmup", "steps": 500}) advance once per
    training step. seed: the candidate and anchor sampling.
    """

    def __init__(self, spec: Mapping[str, Any], knowledge: "Knowledge", student: nn.Module, *,
                 weighting: str = "fixed", confidence: bool = False, seed: int = 0):
        super().__init__()
        self.spec = normalise_spec(spec)
        self.confidence = confidence
        self.knowledge = _KnowledgeBuffers(knowledge)
        with torch.no_grad():
            n_items, student_dim = student.item_vectors().shape
        if n_items != self.knowledge.item.shape[0]:
            raise DistillrecError(f"the knowledge covers {self.knowledge.item.shape[0]} items but the student "
                                  f"has {n_items}; build the student on the teacher's split")
        self.terms = nn.ModuleDict()
        self.weightings = nn.ModuleDict()
        self.schedules = {}
        # Projectors are initialised from `seed` alone, not from whatever the process drew before,
        # and without disturbing the caller's random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for name, options in self.spec.items():
                own = {key: value for key, value in options.items() if key not in _COMMON_OPTIONS}
                self.terms[name] = METHODS.get(name)(self.knowledge, student_dim, own)
        for name, options in self.spec.items():
            self.weightings[name] = _make_weighting(weighting, name, options["weight"])
            self.schedules[name] = _make_schedule(name, options.get("schedule"))
        # Saved in checkpoints, so a resumed run continues its schedules where they were.
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.seed = seed
        self.generator = torch.Generator()

    def forward(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        view = BatchView(model, batch)
        weights = self._confidence(view.users) if self.confidence else None
        step = int(self.step)
        # Sampling seeded by (seed, step): a run resumed from a checkpoint draws the same items.
        self.generator.manual_seed((self.seed << 32) + step)
        # Sequence windows: only a user's newest window ends where the per-user knowledge
        # (the teacher's top-K after the whole training history) looks ahead from.
        rows = batch.get("newest")
        out = {}
        for name, term in self.terms.items():
            loss = term(view, self.generator)
            if term.per_user:
                if weights is not None:
                    loss = loss * weights
                loss = loss.mean() if rows is None else (loss * rows).sum() / rows.sum().clamp(min=1)
            contribution = self.weightings[name]({name: loss})
            if (schedule := self.schedules[name]) is not None:
                contribution = contribution * schedule(step)
            out[f"kd/{name}"] = contribution
        if self.training:
            self.step += 1
        return out

    def _confidence(self, users: torch.Tensor) -> torch.Tensor:
        k = max((term.options["k"] for term in self.terms.values() if isinstance(term, _TopKTerm)),
                default=self.knowledge.top_scores.shape[1])
        return confidence_weights(self.knowledge.top_scores[users, :k].softmax(dim=1))

    def current_weights(self) -> dict[str, float]:
        """Effective weight of each method now (learned ones change during training)."""
        return {name: weighting.weights()[name] for name, weighting in self.weightings.items()}

