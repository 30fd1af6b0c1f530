"""Activation kernels: fused bias + activation forward (5.48, 5.49), softmax, h'(a) multiply.

Buffers are feature-major ``(units, batch)``: thread (x, y) = (sample n, unit k), so the
threads of a warp touch consecutive samples of one unit, a contiguous run of memory.
Activations are chosen by an integer code (``CODES``); the branch is uniform across a
launch, so it costs no divergence.
"""

from __future__ import annotations

from numba import cuda, int32

from .device import DEVICE
from .scalar import CODES  # noqa: F401  (the backends pick activations by these codes)
from .signatures import for_each_dtype

activate = DEVICE.activate
derivative = DEVICE.derivative
softmax_bias_sample = DEVICE.softmax_bias


def bias_activation(a, b, z, code):
    """a[k, n] += b[k]; z[k, n] = h(a[k, n]): bias of 5.48 and activation 5.49, fused."""
    n, k = cuda.grid(2)
    if k < a.shape[0] and n < a.shape[1]:
        value = a[k, n] + b[k]
        a[k, n] = value
        z[k, n] = activate(code, value)


def softmax_bias(a, b, z):
    """Softmax over the units of each sample, after adding the bias; one thread per sample."""
    n = cuda.grid(1)
    if n < a.shape[1]:
        softmax_bias_sample(a, b, z, n)


def activation_delta(a, z, acc, code):
    """delta = h'(a) * acc in place: the accumulated sum_k w_kj delta_k becomes delta_j (5.56)."""
    n, k = cuda.grid(2)
    if k < a.shape[0] and n < a.shape[1]:
        acc[k, n] = acc[k, n] * derivative(code, a[k, n], z[k, n])


# name -> (kernel function, {dtype: explicit signature})
KERNELS = {
    "bias_activation": (bias_activation, for_each_dtype(lambda mat, vec: (mat, vec, mat, int32))),
    "softmax_bias": (softmax_bias, for_each_dtype(lambda mat, vec: (mat, vec, mat))),
    "activation_delta": (activation_delta, for_each_dtype(lambda mat, vec: (mat, mat, mat, int32))),
}
