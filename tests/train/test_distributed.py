"""Data-parallel training: batch sharding, the single-process no-ops, and a real 2-process
torchrun (gloo, 1 thread each) of `distillrec train` on ML-100K against a single-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from distillrec import artifacts, experiment
from distillrec.cli import main
from distillrec.train import distributed
from distillrec.train.batches import NegativeSampler, PairBatches


@pytest.mark.parametrize("n", [0, 1, 5, 7, 100])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_ranges_cover_every_row_once_in_order(n, world):
    ranges = [distributed.shard_range(n, r, world) for r in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [stop - start for start, stop in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_ranks_share_each_global_batch_and_skip_one_too_small_to_share():
    frame = pd.DataFrame({"user": [u % 7 for u in range(41)], "item": [(3 * u) % 11 for u in range(41)]})
    batches = PairBatches(frame, n_negatives=2, sampler=NegativeSampler(frame, 11))

    def epoch():
        return list(batches.epoch(8, torch.Generator().manual_seed(3)))

    world = 3
    per_rank = [list(distributed.shard_batches(epoch(), r, world)) for r in range(world)]
    global_batches = [b for b in epoch() if len(b["user"]) >= world]  # 41 = 5 x 8 + 1: the last is dropped
    assert len(global_batches) == 5 and all(len(pieces) == 5 for pieces in per_rank)
    for step, whole in enumerate(global_batches):
        for name, values in whole.items():
            assert torch.equal(torch.cat([per_rank[r][step][name] for r in range(world)]), values)


def test_without_a_process_group_every_helper_is_the_single_process_answer():
    assert not distributed.is_distributed() and distributed.is_main() and distributed.world_size() == 1
    rows = torch.arange(6).view(3, 2)
    assert distributed.gather_rows(rows, 3) is rows
    assert distributed.shard_range(10) == (0, 10)
    means, total = distributed.combine_means({"ndcg@10": 0.25, "recall@10": 0.5}, 4, ["ndcg@10", "recall@10"])
    assert means == {"ndcg@10": 0.25, "recall@10": 0.5} and total == 4
    assert distributed.local_device("cuda") == "cuda" and distributed.init_from_env() is False


def test_torchrun_without_out_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "mf", "--epochs", "1"])
    assert exit_info.value.code == 2
    assert "--out" in capsys.readouterr().err and not any(tmp_path.iterdir())


def _torchrun(out, epochs: int, *extra: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "distillrec", "train", "--model", "mf", "--dataset", "ml-100k", "--split", "random",
               "--epochs", str(epochs), *TRAIN_ARGS, "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


# Few epochs at a higher learning rate: far enough from the start that a wrong gradient or a
# lost shard would show, cheap enough for the test suite.
EPOCHS = 4
TRAIN_ARGS = ("--lr", "0.01", "--train-option", "num_threads=1")


@pytest.mark.slow
def test_two_processes_train_resume_and_match_the_single_process_run(tmp_path):
    # Distributed: 2 epochs, killed (a finished run stands in for it), resumed to EPOCHS.
    _torchrun(tmp_path / "ddp", 2)
    first = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["models"]["mf"]["history"]
    _torchrun(tmp_path / "ddp", EPOCHS, "--resume")
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["models"]["mf"]

    _, single_metrics = experiment.train_model(
        "mf", dataset="ml-100k", split_name="random", seed=0, model_params={},
        train_params={"epochs": EPOCHS, "lr": 0.01, "num_threads": 1}, out=tmp_path / "single", progress=False)
    single = single_metrics["models"]["mf"]

    # The resume continued the first two epochs rather than starting again.
    assert [h["epoch"] for h in ddp["history"]] == list(range(1, EPOCHS + 1))
    assert [h["loss"] for h in ddp["history"][:2]] == [h["loss"] for h in first]
    # Same global batches, averaged gradients: the same run up to rounding.
    for ours, theirs in zip(ddp["history"], single["history"]):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-3)
    assert ddp["test"]["ndcg@10"] == pytest.approx(single["test"]["ndcg@10"], rel=0.02)
    assert ddp["history"][-1]["valid"]["ndcg@10"] > ddp["history"][0]["valid"]["ndcg@10"]  # it learned
    # Written once, by rank 0: one checkpoint, a run whose hashes verify.
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["epoch-0004", "latest.json"]
    artifacts.verify_manifest(tmp_path / "ddp")
