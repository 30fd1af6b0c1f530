"""Optimiser kernels: one fused update per parameter buffer, one thread per element.

Parameters, gradients and optimiser state are passed flattened (C-contiguous views), so
one kernel serves dense weight matrices, sparse weight vectors and biases alike.
"""

from __future__ import annotations

from numba import boolean, cuda, float64

from .device import DEVICE
from .signatures import for_each_dtype

sgd_element = DEVICE.sgd
adam_element = DEVICE.adam


def sgd(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    """SGD with momentum (Nesterov optional) and L2 weight decay, one thread per element."""
    i = cuda.grid(1)
    if i < param.shape[0]:
        sgd_element(param, grad, velocity, lr, momentum, nesterov, weight_decay, i)


def adam(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, correction1,
         correction2):
    """Adam, or AdamW's decoupled decay, one thread per element."""
    i = cuda.grid(1)
    if i < param.shape[0]:
        adam_element(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled,
                     correction1, correction2, i)


# name -> (kernel function, {dtype: explicit signature})
KERNELS = {
    "sgd": (sgd, for_each_dtype(
        lambda mat, vec: (vec, vec, vec, float64, float64, boolean, float64))),
    "adam": (adam, for_each_dtype(
        lambda mat, vec: (vec, vec, vec, vec, float64, float64, float64, float64, float64,
                          boolean, float64, float64))),
}
