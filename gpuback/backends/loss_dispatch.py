"""Which loss kernel a backend with compiled kernels (cpu, cuda) runs, and its arguments.

Host code beside the device code of ``gpuback.kernels``: the kernels themselves are the same
per-sample functions for both targets (``gpuback.kernels.scalar``); this picks among them.
"""

from __future__ import annotations

from typing import Any

from ..kernels.scalar import CODES
from .protocol import Array


def loss_kernel(loss: str, activation: str, a: Array, y: Array, t: Array, delta: Array,
                losses: Array, correct: Array) -> tuple[str, tuple[Any, ...]]:
    """Which loss kernel a backend runs, and its arguments after the sample index or range:
    ``sum_of_squares`` needs the output activation's code, class labels (``t`` of shape
    (batch,)) take ``cross_entropy_labels``; the deltas carry 1/N (``inv_batch``, a Python
    float: a backend casts it to its kernels' float type)."""
    inv_batch = 1.0 / a.shape[1]
    if loss == "sum_of_squares":
        return loss, (a, y, t, delta, losses, correct, CODES[activation], inv_batch)
    if loss == "cross_entropy" and t.ndim == 1:
        return "cross_entropy_labels", (a, y, t, delta, losses, correct, inv_batch)
    if loss not in ("cross_entropy", "binary_cross_entropy", "poisson"):
        raise ValueError(f"loss: unknown {loss!r}")
    return loss, (a, y, t, delta, losses, correct, inv_batch)
