"""The identity connection's kernel: ``dst (+)= src`` over a feature-major ``(units, batch)``
pair of equal shape. Forward it adds a source group's z into a destination's pre-activations
(5.48 with W = I); backward it adds the destination's deltas into the source's accumulator
(5.56 with W = I). A 2-D grid-stride loop (``device.grid_2d``: threads x over samples, so a
warp reads and writes a contiguous run of one unit's row).
"""

from __future__ import annotations

from numba import boolean

from .device import grid_2d
from .signatures import kernel_table


def build(real):
    """The identity kernel for arrays of ``real``."""

    def add_into(src, dst, accumulate):
        """dst[k, n] = src[k, n], or += with ``accumulate``."""
        row, row_stride, sample, sample_stride = grid_2d()
        k = row
        while k < dst.shape[0]:
            n = sample
            while n < dst.shape[1]:
                if accumulate:
                    dst[k, n] = dst[k, n] + src[k, n]
                else:
                    dst[k, n] = src[k, n]
                n += sample_stride
            k += row_stride

    return {"add_into": add_into}


def arguments(real, mat, vec):
    return {"add_into": (mat, mat, boolean)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
