"""The experiment config: one typed schema for data, split, teacher, students and distillation.

Loaded from YAML; unknown keys, wrong types and impossible combinations are refused with the
file, the key path and what was expected. `distillrec config show` prints the resolved config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from distillrec.errors import DistillrecError

SPLITS = ("random", "temporal", "loo", "cold-user", "cold-item")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    dataset: str = Field("ml-100k", description="built-in name (ml-100k, ml-1m) or a path")
    mapping: dict[str, str] | None = Field(None, description="column mapping for your own CSV/TSV/Parquet")
    rating_threshold: float | None = Field(None, description="ratings >= threshold are positives (None: all)")
    k_core: int = Field(0, ge=0)
    list_separators: dict[str, Annotated[str, Field(min_length=1)]] | None = Field(
        None, description="separator of each list column of your own items/users files, e.g. {genres: ';'} "
                          "(undeclared genres: '|', ';' or ',', detected)")


class SplitConfig(_Strict):
    name: Literal["random", "temporal", "loo", "cold-user", "cold-item"] = "random"
    params: dict[str, Any] = Field(default_factory=dict, description="ratios, fraction, reveal ...")


class TeacherConfig(_Strict):
    model: str = Field("lm-teacher", description="registered teacher model")
    params: dict[str, Any] = Field(default_factory=dict, description="teacher hyper-parameters (dim, mode, encoder, template ...)")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig options")
    top_k: int = Field(100, ge=1, description="teacher top-K ranking kept per user")
    knn: int = Field(20, ge=1, description="item neighbours kept in the relation graph")
    importance: bool = Field(False, description="compute permutation feature importance (slow)")


class StudentConfig(_Strict):
    name: str
    model: str = Field("mf", description="registered model (mf, two-tower, sasrec, gru4rec, content ...), "
                                         "checked with its params when the config is loaded")
    params: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)


class DistilledConfig(_Strict):
    name: str
    student: str = Field(description="name of a student entry: its model, params and training are reused")
    kd: dict[str, Any] = Field(default_factory=dict,
                               description="distillation losses and weights, e.g. {ranking: 0.5}")
    params: dict[str, Any] = Field(default_factory=dict, description="model parameters set over the student's")
    train: dict[str, Any] = Field(default_factory=dict, description="training options set over the student's")
    init: Literal["pca", "projection"] | None = None
    weighting: Literal["fixed", "uncertainty"] = "fixed"


class ScenarioConfig(_Strict):
    name: Literal["cold-item", "cold-user", "cross-domain", "attribute"] = Field(
        description="thin-data protocol run after the standard stages (see distillrec.scenarios)")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1,
                             description="the scenario's models are trained once per seed; mean and std reported")
    params: dict[str, Any] = Field(default_factory=dict, description="the scenario's own options")


#: Optuna pruners `distillrec.tuning.study.make_pruner` knows.
PrunerName = Literal["median", "halving", "none"]


class TuneConfig(_Strict):
    trials: int = Field(20, ge=1, description="Optuna trials per tuned model: the same for a student "
                                              "and its distilled variants (equal budgets)")
    seed: int = Field(0, ge=0, description="the samplers' seed")
    pruner: PrunerName = Field("median", description="stops weak trials on their validation curve")
    models: list[str] | None = Field(None, description="students and distilled models to tune (default: "
                                                       "all of them); add 'teacher' to tune the teacher")
    space: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per model name: "
                                             "{setting path: dimension} over the default space "
                                             "(see distillrec.tuning.space)")


class ExperimentConfig(_Strict):
    name: str = "experiment"
    seed: int = Field(0, ge=0)
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, min_length=1, description="split seeds: each gets its own random split, teacher and fits "
                                        "(tuning runs on the first); results as mean ± std with paired tests")
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    baselines: list[Literal["pop", "random"]] = Field(default_factory=lambda: ["pop"])
    teacher: TeacherConfig | None = Field(default_factory=TeacherConfig)
    students: list[StudentConfig] = Field(default_factory=lambda: [StudentConfig(name="mf")])
    distilled: list[DistilledConfig] = Field(default_factory=list)
    scenario: ScenarioConfig | None = None
    compare: list[tuple[str, str]] = Field(
        default_factory=list, description="more (base, model) pairs for the paired tests, beside each distilled "
                                          "model vs its student and the teacher vs each student")
    tune: TuneConfig | None = Field(None, description="tune each model on validation before its final fit")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch (the --threads flag wins; "
                                                        "default: $DISTILLREC_THREADS, else the CPU set's cores)")

    @model_serializer(mode="wrap")
    def _dump(self, handler) -> dict:
        data = handler(self)
        # Unset keys are left out, so dumps and stage keys match runs made before the keys existed.
        if self.threads is None:
            data.pop("threads", None)
        if not self.compare:
            data.pop("compare", None)
        return data

    @property
    def split_seeds(self) -> list[int]:
        return list(self.seeds) if self.seeds else [self.seed]

    def tuned_names(self) -> list[str]:
        """Models the tune section tunes, in the order they are fitted."""
        if self.tune is None:
            return []
        every = ["teacher"] * (self.teacher is not None) + [s.name for s in self.students] \
            + [d.name for d in self.distilled]
        chosen = self.tune.models
        return [name for name in every if (name != "teacher" if chosen is None else name in chosen)]

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentConfig":
        names = [s.name for s in self.students] + [d.name for d in self.distilled] + list(self.baselines)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {', '.join(duplicates)}")
        students = {s.name: s for s in self.students}
        for entry in self.distilled:
            if entry.student not in students:
                raise ValueError(f"distilled model {entry.name!r} refers to student {entry.student!r}, "
                                 f"which is not among students ({', '.join(students) or 'none'})")
        for entry in self.distilled:
            if not entry.kd and entry.init is None:
                raise ValueError(f"distilled model {entry.name!r} needs distillation losses (kd) or an init")
        if self.distilled and self.teacher is None:
            raise ValueError("distilled models need a teacher (teacher: is null)")
        from distillrec.students.base import model_class

        for student in self.students:  # sequential models train on whole histories: leave-one-out
            try:
                sequential = model_class(student.model).batch_kind == "sequences"
            except DistillrecError:
                continue  # an unknown model is reported by its own field check, with its key path
            if sequential and self.split.name != "loo":
                raise ValueError(f"student {student.name!r} is sequential ({student.model}): use split name 'loo'")
        if self.scenario is not None and self.scenario.name in ("cold-item", "cold-user") \
                and self.split.name != self.scenario.name:
            raise ValueError(f"scenario {self.scenario.name!r} needs split name {self.scenario.name!r}")
        known = set(names) | ({"teacher"} if self.teacher is not None else set())
        for base, other in self.compare:
            for name in (base, other):
                if name not in known:
                    raise ValueError(f"compare: {name!r} is not a model of this config ({', '.join(sorted(known))})")
        if self.tune is not None:
            self._check_tune(names)
        if len(set(self.split_seeds)) != len(self.split_seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        return self

    def _check_tune(self, names: list[str]) -> None:
        known = set(names) | ({"teacher"} if self.teacher is not None else set())
        for key, where in [(n, "tune.models") for n in self.tune.models or []] + \
                          [(n, "tune.space") for n in self.tune.space]:
            if key not in known or key in self.baselines:
                raise ValueError(f"{where}: {key!r} is not a tunable model of this config "
                                 f"(students, distilled{', teacher' if self.teacher else ''})")
        tuned = set(self.tuned_names())
        for entry in self.distilled:  # equal effort: a tuned distilled model beside an untuned baseline is no result
            if (entry.name in tuned) != (entry.student in tuned):
                raise ValueError(f"tune: distilled model {entry.name!r} and its student {entry.student!r} must be "
                                 f"tuned together (equal budgets), or neither")
        from distillrec.tuning.space import parse_space

        for name, space in self.tune.space.items():
            try:
                parse_space(space, f"tune.space.{name}")
            except DistillrecError as exc:
                raise ValueError(str(exc)) from None


def load_config(path: str | Path | None) -> ExperimentConfig:
    """Read and validate a YAML experiment (None: all defaults)."""
    import yaml

    if path is None:
        return ExperimentConfig()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DistillrecError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise DistillrecError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DistillrecError(f"{path}: expected a mapping of sections (data, split, teacher, ...), "
                              f"got {type(raw).__name__}")
    return parse_config(raw, source=str(path))


def parse_config(raw: dict, source: str = "config") -> ExperimentConfig:
    from distillrec.params import ParamError, check_experiment

    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise DistillrecError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    try:  # models, their params, training, split and distillation options: before any work
        check_experiment(config)
    except ParamError as exc:
        raise DistillrecError(f"{source}: {exc}") from None
    return config


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where != "(top level)" else message


def dump_config(config: ExperimentConfig) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
