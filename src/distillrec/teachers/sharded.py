"""Teacher work split across the ranks of a torchrun group, merged into one artifact.

- `encode_sharded`: the embedding cache's `encode_cached`, with the catalogue's texts split
  by batch: texts are ordered longest first (the encoder's own order) and cut into batches;
  rank r encodes batches r, r + world, ... (striding keeps long and short batches balanced).
  Each batch is exactly one of the single-process batches, so each vector has the same bits
  as in a one-process encode. The pieces are summed into one [n, dim] tensor on every rank
  and rank 0 writes the ONE cache entry.
- `extract_and_save`: `extract_knowledge` (collective when distributed: users, items and
  importance inputs are shared out) and ONE Knowledge artifact written by rank 0.

Both are plain single-process calls when no process group exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import torch

from distillrec.teachers import cache
from distillrec.teachers.encoders import TextEncoder
from distillrec.train import distributed


def encode_sharded(encoder: TextEncoder, texts: Sequence[str], cache_dir: str | os.PathLike | None = None, *,
                   template: str = "", batch_size: int = 64,
                   progress: bool = True) -> tuple[torch.Tensor, cache.CacheInfo]:
    """`encode_cached` with the encoding shared out over the ranks (collective: every rank calls it)."""
    if not distributed.is_distributed():
        return cache.encode_cached(encoder, texts, cache_dir, template=template, batch_size=batch_size,
                                   progress=progress)
    started = time.perf_counter()
    texts = list(texts)
    key, path = cache.cache_entry(encoder, texts, template, cache_dir)
    cached = cache.load_entry(path, encoder, len(texts))
    # Every rank must take the same branch: a hit counts only if all ranks read the entry.
    hits = distributed.all_reduce_sum(torch.tensor([float(cached is not None)]))
    if int(hits) == distributed.world_size():
        return cached, cache.CacheInfo(True, key, path, time.perf_counter() - started)

    # The encoder's order (longest first, ties by position), cut into its batches.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    mine = [i for batch in batches[distributed.rank()::distributed.world_size()] for i in batch]
    # Already in the encoder's order, so encode() keeps these batches exactly as they are.
    vectors = encoder.encode([texts[i] for i in mine], batch_size=batch_size,
                             progress=progress and distributed.is_main())
    embeddings = torch.zeros(len(texts), encoder.dim)
    embeddings[torch.tensor(mine, dtype=torch.long)] = vectors
    distributed.all_reduce_sum(embeddings)  # each row is non-zero on one rank only: the sum is exact
    if distributed.is_main():
        cache.store_entry(path, embeddings, encoder, template, key)
    distributed.barrier()  # the entry exists before any rank goes on to read it
    return embeddings, cache.CacheInfo(False, key, path, time.perf_counter() - started)


def extract_and_save(model, split, dataset, directory: str | Path, **options):
    """`extract_knowledge(model, split, dataset, **options)` on every rank (collective), saved
    once by rank 0 into `directory`; returns the Knowledge (the same on every rank)."""
    from distillrec.teachers.knowledge import extract_knowledge

    knowledge = extract_knowledge(model, split, dataset, **options)
    if distributed.is_main():
        knowledge.save(directory)
    distributed.barrier()
    return knowledge
