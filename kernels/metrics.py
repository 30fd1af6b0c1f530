"""Per-step metrics and non-finite detection, kept on the device until the host reads them.

``accumulate_metrics`` adds a batch's summed loss and correct count into float64 running
totals; ``check_finite`` flags a non-finite gradient. Both record the first bad step in the
int64 pair ``status = (step, code)`` (codes ``scalar.LOSS_NOT_FINITE`` and
``scalar.GRADIENT_NOT_FINITE``), and only while ``status[0] == 0``; the optimiser kernels,
later on the same stream, then skip their update.
"""

from __future__ import annotations

import math

from numba import cuda, float64, int64

from .device import block_sum, grid_1d
from .scalar import GRADIENT_NOT_FINITE, LOSS_NOT_FINITE
from .shapes import REDUCE_CAPACITY
from .signatures import INDEX, kernel_table


def build(real):
    """The metric kernels for per-sample arrays of ``real``."""

    def accumulate_metrics(losses, correct, totals, status, step):
        """totals[0] += sum of losses, totals[1] += sum of correct; first non-finite loss sum
        recorded in ``status``.

        One block: its threads stride over the samples, then a shared-memory tree adds their
        partials, so the order of the additions is fixed (deterministic for a given block
        size). The partials and totals are float64 on purpose (also for float32 losses): a
        running total over an epoch must not lose the small per-batch sums.
        """
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        loss_partial = cuda.shared.array(REDUCE_CAPACITY, float64)
        correct_partial = cuda.shared.array(REDUCE_CAPACITY, float64)
        loss = float64(0.0)
        count = float64(0.0)
        n = lane
        while n < losses.shape[0]:
            loss += float64(losses[n])
            count += float64(correct[n])
            n += lanes
        loss_partial[lane] = loss
        correct_partial[lane] = count
        block_sum(loss_partial, 0, lane, lanes)
        block_sum(correct_partial, 0, lane, lanes)
        if lane == 0:
            total = loss_partial[0]
            totals[0] += total
            totals[1] += correct_partial[0]
            if not math.isfinite(total) and status[0] == 0:
                status[0] = step
                status[1] = LOSS_NOT_FINITE

    def check_finite(x, status, step):
        """If any x[i] is NaN or infinite and ``status[0] == 0``: status = (step,
        GRADIENT_NOT_FINITE). Threads that find one race to write the same pair: harmless."""
        start, stride = grid_1d()
        bad = False
        i = start
        while i < x.shape[0]:
            if not math.isfinite(x[i]):
                bad = True
            i += stride
        if bad and status[0] == 0:
            status[0] = step
            status[1] = GRADIENT_NOT_FINITE

    return {"accumulate_metrics": accumulate_metrics, "check_finite": check_finite}


def arguments(real, mat, vec):
    totals = float64[::1]
    return {"accumulate_metrics": (vec, vec, totals, INDEX, int64),
            "check_finite": (vec, INDEX, int64)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
