"""The figures of a pass, counted on the backend: ``Metrics`` (the loss sum, the correct
count and the status flag of the first non-finite step) and ``accuracy_from_count``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends.protocol import Backend
from ..kernels.scalar import GRADIENT_NOT_FINITE, LOSS_NOT_FINITE

# the codes of the status flag: what went NaN or infinite
STATUS_WHAT = {LOSS_NOT_FINITE: "loss", GRADIENT_NOT_FINITE: "a gradient"}


def accuracy_from_count(loss: str, correct: float, samples: int, n_out: int) -> float | None:
    """Fraction correct from the count the loss op accumulates (None for sum of squares
    and Poisson).

    Cross-entropy: a sample is correct when the arg-max of the outputs is its label (or
    its target row's arg-max). Binary cross-entropy: each of the ``n_out`` outputs
    thresholded at 0.5 against the target at 0.5.
    """
    if loss == "cross_entropy":
        return correct / samples
    if loss == "binary_cross_entropy":
        return correct / (samples * n_out)
    return None


class Metrics:
    """The backend accumulators of a pass: loss sum and correct count (float64) and the
    int64 status pair (first non-finite step, what went non-finite). Nothing is read back
    until ``read`` or ``first_bad_step`` is called."""

    def __init__(self, ops: Backend) -> None:
        self.ops = ops
        self.totals: Any = ops.zeros((2,), np.float64)
        self.status: Any = ops.zeros((2,), np.int64)

    def reset(self) -> None:
        """The loss sum and correct count back to zero (the status flag stays set)."""
        self.ops.fill_zero(self.totals)

    def read(self) -> tuple[float, float]:
        """The loss sum and correct count so far (one device-to-host copy)."""
        loss, correct = self.ops.to_host(self.totals)
        return float(loss), float(correct)

    def first_bad_step(self) -> tuple[int, str] | None:
        """(step, what) of the first non-finite step, or None (one device-to-host copy)."""
        step, what = (int(v) for v in self.ops.to_host(self.status))
        return (step, STATUS_WHAT.get(what, "a value")) if step else None
