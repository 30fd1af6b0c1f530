"""Numba CPU kernels for the cpu backend: ``@njit(parallel=True, cache=True)``.

They mirror the CUDA kernels' structure on feature-major ``(units, batch)`` buffers:
each parallel iteration owns one output row, and the inner loop runs over the batch,
a contiguous row that the compiler vectorises. No iteration writes another's row, so
there are no races and no atomics (the backward accumulation is the CSC gather).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# LLVM may reorder a reduction's additions (and fuse multiply-adds) to vectorise it;
# no NaN/Inf assumptions, so non-finite values still propagate.
SUM_IN_ANY_ORDER = {"reassoc", "contract"}


@njit(parallel=True, cache=True)
def gather(w, ptr, order, other, x, out, accumulate):  # pragma: no cover - compiled
    """out[r, :] (+)= sum over the edges e of row r of w[e] x[other[e], :].

    CSR by destination: the sparse forward (5.48). CSC by source: the backward
    accumulation sum_k w_kj delta_k (5.56), race-free.
    """
    n = out.shape[1]
    for r in prange(out.shape[0]):
        row = out[r]
        if not accumulate:
            row[:] = 0.0
        for i in range(ptr[r], ptr[r + 1]):
            e = order[i]
            we = w[e]
            src = x[other[e]]
            for s in range(n):
                row[s] += we * src[s]


@njit(parallel=True, cache=True, fastmath=SUM_IN_ANY_ORDER)
def edge_grad(src, dst, delta, z, dw):  # pragma: no cover - compiled
    """dw[e] = sum over the batch of delta[dst[e], :] z[src[e], :] (5.53), per edge.

    Summed in float64 (as the CUDA kernel does), in SIMD lanes: the reassociation
    ``SUM_IN_ANY_ORDER`` allows is fixed at compile time, so results are reproducible.
    """
    n = z.shape[1]
    for e in prange(src.shape[0]):
        d = delta[dst[e]]
        x = z[src[e]]
        total = 0.0
        for s in range(n):
            total += d[s] * x[s]
        dw[e] = total


def warm_up() -> None:
    """Compile (or load from the on-disk cache) both kernels for both dtypes."""
    index = np.zeros(1, dtype=np.int64)
    ptr = np.array([0, 1], dtype=np.int64)
    for dtype in (np.float32, np.float64):
        w = np.ones(1, dtype=dtype)
        a = np.ones((1, 2), dtype=dtype)
        out = np.zeros((1, 2), dtype=dtype)
        gather(w, ptr, index, index, a, out, False)
        edge_grad(index, index, a, a, np.zeros(1, dtype=dtype))
