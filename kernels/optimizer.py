"""Optimiser kernels: one fused update per parameter buffer, grid-stride over its elements.

Parameters, gradients and optimiser state are passed flattened (C-contiguous views), so
one kernel serves dense weight matrices, sparse weight vectors and biases alike. Float
scalars (lr, betas, ...) are of the kernel's float type. ``status`` is the int64 pair that
``check_finite`` / ``accumulate_metrics`` write on the same stream: while ``status[0] != 0``
(a step went non-finite) the kernel changes nothing, so the parameters keep their last good
values without the host having to look.
"""

from __future__ import annotations

from numba import boolean

from .device import device, grid_1d
from .signatures import INDEX, kernel_table


def build(real):
    """The optimiser kernels computing in ``real``."""
    dev = device(real)
    sgd_element = dev.sgd
    adam_element = dev.adam

    def sgd(param, grad, velocity, lr, momentum, nesterov, weight_decay, status):
        """SGD with momentum (Nesterov optional) and L2 weight decay."""
        if status[0] != 0:
            return
        start, stride = grid_1d()
        i = start
        while i < param.shape[0]:
            sgd_element(param, grad, velocity, lr, momentum, nesterov, weight_decay, i)
            i += stride

    def adam(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, correction1,
             correction2, status):
        """Adam, or AdamW's decoupled decay."""
        if status[0] != 0:
            return
        start, stride = grid_1d()
        i = start
        while i < param.shape[0]:
            adam_element(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled,
                         correction1, correction2, i)
            i += stride

    return {"sgd": sgd, "adam": adam}


def arguments(real, mat, vec):
    return {"sgd": (vec, vec, vec, real, real, boolean, real, INDEX),
            "adam": (vec, vec, vec, vec, real, real, real, real, real, boolean, real, real,
                     INDEX)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
