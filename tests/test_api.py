"""The Python API refuses half a distillation before any training."""

import pytest

import distillrec as dr
from distillrec.errors import DistillrecError


@pytest.fixture(scope="module")
def data_and_split():
    data = dr.load_data("ml-100k")
    return data, dr.split(data, "random", seed=0)


def test_kd_without_a_teacher_is_refused(data_and_split):
    data, split = data_and_split
    with pytest.raises(DistillrecError, match="both a fitted teacher and kd"):
        dr.fit("mf", data, split, kd={"ranking": 0.5})


def test_unknown_parameters_are_refused_before_building(data_and_split):
    data, split = data_and_split
    with pytest.raises(DistillrecError, match="dimm"):
        dr.fit("mf", data, split, dimm=64)


def test_the_api_is_not_shadowed_by_subpackages():
    import distillrec.distill  # noqa: F401  (a subpackage bound on the package)

    assert all(callable(getattr(dr, name)) for name in ("load_data", "split", "fit", "evaluate", "save", "load"))
