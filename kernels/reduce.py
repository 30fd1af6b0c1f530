"""Row sums over the batch: bias gradients (dE/db_k = sum_n delta_k) and the batch loss.

A block of ROWS x LANES threads handles ROWS rows; the LANES threads of a row stride
over its columns (coalesced), then ``block_sum`` adds their partials in shared memory
in a fixed order (float64 partials, so float32 sums lose nothing to long batches).
"""

from __future__ import annotations

from numba import cuda, float64

from .signatures import for_each_dtype

LANES = 32
ROWS = 4


@cuda.jit(device=True, inline=True)
def block_sum(partial, row, lane):
    """Tree-sum ``partial[row, :]`` into ``partial[row, 0]``; every thread must call it."""
    cuda.syncthreads()
    width = LANES // 2
    while width > 0:
        if lane < width:
            partial[row, lane] += partial[row, lane + width]
        cuda.syncthreads()
        width //= 2


def row_sum(x, out):
    """out[r] = sum over columns n of x[r, n]."""
    lane = cuda.threadIdx.x
    row = cuda.threadIdx.y
    r = cuda.blockIdx.x * ROWS + row
    partial = cuda.shared.array((ROWS, LANES), dtype=float64)
    total = 0.0
    if r < x.shape[0]:
        for n in range(lane, x.shape[1], LANES):
            total += x[r, n]
    partial[row, lane] = total
    block_sum(partial, row, lane)
    if lane == 0 and r < x.shape[0]:
        out[r] = partial[row, 0]


# name -> (kernel function, {dtype: explicit signature})
KERNELS = {
    "row_sum": (row_sum, for_each_dtype(lambda mat, vec: (mat, vec))),
}
