"""Layer normalisation kernels: a group's pre-activations normalised over its units, per
sample, and the backward pass through it (every unit of the group depends on every other
through the mean and the variance: 5.55 inside the group).

Buffers are feature-major ``(units, batch)``, so a sample is a column. ``normalise`` and
``normalise_backward`` run one block per sample (grid-stride over samples), its threads
striding over the units, with shared-memory reductions (``device.block_sum``, a fixed order)
for the sums over the units; the statistics are taken in the kernel's float type, the mean
first and the variance about it after (two passes, no cancellation). ``gain_grad`` sums
dE/du * xhat over the batch for each unit, as ``reduce.row_sum`` sums the bias gradient:
lanes of a row stride over its columns, float64 partials.
"""

from __future__ import annotations

import math

from numba import cuda, float64

from .device import block_sum
from .scalar import NORM_EPS
from .shapes import REDUCE_CAPACITY
from .signatures import kernel_table


def build(real):
    """The layer normalisation kernels computing in ``real``."""
    zero = real(0.0)
    one = real(1.0)
    eps = real(NORM_EPS)

    def normalise(a, b, gain, xhat, rstd, u):
        """a[:, n] += b; xhat[:, n] = (a[:, n] - mean) * rstd[n], rstd[n] = 1 / sqrt(var +
        eps) over the units; u[:, n] = gain * xhat[:, n]. One block per sample."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        partial = cuda.shared.array(REDUCE_CAPACITY, real)
        units = a.shape[0]
        n = cuda.blockIdx.x
        while n < a.shape[1]:
            local = zero
            k = lane
            while k < units:
                value = a[k, n] + b[k]
                a[k, n] = value
                local += value
                k += lanes
            partial[lane] = local
            block_sum(partial, 0, lane, lanes)
            mean = partial[0] / real(units)
            cuda.syncthreads()  # every thread has read slot 0 before it is written again
            local = zero
            k = lane
            while k < units:
                centred = a[k, n] - mean
                local += centred * centred
                k += lanes
            partial[lane] = local
            block_sum(partial, 0, lane, lanes)
            r = one / math.sqrt(partial[0] / real(units) + eps)
            k = lane
            while k < units:
                x = (a[k, n] - mean) * r
                xhat[k, n] = x
                u[k, n] = gain[k] * x
                k += lanes
            if lane == 0:
                rstd[n] = r
            cuda.syncthreads()  # every thread has read slot 0 before the next sample
            n += cuda.gridDim.x

    def gain_grad(delta, xhat, dgain):
        """dgain[k] = sum over the batch of delta[k, n] * xhat[k, n] (delta: dE/du)."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        base = cuda.threadIdx.y * lanes
        partial = cuda.shared.array(REDUCE_CAPACITY, float64)
        first = cuda.blockIdx.x * cuda.blockDim.y
        while first < delta.shape[0]:
            r = first + cuda.threadIdx.y
            total = float64(0.0)
            if r < delta.shape[0]:
                n = lane
                while n < delta.shape[1]:
                    total += float64(delta[r, n]) * float64(xhat[r, n])
                    n += lanes
            partial[base + lane] = total
            block_sum(partial, base, lane, lanes)
            if lane == 0 and r < delta.shape[0]:
                dgain[r] = partial[base]
            first += cuda.gridDim.x * cuda.blockDim.y

    def normalise_backward(gain, xhat, rstd, delta):
        """delta[:, n]: dE/du in, dE/da out: with g = gain * dE/du, rstd[n] * (g - mean(g) -
        xhat * mean(g * xhat)), the means over the units. One block per sample."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        sums = cuda.shared.array(REDUCE_CAPACITY, real)
        moments = cuda.shared.array(REDUCE_CAPACITY, real)
        units = delta.shape[0]
        n = cuda.blockIdx.x
        while n < delta.shape[1]:
            local_sum = zero
            local_moment = zero
            k = lane
            while k < units:
                g = gain[k] * delta[k, n]
                local_sum += g
                local_moment += g * xhat[k, n]
                k += lanes
            sums[lane] = local_sum
            moments[lane] = local_moment
            block_sum(sums, 0, lane, lanes)
            block_sum(moments, 0, lane, lanes)
            mean = sums[0] / real(units)
            mean_moment = moments[0] / real(units)
            r = rstd[n]
            k = lane
            while k < units:
                delta[k, n] = r * (gain[k] * delta[k, n] - mean - xhat[k, n] * mean_moment)
                k += lanes
            cuda.syncthreads()  # every thread has read slot 0 before the next sample
            n += cuda.gridDim.x

    return {"normalise": normalise, "gain_grad": gain_grad,
            "normalise_backward": normalise_backward}


def arguments(real, mat, vec):
    return {"normalise": (mat, vec, vec, mat, vec, mat),
            "gain_grad": (mat, mat, vec),
            "normalise_backward": (vec, mat, vec, mat)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
