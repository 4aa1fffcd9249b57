"""Shared test set-up: keep tests single-threaded-friendly and fully offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture
def single_thread():
    """One intra-op thread for tests on tiny tensors: on a busy shared machine thread
    synchronisation dominates there (measured: a 300-step optimisation took 1.3 s with 2
    threads, 0.18 s with 1). Opt in with `pytestmark = pytest.mark.usefixtures("single_thread")`
    in a test module, or an autouse fixture that requests it in a conftest."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def run_cli():
    """Run the `distillrec` CLI in process: run_cli("tune", "--help") -> its exit code."""
    from distillrec.cli import main

    def run(*args):
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
            raise SystemExit(0)
        return exit_info.value.code
    return run
