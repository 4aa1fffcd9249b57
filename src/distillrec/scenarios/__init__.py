"""Scenarios: protocols for thin data (cold items, cold users, a new domain, attributes).

A scenario is one registered function `run(context) -> ScenarioResult`. The pipeline calls it
after the standard stages (so the teacher's run directory and knowledge are available), inside
its own cached stage directory; its table becomes a section of report.html and an entry of
metrics.json under "scenarios". Scenario modules register themselves on import (see the bottom).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from distillrec.registry import Registry


@dataclass(frozen=True)
class ScenarioContext:
    config: Any            # the ExperimentConfig (config.scenario.params holds the scenario's options)
    dataset: Any           # the Dataset named by config.data
    split: Any             # the Split named by config.split (its protocol: cold-item, cold-user, ...)
    teacher_dir: Path | None  # the teacher stage's run directory (knowledge/ inside), if any
    out: Path              # the scenario's own directory: write everything here
    progress: bool = True

    @property
    def params(self) -> dict:
        return dict(self.config.scenario.params)

    @property
    def seeds(self) -> list[int]:
        return list(self.config.scenario.seeds)


@dataclass
class ScenarioResult:
    #: one row per compared model / setting: plain JSON values; mean and std over seeds go in
    #: their own columns (e.g. "ndcg@20", "ndcg@20 std").
    table: list[dict]
    #: one or two sentences for the report: the protocol and how to read the table.
    notes: str = ""
    #: anything else worth keeping in metrics.json (per-seed values, timings ...).
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"table": self.table, "notes": self.notes, "details": self.details}


SCENARIOS: Registry[Callable[[ScenarioContext], ScenarioResult]] = Registry("scenario")


def run_scenario(name: str, context: ScenarioContext) -> ScenarioResult:
    return SCENARIOS.get(name)(context)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    import statistics

    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


# Each scenario module registers itself with @SCENARIOS.register("<name>") when imported.
from distillrec.scenarios import attribute, cold_item, cold_user, cross_domain  # noqa: E402,F401
