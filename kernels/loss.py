"""Fused loss + output-delta kernels (5.54): one thread per sample, looping over output units.

Each writes ``losses[n] = E_n`` and ``delta[k, n] = dE/da_k`` for the mean loss
E = (1/N) sum_n E_n, so the deltas carry the 1/N (``inv_batch``). The batch loss is
then the row sum of ``losses``.
"""

from __future__ import annotations

import math

from numba import cuda, float64, int32

from .activation import derivative
from .signatures import INDEX, for_each_dtype


def sum_of_squares(a, y, t, delta, losses, code, inv_batch):
    """E_n = 1/2 sum_k (y_k - t_k)^2; delta_k = h'(a_k) (y_k - t_k) (y - t for identity)."""
    n = cuda.grid(1)
    if n < a.shape[1]:
        total = 0.0
        for k in range(a.shape[0]):
            diff = y[k, n] - t[k, n]
            total += 0.5 * diff * diff
            delta[k, n] = derivative(code, a[k, n], y[k, n]) * diff * inv_batch
        losses[n] = total


def binary_cross_entropy(a, y, t, delta, losses, inv_batch):
    """E_n = sum_k softplus(a_k) - t_k a_k (= -[t log y + (1-t) log(1-y)], y = sigmoid(a));
    delta_k = y_k - t_k."""
    n = cuda.grid(1)
    if n < a.shape[1]:
        total = 0.0
        for k in range(a.shape[0]):
            value = a[k, n]
            total += max(value, 0.0) + math.log1p(math.exp(-abs(value))) - t[k, n] * value
            delta[k, n] = (y[k, n] - t[k, n]) * inv_batch
        losses[n] = total


@cuda.jit(device=True, inline=True)
def log_sum_exp(a, n):
    top = -math.inf
    for k in range(a.shape[0]):
        top = max(top, a[k, n])
    total = 0.0
    for k in range(a.shape[0]):
        total += math.exp(a[k, n] - top)
    return top + math.log(total)


def cross_entropy(a, y, t, delta, losses, inv_batch):
    """E_n = -sum_k t_k log y_k, log y_k = a_k - logsumexp(a) (rows of t sum to 1);
    delta_k = y_k - t_k."""
    n = cuda.grid(1)
    if n < a.shape[1]:
        lse = log_sum_exp(a, n)
        total = 0.0
        for k in range(a.shape[0]):
            total -= t[k, n] * (a[k, n] - lse)
            delta[k, n] = (y[k, n] - t[k, n]) * inv_batch
        losses[n] = total


def cross_entropy_labels(a, y, labels, delta, losses, inv_batch):
    """As ``cross_entropy`` with a one-hot target given by the class label of each sample."""
    n = cuda.grid(1)
    if n < a.shape[1]:
        label = labels[n]
        for k in range(a.shape[0]):
            delta[k, n] = (y[k, n] - (1.0 if k == label else 0.0)) * inv_batch
        losses[n] = log_sum_exp(a, n) - a[label, n]


# name -> (kernel function, {dtype: explicit signature})
KERNELS = {
    "sum_of_squares": (sum_of_squares, for_each_dtype(
        lambda mat, vec: (mat, mat, mat, mat, vec, int32, float64))),
    "binary_cross_entropy": (binary_cross_entropy, for_each_dtype(
        lambda mat, vec: (mat, mat, mat, mat, vec, float64))),
    "cross_entropy": (cross_entropy, for_each_dtype(
        lambda mat, vec: (mat, mat, mat, mat, vec, float64))),
    "cross_entropy_labels": (cross_entropy_labels, for_each_dtype(
        lambda mat, vec: (mat, mat, INDEX, mat, vec, float64))),
}
