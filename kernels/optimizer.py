"""Optimiser kernels: one fused update per parameter buffer, one thread per element.

Parameters, gradients and optimiser state are passed flattened (C-contiguous views), so
one kernel serves dense weight matrices, sparse weight vectors and biases alike.
"""

from __future__ import annotations

import math

from numba import boolean, cuda, float64

from .signatures import for_each_dtype


def sgd(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    """SGD with momentum (Nesterov optional) and L2 weight decay:
    g = grad + wd w;  v = mu v + g;  w -= lr (g + mu v if nesterov else v)."""
    i = cuda.grid(1)
    if i < param.shape[0]:
        g = grad[i] + weight_decay * param[i]
        vel = momentum * velocity[i] + g
        velocity[i] = vel
        param[i] = param[i] - lr * (g + momentum * vel if nesterov else vel)


def adam(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, correction1,
         correction2):
    """Adam (Kingma & Ba) with L2 weight decay, or AdamW's decoupled decay (Loshchilov &
    Hutter): w -= lr wd w first, then the Adam step on the plain gradient.
    ``correction1 = 1 - beta1^t`` and ``correction2 = 1 - beta2^t`` come from the host."""
    i = cuda.grid(1)
    if i < param.shape[0]:
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


# name -> (kernel function, {dtype: explicit signature})
KERNELS = {
    "sgd": (sgd, for_each_dtype(
        lambda mat, vec: (vec, vec, vec, float64, float64, boolean, float64))),
    "adam": (adam, for_each_dtype(
        lambda mat, vec: (vec, vec, vec, vec, float64, float64, float64, float64, float64,
                          boolean, float64, float64))),
}
