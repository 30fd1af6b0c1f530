"""Fused loss + output-delta kernels (5.54): one block per sample, its threads striding over
the output units, with shared-memory tree reductions for the maximum, the sums and the first
arg-max (grid-stride over samples when the batch exceeds the grid).

Each writes ``losses[n] = E_n``, ``delta[k, n] = dE/da_k`` for the mean loss
E = (1/N) sum_n E_n (so the deltas carry the 1/N, ``inv_batch``) and ``correct[n]``, the
sample's correct predictions (cross-entropy: the first arg-max of y is the label or the first
arg-max of the target row; binary cross-entropy: outputs with (y > 0.5) == (t > 0.5); sum of
squares and Poisson: 0). The formulas are those of ``scalar.py`` (which the cpu backend runs
per sample): the same stable log-sum-exp, the softplus form of BCE, the expm1 form of the
Poisson deviance, the same tie rule (``better``).
"""

from __future__ import annotations

import math

from numba import cuda, int32, int64

from .device import block_argmax, block_max, block_sum, device, inline
from .shapes import REDUCE_CAPACITY
from .signatures import INDEX, kernel_table


def build(real):
    """The loss kernels computing in ``real``."""
    dev = device(real)
    derivative = dev.derivative
    bce_term = dev.bce_term
    bce_match = dev.bce_match
    poisson_term = dev.poisson_term
    better = dev.better
    zero, one, half = real(0.0), real(1.0), real(0.5)
    minus_inf = real(-math.inf)

    @inline
    def log_sum_exp(a, n, shift, partial, lane, lanes):
        """shift + log sum_k exp(a[k, n] - shift) over the units of sample n, the block's
        threads striding over them and summing in ``partial``; stable with shift = max_k a."""
        local = zero
        k = lane
        while k < a.shape[0]:
            local += math.exp(a[k, n] - shift)
            k += lanes
        partial[lane] = local
        block_sum(partial, 0, lane, lanes)
        return shift + math.log(partial[0])

    @inline
    def first_max(values, k, n, best, best_index):
        """(best, best_index) with unit k of sample n taken in: the first arg-max of
        ``values[:, n]`` over the units a thread has seen (``better``'s tie rule)."""
        if better(values[k, n], k, best, best_index):
            return values[k, n], k
        return best, best_index

    @inline
    def reduce_top_and_best(top, best, best_index, local_top, local_best, local_index, lane,
                            lanes):
        """Each thread's running maximum of a and first arg-max of y reduced over the block:
        the maximum into ``top[0]``, the arg-max into ``best[0]``, ``best_index[0]``."""
        top[lane] = local_top
        best[lane] = local_best
        best_index[lane] = local_index
        block_max(top, lane, lanes)
        block_argmax(best, best_index, lane, lanes)

    def sum_of_squares(a, y, t, delta, losses, correct, code, inv_batch):
        """E_n = 1/2 sum_k (y_k - t_k)^2; delta_k = h'(a_k) (y_k - t_k) (y - t for identity)."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        total = cuda.shared.array(REDUCE_CAPACITY, real)
        n = cuda.blockIdx.x
        while n < a.shape[1]:
            local = zero
            k = lane
            while k < a.shape[0]:
                diff = y[k, n] - t[k, n]
                local += half * diff * diff
                delta[k, n] = derivative(code, a[k, n], y[k, n]) * diff * inv_batch
                k += lanes
            total[lane] = local
            block_sum(total, 0, lane, lanes)
            if lane == 0:
                losses[n] = total[0]
                correct[n] = zero
            cuda.syncthreads()  # slot 0 read before the next sample
            n += cuda.gridDim.x

    def binary_cross_entropy(a, y, t, delta, losses, correct, inv_batch):
        """E_n = sum_k softplus(a_k) - t_k a_k; delta_k = y_k - t_k."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        total = cuda.shared.array(REDUCE_CAPACITY, real)
        count = cuda.shared.array(REDUCE_CAPACITY, real)
        n = cuda.blockIdx.x
        while n < a.shape[1]:
            local = zero
            matches = zero
            k = lane
            while k < a.shape[0]:
                local += bce_term(a[k, n], t[k, n])
                matches += bce_match(y[k, n], t[k, n])
                delta[k, n] = (y[k, n] - t[k, n]) * inv_batch
                k += lanes
            total[lane] = local
            count[lane] = matches
            block_sum(total, 0, lane, lanes)
            block_sum(count, 0, lane, lanes)
            if lane == 0:
                losses[n] = total[0]
                correct[n] = count[0]
            cuda.syncthreads()
            n += cuda.gridDim.x

    def poisson(a, y, t, delta, losses, correct, inv_batch):
        """E_n = sum_k t_k log(t_k / y_k) - t_k + y_k, y = e^a; delta_k = y_k - t_k."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        total = cuda.shared.array(REDUCE_CAPACITY, real)
        n = cuda.blockIdx.x
        while n < a.shape[1]:
            local = zero
            k = lane
            while k < a.shape[0]:
                local += poisson_term(a[k, n], t[k, n])
                delta[k, n] = (y[k, n] - t[k, n]) * inv_batch
                k += lanes
            total[lane] = local
            block_sum(total, 0, lane, lanes)
            if lane == 0:
                losses[n] = total[0]
                correct[n] = zero
            cuda.syncthreads()
            n += cuda.gridDim.x

    def cross_entropy(a, y, t, delta, losses, correct, inv_batch):
        """E_n = -sum_k t_k log y_k, log y_k = a_k - logsumexp(a); delta_k = y_k - t_k."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        top = cuda.shared.array(REDUCE_CAPACITY, real)
        total = cuda.shared.array(REDUCE_CAPACITY, real)
        loss = cuda.shared.array(REDUCE_CAPACITY, real)
        best = cuda.shared.array(REDUCE_CAPACITY, real)
        best_index = cuda.shared.array(REDUCE_CAPACITY, int64)
        target = cuda.shared.array(REDUCE_CAPACITY, real)
        target_index = cuda.shared.array(REDUCE_CAPACITY, int64)
        units = a.shape[0]
        n = cuda.blockIdx.x
        while n < a.shape[1]:
            local_top = minus_inf
            local_best = minus_inf
            local_index = units
            local_target = minus_inf
            local_target_index = units
            k = lane
            while k < units:
                local_top = max(local_top, a[k, n])
                local_best, local_index = first_max(y, k, n, local_best, local_index)
                local_target, local_target_index = first_max(t, k, n, local_target,
                                                             local_target_index)
                delta[k, n] = (y[k, n] - t[k, n]) * inv_batch
                k += lanes
            reduce_top_and_best(top, best, best_index, local_top, local_best, local_index,
                                lane, lanes)
            target[lane] = local_target
            target_index[lane] = local_target_index
            block_argmax(target, target_index, lane, lanes)
            lse = log_sum_exp(a, n, top[0], total, lane, lanes)
            local = zero
            k = lane
            while k < units:
                local -= t[k, n] * (a[k, n] - lse)
                k += lanes
            loss[lane] = local
            block_sum(loss, 0, lane, lanes)
            if lane == 0:
                losses[n] = loss[0]
                correct[n] = one if best_index[0] == target_index[0] else zero
            cuda.syncthreads()
            n += cuda.gridDim.x

    def cross_entropy_labels(a, y, labels, delta, losses, correct, inv_batch):
        """As ``cross_entropy`` with a one-hot target given by the class label of each sample:
        E_n = logsumexp(a) - a_label."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        top = cuda.shared.array(REDUCE_CAPACITY, real)
        total = cuda.shared.array(REDUCE_CAPACITY, real)
        best = cuda.shared.array(REDUCE_CAPACITY, real)
        best_index = cuda.shared.array(REDUCE_CAPACITY, int64)
        units = a.shape[0]
        n = cuda.blockIdx.x
        while n < a.shape[1]:
            label = labels[n]
            local_top = minus_inf
            local_best = minus_inf
            local_index = units
            k = lane
            while k < units:
                local_top = max(local_top, a[k, n])
                local_best, local_index = first_max(y, k, n, local_best, local_index)
                delta[k, n] = (y[k, n] - (one if k == label else zero)) * inv_batch
                k += lanes
            reduce_top_and_best(top, best, best_index, local_top, local_best, local_index,
                                lane, lanes)
            lse = log_sum_exp(a, n, top[0], total, lane, lanes)
            if lane == 0:
                losses[n] = lse - a[label, n]
                correct[n] = one if best_index[0] == label else zero
            cuda.syncthreads()
            n += cuda.gridDim.x

    return {"sum_of_squares": sum_of_squares, "binary_cross_entropy": binary_cross_entropy,
            "poisson": poisson, "cross_entropy": cross_entropy,
            "cross_entropy_labels": cross_entropy_labels}


def arguments(real, mat, vec):
    return {"sum_of_squares": (mat, mat, mat, mat, vec, vec, int32, real),
            "binary_cross_entropy": (mat, mat, mat, mat, vec, vec, real),
            "poisson": (mat, mat, mat, mat, vec, vec, real),
            "cross_entropy": (mat, mat, mat, mat, vec, vec, real),
            "cross_entropy_labels": (mat, mat, INDEX, mat, vec, vec, real)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
