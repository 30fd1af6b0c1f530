"""Activation kernels: fused bias + activation forward (5.48, 5.49), softmax, and the h'(a)
multiply fused with the bias gradient.

Buffers are feature-major ``(units, batch)``. Elementwise kernels are 2-D grid-stride loops
(``device.grid_2d``: threads x over samples, so a warp touches a contiguous run of one unit's
row). Softmax is one block per sample, its threads striding over the units, with
shared-memory reductions for the maximum and the sum. Activations are chosen by an integer
code (``CODES``); the branch is uniform across a launch, so it costs no divergence.
"""

from __future__ import annotations

import math

from numba import cuda, float64, int32

from .device import block_max, block_sum, device, grid_2d
from .scalar import CODES  # noqa: F401  (the backends pick activations by these codes)
from .shapes import REDUCE_CAPACITY
from .signatures import kernel_table


def build(real):
    """The activation kernels computing in ``real``."""
    dev = device(real)
    activate = dev.activate
    derivative = dev.derivative
    zero = real(0.0)
    minus_inf = real(-math.inf)

    def bias_activation(a, b, z, code):
        """a[k, n] += b[k]; z[k, n] = h(a[k, n]): bias of 5.48 and activation 5.49, fused."""
        row, row_stride, sample, sample_stride = grid_2d()
        k = row
        while k < a.shape[0]:
            bk = b[k]
            n = sample
            while n < a.shape[1]:
                value = a[k, n] + bk
                a[k, n] = value
                z[k, n] = activate(code, value)
                n += sample_stride
            k += row_stride

    def softmax_bias(a, b, z):
        """Softmax over the units of each sample, after adding the bias: one block per sample
        (grid-stride over samples), threads striding over the units, shifted by the maximum
        so exp never overflows."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        top = cuda.shared.array(REDUCE_CAPACITY, real)
        total = cuda.shared.array(REDUCE_CAPACITY, real)
        n = cuda.blockIdx.x
        while n < a.shape[1]:
            local = minus_inf
            k = lane
            while k < a.shape[0]:
                value = a[k, n] + b[k]
                a[k, n] = value
                local = max(local, value)
                k += lanes
            top[lane] = local
            block_max(top, lane, lanes)
            shift = top[0]
            local = zero
            k = lane
            while k < a.shape[0]:
                e = math.exp(a[k, n] - shift)
                z[k, n] = e
                local += e
                k += lanes
            total[lane] = local
            block_sum(total, 0, lane, lanes)
            norm = total[0]
            k = lane
            while k < a.shape[0]:
                z[k, n] = z[k, n] / norm
                k += lanes
            cuda.syncthreads()  # every thread has read slot 0 before the next sample
            n += cuda.gridDim.x

    def activation_delta(a, z, acc, db, code):
        """acc[j, n] *= h'(a[j, n]) in place: the accumulated sum_k w_kj delta_k becomes
        delta_j (5.56); and db[j] = sum over the batch of the new acc[j, :] (dE/db_j).

        A block of lanes x rows threads handles ``blockDim.y`` units at a time (grid-stride
        over units); the lanes of a unit stride over its batch row (coalesced), then a
        shared-memory tree adds their partials in a fixed order. The partials are float64 on
        purpose (also in the float32 kernel): a long batch row summed in float32 would lose
        bits the bias gradient is held to; it is one add per element, not the multiply.
        """
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        base = cuda.threadIdx.y * lanes
        partial = cuda.shared.array(REDUCE_CAPACITY, float64)
        first = cuda.blockIdx.x * cuda.blockDim.y
        while first < a.shape[0]:
            j = first + cuda.threadIdx.y
            total = float64(0.0)
            if j < a.shape[0]:
                n = lane
                while n < a.shape[1]:
                    value = acc[j, n] * derivative(code, a[j, n], z[j, n])
                    acc[j, n] = value
                    total += float64(value)
                    n += lanes
            partial[base + lane] = total
            block_sum(partial, base, lane, lanes)
            if lane == 0 and j < a.shape[0]:
                db[j] = partial[base]
            first += cuda.gridDim.x * cuda.blockDim.y

    return {"bias_activation": bias_activation, "softmax_bias": softmax_bias,
            "activation_delta": activation_delta}


def arguments(real, mat, vec):
    return {"bias_activation": (mat, vec, mat, int32),
            "softmax_bias": (mat, vec, mat),
            "activation_delta": (mat, mat, mat, vec, int32)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
