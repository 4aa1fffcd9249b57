"""The distillation tests run on tensors of a few dozen elements: intra-op threads only add
synchronisation cost there, and on a busy shared machine that cost dominates (measured: a
300-step optimisation took 1.3 s with 2 threads, 0.18 s with 1)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
