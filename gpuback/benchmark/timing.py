"""Timing a call the way ``gpuback bench`` does: settled thread pools, a warm-up, the median."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

SETTLE_SECONDS = 0.5
QUICK_CALLS = 3  # ``quick``: timed calls after one untimed call, no settling


def settle() -> None:
    """Wait until the thread pools of whatever ran before (BLAS, OpenMP, PyTorch) have stopped
    spinning: they keep a core busy for up to a few tenths of a second after their work."""
    time.sleep(SETTLE_SECONDS)


def time_call(fn: Callable[[], Any], seconds: float, warm_up: float | None = None,
              quick: bool = False) -> float:
    """Median milliseconds per call of ``fn``: settle, warm-up calls for ``warm_up`` seconds
    (at least two), then calls for ``seconds`` (at least three). ``quick``: one warm-up
    call and ``QUICK_CALLS`` timed ones, no settling (a smoke check, not a measurement)."""
    times: list[float] = []
    if quick:
        fn()
        for _ in range(QUICK_CALLS):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3
    warm_up = max(0.2, seconds / 2) if warm_up is None else warm_up
    settle()
    start = time.perf_counter()
    for i in range(1_000_000):
        fn()
        if i >= 1 and time.perf_counter() - start >= warm_up:
            break
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3
