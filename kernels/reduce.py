"""Row sums over the batch: bias gradients, dE/db_k = sum_n delta_k.

A block of lanes x rows threads handles ``blockDim.y`` rows at a time (grid-stride over
rows); the lanes of a row stride over its columns (coalesced), then ``device.block_sum``
adds their partials in shared memory in a fixed order. The partials are float64 on purpose
(also in the float32 kernel), so float32 sums lose nothing to long batches.
"""

from __future__ import annotations

from numba import cuda, float64

from .device import block_sum
from .shapes import REDUCE_CAPACITY
from .signatures import kernel_table


def build(real):
    """The reduction kernels for arrays of ``real``."""

    def row_sum(x, out):
        """out[r] = sum over columns n of x[r, n]."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        base = cuda.threadIdx.y * lanes
        partial = cuda.shared.array(REDUCE_CAPACITY, float64)
        first = cuda.blockIdx.x * cuda.blockDim.y
        while first < x.shape[0]:
            r = first + cuda.threadIdx.y
            total = float64(0.0)
            if r < x.shape[0]:
                n = lane
                while n < x.shape[1]:
                    total += float64(x[r, n])
                    n += lanes
            partial[base + lane] = total
            block_sum(partial, base, lane, lanes)
            if lane == 0 and r < x.shape[0]:
                out[r] = partial[base]
            first += cuda.gridDim.x * cuda.blockDim.y

    return {"row_sum": row_sum}


def arguments(real, mat, vec):
    return {"row_sum": (mat, vec)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
