"""Numba CPU kernels for the cpu backend: ``@njit(nogil=True, cache=True)``, one range each.

Each kernel works on a contiguous range of rows (units), samples or elements, given
as ``lo, hi``; ``cpu_threads`` runs one range per core, so no two calls ever write the
same memory: no races, no atomics, and results that do not depend on timing. They
mirror the CUDA kernels (``gpuback.kernels``) on the same feature-major
``(units, batch)`` buffers, and compute activations, losses and optimiser steps with
the very same functions (``gpuback.kernels.scalar``, compiled here for the CPU). A
range of rows keeps the batch as the inner loop: a contiguous row the compiler
vectorises.

The on-disk cache (``__pycache__`` beside this file, or under ``NUMBA_CACHE_DIR``) makes a
second process start without compiling (each kernel is compiled on first use, per
dtype). It is keyed on this file and on every file of ``gpuback.kernels``
(``kernel_cache``): an edit of ``kernels/scalar.py`` recompiles.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import float64, njit

from ...kernels import precision as precision_kernels
from ...kernels.scalar import compile_for
from .kernel_cache import cached, inlined

# LLVM may reorder a reduction's additions (and fuse multiply-adds) to vectorise it; no
# NaN/Inf assumptions, so non-finite values still propagate.
SUM_IN_ANY_ORDER = {"reassoc", "contract"}

# float64 constants (as Python floats always were): float32 buffers are computed with them
# promoted, which keeps the cpu backend's float32 results within 1e-5 of the reference.
CPU = compile_for(njit(inline="always"), float64)
activate = CPU.activate
derivative = CPU.derivative
softmax_bias_sample = CPU.softmax_bias
sum_of_squares_sample = CPU.sum_of_squares
binary_cross_entropy_sample = CPU.binary_cross_entropy
poisson_sample = CPU.poisson
cross_entropy_sample = CPU.cross_entropy
cross_entropy_labels_sample = CPU.cross_entropy_labels
sgd_element = CPU.sgd
adam_element = CPU.adam
round_code = precision_kernels.compile_for(njit(inline="always")).round_code

Array = np.ndarray  # a kernel's array arguments: NumPy arrays, feature-major where 2-D
Real = np.floating[Any]  # a float of a buffer's own type (``dtype.type(0)``)
Kernel = Callable[..., None]  # a compiled kernel, called with its range first (lo, hi, ...)

kernel = cached(__file__, nogil=True)
# LLVM may fuse a multiply and an add into one FMA (a sum's order stays as written).
product_kernel = cached(__file__, nogil=True, fastmath={"contract"})
summing_kernel = cached(__file__, nogil=True, fastmath=SUM_IN_ANY_ORDER)


# --- sparse blocks --------------------------------------------------------------------------
# The sparse kernels are bound by reading rows of the batch (one row of B values per edge),
# so each takes the edges of a row in groups (8 or 4): the group's rows are read in one
# vectorised pass over the batch, with the partial sums kept in registers, instead of one
# pass (and one load and store of the output row) per edge. The index arrays are laid out
# in the order the kernel walks them (``gpuback.backends.cpu.backend.CpuIndex``): contiguous reads.

@inlined
def add_rows_8(row: Array, w: Array, x: Array, other: Array, edges: Array, i: int) -> None:
    w0, w1, w2, w3 = w[edges[i]], w[edges[i + 1]], w[edges[i + 2]], w[edges[i + 3]]
    w4, w5, w6, w7 = w[edges[i + 4]], w[edges[i + 5]], w[edges[i + 6]], w[edges[i + 7]]
    x0, x1, x2, x3 = x[other[i]], x[other[i + 1]], x[other[i + 2]], x[other[i + 3]]
    x4, x5, x6, x7 = x[other[i + 4]], x[other[i + 5]], x[other[i + 6]], x[other[i + 7]]
    for s in range(row.size):
        row[s] += (((w0 * x0[s] + w1 * x1[s]) + (w2 * x2[s] + w3 * x3[s]))
                   + ((w4 * x4[s] + w5 * x5[s]) + (w6 * x6[s] + w7 * x7[s])))


@inlined
def add_rows_4(row: Array, w: Array, x: Array, other: Array, edges: Array, i: int) -> None:
    w0, w1, w2, w3 = w[edges[i]], w[edges[i + 1]], w[edges[i + 2]], w[edges[i + 3]]
    x0, x1, x2, x3 = x[other[i]], x[other[i + 1]], x[other[i + 2]], x[other[i + 3]]
    for s in range(row.size):
        row[s] += (w0 * x0[s] + w1 * x1[s]) + (w2 * x2[s] + w3 * x3[s])


@product_kernel
def gather(lo: int, hi: int, w: Array, ptr: Array, edges: Array, other: Array, x: Array, out: Array,
           accumulate: bool) -> None:
    """Rows r in [lo, hi): out[r, :] (+)= sum over i in [ptr[r], ptr[r+1]) of
    w[edges[i]] x[other[i], :].

    CSR by destination: the sparse forward (5.48). CSC by source: the backward
    accumulation sum_k w_kj delta_k (5.56), race-free.
    """
    for r in range(lo, hi):
        row = out[r]
        if not accumulate:
            row[:] = 0.0
        i, end = ptr[r], ptr[r + 1]
        while i + 8 <= end:
            add_rows_8(row, w, x, other, edges, i)
            i += 8
        if i + 4 <= end:
            add_rows_4(row, w, x, other, edges, i)
            i += 4
        while i < end:
            we, src = w[edges[i]], x[other[i]]
            for s in range(row.size):
                row[s] += we * src[s]
            i += 1


@summing_kernel
def edge_grad(lo: int, hi: int, ptr: Array, edges: Array, other: Array, delta: Array, z: Array,
              dw: Array, zero: Real) -> None:
    """Destination rows k in [lo, hi) (CSR): dw[edges[i]] = sum over the batch of
    delta[k, :] z[other[i], :] for the edges i of row k (5.53). delta[k] is read once per
    group of 4 edges; each sum is kept in ``zero``'s type, in SIMD lanes."""
    for k in range(lo, hi):
        d = delta[k]
        i, end = ptr[k], ptr[k + 1]
        while i + 4 <= end:
            z0, z1, z2, z3 = z[other[i]], z[other[i + 1]], z[other[i + 2]], z[other[i + 3]]
            t0, t1, t2, t3 = zero, zero, zero, zero
            for s in range(d.size):
                ds = d[s]
                t0 += ds * z0[s]
                t1 += ds * z1[s]
                t2 += ds * z2[s]
                t3 += ds * z3[s]
            dw[edges[i]], dw[edges[i + 1]], dw[edges[i + 2]], dw[edges[i + 3]] = t0, t1, t2, t3
            i += 4
        while i < end:
            x = z[other[i]]
            total = zero
            for s in range(d.size):
                total += d[s] * x[s]
            dw[edges[i]] = total
            i += 1


@summing_kernel
def block_backward(lo: int, hi: int, w: Array, ptr: Array, edges: Array, other: Array, delta: Array,
                   z: Array, acc: Array, dw: Array, accumulate: bool, zero: Real) -> None:
    """Source rows j in [lo, hi) (CSC): acc[j, :] (+)= sum over the edges e out of j of
    w[e] delta[dst_e, :] (5.56) and dw[e] = sum over the batch of delta[dst_e, :] z[j, :]
    (5.53), in one pass: each delta row is read once for both, 4 edges at a time."""
    for j in range(lo, hi):
        a, zj = acc[j], z[j]
        if not accumulate:
            a[:] = 0.0
        i, end = ptr[j], ptr[j + 1]
        while i + 4 <= end:
            e0, e1, e2, e3 = edges[i], edges[i + 1], edges[i + 2], edges[i + 3]
            d0, d1, d2, d3 = delta[other[i]], delta[other[i + 1]], delta[other[i + 2]], \
                delta[other[i + 3]]
            w0, w1, w2, w3 = w[e0], w[e1], w[e2], w[e3]
            t0, t1, t2, t3 = zero, zero, zero, zero
            for s in range(a.size):
                zs = zj[s]
                a[s] += (w0 * d0[s] + w1 * d1[s]) + (w2 * d2[s] + w3 * d3[s])
                t0 += d0[s] * zs
                t1 += d1[s] * zs
                t2 += d2[s] * zs
                t3 += d3[s] * zs
            dw[e0], dw[e1], dw[e2], dw[e3] = t0, t1, t2, t3
            i += 4
        while i < end:
            e = edges[i]
            d, we = delta[other[i]], w[e]
            total = zero
            for s in range(a.size):
                a[s] += we * d[s]
                total += d[s] * zj[s]
            dw[e] = total
            i += 1


# --- activations (5.49, 5.56) and bias gradients ------------------------------------------

@inlined
def bias_activation_row(code: int, k: int, arrays: tuple[Array, ...]) -> None:
    b, a, z = arrays
    bk = b[k]
    for n in range(a.shape[1]):
        value = a[k, n] + bk
        a[k, n] = value
        z[k, n] = activate(code, value)


@functools.cache
def bias_activation(code: int) -> Kernel:
    """The kernel for activation ``code``: rows k in [lo, hi): a[k, :] += b[k];
    z[k, :] = h(a[k, :]) (5.48, 5.49), fused. One kernel per activation, compiled when first
    used: the code is a constant in it, so the compiler drops the other activations'
    branches and vectorises the row (relu: 0.07 ms for 1M elements, against 4.8 ms with
    the branches), and a process compiles only the activations its network has."""

    @kernel
    def bias_activation_for_code(lo: int, hi: int, b: Array, a: Array, z: Array) -> None:
        for k in range(lo, hi):
            bias_activation_row(code, k, (b, a, z))

    return bias_activation_for_code


@kernel
def softmax_bias(lo: int, hi: int, b: Array, a: Array, z: Array) -> None:
    """Samples n in [lo, hi): add the bias, then softmax over the units."""
    for n in range(lo, hi):
        softmax_bias_sample(a, b, z, n)


@inlined
def activation_delta_row(code: int, j: int, arrays: tuple[Array, ...]) -> None:
    a, z, acc, db = arrays
    total = 0.0
    for n in range(a.shape[1]):
        value = acc[j, n] * derivative(code, a[j, n], z[j, n])
        acc[j, n] = value
        total += value
    db[j] = total


@functools.cache
def activation_delta(code: int) -> Kernel:
    """The kernel for activation ``code`` (one each, as ``bias_activation``): rows j in
    [lo, hi): delta_j = h'(a_j) * acc_j in place (5.56), and db[j] = the sum of the new row
    over the batch (the bias gradient), in float64."""

    @summing_kernel
    def activation_delta_for_code(lo: int, hi: int, a: Array, z: Array, acc: Array,
                                  db: Array) -> None:
        for j in range(lo, hi):
            activation_delta_row(code, j, (a, z, acc, db))

    return activation_delta_for_code


@summing_kernel
def row_sum(lo: int, hi: int, x: Array, out: Array) -> None:
    """Rows r in [lo, hi): out[r] = sum over the batch of x[r, :] (bias gradients), in float64."""
    for r in range(lo, hi):
        total = 0.0
        for n in range(x.shape[1]):
            total += x[r, n]
        out[r] = total


# --- losses and output deltas (5.54), one sample at a time --------------------------------

@kernel
def sum_of_squares(lo: int, hi: int, a: Array, y: Array, t: Array, delta: Array, losses: Array,
                   correct: Array, code: int, inv_batch: float) -> None:
    for n in range(lo, hi):
        sum_of_squares_sample(a, y, t, delta, losses, correct, code, inv_batch, n)


# One kernel per loss, each calling its per-sample function by name: a kernel made by a
# factory around the function (a closure over a dispatcher) gets a new disk-cache entry in
# every process, and so compiles every time.

@kernel
def binary_cross_entropy(lo: int, hi: int, a: Array, y: Array, t: Array, delta: Array,
                         losses: Array, correct: Array, inv_batch: float) -> None:
    for n in range(lo, hi):
        binary_cross_entropy_sample(a, y, t, delta, losses, correct, inv_batch, n)


@kernel
def poisson(lo: int, hi: int, a: Array, y: Array, t: Array, delta: Array, losses: Array,
            correct: Array, inv_batch: float) -> None:
    for n in range(lo, hi):
        poisson_sample(a, y, t, delta, losses, correct, inv_batch, n)


@kernel
def cross_entropy(lo: int, hi: int, a: Array, y: Array, t: Array, delta: Array, losses: Array,
                  correct: Array, inv_batch: float) -> None:
    for n in range(lo, hi):
        cross_entropy_sample(a, y, t, delta, losses, correct, inv_batch, n)


@kernel
def cross_entropy_labels(lo: int, hi: int, a: Array, y: Array, labels: Array, delta: Array,
                         losses: Array, correct: Array, inv_batch: float) -> None:
    for n in range(lo, hi):
        cross_entropy_labels_sample(a, y, labels, delta, losses, correct, inv_batch, n)


# --- mini-batches and non-finite detection --------------------------------------------------

@kernel
def take_batch(lo: int, hi: int, source: Array, order: Array, start: int, out: Array) -> None:
    """Features f in [lo, hi): out[f, i] = source[order[start + i], f] for the whole batch."""
    for i in range(out.shape[1]):
        row = source[order[start + i]]
        for f in range(lo, hi):
            out[f, i] = row[f]


@summing_kernel
def check_finite(lo: int, hi: int, x: Array, status: Array, step: int, code: int) -> None:
    """Elements [lo, hi) of a flat buffer: if one is NaN or infinite and ``status[0] == 0``,
    status = (step, code). x - x is 0 for a finite x and NaN otherwise, and a sum in any
    order of those stays NaN: a loop the compiler vectorises. Ranges on other cores may
    write the same pair at the same time: harmless."""
    total = 0.0
    for i in range(lo, hi):
        total += x[i] - x[i]
    if not math.isfinite(total) and status[0] == 0:
        status[0] = step
        status[1] = code


# --- optimiser steps, elements [lo, hi) of a flattened parameter buffer --------------------
# Sliced to [lo, hi) first: indices counted from 0 are known to be non-negative, which lets
# the compiler vectorise the loop (measured 6x faster for SGD).

@kernel
def sgd(lo: int, hi: int, param: Array, grad: Array, velocity: Array, lr: float, momentum: float,
        nesterov: bool, weight_decay: float) -> None:
    p, g, v = param[lo:hi], grad[lo:hi], velocity[lo:hi]
    for i in range(hi - lo):
        sgd_element(p, g, v, lr, momentum, nesterov, weight_decay, i)


@kernel
def adam(lo: int, hi: int, param: Array, grad: Array, m: Array, v: Array, lr: float, beta1: float,
         beta2: float, eps: float, weight_decay: float, decoupled: bool, correction1: float,
         correction2: float) -> None:
    p, g, first, second = param[lo:hi], grad[lo:hi], m[lo:hi], v[lo:hi]
    for i in range(hi - lo):
        adam_element(p, g, first, second, lr, beta1, beta2, eps, weight_decay, decoupled,
                     correction1, correction2, i)


# Mixed precision: the update and the rounded copy of each updated element in one pass. One
# kernel per precision, the code a constant in it (as ``round_to_precision``); FP32 takes
# the kernels above, which write no copy.

@functools.cache
def sgd_rounding(code: int) -> Kernel:
    """``sgd`` that also writes ``rounded[i] = round_code(code, param[i])`` after each
    element's update (``gpuback.kernels.precision``, bit for bit ``precision.round_to``)."""

    @kernel
    def sgd_and_round(lo: int, hi: int, param: Array, grad: Array, velocity: Array, lr: float,
                      momentum: float, nesterov: bool, weight_decay: float, rounded: Array) -> None:
        p, g, v, r = param[lo:hi], grad[lo:hi], velocity[lo:hi], rounded[lo:hi]
        for i in range(hi - lo):
            sgd_element(p, g, v, lr, momentum, nesterov, weight_decay, i)
            r[i] = round_code(code, p[i])

    return sgd_and_round


@functools.cache
def adam_rounding(code: int) -> Kernel:
    """``adam`` that also writes the rounded copy, as ``sgd_rounding``."""

    @kernel
    def adam_and_round(lo: int, hi: int, param: Array, grad: Array, m: Array, v: Array, lr: float,
                       beta1: float, beta2: float, eps: float, weight_decay: float, decoupled: bool,
                       correction1: float, correction2: float, rounded: Array) -> None:
        p, g, first, second = param[lo:hi], grad[lo:hi], m[lo:hi], v[lo:hi]
        r = rounded[lo:hi]
        for i in range(hi - lo):
            adam_element(p, g, first, second, lr, beta1, beta2, eps, weight_decay, decoupled,
                         correction1, correction2, i)
            r[i] = round_code(code, p[i])

    return adam_and_round



# --- mixed precision ------------------------------------------------------------------------

@functools.cache
def round_to_precision(code: int) -> Kernel:
    """The kernel for precision ``code`` (``gpuback.kernels.precision.CODES``): elements i in
    [lo, hi) of a flat float32 buffer rounded in place to that precision (nearest, ties to
    even), bit for bit as ``gpuback.precision.round_to``. One kernel per precision, the code
    a constant in it (as ``bias_activation``)."""

    @kernel
    def round_for_code(lo: int, hi: int, x: Array) -> None:
        for i in range(lo, hi):
            x[i] = round_code(code, x[i])

    return round_for_code
