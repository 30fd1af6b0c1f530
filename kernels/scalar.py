"""Per-element and per-sample device functions, written once and compiled for both targets.

``compile_for(device)`` wraps each function below with the ``device`` decorator and
returns them by name: ``cuda.jit(device=True, inline=True)`` for the CUDA kernels
(``gpuback.kernels.*``), ``njit(inline="always")`` for the cpu backend's kernels. A
CUDA kernel calls a per-sample function for its thread's sample; a cpu kernel calls it
in a loop over its share of the samples. So both backends compute every activation,
loss and optimiser step with the same formulas. Nothing here imports a Numba target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

IDENTITY, TANH, SIGMOID, RELU, LEAKY_RELU, SOFTPLUS, GELU = range(7)
CODES = {"identity": IDENTITY, "tanh": TANH, "sigmoid": SIGMOID, "relu": RELU,
         "leaky_relu": LEAKY_RELU, "softplus": SOFTPLUS, "gelu": GELU}
LEAKY_SLOPE = 0.01
GELU_C = math.sqrt(2.0 / math.pi)
GELU_K = 0.044715


def loss_kernel(loss: str, activation: str, a: Any, y: Any, t: Any, delta: Any,
                losses: Any) -> tuple[str, tuple]:
    """Which loss kernel a backend runs, and its arguments after the sample index or range:
    ``sum_of_squares`` needs the output activation's code, class labels (``t`` of shape
    (batch,)) take ``cross_entropy_labels``; the deltas carry 1/N (``inv_batch``)."""
    inv_batch = 1.0 / a.shape[1]
    if loss == "sum_of_squares":
        return loss, (a, y, t, delta, losses, CODES[activation], inv_batch)
    if loss == "cross_entropy" and t.ndim == 1:
        return "cross_entropy_labels", (a, y, t, delta, losses, inv_batch)
    return loss, (a, y, t, delta, losses, inv_batch)


def compile_for(device: Callable[[Callable], Any]) -> SimpleNamespace:
    """The functions below, each decorated with ``device``, as attributes of a namespace."""

    @device
    def sigmoid(a):
        """1 / (1 + e^-a) without overflow: e^-|a| never exceeds 1."""
        e = math.exp(-abs(a))
        return 1.0 / (1.0 + e) if a >= 0 else e / (1.0 + e)

    @device
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

    @device
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

    @device
    def softmax_bias(a, b, z, n):
        """Sample n: add the bias, then softmax over the units, shifted by the maximum so
        exp never overflows."""
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

    @device
    def log_sum_exp(a, n):
        top = -math.inf
        for k in range(a.shape[0]):
            top = max(top, a[k, n])
        total = 0.0
        for k in range(a.shape[0]):
            total += math.exp(a[k, n] - top)
        return top + math.log(total)

    # Losses (5.54), sample n: losses[n] = E_n and delta[k, n] = dE/da_k for the mean loss
    # E = (1/N) sum_n E_n, so the deltas carry the 1/N (``inv_batch``).

    @device
    def sum_of_squares(a, y, t, delta, losses, code, inv_batch, n):
        """E_n = 1/2 sum_k (y_k - t_k)^2; delta_k = h'(a_k) (y_k - t_k) (y - t for identity)."""
        total = 0.0
        for k in range(a.shape[0]):
            diff = y[k, n] - t[k, n]
            total += 0.5 * diff * diff
            delta[k, n] = derivative(code, a[k, n], y[k, n]) * diff * inv_batch
        losses[n] = total

    @device
    def binary_cross_entropy(a, y, t, delta, losses, inv_batch, n):
        """E_n = sum_k softplus(a_k) - t_k a_k (= -[t log y + (1-t) log(1-y)], y = sigmoid(a));
        delta_k = y_k - t_k."""
        total = 0.0
        for k in range(a.shape[0]):
            value = a[k, n]
            total += max(value, 0.0) + math.log1p(math.exp(-abs(value))) - t[k, n] * value
            delta[k, n] = (y[k, n] - t[k, n]) * inv_batch
        losses[n] = total

    @device
    def cross_entropy(a, y, t, delta, losses, inv_batch, n):
        """E_n = -sum_k t_k log y_k, log y_k = a_k - logsumexp(a) (rows of t sum to 1);
        delta_k = y_k - t_k."""
        lse = log_sum_exp(a, n)
        total = 0.0
        for k in range(a.shape[0]):
            total -= t[k, n] * (a[k, n] - lse)
            delta[k, n] = (y[k, n] - t[k, n]) * inv_batch
        losses[n] = total

    @device
    def cross_entropy_labels(a, y, labels, delta, losses, inv_batch, n):
        """As ``cross_entropy`` with a one-hot target given by the class label of sample n."""
        label = labels[n]
        for k in range(a.shape[0]):
            delta[k, n] = (y[k, n] - (1.0 if k == label else 0.0)) * inv_batch
        losses[n] = log_sum_exp(a, n) - a[label, n]

    # Optimiser steps, element i of a flattened parameter buffer.

    @device
    def sgd(param, grad, velocity, lr, momentum, nesterov, weight_decay, i):
        """SGD with momentum (Nesterov optional) and L2 weight decay:
        g = grad + wd w;  v = mu v + g;  w -= lr (g + mu v if nesterov else v)."""
        g = grad[i] + weight_decay * param[i]
        vel = momentum * velocity[i] + g
        velocity[i] = vel
        param[i] = param[i] - lr * (g + momentum * vel if nesterov else vel)

    @device
    def adam(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, correction1,
             correction2, i):
        """Adam (Kingma & Ba) with L2 weight decay, or AdamW's decoupled decay (Loshchilov &
        Hutter): w -= lr wd w first, then the Adam step on the plain gradient.
        ``correction1 = 1 - beta1^t`` and ``correction2 = 1 - beta2^t`` come from the host."""
        w = param[i]
        g = grad[i]
        if decoupled:
            w = w - lr * weight_decay * w
        else:
            g = g + weight_decay * w
        first = beta1 * m[i] + (1.0 - beta1) * g
        second = beta2 * v[i] + (1.0 - beta2) * g * g
        m[i] = first
        v[i] = second
        param[i] = w - lr * (first / correction1) / (math.sqrt(second / correction2) + eps)

    return SimpleNamespace(**{k: v for k, v in locals().items() if k != "device"})
