"""Optimiser kernels: one fused update per parameter buffer, grid-stride over its elements.

Parameters, gradients and optimiser state are passed flattened (C-contiguous views), so
one kernel serves dense weight matrices, sparse weight vectors and biases alike. Float
scalars (lr, betas, ...) are of the kernel's float type. ``status`` is the int64 pair that
``check_finite`` / ``accumulate_metrics`` write on the same stream: while ``status[0] != 0``
(a step went non-finite) the kernel changes nothing, so the parameters keep their last good
values without the host having to look.

Mixed precision: ``rounded`` is the network's copy of the parameters rounded to
the precision ``code`` (``precision.CODES``) that the products read. Right after updating
element i of the float32 master the kernel writes ``rounded[i] = round_code(code,
param[i])`` (``precision.round_code``, the bits of ``gpuback.precision.round_to``), so one
launch writes both copies and no forward pass has to remake the rounded one. With code
``FP32`` ``rounded`` is not written (pass ``param`` itself). The float64 kernels never round
(precisions below fp32 need float32 masters): they take the same arguments and ignore them.
"""

from __future__ import annotations

from numba import boolean, float32, int64

from .device import device, grid_1d, inline
from .precision import FP32, cuda_functions
from .signatures import INDEX, kernel_table


def rounded_writer(real):
    """The device function ``write(param, rounded, code, i)``: ``rounded[i] =
    round_code(code, param[i])`` unless ``code`` is FP32; for float64 ``real``, nothing."""
    if real != float32:
        @inline
        def keep_master_only(param, rounded, code, i):
            pass

        return keep_master_only
    round_code = cuda_functions().round_code

    @inline
    def write_rounded(param, rounded, code, i):
        if code != FP32:
            rounded[i] = round_code(code, param[i])

    return write_rounded


def build(real):
    """The optimiser kernels computing in ``real``."""
    dev = device(real)
    sgd_element = dev.sgd
    adam_element = dev.adam
    write_rounded = rounded_writer(real)

    def sgd(param, grad, velocity, lr, momentum, nesterov, weight_decay, status, rounded,
            code):
        """SGD with momentum (Nesterov optional) and L2 weight decay; the rounded copy."""
        if status[0] != 0:
            return
        start, stride = grid_1d()
        i = start
        while i < param.shape[0]:
            sgd_element(param, grad, velocity, lr, momentum, nesterov, weight_decay, i)
            write_rounded(param, rounded, code, i)
            i += stride

    def adam(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, correction1,
             correction2, status, rounded, code):
        """Adam, or AdamW's decoupled decay; the rounded copy."""
        if status[0] != 0:
            return
        start, stride = grid_1d()
        i = start
        while i < param.shape[0]:
            adam_element(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled,
                         correction1, correction2, i)
            write_rounded(param, rounded, code, i)
            i += stride

    return {"sgd": sgd, "adam": adam}


def arguments(real, mat, vec):
    return {"sgd": (vec, vec, vec, real, real, boolean, real, INDEX, vec, int64),
            "adam": (vec, vec, vec, vec, real, real, real, real, real, boolean, real, real,
                     INDEX, vec, int64)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
