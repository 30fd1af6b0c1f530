"""Dropout's counter-based mask and its kernel: ``out = x * m / (1 - p)``, the mask m drawn
from nothing but (seed, step, group, unit, sample), so every backend draws the same mask
bitwise, the backward pass draws it again instead of storing it, and a resumed run draws
what the unbroken one would have.

The draw is ``gpuback.kernels.mask_hash``'s (its ``mix32``, compiled here as a device
function): ``dropout_key(seed, step, group)`` folds the first three into one 32-bit key on
the host; the kernel folds in the unit and the sample, ``h = mix32(sample ^ mix32(unit ^
key))``, and keeps the unit when ``h >= round(p * 2^32)``.

``apply_dropout`` is a 2-D grid-stride loop over a feature-major ``(units, batch)`` pair
(``device.grid_2d``); ``out`` may be ``x`` itself (the backward pass scales the deltas'
accumulator in place).
"""

from __future__ import annotations

from numba import uint64

from .device import grid_2d, inline
from .mask_hash import mix32
from .signatures import kernel_table

mix_on_device = inline(mix32)


def build(real):
    """The dropout kernel for arrays of ``real``."""
    zero = real(0.0)

    def apply_dropout(x, out, key, first_sample, cut, scale):
        """out[k, n] = x[k, n] * scale where mix32((first_sample + n) ^ mix32(k ^ key)) >=
        cut, else 0."""
        row, row_stride, sample, sample_stride = grid_2d()
        k = row
        while k < x.shape[0]:
            unit_key = mix_on_device(uint64(k) ^ key)
            n = sample
            while n < x.shape[1]:
                h = mix_on_device((first_sample + uint64(n)) ^ unit_key)
                out[k, n] = x[k, n] * scale if h >= cut else zero
                n += sample_stride
            k += row_stride

    return {"apply_dropout": apply_dropout}


def arguments(real, mat, vec):
    return {"apply_dropout": (mat, mat, uint64, uint64, uint64, real)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
