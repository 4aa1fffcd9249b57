"""Content-addressed cache of text embeddings.

An entry is one safetensors file named by the sha256 of everything that decides its
vectors: the encoder's identity (model folder, pooling, normalisation, config and weight
fingerprints), the template the texts came from, and the texts themselves. Change any of
these and the key changes, so a stale entry can never be read back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from distillrec import artifacts
from distillrec.errors import ArtifactError
from distillrec.teachers.encoders import TextEncoder

log = logging.getLogger(__name__)

_TENSOR = "embeddings"


@dataclass(frozen=True)
class CacheInfo:
    hit: bool
    key: str
    path: Path
    seconds: float  # wall time of the lookup plus, on a miss, the encode and write


def default_cache_dir() -> Path:
    """`$DISTILLREC_CACHE/embeddings`, or ~/.cache/distillrec/embeddings."""
    root = os.environ.get("DISTILLREC_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "distillrec") / "embeddings"


def cache_key(identity: dict[str, str], template: str, texts: Sequence[str]) -> str:
    # JSON keeps the parts unambiguous: ["a", "b"] and ["a\nb"] hash differently.
    payload = json.dumps({"encoder": identity, "template": template, "texts": list(texts)},
                         sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def encode_cached(encoder: TextEncoder, texts: Sequence[str], cache_dir: str | os.PathLike | None = None,
                  *, template: str = "", batch_size: int = 64,
                  progress: bool = True) -> tuple[torch.Tensor, CacheInfo]:
    """`encoder.encode(texts)`, read from the cache when the same encoder has already encoded
    the same texts from the same template; otherwise encoded and stored.

    template: the template the texts were rendered from (part of the key, and recorded in
    the file's metadata so an entry says where it came from).
    """
    start = time.perf_counter()
    texts = list(texts)
    key, path = cache_entry(encoder, texts, template, cache_dir)

    cached = load_entry(path, encoder, len(texts))
    if cached is not None:
        info = CacheInfo(True, key, path, time.perf_counter() - start)
        log.info("embedding cache hit: %d texts from %s", len(texts), path)
        return cached, info

    embeddings = encoder.encode(texts, batch_size=batch_size, progress=progress)
    store_entry(path, embeddings, encoder, template, key)
    info = CacheInfo(False, key, path, time.perf_counter() - start)
    log.info("embedding cache miss: encoded %d texts in %.1f s, stored in %s", len(texts), info.seconds, path)
    return embeddings, info


def cache_entry(encoder: TextEncoder, texts: Sequence[str], template: str = "",
                cache_dir: str | os.PathLike | None = None) -> tuple[str, Path]:
    """(key, file) of the entry holding `encoder`'s vectors of `texts`."""
    key = cache_key(encoder.identity(), template, texts)
    return key, Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{key}.safetensors"


def load_entry(path: Path, encoder: TextEncoder, n_texts: int) -> torch.Tensor | None:
    return _load(path, expected_shape=(n_texts, encoder.dim))


def store_entry(path: Path, embeddings: torch.Tensor, encoder: TextEncoder, template: str, key: str) -> None:
    artifacts.write_tensors(path, {_TENSOR: embeddings}, metadata={
        "model": encoder.name, "pooling": encoder.pooling, "normalize": str(encoder.normalize),
        "template": template, "n_texts": str(len(embeddings)), "key": key})


def _load(path: Path, expected_shape: tuple[int, int]) -> torch.Tensor | None:
    """The cached tensor, or None when there is no usable entry (absent, unreadable, or of
    the wrong shape: then it is recomputed and overwritten)."""
    if not path.exists():
        return None
    try:
        tensor = artifacts.read_tensors(path).get(_TENSOR)
    except ArtifactError as exc:
        log.warning("ignoring unreadable embedding cache entry: %s", exc)
        return None
    if tensor is None or tuple(tensor.shape) != expected_shape:
        log.warning("ignoring embedding cache entry %s: expected a tensor %r of shape %s",
                    path, _TENSOR, expected_shape)
        return None
    return tensor
