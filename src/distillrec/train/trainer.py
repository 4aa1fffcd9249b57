"""The one training loop, for students, teachers and distillation alike.

A model contributes its loss (`Recommender.loss`) and its scorer (`score`); distillation adds
terms through `extra_loss(model, batch)`. The Trainer owns everything else: batches, the
optimizer, validation, early stopping, best weights, checkpoints and exact resume.

Exactness: epoch e's batches come from a generator seeded by (config.seed, e) and the global
torch RNG (dropout) is seeded once and saved in every checkpoint, so a run resumed from the
checkpoint of epoch e continues with exactly the numbers an uninterrupted run would produce.

Under torchrun (see `distillrec.train.distributed`) the same loop runs in every process: the
loss module is wrapped in DistributedDataParallel, each rank trains on its piece of every
global batch, validation is split by users and its metrics summed over ranks (so early
stopping agrees everywhere), and only rank 0 writes checkpoints and results. Without
torchrun none of this is touched and a run is what it always was.
"""

from __future__ import annotations

import contextlib

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from distillrec import artifacts, threads
from distillrec.console import progress_bar
from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.evaluation.evaluator import ACCURACY_METRICS, HISTORY_PARTS, Evaluator
from distillrec.train import distributed
from distillrec.train.batches import make_batches
from distillrec.train.checkpoint import load_latest_checkpoint, save_checkpoint
from distillrec.train.optim import LazyAdamW, make_optimizer

if TYPE_CHECKING:
    from distillrec.students.base import Recommender

#: extra_loss(model, batch) -> one extra term, or named terms that are logged separately.
#: An nn.Module extra_loss (a distillation objective with projectors, learned weights) is
#: trained and checkpointed with the model.
ExtraLoss = Callable[["Recommender", dict[str, torch.Tensor]], "torch.Tensor | dict[str, torch.Tensor]"]
#: called after each epoch (after its checkpoint is written) with that epoch's record.
EpochCallback = Callable[[dict], None]

BEST_WEIGHTS = "best.safetensors"
RESULT = "train.json"


class TrainConfig(BaseModel):
    """How to train. Defaults are RecBole's for MF-BPR (Adam, lr 1e-3, batch 2048, 300 epochs,
    one uniform negative, early stopping after 10 evaluations without improvement)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(300, ge=1)
    batch_size: int | None = Field(None, ge=1, description="None: the model's default_batch_size")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="AdamW's decoupled decay; 0 gives Adam")
    embedding_updates: Literal["dense", "sparse"] = Field(
        "dense", description="sparse: embedding tables take sparse gradients and a step updates only the rows "
                             "in the batch (lazy AdamW; the steps a row skipped are applied in closed form when "
                             "it is next in a batch and after each epoch, so it trains as under AdamW); dense: "
                             "AdamW on every row every step")
    n_negatives: int = Field(1, ge=0, description="negatives per positive for sampled losses")
    sampler: Literal["uniform", "popularity"] = "uniform"
    metric: str = Field("ndcg@10", description="validation metric for early stopping, higher is better")
    patience: int = Field(10, ge=1, description="evaluations without improvement before stopping")
    min_epochs: int = Field(0, ge=0, description="evaluations up to this epoch do not count towards patience: a "
                                                 "student initialised from a teacher can validate best at epoch 1, "
                                                 "dip, and pass it only after more than `patience` epochs")
    eval_every: int = Field(1, ge=1, description="epochs between validations")
    eval_ks: tuple[int, ...] = (10, 20)
    seed: int = Field(0, ge=0)
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; None: the process-wide setting "
                                                             "(distillrec.threads: --threads, $DISTILLREC_THREADS, "
                                                             "else the CPU set's cores)")
    device: str = "cpu"

    @model_validator(mode="after")
    def _metric_is_evaluated(self) -> "TrainConfig":
        name, _, k = self.metric.partition("@")
        if name not in ACCURACY_METRICS or not k.isdigit() or int(k) not in self.eval_ks:
            raise ValueError(f"metric {self.metric!r} must be <name>@<k> with name in {ACCURACY_METRICS} "
                             f"and k in eval_ks {self.eval_ks}")
        return self


@dataclass
class TrainResult:
    history: list[dict]          # per epoch: epoch, loss, losses, train_seconds, eval_seconds, valid
    best_epoch: int
    best_valid: dict[str, float]
    train_seconds: float         # training steps only, summed over all epochs (resumed ones too)
    stopped_early: bool

    def to_dict(self) -> dict:
        return asdict(self)


class Trainer:
    def __init__(self, model: "Recommender", split: Split, config: TrainConfig = TrainConfig(),
                 run_dir: str | Path | None = None, extra_loss: ExtraLoss | None = None, *,
                 progress: bool = True, callbacks: Iterable[EpochCallback] = ()):
        self.model, self.split, self.config = model, split, config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.extra_loss, self.progress, self.callbacks = extra_loss, progress, list(callbacks)
        self.evaluator = Evaluator(split, ks=config.eval_ks)
        # Everything the optimizer updates and a checkpoint holds: the model, plus the extra
        # loss when it has parameters of its own.
        self._trained = nn.ModuleDict({"model": model})
        if isinstance(extra_loss, nn.Module):
            self._trained["extra_loss"] = extra_loss
        self._step = _LossTerms(self._trained, extra_loss)
        self.device = distributed.local_device(config.device)

    def validate(self) -> dict[str, float]:
        """Full-ranking metrics on the valid part (the model sees the train history).
        Distributed: each rank ranks a share of the users and the means are combined."""
        self.model.eval()
        self.model.set_history(self.split.history("valid"))
        device = self.device

        def scorer(users):
            return self.model.score(users.to(device))

        with torch.no_grad():
            if not distributed.is_distributed():
                return self.evaluator.evaluate(scorer, "valid")
            users = torch.from_numpy(np.unique(self.split.valid["user"].to_numpy(np.int64)))
            start, stop = distributed.shard_range(len(users))
            mine = self.evaluator.evaluate(scorer, "valid", users=users[start:stop]) if stop > start else {}
            keys = [f"{name}@{k}" for name in self.evaluator.metrics for k in self.evaluator.ks]
            means, total = distributed.combine_means(mine, int(mine.get("n_users", 0)), keys)
            return {**means, "n_users": total, "n_skipped": self.split.n_users - total}

    def fit(self, resume: bool = False) -> TrainResult:
        """Train until config.epochs or early stopping; leaves the best weights in the model.
        resume=True continues from the last checkpoint in run_dir (a fresh start if none)."""
        config, model = self.config, self.model
        if resume and self.run_dir is None:
            raise DistillrecError("resume=True needs a run_dir holding the checkpoints")
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        else:  # not torch's default (every core of the machine): the setting shared by all commands
            threads.ensure()
        self._trained.to(self.device)
        if not any(p.requires_grad for p in self._trained.parameters()):
            return self._validate_only()
        batch_size = config.batch_size or model.default_batch_size
        batches = make_batches(model, self.split.train, self.split.n_users, self.split.n_items,
                               n_negatives=config.n_negatives, sampler=config.sampler, device=self.device)
        step = self._step
        if distributed.is_distributed():
            # Buffers (text embeddings, history tables) are built identically on every rank:
            # syncing them each step would only cost time. A trainable extra loss (distillation
            # projectors, learned weights) may leave some parameters out of a step.
            step = DistributedDataParallel(step, device_ids=[self.device] if self.device.startswith("cuda") else None,
                                           forward_sync_buffers=False,
                                           find_unused_parameters=isinstance(self.extra_loss, nn.Module))
        writes = self.run_dir is not None and distributed.is_main()
        # fused: one kernel for all parameters; several times faster than the default on CPU.
        optimizer = make_optimizer(self._trained, lr=config.lr, weight_decay=config.weight_decay,
                                   embedding_updates=config.embedding_updates)
        torch.manual_seed(config.seed)  # dropout and any other draw from the global generator
        state = _TrainState()
        best_weights = _clone(model.state_dict())
        if resume and (saved := load_latest_checkpoint(self.run_dir, self._trained, optimizer)) is not None:
            state = _TrainState.from_saved(saved, config)
            if state.best_epoch:  # else no validation has run yet and the current weights stand
                best_weights = artifacts.read_tensors(self.run_dir / BEST_WEIGHTS)

        progress = self.progress and distributed.is_main()
        epochs = progress_bar(range(state.epoch + 1, config.epochs + 1), desc="epochs", unit="epoch",
                              disable=not progress or state.stopped_early)
        for epoch in epochs:
            if state.stopped_early:
                break
            record = self._train_epoch(epoch, batches, batch_size, optimizer, step, progress)
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                started = time.perf_counter()
                record["valid"] = self.validate()
                record["eval_seconds"] = time.perf_counter() - started
                if state.observe(epoch, record["valid"], config):
                    best_weights = _clone(model.state_dict())
                    if writes:
                        artifacts.write_tensors(self.run_dir / BEST_WEIGHTS, best_weights)
                epochs.set_postfix(loss=f"{record['loss']:.4f}", **{
                    config.metric: f"{record['valid'][config.metric]:.4f}",
                    "best": f"{state.best_value:.4f}@{state.best_epoch}"})
            state.epoch = epoch
            state.history.append(record)
            if writes:
                save_checkpoint(self.run_dir, epoch, self._trained, optimizer, state.to_saved(config))
            for callback in self.callbacks:
                callback(record)
        epochs.close()

        model.load_state_dict(best_weights)
        result = state.result()
        if writes:
            artifacts.write_json(self.run_dir / RESULT, result.to_dict())
        distributed.barrier()  # the run's files are complete before any rank moves on
        return result

    def _validate_only(self) -> TrainResult:
        """A model solved in closed form (EASE, a fixed ensemble) has nothing to train: one
        validation, recorded as epoch 0, so its run has the same shape as a trained one."""
        started = time.perf_counter()
        valid = self.validate()
        record = {"epoch": 0, "loss": 0.0, "losses": {}, "train_seconds": 0.0,
                  "eval_seconds": time.perf_counter() - started, "valid": valid}
        result = TrainResult([record], 0, valid, 0.0, False)
        if self.run_dir is not None and distributed.is_main():
            artifacts.write_json(self.run_dir / RESULT, result.to_dict())
        return result

    def _train_epoch(self, epoch: int, batches, batch_size: int, optimizer: torch.optim.Optimizer,
                     loss_terms: nn.Module, progress: bool) -> dict:
        config = self.config
        self._trained.train()
        generator = torch.Generator(device=self.device).manual_seed(_epoch_seed(config.seed, epoch))
        n_batches = math.ceil(len(batches) / batch_size)
        # Every rank draws the same global batches and keeps its piece of each.
        source = batches.epoch(batch_size, generator)
        if distributed.is_distributed():
            source = distributed.shard_batches(source)
        # Sums stay on the device; reading them (a sync) happens only for the progress bar.
        sums: dict[str, torch.Tensor] = {}
        started = time.perf_counter()
        bar = progress_bar(source, total=n_batches, desc=f"epoch {epoch}", leave=False, disable=not progress)
        step = 0
        with _deterministic():
            for step, batch in enumerate(bar, start=1):
                terms = loss_terms(batch)
                total = sum(terms.values())
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                for name, value in {"total": total, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + value.detach()
                if progress and step % 10 == 0:
                    bar.set_postfix(loss=f"{float(sums['total']) / step:.4f}")
            if isinstance(optimizer, LazyAdamW):
                optimizer.catch_up()  # rows outside the last batches: up to date before they are read
        bar.close()
        if distributed.is_distributed():  # the mean over every rank's steps
            names = sorted(sums)
            summed = distributed.all_reduce_sum(torch.stack([sums[n].double().cpu() for n in names]))
            sums = dict(zip(names, summed / distributed.world_size()))
            n_batches = step
        means = {name: float(value) / n_batches for name, value in sums.items()}
        if not math.isfinite(means["total"]):
            raise DistillrecError(f"training loss became {means['total']} in epoch {epoch}; "
                                  "lower the learning rate or check the extra loss terms")
        return {"epoch": epoch, "loss": means.pop("total"), "losses": means,
                "train_seconds": time.perf_counter() - started}


class _LossTerms(nn.Module):
    """One step's loss terms as a module's forward, so DistributedDataParallel can wrap it:
    {"rec": model.loss(batch)} plus the extra loss's term(s)."""

    def __init__(self, trained: nn.ModuleDict, extra_loss: ExtraLoss | None):
        super().__init__()
        self.trained = trained
        self.extra_loss = extra_loss

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        model = self.trained["model"]
        terms = {"rec": model.loss(batch)}
        if self.extra_loss is not None:
            extra = self.extra_loss(model, batch)
            terms.update(extra if isinstance(extra, dict) else {"extra": extra})
        return terms


@dataclass
class _TrainState:
    """What the loop must remember across epochs (and across a kill and resume)."""

    epoch: int = 0                 # last completed epoch
    best_value: float = -math.inf
    best_epoch: int = 0
    best_valid: dict | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict] | None = None

    def __post_init__(self):
        self.history = self.history or []

    def observe(self, epoch: int, valid: dict[str, float], config: TrainConfig) -> bool:
        """Record a validation; True when it is the best so far."""
        value = valid[config.metric]
        if value > self.best_value:
            self.best_value, self.best_epoch, self.best_valid = value, epoch, valid
            self.evals_without_improvement = 0
            return True
        if epoch > config.min_epochs:
            self.evals_without_improvement += 1
        self.stopped_early = self.evals_without_improvement >= config.patience
        return False

    def result(self) -> TrainResult:
        return TrainResult(self.history, self.best_epoch, self.best_valid or {},
                           sum(r["train_seconds"] for r in self.history), self.stopped_early)

    def to_saved(self, config: TrainConfig) -> dict:
        return {**asdict(self), "config": config.model_dump(mode="json")}

    @classmethod
    def from_saved(cls, saved: dict, config: TrainConfig) -> "_TrainState":
        saved = dict(saved)
        # A key the checkpoint lacks was added to TrainConfig later: it trained at the default.
        defaults = TrainConfig.model_construct().model_dump(mode="json")
        before = {**defaults, **saved.pop("config")}
        now = config.model_dump(mode="json")
        changed = sorted(k for k in now if k != "epochs" and before.get(k) != now[k])
        if changed:
            raise DistillrecError(f"cannot resume: the checkpoint was trained with different settings "
                                  f"({', '.join(f'{k}: {before.get(k)!r} -> {now[k]!r}' for k in changed)}); "
                                  "only epochs may change, or start a new run_dir")
        return cls(**saved)


@contextlib.contextmanager
def _deterministic():
    """Deterministic kernels while training: with several threads, the backward of advanced
    indexing (index_put_ with accumulate, e.g. the LM teacher's history pooling) otherwise adds
    in a thread-dependent order, so a seed fixed the result only on one thread (measured on
    the ML-100K LM teacher: no slower). Deterministic mode also fills every new tensor with
    NaN by default, a debugging aid against reading uninitialised memory that no kernel here
    does: it was a quarter of an MF-BPR step's time, so it is off while training."""
    before = torch.are_deterministic_algorithms_enabled()
    fill_before = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
        torch.utils.deterministic.fill_uninitialized_memory = fill_before


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed per (seed, epoch) pair: seed+epoch would make (1, 2) and (2, 1) collide."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _clone(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in state_dict.items()}
