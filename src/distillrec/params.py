"""Declared parameters of everything a config names, checked when the config is loaded.

A model's parameters are the keyword parameters of its `build` (read with `inspect`, types
from its type hints); when `build` forwards `**params` to the constructor, the constructor's
parameters with a default are the model's too. A distillation term's options are its
`defaults` (types from the default values), a schedule's and a split's those of their
function, training's the fields of `TrainConfig`. What type hints cannot say lives in a
small declaration on the class, `params_schema`:

    params_schema = {"dim": {"ge": 1}, "dropout": {"ge": 0, "lt": 1},
                     "rec_loss": {"choices": REC_LOSSES.names},   # a callable: read when checking
                     "hidden": {"type": int | None, "ge": 1},     # a type for a None default
                     "text_encoder": None}                        # set by build, not from config

Checks give one `ParamError` naming the key path (`students.0.params.dim: expected an
integer >= 1, got 'sixty'`), so a run refuses a bad config before any work. Only the
registries are imported: torch, never sentence-transformers or peft.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Union

from distillrec.errors import DistillrecError

_CONSTRAINTS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_DECLARATION_KEYS = {"type", "choices", *_CONSTRAINTS}
# YAML 1.1 reads 1e-3 (no dot) as a string; such strings are numbers meant as numbers.
_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_MISMATCH = object()


class ParamError(DistillrecError):
    """A bad parameter; `path` is its key path in the config (students.0.params.dim)."""

    def __init__(self, path: str, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Param:
    name: str
    annotation: Any = Any
    default: Any = inspect.Parameter.empty
    constraints: dict = field(default_factory=dict)  # ge / gt / le / lt / choices

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True)
class Schema:
    owner: str                      # "model 'mf'", for messages
    params: dict[str, Param]
    reserved: dict[str, str] = field(default_factory=dict)  # name -> who sets it instead


# --- schemas from signatures and declarations ---------------------------------------------

def _annotation(fn: Callable, parameter: inspect.Parameter) -> Any:
    """A parameter's type hint, evaluated; Any when there is none or it names a type that is
    only imported for type checkers."""
    hint = parameter.annotation
    if hint is inspect.Parameter.empty:
        return Any
    if isinstance(hint, str):
        try:
            return eval(hint, getattr(fn, "__globals__", {}))  # noqa: S307  (our own source's hints)
        except Exception:
            return Any
    return hint


def _declared(owner: str, params: dict[str, Param], declarations: Mapping[str, Any]) -> dict[str, Param]:
    """Apply a `params_schema`: constraints, type overrides, and names build sets itself."""
    out = dict(params)
    for name, declaration in declarations.items():
        if name not in params:  # a stale declaration is a bug in distillrec, found by the tests
            raise ValueError(f"{owner}: params_schema declares {name!r}, which is not a parameter")
        if declaration is None:
            del out[name]
            continue
        unknown = set(declaration) - _DECLARATION_KEYS
        if unknown:
            raise ValueError(f"{owner}: params_schema[{name!r}] has unknown keys {sorted(unknown)}")
        constraints = {k: v for k, v in declaration.items() if k != "type"}
        out[name] = dataclasses.replace(params[name], annotation=declaration.get("type", params[name].annotation),
                                        constraints=constraints)
    return out


def callable_schema(fn: Callable, owner: str, *, skip: int = 0, declarations: Mapping[str, Any] | None = None,
                    reserved: Mapping[str, str] | None = None) -> Schema:
    """The keyword parameters of `fn` after its first `skip` ones (**kwargs left out)."""
    params = {}
    for parameter in list(inspect.signature(fn).parameters.values())[skip:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        params[parameter.name] = Param(parameter.name, _annotation(fn, parameter), parameter.default)
    reserved = dict(reserved or {})
    for name in reserved:
        params.pop(name, None)
    return Schema(owner, _declared(owner, params, declarations or {}), reserved)


@functools.lru_cache(maxsize=None)
def model_schema(cls: type) -> Schema:
    """A model's config parameters: `build`'s after (dataset, split), plus the constructor's
    defaulted ones when build forwards **params to it; `seed` comes from the experiment."""
    from distillrec.students.base import registered_name

    owner = f"model {registered_name(cls, cls.__name__)!r}"
    build = cls.build  # bound classmethod: (dataset, split, ...)
    signature = inspect.signature(build)
    params = {}
    for parameter in list(signature.parameters.values())[2:]:
        if parameter.kind == parameter.VAR_KEYWORD:
            for inner in list(inspect.signature(cls.__init__).parameters.values())[1:]:
                if (inner.default is not inner.empty and inner.name not in signature.parameters
                        and inner.kind in (inner.POSITIONAL_OR_KEYWORD, inner.KEYWORD_ONLY)):
                    params[inner.name] = Param(inner.name, _annotation(cls.__init__, inner), inner.default)
        elif parameter.kind != parameter.VAR_POSITIONAL:
            params[parameter.name] = Param(parameter.name, _annotation(build.__func__, parameter), parameter.default)
    params.pop("seed", None)
    return Schema(owner, _declared(owner, params, getattr(cls, "params_schema", {})),
                  {"seed": "the experiment's seed (top-level seed:, or --seed)"})


def _default_type(value: Any) -> Any:
    return Any if value is None else type(value)


@functools.lru_cache(maxsize=None)
def term_schema(cls: type) -> Schema:
    """A distillation term's options: its `defaults`, typed by their values (declarations
    for None defaults and choices), plus weight and schedule, which every term takes."""
    owner = f"distillation method {cls.name!r}"
    params = {name: Param(name, _default_type(value), value) for name, value in cls.defaults.items()}
    params = _declared(owner, params, getattr(cls, "params_schema", {}))
    params["weight"] = Param("weight", float, 1.0, {"gt": 0})
    params["schedule"] = Param("schedule", Any, None)  # checked by `check_schedule`
    return Schema(owner, params)


@functools.lru_cache(maxsize=None)
def train_schema() -> Schema:
    """TrainConfig's fields as a Schema (its cross-field checks run after, in `check_train`)."""
    from distillrec.train import TrainConfig

    params = {}
    for name, info in TrainConfig.model_fields.items():
        constraints = {key: getattr(meta, key) for meta in info.metadata for key in _CONSTRAINTS
                       if getattr(meta, key, None) is not None}
        params[name] = Param(name, info.annotation, info.default, constraints)
    return Schema("training", params)


# --- checking values ------------------------------------------------------------------------

def _is_union(annotation) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _check_value(value: Any, annotation: Any) -> Any:
    """The value (a number string made a number), or _MISMATCH."""
    if annotation is Any or annotation is object:
        return value
    if annotation is None or annotation is type(None):
        return value if value is None else _MISMATCH
    if _is_union(annotation):
        for member in typing.get_args(annotation):
            checked = _check_value(value, member)
            if checked is not _MISMATCH:
                return checked
        return _MISMATCH
    if typing.get_origin(annotation) is Literal:
        return value if any(value == c and type(value) is type(c) for c in typing.get_args(annotation)) \
            else _MISMATCH
    if annotation is bool:
        return value if isinstance(value, bool) else _MISMATCH
    if annotation is int:
        if isinstance(value, bool):
            return _MISMATCH
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return int(value) if isinstance(value, str) and _INTEGER.match(value) else _MISMATCH
    if annotation is float:
        if isinstance(value, bool):
            return _MISMATCH
        if isinstance(value, (int, float)):
            return value  # kept as given: 10 stays 10, so stage keys do not change
        return float(value) if isinstance(value, str) and _NUMBER.match(value) else _MISMATCH
    if annotation is str:
        return value if isinstance(value, str) else _MISMATCH
    if isinstance(annotation, type) and not dataclasses.is_dataclass(annotation):
        return value if isinstance(value, annotation) else _MISMATCH
    # Containers and dataclasses (feature columns, ratios): pydantic's lax checks; kept as given.
    from pydantic import ConfigDict, TypeAdapter, ValidationError

    try:
        TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True)).validate_python(value)
    except ValidationError:
        return _MISMATCH
    except Exception:  # a type pydantic cannot check: the model's own checks will
        return value
    return value


def _within(value: Any, constraints: Mapping[str, Any]) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return True  # None (or a non-number member of a union) carries no range
    checks = {"ge": value.__ge__, "gt": value.__gt__, "le": value.__le__, "lt": value.__lt__}
    return all(checks[key](limit) is True for key, limit in constraints.items() if key in checks)


def _choices(constraints: Mapping[str, Any]):
    choices = constraints.get("choices")
    return list(choices() if callable(choices) else choices) if choices is not None else None


def _admits_none(annotation) -> bool:
    return annotation is None or annotation is type(None) or (
        _is_union(annotation) and any(_admits_none(m) for m in typing.get_args(annotation)))


def _or(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _range(constraints: Mapping[str, Any]) -> str:
    low = [(k, v) for k, v in constraints.items() if k in ("ge", "gt")]
    high = [(k, v) for k, v in constraints.items() if k in ("le", "lt")]
    if low and high:
        (lk, lv), (hk, hv) = low[0], high[0]
        return f" in {'[' if lk == 'ge' else '('}{lv:g}, {hv:g}{']' if hk == 'le' else ')'}"
    return "".join(f" {_CONSTRAINTS[k]} {v:g}" for k, v in low + high)


def _describe_type(annotation, constraints: Mapping[str, Any] = {}) -> str:
    if annotation is Any or annotation is object:
        return "any value"
    if annotation is None or annotation is type(None):
        return "null"
    if _is_union(annotation):
        return _or(list(dict.fromkeys(_describe_type(m, constraints) for m in typing.get_args(annotation))))
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return _or([repr(c) for c in typing.get_args(annotation)])
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer" + _range(constraints)
    if annotation is float:
        return "a number" + _range(constraints)
    if annotation is str:
        return "a string"
    base = origin or annotation
    if isinstance(base, type):
        import collections.abc as abc

        if issubclass(base, (list, tuple, set, abc.Sequence)) and not issubclass(base, str):
            items = {int: "integers", float: "numbers", str: "strings"}.get(next(iter(typing.get_args(annotation)), None))
            return f"a list of {items}" if items else "a list"
        if issubclass(base, (dict, abc.Mapping)):
            return "a mapping"
        return f"a {base.__name__}"
    return str(annotation)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_params(schema: Schema, params: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """`params` checked against `schema` (a ParamError at the first problem, naming
    `where`.key); returns them with number strings made numbers."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ParamError(where, f"expected a mapping of {schema.owner}'s parameters, got {_shown(params)}")
    out = dict(params)
    for key, value in params.items():
        path = f"{where}.{key}"
        if key in schema.reserved:
            raise ParamError(path, f"not a parameter of {schema.owner}: it is set by {schema.reserved[key]}")
        param = schema.params.get(key)
        if param is None:
            raise ParamError(path, _unknown(key, schema))
        checked = _check_value(value, param.annotation)
        choices = _choices(param.constraints)
        if checked is _MISMATCH or (choices is not None and checked is not None and checked not in choices) \
                or not _within(checked, param.constraints):
            raise ParamError(path, f"expected {_expected(param)}, got {_shown(value)}")
        out[key] = checked
    missing = [name for name, param in schema.params.items() if param.required and name not in params]
    if missing:
        raise ParamError(f"{where}.{missing[0]}", f"required by {schema.owner} (expected {_expected(schema.params[missing[0]])})")
    return out


def _expected(param: Param) -> str:
    """What a parameter accepts, in words: 'an integer >= 1 or null'."""
    choices = _choices(param.constraints)
    if choices is None:
        return _describe_type(param.annotation, param.constraints)
    text = _or([repr(c) for c in choices])
    return f"{text} or null" if _admits_none(param.annotation) else text


def _unknown(key: Any, schema: Schema) -> str:
    names = sorted(schema.params)
    hint = ""
    if isinstance(key, bool):  # YAML reads a bare on / off / yes / no key as a boolean
        hint = f" (a bare {'on' if key else 'off'} is YAML's {str(key).lower()}: quote the key, e.g. 'on')"
    else:
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown parameter of {schema.owner}{hint}; expected one of: {', '.join(names) or '(none)'}"


# --- the things a config names ----------------------------------------------------------------

def model_class(name: str, where: str) -> type:
    """The registered model class called `name` (students and teachers alike; teachers import
    torch only, their language model loads in build)."""
    from distillrec.students.base import model_class as registered

    try:
        return registered(name)
    except DistillrecError as exc:
        raise ParamError(where, str(exc)) from None


def check_model_params(model: str, params: Mapping[str, Any] | None, where: str = "params",
                       model_where: str = "model") -> dict[str, Any]:
    return check_params(model_schema(model_class(model, model_where)), params, where)


def check_train(params: Mapping[str, Any] | None, where: str = "train", seed: int = 0) -> dict[str, Any]:
    """Training options: each against TrainConfig's field, then TrainConfig's own checks."""
    from pydantic import ValidationError

    from distillrec.train import TrainConfig

    checked = check_params(train_schema(), params, where)
    try:
        TrainConfig(**{"seed": seed, **checked})
    except ValidationError as exc:
        key, problem = _first_error(exc)
        raise ParamError(".".join(filter(None, [where, key])), problem) from None
    return checked


def make_train_config(params: Mapping[str, Any], seed: int):
    """The TrainConfig of a command's training options; pydantic's complaint becomes one line
    naming the option (`training option lr: ...`)."""
    from pydantic import ValidationError

    from distillrec.train import TrainConfig

    try:
        return TrainConfig(**{"seed": seed, **params})
    except ValidationError as exc:
        key, problem = _first_error(exc)
        raise DistillrecError(f"training option {key or 'train'}: {problem}") from None


def _first_error(exc) -> tuple[str, str]:
    """(dotted field, message) of a pydantic ValidationError's first complaint."""
    first = exc.errors()[0]
    return ".".join(map(str, first["loc"])), first["msg"].removeprefix("Value error, ")


#: ranges of the split protocols' parameters (their functions check the rest, before any work).
_SPLIT_DECLARATIONS = {"fraction": {"gt": 0, "lt": 1}, "reveal": {"ge": 0}, "seed": {"ge": 0}}


def check_split(name: str, params: Mapping[str, Any] | None, where: str = "split.params") -> dict[str, Any]:
    from distillrec.data.splitting import SPLITS

    function = SPLITS.get(name)
    accepted = inspect.signature(function).parameters
    declarations = {key: value for key, value in _SPLIT_DECLARATIONS.items() if key in accepted}
    return check_params(callable_schema(function, f"split {name!r}", skip=1, declarations=declarations),
                        params, where)


def check_schedule(spec: Any, where: str) -> None:
    from distillrec.distill.weighting import SCHEDULES

    if spec is None:
        return
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ParamError(where, f"expected a schedule name or {{name: ..., options}}, got {_shown(spec)}")
    if spec["name"] not in SCHEDULES:
        raise ParamError(f"{where}.name", f"unknown schedule {_shown(spec['name'])}; "
                                          f"expected one of: {', '.join(SCHEDULES.names())}")
    options = {key: value for key, value in spec.items() if key != "name"}
    check_params(callable_schema(SCHEDULES.get(spec["name"]), f"schedule {spec['name']!r}"), options, where)


def check_kd(spec: Mapping[str, Any] | None, where: str = "kd") -> dict[str, Any]:
    """A distillation spec {method: weight | options}: names, weights, each method's options
    and schedules. Returns it with number strings made numbers (names as given)."""
    from distillrec.distill import objective

    if not spec:
        return dict(spec or {})
    if not isinstance(spec, Mapping):
        raise ParamError(where, f"expected a mapping of distillation methods to weights or options, "
                                f"got {_shown(spec)}")
    out, seen = {}, {}
    for name, value in spec.items():
        path = f"{where}.{name}"
        try:
            canonical = objective.resolve_method(str(name))
        except DistillrecError as exc:
            raise ParamError(path, str(exc)) from None
        if canonical in seen:
            raise ParamError(path, f"the same method as {seen[canonical]!r} ({canonical})")
        seen[canonical] = name
        schema = term_schema(objective.METHODS.get(canonical))
        if isinstance(value, Mapping):
            out[name] = check_params(schema, value, path)
            check_schedule(value.get("schedule"), f"{path}.schedule")
        else:
            out[name] = check_params(schema, {"weight": value}, path)["weight"]
    return out


def check_experiment(config) -> None:
    """Every model, parameter, training option, split option and distillation term of an
    ExperimentConfig, before any work; number strings are written back as numbers."""
    config.split.params = check_split(config.split.name, config.split.params)
    if config.teacher is not None:
        teacher = config.teacher
        teacher.params = check_model_params(teacher.model, teacher.params, "teacher.params", "teacher.model")
        teacher.train = check_train(teacher.train, "teacher.train", config.seed)
    for i, student in enumerate(config.students):
        student.params = check_model_params(student.model, student.params, f"students.{i}.params",
                                            f"students.{i}.model")
        student.train = check_train(student.train, f"students.{i}.train", config.seed)
    students = {student.name: student for student in config.students}
    for i, entry in enumerate(config.distilled):
        entry.kd = check_kd(entry.kd, f"distilled.{i}.kd")
        if entry.student in students:  # a dangling reference is the config schema's error
            student = students[entry.student]
            entry.params = check_model_params(student.model, {**student.params, **entry.params},
                                              f"distilled.{i}.params") if entry.params else entry.params
            entry.train = check_train({**student.train, **entry.train}, f"distilled.{i}.train",
                                      config.seed) if entry.train else entry.train
