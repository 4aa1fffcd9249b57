"""Cost of a model: parameters, bytes, and full-catalog scoring latency per user."""

from __future__ import annotations

import time

import torch


@torch.no_grad()
def scoring_latency_ms(model, n_users: int, *, batch_size: int = 256, repeats: int = 3,
                       max_users: int = 1024) -> float:
    """Median milliseconds per user to score the full catalog, at the given batch size.

    Same batch size for every model, so students and teachers compare fairly."""
    model.eval()
    users = torch.arange(min(n_users, max_users))
    model.score(users[:batch_size])  # warm-up: lazy initialisation, allocator
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for chunk in users.split(batch_size):
            model.score(chunk)
        timings.append((time.perf_counter() - started) / len(users))
    return 1000.0 * sorted(timings)[len(timings) // 2]


def model_cost(model, n_users: int, batch_size: int = 256) -> dict:
    return {"params": model.num_parameters(), "size_bytes": model.size_bytes(),
            "latency_ms_per_user": scoring_latency_ms(model, n_users, batch_size=batch_size)}
