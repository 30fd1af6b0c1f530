"""Sparse-block kernels: forward gather, backward scatter-add and gather, per-edge gradients.

A sparse block has E edges; edge e connects source unit ``src[e]`` to destination unit
``dst[e]`` with weight ``w[e]``. Buffers are feature-major ``(units, batch)`` and the
x thread index runs over samples, so a warp reads a contiguous run of one unit's row.
"""

from __future__ import annotations

from numba import boolean, cuda, float64

from .reduce import LANES, ROWS, block_sum
from .signatures import INDEX, for_each_dtype


def sparse_forward(w, dst_ptr, dst_edges, src, z, a, accumulate):
    """a[k, n] (+)= sum over edges e into k of w[e] z[src[e], n] (5.48), CSR gather.

    One thread per (destination unit, sample); no atomics.
    """
    n, k = cuda.grid(2)
    if k < a.shape[0] and n < a.shape[1]:
        total = a[k, n] if accumulate else 0.0
        for i in range(dst_ptr[k], dst_ptr[k + 1]):
            e = dst_edges[i]
            total += w[e] * z[src[e], n]
        a[k, n] = total


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


def gather_backward(w, src_ptr, src_edges, dst, delta, acc, accumulate):
    """acc[j, n] (+)= sum over edges e out of j of w[e] delta[dst[e], n] (5.56), CSC gather.

    One thread per (source unit, sample), summing in a fixed order: bitwise
    reproducible, no atomics.
    """
    n, j = cuda.grid(2)
    if j < acc.shape[0] and n < acc.shape[1]:
        total = acc[j, n] if accumulate else 0.0
        for i in range(src_ptr[j], src_ptr[j + 1]):
            e = src_edges[i]
            total += w[e] * delta[dst[e], n]
        acc[j, n] = total


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
    "sparse_forward": (sparse_forward, for_each_dtype(
        lambda mat, vec: (vec, INDEX, INDEX, INDEX, mat, mat, boolean))),
    "scatter_add": (scatter_add, for_each_dtype(
        lambda mat, vec: (vec, INDEX, INDEX, mat, mat))),
    "gather_backward": (gather_backward, for_each_dtype(
        lambda mat, vec: (vec, INDEX, INDEX, INDEX, mat, mat, boolean))),
    "edge_grad": (edge_grad, for_each_dtype(
        lambda mat, vec: (INDEX, INDEX, mat, mat, vec))),
}
