"""The distillation tests run on tensors of a few dozen elements: one thread each (see
`single_thread` in tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    yield
