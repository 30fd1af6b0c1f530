"""Sparse-block kernels: the gather (forward, and deterministic backward), the scatter-add
(backward), and per-edge weight gradients.

A sparse block has E edges; edge e connects source unit ``src[e]`` to destination unit
``dst[e]`` with weight ``w[e]``. Buffers are feature-major ``(units, batch)`` and the x
thread index runs over samples, so a warp reads a contiguous run of one unit's row. Every
kernel is grid-stride over rows / edges and samples: any E is legal.
"""

from __future__ import annotations

from numba import boolean, cuda, float64

from .device import block_sum, grid_2d
from .shapes import REDUCE_CAPACITY
from .signatures import INDEX, kernel_table


def build(real):
    """The sparse kernels computing in ``real``."""
    zero = real(0.0)

    def gather(w, ptr, order, other, x, out, accumulate):
        """out[r, n] (+)= sum over the edges e of row r of w[e] x[other[e], n]; one thread per
        (row, sample), summing in a fixed order: no atomics, bitwise reproducible.

        The rows' edges are ``order[ptr[r]:ptr[r + 1]]``. With the CSR-by-destination index
        (ptr, order = dst_ptr, dst_edges; other = src; x = z) it is the forward pass of a
        sparse block, a_k = sum_j w_kj z_j (5.48). With the CSC-by-source index (src_ptr,
        src_edges; other = dst; x = delta) it is the deterministic backward accumulation
        sum_k w_kj delta_k (5.56). Sums in the kernel's float type.
        """
        row, row_stride, sample, sample_stride = grid_2d()
        r = row
        while r < out.shape[0]:
            lo = ptr[r]
            hi = ptr[r + 1]
            n = sample
            while n < out.shape[1]:
                total = out[r, n] if accumulate else zero
                i = lo
                while i < hi:  # (a while loop: 40 registers, against 56 with range)
                    e = order[i]
                    total += w[e] * x[other[e], n]
                    i += 1
                out[r, n] = total
                n += sample_stride
            r += row_stride

    def scatter_add(w, src, dst, delta, acc):
        """acc[src[e], n] += w[e] delta[dst[e], n] for every edge e and sample n (5.56).

        One thread per (edge, sample), each adding its consumer's contribution into the
        source unit's accumulator with an atomic add: the sum over consumers k of
        w_kj delta_k is realised as it is written. The order of the additions is not
        fixed, so results may differ in the last bits from run to run.
        """
        row, row_stride, sample, sample_stride = grid_2d()
        e = row
        while e < src.shape[0]:
            j = src[e]
            k = dst[e]
            we = w[e]
            n = sample
            while n < delta.shape[1]:
                cuda.atomic.add(acc, (j, n), we * delta[k, n])
                n += sample_stride
            e += row_stride

    def edge_grad(src, dst, delta, z, dw):
        """dw[e] = sum over the batch of delta[dst[e], n] z[src[e], n] (5.53), per edge.

        A block of lanes x rows threads handles ``blockDim.y`` edges at a time (grid-stride
        over edges); the lanes of an edge stride over the batch (coalesced), then a
        shared-memory tree sums their partials in a fixed order: deterministic. The partials
        are float64 on purpose (also in the float32 kernel): a weight gradient is a dot
        product over the whole batch, and float32 partial sums would lose bits the gradient
        is held to (the products themselves are float32).
        """
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        base = cuda.threadIdx.y * lanes
        partial = cuda.shared.array(REDUCE_CAPACITY, float64)
        first = cuda.blockIdx.x * cuda.blockDim.y
        while first < src.shape[0]:
            e = first + cuda.threadIdx.y
            total = float64(0.0)
            if e < src.shape[0]:
                j = src[e]
                k = dst[e]
                n = lane
                while n < z.shape[1]:
                    total += float64(delta[k, n] * z[j, n])
                    n += lanes
            partial[base + lane] = total
            block_sum(partial, base, lane, lanes)
            if lane == 0 and e < src.shape[0]:
                dw[e] = partial[base]
            first += cuda.gridDim.x * cuda.blockDim.y

    return {"gather": gather, "scatter_add": scatter_add, "edge_grad": edge_grad}


def arguments(real, mat, vec):
    return {"gather": (vec, INDEX, INDEX, INDEX, mat, mat, boolean),
            "scatter_add": (vec, INDEX, INDEX, mat, mat),
            "edge_grad": (INDEX, INDEX, mat, mat, vec)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
