"""The CUDA kernels of dynamic loss scaling (fp16 mixed precision, ``gpuback.loss_scale``).

The scale lives on the device in a pair ``scaler = (S, clean steps)`` of the gradients'
float type and every decision about it is taken there, so a training step never waits for
the host. Everything computes in that type (a float32 kernel has no float64 instruction: S
is a power of two times the initial scale, the count an integer below 2^24):

* ``scale_elements``: ``x *= S`` (the output deltas, before they are stored in fp16, so the
  small ones do not underflow to zero).
* ``unscale_check``: ``g *= 1/S`` (1/S rounded once) over the flat gradients; a NaN or
  infinity among the results sets ``step_status = (step, SCALE_OVERFLOW)`` (threads that
  find one race to write the same pair: harmless). ``step_status`` is cleared before it
  (``fill_zero``).
* ``update_scale``: one thread. An overflow halves S (``BACKOFF_FACTOR``) and resets the
  count; otherwise the count grows and, at ``growth_interval`` clean steps, S doubles
  (``GROWTH_FACTOR``) and the count restarts: PyTorch ``GradScaler``'s rule. Then a step the
  run's status already records as non-finite (the loss) is copied into ``step_status``, so
  the optimiser kernels, reading ``step_status``, skip the update in both cases.
"""

from __future__ import annotations

import math

from numba import cuda, int64

from .device import grid_1d
from .scalar import BACKOFF_FACTOR, GROWTH_FACTOR, SCALE_OVERFLOW
from .signatures import INDEX, kernel_table


def build(real):
    """The loss-scaling kernels for arrays of ``real``."""

    def scale_elements(x, scaler):
        """x[i] *= S, S = scaler[0] cast to ``real``."""
        start, stride = grid_1d()
        s = real(scaler[0])
        i = start
        while i < x.shape[0]:
            x[i] = x[i] * s
            i += stride

    def unscale_check(x, scaler, step_status, step):
        """x[i] *= 1/S (1/S rounded to ``real``); a non-finite result sets
        step_status = (step, SCALE_OVERFLOW)."""
        start, stride = grid_1d()
        inverse = real(1.0) / scaler[0]
        bad = False
        i = start
        while i < x.shape[0]:
            value = x[i] * inverse
            x[i] = value
            if not math.isfinite(value):
                bad = True
            i += stride
        if bad:
            step_status[0] = step
            step_status[1] = SCALE_OVERFLOW

    def update_scale(scaler, step_status, status, growth_interval):
        """The one-thread update of (S, count) from ``step_status``, then ``status`` (the
        run's first non-finite step) copied into ``step_status`` when it is set."""
        if cuda.grid(1) != 0:
            return
        if step_status[0] != 0:
            scaler[0] = scaler[0] * real(BACKOFF_FACTOR)
            scaler[1] = real(0.0)
        else:
            count = scaler[1] + real(1.0)
            if count >= real(growth_interval):
                scaler[0] = scaler[0] * real(GROWTH_FACTOR)
                count = real(0.0)
            scaler[1] = count
        if status[0] != 0 and step_status[0] == 0:
            step_status[0] = status[0]
            step_status[1] = status[1]

    return {"scale_elements": scale_elements, "unscale_check": unscale_check,
            "update_scale": update_scale}


def arguments(real, mat, vec):
    return {"scale_elements": (vec, vec),  # the scaler pair is of the same float type
            "unscale_check": (vec, vec, INDEX, int64),
            "update_scale": (vec, INDEX, INDEX, int64)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
