"""Data parallelism on PyTorch's own engine (torch.distributed, launched by `torchrun`).

Launched as `torchrun --nproc_per_node N -m distillrec train ...`, every process (rank) runs the
same command; `init_from_env` joins them into one group (gloo on CPU, NCCL for CUDA tensors).
Nothing here changes a single-process run: without torchrun's environment no group is formed
and every helper answers as for rank 0 of a world of 1.

Batches: all ranks draw the *same* global batch (same seed, same epoch generator, so the same
negatives) and each keeps one contiguous piece of its rows (`shard_batches`). With gradients
averaged by DistributedDataParallel, one step of N processes is one step of one process on the
same global batch, so the effective batch size does not change with N and results match a
single-process run up to floating-point rounding.

Rows: teacher work (text encoding, top-K rankings) splits its rows into contiguous shards
(`shard_range`) and reassembles them on every rank with `gather_rows`.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator

import torch
import torch.distributed as dist

from distillrec.errors import DistillrecError

Batch = dict[str, torch.Tensor]


def init_from_env() -> bool:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1).
    True when this call formed the group (the caller then calls `shutdown`)."""
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise DistillrecError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"  # CPU tensors (metrics) over gloo, CUDA gradients over NCCL
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    return True


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_worker() -> None:
    """End a rank other than 0 at once, once it has left the group: flush its output and
    `os._exit(0)`, skipping interpreter finalisation. Why: DistributedDataParallel keeps the
    gloo group (and its worker threads) alive past destroy_process_group, and a worker thread
    still freeing the last collective's work needs the GIL; if Python is finalising by then,
    the thread is killed inside a C++ destructor and the process aborts ("terminate called
    without an active exception", SIGABRT; pytorch/pytorch#190489). Rank 0 is not affected in
    practice (it evaluates and writes long after the last collective), and it writes the run,
    so it exits normally."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """Rank 0, the one process that writes files (checkpoints, runs, caches, artifacts)."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_device(device: str) -> str:
    """A bare "cuda" means this process's own GPU when distributed (one GPU per rank)."""
    return f"cuda:{local_rank()}" if device == "cuda" and is_distributed() else device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard_range(n: int, rank_: int | None = None, world: int | None = None) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous share of n rows (shares differ by at most one)."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return start, start + base + (rank_ < extra)


def shard_batch(batch: Batch, rank_: int, world: int) -> Batch | None:
    """This rank's contiguous piece of a global batch; None when the batch has fewer rows than
    ranks (every rank then skips it, so all take the same number of steps)."""
    n = len(next(iter(batch.values())))
    if n < world:
        return None
    start, stop = shard_range(n, rank_, world)
    return {name: values[start:stop] for name, values in batch.items()}


def shard_batches(batches: Iterable[Batch], rank_: int | None = None, world: int | None = None) -> Iterator[Batch]:
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    for batch in batches:
        piece = shard_batch(batch, rank_, world)
        if piece is not None:
            yield piece


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, then rank 0's result broadcast, so every rank holds the same bits
    (decisions taken from it, such as early stopping, then agree everywhere)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        dist.broadcast(tensor, src=0)
    return tensor


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The full [n, ...] tensor from each rank's `shard_range(n)` rows, on every rank."""
    if not is_distributed():
        return local
    world = world_size()
    sizes = [shard_range(n, r, world) for r in range(world)]
    longest = max(stop - start for start, stop in sizes)
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[:len(local)] = local
    pieces = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded.contiguous())
    return torch.cat([piece[:stop - start] for piece, (start, stop) in zip(pieces, sizes)])


def combine_means(means: dict[str, float], count: int, keys: Iterable[str]) -> tuple[dict[str, float], int]:
    """Means over each rank's `count` items -> means over all items, and the total count.
    A rank with count 0 contributes nothing (its means are not read)."""
    keys = list(keys)
    values = torch.tensor([means[key] * count if count else 0.0 for key in keys] + [float(count)],
                          dtype=torch.float64)
    all_reduce_sum(values)
    total = int(values[-1])
    return {key: float(values[i]) / total if total else float("nan") for i, key in enumerate(keys)}, total
