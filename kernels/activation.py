"""Activation kernels: fused bias + activation forward (5.48, 5.49), softmax, h'(a) multiply.

Buffers are feature-major ``(units, batch)``: thread (x, y) = (sample n, unit k), so the
threads of a warp touch consecutive samples of one unit, a contiguous run of memory.
Activations are chosen by an integer code (``CODES``); the branch is uniform across a
launch, so it costs no divergence.
"""

from __future__ import annotations

import math

from numba import cuda, int32

from .signatures import for_each_dtype

IDENTITY, TANH, SIGMOID, RELU, LEAKY_RELU, SOFTPLUS, GELU = range(7)
CODES = {"identity": IDENTITY, "tanh": TANH, "sigmoid": SIGMOID, "relu": RELU,
         "leaky_relu": LEAKY_RELU, "softplus": SOFTPLUS, "gelu": GELU}
LEAKY_SLOPE = 0.01
GELU_C = math.sqrt(2.0 / math.pi)
GELU_K = 0.044715


@cuda.jit(device=True, inline=True)
def sigmoid(a):
    """1 / (1 + e^-a) without overflow: e^-|a| never exceeds 1."""
    e = math.exp(-abs(a))
    return 1.0 / (1.0 + e) if a >= 0 else e / (1.0 + e)


@cuda.jit(device=True, inline=True)
def activate(code, a):
    """z = h(a) (5.49) for an elementwise activation."""
    if code == TANH:
        return math.tanh(a)
    if code == SIGMOID:
        return sigmoid(a)
    if code == RELU:
        return a if a > 0 else 0.0
    if code == LEAKY_RELU:
        return a if a > 0 else LEAKY_SLOPE * a
    if code == SOFTPLUS:
        return max(a, 0.0) + math.log1p(math.exp(-abs(a)))
    if code == GELU:
        return 0.5 * a * (1.0 + math.tanh(GELU_C * (a + GELU_K * a * a * a)))
    return a


@cuda.jit(device=True, inline=True)
def derivative(code, a, z):
    """h'(a), given a and z = h(a)."""
    if code == TANH:
        return 1.0 - z * z
    if code == SIGMOID:
        return z * (1.0 - z)
    if code == RELU:
        return 1.0 if a > 0 else 0.0
    if code == LEAKY_RELU:
        return 1.0 if a > 0 else LEAKY_SLOPE
    if code == SOFTPLUS:
        return sigmoid(a)
    if code == GELU:
        t = math.tanh(GELU_C * (a + GELU_K * a * a * a))
        return 0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_K * a * a)
    return 1.0


def bias_activation(a, b, z, code):
    """a[k, n] += b[k]; z[k, n] = h(a[k, n]): bias of 5.48 and activation 5.49, fused."""
    n, k = cuda.grid(2)
    if k < a.shape[0] and n < a.shape[1]:
        value = a[k, n] + b[k]
        a[k, n] = value
        z[k, n] = activate(code, value)


def softmax_bias(a, b, z):
    """Softmax over the units of each sample, after adding the bias; one thread per sample.

    Shifted by the sample's maximum, so exp never overflows.
    """
    n = cuda.grid(1)
    if n < a.shape[1]:
        top = -math.inf
        for k in range(a.shape[0]):
            value = a[k, n] + b[k]
            a[k, n] = value
            top = max(top, value)
        total = 0.0
        for k in range(a.shape[0]):
            e = math.exp(a[k, n] - top)
            z[k, n] = e
            total += e
        for k in range(a.shape[0]):
            z[k, n] = z[k, n] / total


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
