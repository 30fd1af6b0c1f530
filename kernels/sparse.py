"""Sparse-block kernels: the gather (forward, and deterministic backward), the scatter-add
(backward), and per-edge weight gradients.

A sparse block has E edges; edge e connects source unit ``src[e]`` to destination unit
``dst[e]`` with weight ``w[e]``. Buffers are feature-major ``(units, batch)`` and the
x thread index runs over samples, so a warp reads a contiguous run of one unit's row.
"""

from __future__ import annotations

from numba import boolean, cuda, float64

from .reduce import LANES, ROWS, block_sum
from .signatures import INDEX, for_each_dtype


def gather(w, ptr, order, other, x, out, accumulate):
    """out[r, n] (+)= sum over the edges e of row r of w[e] x[other[e], n]; one thread per
    (row, sample), summing in a fixed order: no atomics, bitwise reproducible.

    The rows' edges are ``order[ptr[r]:ptr[r + 1]]``. With the CSR-by-destination index
    (ptr, order = dst_ptr, dst_edges; other = src; x = z) it is the forward pass of a
    sparse block, a_k = sum_j w_kj z_j (5.48). With the CSC-by-source index (src_ptr,
    src_edges; other = dst; x = delta) it is the deterministic backward accumulation
    sum_k w_kj delta_k (5.56).
    """
    n, r = cuda.grid(2)
    if r < out.shape[0] and n < out.shape[1]:
        total = out[r, n] if accumulate else 0.0
        for i in range(ptr[r], ptr[r + 1]):
            e = order[i]
            total += w[e] * x[other[e], n]
        out[r, n] = total


def scatter_add(w, src, dst, delta, acc):
    """acc[src[e], n] += w[e] delta[dst[e], n] for every edge e and sample n (5.56).

    One thread per (edge, sample), each adding its consumer's contribution into the
    source unit's accumulator with an atomic add: the sum over consumers k of
    w_kj delta_k is realised as it is written. The order of the additions is not
    fixed, so results may differ in the last bits from run to run.
    """
    n, e = cuda.grid(2)
    if e < src.shape[0] and n < delta.shape[1]:
        cuda.atomic.add(acc, (src[e], n), w[e] * delta[dst[e], n])


def edge_grad(src, dst, delta, z, dw):
    """dw[e] = sum over the batch of delta[dst[e], n] z[src[e], n] (5.53), per edge.

    A block of ROWS x LANES threads handles ROWS edges; the LANES threads of an edge
    stride over the batch (coalesced), then a shared-memory tree sums their partials
    (in float64). Fixed order: deterministic.
    """
    lane = cuda.threadIdx.x
    row = cuda.threadIdx.y
    e = cuda.blockIdx.x * ROWS + row
    partial = cuda.shared.array((ROWS, LANES), dtype=float64)
    total = 0.0
    if e < src.shape[0]:
        j = src[e]
        k = dst[e]
        for n in range(lane, z.shape[1], LANES):
            total += delta[k, n] * z[j, n]
    partial[row, lane] = total
    block_sum(partial, row, lane)
    if lane == 0 and e < src.shape[0]:
        dw[e] = partial[row, 0]


# name -> (kernel function, {dtype: explicit signature})
KERNELS = {
    "gather": (gather, for_each_dtype(
        lambda mat, vec: (vec, INDEX, INDEX, INDEX, mat, mat, boolean))),
    "scatter_add": (scatter_add, for_each_dtype(
        lambda mat, vec: (vec, INDEX, INDEX, mat, mat))),
    "edge_grad": (edge_grad, for_each_dtype(
        lambda mat, vec: (INDEX, INDEX, mat, mat, vec))),
}
