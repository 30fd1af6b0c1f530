"""Fused loss + output-delta kernels (5.54): one thread per sample, looping over output units.

Each writes ``losses[n] = E_n`` and ``delta[k, n] = dE/da_k`` for the mean loss
E = (1/N) sum_n E_n, so the deltas carry the 1/N (``inv_batch``). The batch loss is
then the row sum of ``losses``.
"""

from __future__ import annotations

from numba import cuda, float64, int32

from .device import DEVICE
from .signatures import INDEX, for_each_dtype

sum_of_squares_sample = DEVICE.sum_of_squares
binary_cross_entropy_sample = DEVICE.binary_cross_entropy
cross_entropy_sample = DEVICE.cross_entropy
cross_entropy_labels_sample = DEVICE.cross_entropy_labels


def sum_of_squares(a, y, t, delta, losses, code, inv_batch):
    """E_n = 1/2 sum_k (y_k - t_k)^2; delta_k = h'(a_k) (y_k - t_k) (y - t for identity)."""
    n = cuda.grid(1)
    if n < a.shape[1]:
        sum_of_squares_sample(a, y, t, delta, losses, code, inv_batch, n)


def binary_cross_entropy(a, y, t, delta, losses, inv_batch):
    """E_n = sum_k softplus(a_k) - t_k a_k; delta_k = y_k - t_k."""
    n = cuda.grid(1)
    if n < a.shape[1]:
        binary_cross_entropy_sample(a, y, t, delta, losses, inv_batch, n)


def cross_entropy(a, y, t, delta, losses, inv_batch):
    """E_n = -sum_k t_k log y_k; delta_k = y_k - t_k."""
    n = cuda.grid(1)
    if n < a.shape[1]:
        cross_entropy_sample(a, y, t, delta, losses, inv_batch, n)


def cross_entropy_labels(a, y, labels, delta, losses, inv_batch):
    """As ``cross_entropy`` with a one-hot target given by the class label of each sample."""
    n = cuda.grid(1)
    if n < a.shape[1]:
        cross_entropy_labels_sample(a, y, labels, delta, losses, inv_batch, n)


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
