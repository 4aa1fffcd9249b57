import pytest

from distillrec.distill import KD_LOSSES, SCHEDULES, WEIGHTINGS

EXPECTED_LOSSES = {"feature", "rkd-distance", "rkd-angle", "similarity-preserving", "neighbour-graph",
                   "soft-target-kl", "ranking-distillation", "relaxed-ranking", "info-nce"}


def test_every_loss_is_registered_by_name():
    assert set(KD_LOSSES.names()) == EXPECTED_LOSSES


@pytest.mark.parametrize("registry", [KD_LOSSES, SCHEDULES, WEIGHTINGS], ids=lambda r: r.kind)
def test_every_registered_name_says_what_it_matches_in_one_line(registry):
    for name in registry.names():
        doc = registry.get(name).__doc__
        assert doc and doc.strip().splitlines()[0].strip(), f"{registry.kind} {name!r} has no summary line"
