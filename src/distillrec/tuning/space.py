"""Search spaces: which settings a study may change, and within what range.

A space maps a setting's path to a dimension:

    params.<name>            a model parameter (params.rec_loss, params.l2)
    train.<name>             a TrainConfig option (train.lr, train.batch_size)
    kd.<method>.<option>     a distillation term's option, as the method is written in kd
                             (kd.ranking.weight, kd.soft-target-kl.temperature)

and a dimension, in YAML as in code, is one of

    {low: 1e-4, high: 1e-2, log: true}   a float (an int when low and high are both ints)
    {choices: [bpr, softmax]}            one of the values
    0.01                                 a fixed value: set, never searched

with an optional `when: {params.rec_loss: [bpr, sampled-softmax]}`: the dimension is only
sampled when an earlier one took one of those values (negatives only matter to sampled losses).

Every model gets the same training space (`TRAIN_SPACE`, plus its recommendation loss when it
has one) unless its class declares `tune_space`; a distilled student searches its student's
space plus each of its terms' weights and main options, so both sides spend the same number of
trials on a space that contains the undistilled setting's. The dimension (`dim`) never moves:
a size comparison is only fair at equal size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from distillrec.errors import DistillrecError

SAMPLED_LOSSES = ("bpr", "sampled-softmax")

#: the training settings every gradient-trained model searches (RecBole's usual ranges).
TRAIN_SPACE: dict[str, Any] = {
    "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "train.weight_decay": {"low": 1e-6, "high": 1e-1, "log": True},
    "train.batch_size": {"choices": [256, 512, 1024, 2048]},
    "params.rec_loss": {"choices": ["bpr", "sampled-softmax", "softmax"]},
    "train.n_negatives": {"low": 1, "high": 64, "log": True, "when": {"params.rec_loss": list(SAMPLED_LOSSES)}},
}
#: options of distillation terms searched around their configured value (factor either side).
TERM_OPTIONS = {"weight": 10.0, "temperature": 5.0, "k": 4.0}


@dataclass(frozen=True)
class Dimension:
    path: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None
    fixed: Any = None
    when: dict[str, tuple] = field(default_factory=dict)

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def active(self, chosen: Mapping[str, Any]) -> bool:
        return all(chosen.get(path) in values for path, values in self.when.items())

    def suggest(self, trial) -> Any:
        """The trial's value (Optuna's define-by-run API)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.low is None:
            return self.fixed
        if self.is_int:
            return trial.suggest_int(self.path, self.low, self.high, log=self.log)
        return trial.suggest_float(self.path, float(self.low), float(self.high), log=self.log)

    def to_json(self) -> Any:
        if self.low is None and self.choices is None:
            return self.fixed
        out: dict[str, Any] = ({"choices": list(self.choices)} if self.choices is not None
                               else {"low": self.low, "high": self.high, "log": self.log})
        if self.when:
            out["when"] = {path: list(values) for path, values in self.when.items()}
        return out


def parse_dimension(path: str, spec: Any, where: str) -> Dimension:
    """One dimension from its YAML form; errors name `where` (tune.space.mf.train.lr)."""
    _check_path(path, where)
    if not isinstance(spec, Mapping):
        return Dimension(path, fixed=spec)
    unknown = sorted(set(spec) - {"low", "high", "log", "choices", "when"})
    if unknown:
        raise DistillrecError(f"{where}: unknown key(s) {', '.join(unknown)}; expected low/high/log, choices, when")
    when = spec.get("when") or {}
    if not isinstance(when, Mapping) or not all(isinstance(v, (list, tuple)) for v in when.values()):
        raise DistillrecError(f"{where}.when: expected a mapping of paths to lists of values")
    when = {p: tuple(v) for p, v in when.items()}
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, (list, tuple)) or not choices or set(spec) - {"choices", "when"}:
            raise DistillrecError(f"{where}: choices must be a non-empty list (and alone, without low/high)")
        return Dimension(path, choices=tuple(choices), when=when)
    low, high = _number(spec.get("low"), f"{where}.low"), _number(spec.get("high"), f"{where}.high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise DistillrecError(f"{where}.log: expected true or false, got {log!r}")
    if not low < high or (log and low <= 0):
        raise DistillrecError(f"{where}: expected low < high" + (" and low > 0 (log scale)" if log else "")
                              + f", got low {low}, high {high}")
    return Dimension(path, low=low, high=high, log=log, when=when)


def _number(value: Any, where: str) -> float | int:
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DistillrecError(f"{where}: expected a number, got {value!r}")
    return value


def _check_path(path: str, where: str) -> None:
    head, _, rest = path.partition(".")
    parts = rest.split(".")
    if head not in ("params", "train", "kd") or not rest or (head == "kd") != (len(parts) == 2) \
            or not all(parts):
        raise DistillrecError(f"{where}: {path!r} is not a setting path; expected params.<name>, "
                              f"train.<name> or kd.<method>.<option>")
    if path in ("params.dim", "train.seed"):
        raise DistillrecError(f"{where}: {path} is fixed (sizes are compared at equal dimension; "
                              f"seeds come from the experiment)")


def parse_space(spec: Mapping[str, Any], where: str) -> list[Dimension]:
    """A space in declaration order (a `when` refers to a dimension declared before it)."""
    dimensions = [parse_dimension(str(path), value, f"{where}.{path}") for path, value in spec.items()]
    declared: set[str] = set()
    for dimension in dimensions:
        missing = sorted(set(dimension.when) - declared)
        if missing:
            raise DistillrecError(f"{where}.{dimension.path}.when: refers to {', '.join(missing)}, "
                                  f"which is not declared before it")
        declared.add(dimension.path)
    return dimensions


def model_space(model_cls: type) -> dict[str, Any]:
    """A model's default space: its own `tune_space`, else the training space (with the
    recommendation loss only if the model has one)."""
    declared = getattr(model_cls, "tune_space", None)
    if declared is not None:
        return dict(declared)
    from distillrec.params import model_schema

    has_loss = "rec_loss" in model_schema(model_cls).params
    return {path: value for path, value in TRAIN_SPACE.items()
            if has_loss or not (path == "params.rec_loss" or "params.rec_loss" in value.get("when", {}))}


def kd_space(kd: Mapping[str, Any], knowledge=None) -> dict[str, Any]:
    """Each term's weight and main options searched on a log scale around their set value; with
    the teacher's `knowledge`, an option's range stops where that knowledge does (a graph of 20
    neighbours caps k at 20)."""
    from distillrec.distill.objective import METHODS, resolve_method

    space: dict[str, Any] = {}
    for name, value in kd.items():
        options = dict(value) if isinstance(value, Mapping) else {"weight": value}
        method = METHODS.get(resolve_method(str(name)))
        defaults = {"weight": 1.0, **method.defaults}
        limits = method.option_limits(knowledge.tensors) if knowledge is not None else {}
        for option, factor in TERM_OPTIONS.items():
            if option not in defaults:
                continue
            centre = options.get(option, defaults[option])
            if isinstance(centre, bool) or not isinstance(centre, (int, float)) or centre <= 0:
                continue
            if isinstance(centre, int) and option != "weight":
                low, high = max(1, int(centre / factor)), int(centre * factor)
                high = min(high, limits.get(option, high))
                if low < high:  # else nothing to search: the set value stands (and the term checks it)
                    space[f"kd.{name}.{option}"] = {"low": low, "high": high, "log": True}
            else:
                space[f"kd.{name}.{option}"] = {"low": centre / factor, "high": centre * factor, "log": True}
    return space


def sample(trial, dimensions: list[Dimension]) -> dict[str, Any]:
    """The trial's assignment {path: value} (inactive conditional dimensions left out)."""
    chosen: dict[str, Any] = {}
    for dimension in dimensions:
        if dimension.active(chosen):
            chosen[dimension.path] = dimension.suggest(trial)
    return chosen


def apply(assignment: Mapping[str, Any], params: Mapping[str, Any], train: Mapping[str, Any],
          kd: Mapping[str, Any] | None = None) -> tuple[dict, dict, dict]:
    """(params, train, kd) with the assignment's values written over the given ones."""
    params, train = dict(params), dict(train)
    kd = {name: dict(v) if isinstance(v, Mapping) else {"weight": v} for name, v in (kd or {}).items()}
    for path, value in assignment.items():
        head, _, rest = path.partition(".")
        if head == "params":
            params[rest] = value
        elif head == "train":
            train[rest] = value
        else:
            method, _, option = rest.partition(".")
            if method not in kd:
                raise DistillrecError(f"tune space: {path} names method {method!r}, which is not in kd "
                                      f"({', '.join(kd) or 'none'})")
            kd[method][option] = value
    return params, train, kd
