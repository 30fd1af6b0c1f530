"""The CUDA kernels of gradient clipping by global norm (``torch.nn.utils.clip_grad_norm_``'s
rule), the norm kept on the device so that a training step never waits for the host:

* ``global_norm``: one block; each thread sums the squares of a strided share of the flat
  gradients, ``device.block_sum`` adds the partials in shared memory in a fixed order, and
  thread 0 writes ``norm[0]`` = the square root. One block makes the summation order the
  same for every size (bitwise reproducible). The partials are float64 on purpose (also in
  the float32 kernel), so a sum over millions of squares loses nothing to its length.
* ``clip_scale``: every thread reads ``norm[0]``, forms the factor ``max_norm / (norm +
  1e-6)`` in the gradients' type and, where it is below 1, multiplies its elements by it.
"""

from __future__ import annotations

import math

from numba import cuda, float64

from .device import block_sum, grid_1d
from .scalar import CLIP_EPS
from .shapes import REDUCE_CAPACITY
from .signatures import kernel_table


def build(real):
    """The clipping kernels for arrays of ``real``."""

    def global_norm(x, norm):
        """norm[0] = sqrt(sum of x[i]^2), by one block."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        partial = cuda.shared.array(REDUCE_CAPACITY, float64)
        total = float64(0.0)
        i = lane
        while i < x.shape[0]:
            value = float64(x[i])
            total += value * value
            i += lanes
        partial[lane] = total
        block_sum(partial, 0, lane, lanes)
        if lane == 0:
            norm[0] = real(math.sqrt(partial[0]))

    def clip_scale(x, norm, max_norm):
        """x[i] *= max_norm / (norm[0] + 1e-6) where that factor is below 1."""
        factor = max_norm / (norm[0] + real(CLIP_EPS))
        if not factor < real(1.0):
            return
        start, stride = grid_1d()
        i = start
        while i < x.shape[0]:
            x[i] = x[i] * factor
            i += stride

    return {"global_norm": global_norm, "clip_scale": clip_scale}


def arguments(real, mat, vec):
    return {"global_norm": (vec, vec), "clip_scale": (vec, vec, real)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
