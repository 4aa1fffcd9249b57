import pytest

from distillrec.distill import METHODS, SCHEDULES, WEIGHTINGS
from distillrec.distill.objective import ALIASES, Term

EXPECTED_METHODS = {"feature", "rkd-distance", "rkd-angle", "similarity-preserving", "neighbour-graph",
                    "soft-target-kl", "ranking-distillation", "relaxed-ranking", "info-nce",
                    "step-ranking-distillation"}


def test_every_method_is_registered_by_its_name():
    assert set(METHODS.names()) == EXPECTED_METHODS
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert issubclass(cls, Term) and cls.name == name


def test_every_alias_resolves_to_a_registered_method():
    for alias, canonical in ALIASES.items():
        assert alias not in METHODS and canonical in METHODS, (alias, canonical)


@pytest.mark.parametrize("registry", [METHODS, SCHEDULES, WEIGHTINGS], ids=lambda r: r.kind)
def test_every_registered_name_says_what_it_matches_in_one_line(registry):
    for name in registry.names():
        doc = registry.get(name).__doc__
        assert doc and doc.strip().splitlines()[0].strip(), f"{registry.kind} {name!r} has no summary line"
