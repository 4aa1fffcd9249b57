"""One CPU-thread setting for the whole process, so parallel runs share the cores.

Torch's default thread count is the machine's cores, whatever else runs: two processes on two
cores then thrash (an ML-100K MF that trains in ~9 s alone took ~100 s beside one other run).
So the count comes from one place, in this order:

    CLI flag `--threads N`  >  config key `threads:`  >  $DISTILLREC_THREADS  >  cores of this process's CPU set

`resolve` is that order: the CLI registers its flag with `override`, and `run_experiment` passes
the config key as `requested`; the flag stays out of the config, so it never changes a stage's
cache key. Under torchrun the CPU-set default is divided between the local ranks. Parallel jobs
(`ablate --jobs`) get `per_job(jobs)` each instead of the full count. `apply` also exports the
count to $DISTILLREC_THREADS and the OpenMP/MKL/OpenBLAS variables, so child processes inherit it.

Dividing the cores needs to know the other runs; two runs started by hand do not. What makes
them thrash is OpenMP's idle threads spinning (libgomp spins 300,000 times before sleeping,
unless it knows its own threads outnumber the cores): each run's spinning threads take the
cores the other run's working threads wait for (ML-1M MF training steps took 6x as long beside a
second run; BENCHMARKS.md, "Two runs at once"). So `apply`, when it runs before torch loads
libgomp, also sets GOMP_SPINCOUNT to libgomp's own oversubscribed value, unless the user set it
or OMP_WAIT_POLICY: idle threads sleep sooner, at a small cost to a run alone (within the noise of
that benchmark; hand checks put it at up to ~10% on one small-batch MF epoch).
"""

from __future__ import annotations

import os
import sys

from distillrec.errors import DistillrecError

ENV = "DISTILLREC_THREADS"
_LIBRARY_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: libgomp's spin count when it knows it is oversubscribed (its default otherwise: 300,000)
SPIN_COUNT = "1000"

_flag: int | None = None     # the CLI's --threads, over any requested count
_applied: int | None = None  # what apply() last gave this process
_torch_pending = False        # applied before torch was imported: torch still to be told


def available_cores() -> int:
    """Cores this process may run on: its CPU set (taskset, a cgroup cpuset), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def override(flag: int | None) -> None:
    """Register the command line's --threads (None: not given); it wins over a config's key."""
    global _flag
    if flag is not None and flag < 1:
        raise DistillrecError(f"--threads: {flag} is not a positive integer")
    _flag = flag


def resolve(requested: int | None = None) -> int:
    """The thread count to use: the CLI flag if given, else `requested` (a config key) if given,
    else $DISTILLREC_THREADS, else the CPU set's cores (shared out between torchrun's local ranks)."""
    if _flag is not None:
        return _flag
    if requested is not None:
        if requested < 1:
            raise DistillrecError(f"threads: {requested} is not a positive integer")
        return int(requested)
    value = os.environ.get(ENV)
    if value is not None and value.strip():
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            raise DistillrecError(f"{ENV}={value!r}: expected a positive integer (CPU threads, e.g. 4)")
        return threads
    ranks = os.environ.get("LOCAL_WORLD_SIZE", "1")
    return per_job(int(ranks) if ranks.isdigit() and int(ranks) > 0 else 1, available_cores())


def apply(n: int) -> int:
    """Make `n` this process's setting: torch's intra-op threads, and the environment that child
    processes (and a torch imported later) read. Returns n.

    Torch is told now only if it is already imported, so that `distillrec CMD --help` stays
    fast; otherwise it reads OMP_NUM_THREADS when imported and `ensure` confirms it, and libgomp
    reads the shorter spin (module docstring) when torch loads it."""
    global _applied, _torch_pending
    n = int(n)
    for name in (ENV, *_LIBRARY_ENV):
        os.environ[name] = str(n)
    _applied = n
    _torch_pending = "torch" not in sys.modules
    if _torch_pending and "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    if not _torch_pending:
        import torch

        torch.set_num_threads(n)
    return n


def ensure() -> int:
    """For code about to compute with torch and no thread count of its own (the trainer): apply
    the process-wide setting if nothing has applied one yet. A count set on torch directly after
    an `apply` (a scoped single-thread section, a test fixture) is left alone. Returns torch's count."""
    import torch

    global _torch_pending
    if _applied is None:
        apply(resolve())
    elif _torch_pending:
        torch.set_num_threads(_applied)
        _torch_pending = False
    return torch.get_num_threads()


def per_job(jobs: int, total: int | None = None) -> int:
    """Threads for each of `jobs` processes running at once: they divide the cores (at least 1 each)
    rather than each taking all of them."""
    return max(1, (total or resolve()) // max(1, jobs))
