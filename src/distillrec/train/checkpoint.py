"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

Layout under a run directory:
  checkpoints/epoch-0007/model.safetensors     the trained modules' state_dict
  checkpoints/epoch-0007/trainer.safetensors   optimizer tensors ("optimizer.<param>.<name>")
                                               and the global torch RNG state ("rng.torch")
  checkpoints/epoch-0007/state.json            optimizer param groups and scalars, trainer state
  checkpoints/epoch-0007/manifest.json         sha256 of the three files above
  checkpoints/latest.json                      {"directory": "epoch-0007"}, written last

Each file is written atomically and `latest.json` only moves once a checkpoint is complete,
so a run killed at any moment resumes from its last whole checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from distillrec import artifacts
from distillrec.errors import ArtifactError

CHECKPOINTS = "checkpoints"
LATEST = "latest.json"
_OPTIMIZER_PREFIX = "optimizer."
_RNG_KEY = "rng.torch"


def save_checkpoint(run_dir: str | Path, epoch: int, module: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, trainer_state: dict[str, Any]) -> Path:
    """Write the checkpoint of `epoch`, point latest.json at it, then drop older ones."""
    root = Path(run_dir) / CHECKPOINTS
    directory = root / f"epoch-{epoch:04d}"
    optimizer_tensors, optimizer_json = _split_optimizer_state(optimizer.state_dict())
    artifacts.write_tensors(directory / "model.safetensors", module.state_dict())
    artifacts.write_tensors(directory / "trainer.safetensors",
                            {**optimizer_tensors, _RNG_KEY: torch.get_rng_state()})
    artifacts.write_json(directory / "state.json", {"optimizer": optimizer_json, "trainer": trainer_state})
    artifacts.write_manifest(directory, kind="checkpoint", extra={"epoch": epoch})
    artifacts.write_json(root / LATEST, {"directory": directory.name})
    for old in root.glob("epoch-*"):
        if old.is_dir() and old.name != directory.name:
            shutil.rmtree(old)
    return directory


def load_latest_checkpoint(run_dir: str | Path, module: torch.nn.Module,
                           optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore module, optimizer and global RNG from the latest checkpoint (verified against its
    manifest) and return the trainer state saved with it; None when the run has none yet."""
    root = Path(run_dir) / CHECKPOINTS
    if not (root / LATEST).exists():
        return None
    directory = root / artifacts.read_json(root / LATEST)["directory"]
    artifacts.verify_manifest(directory)
    module.load_state_dict(artifacts.read_tensors(directory / "model.safetensors"))
    tensors = artifacts.read_tensors(directory / "trainer.safetensors")
    state = artifacts.read_json(directory / "state.json")
    optimizer.load_state_dict(_join_optimizer_state(tensors, state["optimizer"]))
    if _RNG_KEY not in tensors:
        raise ArtifactError(f"{directory / 'trainer.safetensors'}: no {_RNG_KEY!r} tensor")
    torch.set_rng_state(tensors[_RNG_KEY])
    return state["trainer"]


def _split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state_dict -> (tensors for safetensors, JSON for scalars and param groups)."""
    tensors, scalars = {}, {}
    for param, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIMIZER_PREFIX}{param}.{name}"] = value
            else:
                scalars.setdefault(str(param), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], saved: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(_OPTIMIZER_PREFIX):
            param, name = key[len(_OPTIMIZER_PREFIX):].split(".", 1)
            state.setdefault(int(param), {})[name] = value
    for param, values in saved["scalars"].items():
        state.setdefault(int(param), {}).update(values)
    return {"state": state, "param_groups": saved["param_groups"]}
