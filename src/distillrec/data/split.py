"""The Split: train / valid / test interaction tables over one Dataset's id space.

Split *functions* (random, temporal, leave-one-out, cold users, cold items) live in
`distillrec.data.splitting`; this module holds only the container and its Parquet round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from distillrec import artifacts
from distillrec.errors import DistillrecError

PARTS = ("train", "valid", "test")
COLUMNS = ("user", "item", "rating", "timestamp")
#: What a model may have seen before each part is scored (and what ranking it masks): train
#: for valid; train + valid for test; everything for serving ("all"). Revealed cold-user
#: interactions are always seen.
HISTORY_PARTS = {"valid": ("train",), "test": ("train", "valid"), "all": ("train", "valid", "test")}


@dataclass
class Split:
    name: str                  # "random", "temporal", "loo", "cold-user", "cold-item"
    train: pd.DataFrame        # columns: user, item, rating, timestamp (Dataset.interactions)
    valid: pd.DataFrame
    test: pd.DataFrame
    n_users: int
    n_items: int
    params: dict = field(default_factory=dict)       # ratios, seed, ... as given
    cold_users: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    cold_items: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    # Interactions of cold users shown to the model at test time (history, not ground truth).
    revealed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {c: pd.Series(dtype="int64" if c != "rating" else "float32") for c in COLUMNS}))

    def part(self, name: str) -> pd.DataFrame:
        if name not in PARTS:
            raise ValueError(f"unknown split part {name!r}; expected one of {PARTS}")
        return getattr(self, name)

    def history(self, part: str) -> pd.DataFrame:
        """The interactions seen before `part` ("valid", "test" or "all", see HISTORY_PARTS),
        revealed cold-user interactions included: the one answer to "what has this user
        seen", shared by training, evaluation, knowledge extraction, scenarios and serving."""
        frames = [frame for _, frame in self.history_parts(part) if len(frame)]  # concat warns about empty frames
        return pd.concat(frames, ignore_index=True) if frames else self.train.iloc[:0]

    def history_parts(self, part: str) -> list[tuple[str, pd.DataFrame]]:
        """The pieces of `history(part)` by name, so a bad row can be reported where it is."""
        if part not in HISTORY_PARTS:
            raise DistillrecError(f"no history for split part {part!r}; expected one of {', '.join(HISTORY_PARTS)}")
        return [(name, self.part(name)) for name in HISTORY_PARTS[part]] + [("revealed", self.revealed)]

    def save(self, directory) -> None:
        directory = Path(directory)
        for name in PARTS:
            artifacts.write_parquet(directory / f"{name}.parquet", self.part(name))
        artifacts.write_parquet(directory / "revealed.parquet", self.revealed)
        artifacts.write_json(directory / "split.json", {
            "name": self.name, "n_users": self.n_users, "n_items": self.n_items, "params": self.params,
            "cold_users": self.cold_users.tolist(), "cold_items": self.cold_items.tolist(),
        })

    @classmethod
    def load(cls, directory) -> "Split":
        directory = Path(directory)
        meta = artifacts.read_json(directory / "split.json")
        parts = {name: artifacts.read_parquet(directory / f"{name}.parquet") for name in PARTS}
        revealed_path = directory / "revealed.parquet"
        extra = {"revealed": artifacts.read_parquet(revealed_path)} if revealed_path.exists() else {}
        return cls(meta["name"], **parts, n_users=meta["n_users"], n_items=meta["n_items"],
                   params=meta.get("params", {}),
                   cold_users=np.asarray(meta.get("cold_users", []), dtype=np.int64),
                   cold_items=np.asarray(meta.get("cold_items", []), dtype=np.int64), **extra)
