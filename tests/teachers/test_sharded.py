"""Sharded teacher work: the same script run by one process and by a 2-process torchrun group
(gloo, 1 thread each) must leave the same cache entry and the same Knowledge artifact."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from distillrec import artifacts
from distillrec.teachers.knowledge import Knowledge

# Encodes a small catalogue (real MiniLM) through encode_sharded, builds a seeded LM teacher on
# it (untrained: the test is about sharding, not quality) and extracts its knowledge.
SCRIPT = r'''
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.splitting import random_split
from distillrec.teachers.encoders import TextEncoder
from distillrec.teachers.models import LMTeacher
from distillrec.teachers.sharded import encode_sharded, extract_and_save
from distillrec.teachers.templates import DEFAULT_ITEM_TEMPLATE, TextTemplate
from distillrec.train import distributed

out = Path(sys.argv[1])
distributed.init_from_env()
rng = np.random.default_rng(0)
n_users, n_items = 31, 40
words = "love war night city river ghost king space dream storm".split()
items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                      "title": [" ".join(rng.choice(words, 1 + i % 7)) for i in range(n_items)],
                      "year": [1970.0 + i for i in range(n_items)],
                      "genres": [[["Action", "Comedy", "Drama"][i % 3]] for i in range(n_items)]})
rows = [(f"u{u}", f"i{i}", 4.0, t) for u in range(n_users)
        for t, i in enumerate(rng.choice(n_items, 9, replace=False))]
inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
dataset = build_dataset(RawData("tiny", inter, items=items))
split = random_split(dataset, seed=0)
texts = TextTemplate(DEFAULT_ITEM_TEMPLATE).render(dataset.items, "item")
encode_sharded(TextEncoder(), texts, out / "cache", template=DEFAULT_ITEM_TEMPLATE, batch_size=4, progress=False)
model = LMTeacher.build(dataset, split, cache_dir=out / "cache", dim=8, hidden=16)  # a cache hit
extract_and_save(model, split, dataset, out / "knowledge", top_k=7, knn=3, chunk=8, importance=True)
distributed.shutdown()
'''


def _run(command: list[str], tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_two_ranks_write_one_cache_entry_and_one_knowledge_equal_to_one_process(tmp_path):
    script = tmp_path / "teacher_work.py"
    script.write_text(SCRIPT)
    # One process, a fresh one, 1 thread: run inside pytest, after other tests had run matmuls
    # on 2 threads, the same script's vectors came out 1e-7 off in a few bits.
    _run([sys.executable, str(script), str(tmp_path / "single")], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          str(script), str(tmp_path / "sharded")], tmp_path)

    entries = {name: sorted((tmp_path / name / "cache").glob("*.safetensors")) for name in ("single", "sharded")}
    assert [p.name for p in entries["single"]] == [p.name for p in entries["sharded"]] and len(entries["single"]) == 1
    single_vectors = artifacts.read_tensors(entries["single"][0])["embeddings"]
    sharded_vectors = artifacts.read_tensors(entries["sharded"][0])["embeddings"]
    # Every batch is one of the single-process batches: the same bits, not just close.
    assert torch.equal(single_vectors, sharded_vectors) and single_vectors.abs().sum(1).gt(0).all()

    single = Knowledge.load(tmp_path / "single" / "knowledge")
    sharded = Knowledge.load(tmp_path / "sharded" / "knowledge")  # one artifact, its hashes verified
    assert set(single.tensors) == set(sharded.tensors)
    for name in ("top_items", "knn_items"):
        assert torch.equal(single.tensors[name], sharded.tensors[name]), name
    for name, tensor in single.tensors.items():
        torch.testing.assert_close(sharded.tensors[name], tensor, msg=name)
    assert single.importance.keys() == sharded.importance.keys() and len(single.importance) >= 3
    for name, value in single.importance.items():
        assert sharded.importance[name] == pytest.approx(value, abs=1e-9), name
