"""Per-element and per-sample device functions, written once and compiled for both targets.

``compile_for(device, real)`` wraps each function below with the ``device`` decorator and
returns them by name: ``cuda.jit(device=True, inline=True)`` for the CUDA kernels
(``gpuback.kernels.*``), ``njit(inline="always")`` for the cpu backend's kernels. ``real``
is the float type the functions compute in (``numba.float32`` or ``numba.float64``): every
constant below is ``real(...)``, made once, outside the functions, so a float32 CUDA kernel
meets no float64 literal (a Python float is a float64 in Numba, and one float64 operand
turns a float32 expression into float64 instructions). The cpu backend compiles them with
``numba.float64`` constants, as its float32 accuracy has always come from.

A CUDA kernel calls a per-element function for its thread's element, and builds its
block-per-sample reductions (softmax, losses) from the per-element pieces here (``softplus``,
``bce_term``, ``bce_match``, ``poisson_term``, ``better``); a cpu kernel calls the per-sample
functions in a loop over its share of the samples. So both backends compute every activation,
loss, correct count and optimiser step with the same formulas. Nothing here imports a Numba
target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

IDENTITY, TANH, SIGMOID, RELU, LEAKY_RELU, SOFTPLUS, GELU, SILU, EXP = range(9)
CODES = {"identity": IDENTITY, "tanh": TANH, "sigmoid": SIGMOID, "relu": RELU,
         "leaky_relu": LEAKY_RELU, "softplus": SOFTPLUS, "gelu": GELU, "silu": SILU, "exp": EXP}
LEAKY_SLOPE = 0.01
GELU_C = math.sqrt(2.0 / math.pi)
GELU_K = 0.044715

# Codes written to ``status[1]`` when a step first goes non-finite (``status[0]`` = the step).
LOSS_NOT_FINITE = 1
GRADIENT_NOT_FINITE = 2
# fp16 dynamic loss scaling (``gpuback.loss_scale``): the code of a step whose unscaled
# gradients are not finite (``step_status[1]``), and what an overflow and
# ``growth_interval`` clean steps in a row multiply the scale by (PyTorch GradScaler's rule)
SCALE_OVERFLOW = 3
BACKOFF_FACTOR = 0.5
GROWTH_FACTOR = 2.0
# Gradient clipping by global norm: the factor max_norm / (norm + CLIP_EPS), as
# torch.nn.utils.clip_grad_norm_ guards it
CLIP_EPS = 1e-6
# Layer normalisation: xhat = (a - mean) / sqrt(var + NORM_EPS), as nn.LayerNorm's default.
NORM_EPS = 1e-5
# The largest a whose e^a is finite, per float type (log of numpy.finfo(...).max): beyond it
# ``exp_or_inf`` returns inf, as the hardware's exp does (Python's math.exp, which the CUDA
# simulator runs, raises OverflowError there instead)
LOG_MAX = {"float32": 88.72283905206835, "float64": 709.782712893384}


def better(value, index, best, best_index):
    """Whether (value, index) beats (best, best_index) for the FIRST arg-max: a larger value,
    or an equal one at a smaller index. Serial scans and tree reductions both use it, so
    every backend breaks ties the same way (NumPy's ``argmax``: the first maximum)."""
    return value > best or (value == best and index < best_index)


def compile_for(device: Callable[[Callable], Any], real: Any) -> SimpleNamespace:
    """The functions below, each decorated with ``device``, computing in the float type
    ``real``, as attributes of a namespace."""
    zero, one, half, three = real(0.0), real(1.0), real(0.5), real(3.0)
    minus_inf, inf = real(-math.inf), real(math.inf)
    slope, gelu_c, gelu_k = real(LEAKY_SLOPE), real(GELU_C), real(GELU_K)
    log_max = real(LOG_MAX[str(real)])

    first_better = device(better)

    @device
    def sigmoid(a):
        """1 / (1 + e^-a) without overflow: e^-|a| never exceeds 1."""
        e = math.exp(-abs(a))
        return one / (one + e) if a >= zero else e / (one + e)

    @device
    def softplus(a):
        """log(1 + e^a) = max(a, 0) + log1p(e^-|a|), without overflow."""
        return max(a, zero) + math.log1p(math.exp(-abs(a)))

    @device
    def exp_or_inf(a):
        """e^a, and inf where it overflows (``LOG_MAX``) on every target."""
        return inf if a > log_max else math.exp(a)

    @device
    def activate(code, a):
        """z = h(a) (5.49) for an elementwise activation."""
        if code == TANH:
            return math.tanh(a)
        if code == SIGMOID:
            return sigmoid(a)
        if code == RELU:
            return a if a > zero else zero
        if code == LEAKY_RELU:
            return a if a > zero else slope * a
        if code == SOFTPLUS:
            return softplus(a)
        if code == GELU:
            return half * a * (one + math.tanh(gelu_c * (a + gelu_k * a * a * a)))
        if code == SILU:
            return a * sigmoid(a)
        if code == EXP:
            return exp_or_inf(a)
        return a

    @device
    def derivative(code, a, z):
        """h'(a), given a and z = h(a)."""
        if code == TANH:
            return one - z * z
        if code == SIGMOID:
            return z * (one - z)
        if code == RELU:
            return one if a > zero else zero
        if code == LEAKY_RELU:
            return one if a > zero else slope
        if code == SOFTPLUS:
            return sigmoid(a)
        if code == GELU:
            t = math.tanh(gelu_c * (a + gelu_k * a * a * a))
            return (half * (one + t)
                    + half * a * (one - t * t) * gelu_c * (one + three * gelu_k * a * a))
        if code == SILU:  # d/da a s(a) = s(a) + a s(a) (1 - s(a))
            s = sigmoid(a)
            return s * (one + a * (one - s))
        if code == EXP:  # d/da e^a = e^a = z
            return z
        return one

    @device
    def bce_term(a, t):
        """One output's binary cross-entropy -[t log y + (1-t) log(1-y)], y = sigmoid(a),
        as softplus(a) - t a."""
        return softplus(a) - t * a

    @device
    def bce_match(y, t):
        """1 when the output and its target fall on the same side of 0.5, else 0."""
        return one if (y > half) == (t > half) else zero

    @device
    def poisson_term(a, t):
        """One output's half Poisson deviance t log(t / y) - t + y, y = e^a (t log t = 0 at
        t = 0), from a: with r = a - log t it is t (e^r - 1 - r); for r <= 1 as
        t (expm1(r) - r), exact where y is near t (where t log t - t a and y - t cancel), for
        r > 1 as e^a - t (1 + r) (t e^r would overflow before e^a for a tiny t); e^a at
        t = 0."""
        if t > zero:
            r = a - math.log(t)
            if r > one:
                return exp_or_inf(a) - t * (one + r)
            return t * (math.expm1(r) - r)
        return exp_or_inf(a)

    @device
    def softmax_bias(a, b, z, n):
        """Sample n: add the bias, then softmax over the units, shifted by the maximum so
        exp never overflows."""
        top = minus_inf
        for k in range(a.shape[0]):
            value = a[k, n] + b[k]
            a[k, n] = value
            top = max(top, value)
        total = zero
        for k in range(a.shape[0]):
            e = math.exp(a[k, n] - top)
            z[k, n] = e
            total += e
        for k in range(a.shape[0]):
            z[k, n] = z[k, n] / total

    @device
    def log_sum_exp(a, n):
        top = minus_inf
        for k in range(a.shape[0]):
            top = max(top, a[k, n])
        total = zero
        for k in range(a.shape[0]):
            total += math.exp(a[k, n] - top)
        return top + math.log(total)

    @device
    def first_argmax(x, n):
        """The first k at which x[k, n] is largest (``better``)."""
        best = minus_inf
        best_index = x.shape[0]
        for k in range(x.shape[0]):
            if first_better(x[k, n], k, best, best_index):
                best = x[k, n]
                best_index = k
        return best_index

    # Losses (5.54), sample n: losses[n] = E_n and delta[k, n] = dE/da_k for the mean loss
    # E = (1/N) sum_n E_n, so the deltas carry the 1/N (``inv_batch``); correct[n] counts the
    # sample's correct predictions (see numpy_backend.loss_and_output_delta).

    @device
    def sum_of_squares(a, y, t, delta, losses, correct, code, inv_batch, n):
        """E_n = 1/2 sum_k (y_k - t_k)^2; delta_k = h'(a_k) (y_k - t_k) (y - t for identity)."""
        total = zero
        for k in range(a.shape[0]):
            diff = y[k, n] - t[k, n]
            total += half * diff * diff
            delta[k, n] = derivative(code, a[k, n], y[k, n]) * diff * inv_batch
        losses[n] = total
        correct[n] = zero

    @device
    def binary_cross_entropy(a, y, t, delta, losses, correct, inv_batch, n):
        """E_n = sum_k softplus(a_k) - t_k a_k (= -[t log y + (1-t) log(1-y)], y = sigmoid(a));
        delta_k = y_k - t_k; correct: outputs with (y > 0.5) == (t > 0.5)."""
        total = zero
        count = zero
        for k in range(a.shape[0]):
            total += bce_term(a[k, n], t[k, n])
            count += bce_match(y[k, n], t[k, n])
            delta[k, n] = (y[k, n] - t[k, n]) * inv_batch
        losses[n] = total
        correct[n] = count

    @device
    def poisson(a, y, t, delta, losses, correct, inv_batch, n):
        """E_n = sum_k t_k log(t_k / y_k) - t_k + y_k, y = e^a (half the Poisson deviance);
        delta_k = y_k - t_k; correct: 0 (a regression loss)."""
        total = zero
        for k in range(a.shape[0]):
            total += poisson_term(a[k, n], t[k, n])
            delta[k, n] = (y[k, n] - t[k, n]) * inv_batch
        losses[n] = total
        correct[n] = zero

    @device
    def cross_entropy(a, y, t, delta, losses, correct, inv_batch, n):
        """E_n = -sum_k t_k log y_k, log y_k = a_k - logsumexp(a) (rows of t sum to 1);
        delta_k = y_k - t_k; correct: the first arg-max of y is that of t."""
        lse = log_sum_exp(a, n)
        total = zero
        for k in range(a.shape[0]):
            total -= t[k, n] * (a[k, n] - lse)
            delta[k, n] = (y[k, n] - t[k, n]) * inv_batch
        losses[n] = total
        correct[n] = one if first_argmax(y, n) == first_argmax(t, n) else zero

    @device
    def cross_entropy_labels(a, y, labels, delta, losses, correct, inv_batch, n):
        """As ``cross_entropy`` with a one-hot target given by the class label of sample n."""
        label = labels[n]
        for k in range(a.shape[0]):
            delta[k, n] = (y[k, n] - (one if k == label else zero)) * inv_batch
        losses[n] = log_sum_exp(a, n) - a[label, n]
        correct[n] = one if first_argmax(y, n) == label else zero

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
        first = beta1 * m[i] + (one - beta1) * g
        second = beta2 * v[i] + (one - beta2) * g * g
        m[i] = first
        v[i] = second
        param[i] = w - lr * (first / correction1) / (math.sqrt(second / correction2) + eps)

    functions = {k: v for k, v in locals().items() if callable(v) and k not in ("device", "real")}
    functions["better"] = functions.pop("first_better")
    return SimpleNamespace(**functions)
