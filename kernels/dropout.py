"""Dropout's kernels: ``out = x * m / (1 - p)``, alone and fused with the activation, the
mask m drawn from nothing but (seed, step, group, unit, sample), so every backend draws the
same mask bitwise, the backward pass draws it again instead of storing it, and a resumed run draws
what the unbroken one would have.

The draw is ``gpuback.kernels.mask_hash``'s (its ``mix32``, compiled here as a device
function): ``dropout_key(seed, step, group)`` folds the first three into one 32-bit key on
the host; the kernel folds in the unit and the sample, ``h = mix32(sample ^ mix32(unit ^
key))``, and keeps the unit when ``h >= round(p * 2^32)``.

``apply_dropout`` is a 2-D grid-stride loop over a feature-major ``(units, batch)`` pair
(``device.grid_2d``); ``out`` may be ``x`` itself. The training passes use the fused forms,
one kernel each where the activation already makes a pass: ``bias_activation_dropout``
(the bias, h(a) kept for the derivative, and the masked z, as ``activation.bias_activation``
with the mask) and ``dropout_activation_delta`` (the mask and h'(a) applied to the
accumulator with the bias gradient, as ``activation.activation_delta``, float64 partials).
"""

from __future__ import annotations

from numba import cuda, float64, int32, uint64

from .device import block_sum, device, grid_2d, inline
from .mask_hash import mix32
from .shapes import REDUCE_CAPACITY
from .signatures import kernel_table

mix_on_device = inline(mix32)


def build(real):
    """The dropout kernels computing in ``real``."""
    zero = real(0.0)

    def apply_dropout(x, out, key, first_sample, cut, scale):
        """out[k, n] = x[k, n] * scale where mix32((first_sample + n) ^ mix32(k ^ key)) >=
        cut, else 0."""
        row, row_stride, sample, sample_stride = grid_2d()
        k = row
        while k < x.shape[0]:
            unit_key = mix_on_device(uint64(k) ^ key)
            n = sample
            while n < x.shape[1]:
                h = mix_on_device((first_sample + uint64(n)) ^ unit_key)
                out[k, n] = x[k, n] * scale if h >= cut else zero
                n += sample_stride
            k += row_stride

    dev = device(real)
    activate = dev.activate
    derivative = dev.derivative

    def bias_activation_dropout(a, b, h, z, code, key, first_sample, cut, scale):
        """a[k, n] += b[k]; h[k, n] = h(a[k, n]); z[k, n] = h[k, n] * scale if kept, else
        0: the bias, the activation (5.48, 5.49) and the mask, fused."""
        row, row_stride, sample, sample_stride = grid_2d()
        k = row
        while k < a.shape[0]:
            bk = b[k]
            unit_key = mix_on_device(uint64(k) ^ key)
            n = sample
            while n < a.shape[1]:
                value = a[k, n] + bk
                a[k, n] = value
                out = activate(code, value)
                h[k, n] = out
                kept = mix_on_device((first_sample + uint64(n)) ^ unit_key) >= cut
                z[k, n] = out * scale if kept else zero
                n += sample_stride
            k += row_stride

    def dropout_activation_delta(a, h, acc, db, code, key, first_sample, cut, scale):
        """acc[j, n] *= m / (1 - p) * h'(a[j, n]) in place (5.56 through the mask), db[j] =
        the sum of the new row over the batch; as ``activation.activation_delta``."""
        lane = cuda.threadIdx.x
        lanes = cuda.blockDim.x
        base = cuda.threadIdx.y * lanes
        partial = cuda.shared.array(REDUCE_CAPACITY, float64)
        first = cuda.blockIdx.x * cuda.blockDim.y
        while first < a.shape[0]:
            j = first + cuda.threadIdx.y
            total = float64(0.0)
            if j < a.shape[0]:
                unit_key = mix_on_device(uint64(j) ^ key)
                n = lane
                while n < a.shape[1]:
                    kept = mix_on_device((first_sample + uint64(n)) ^ unit_key) >= cut
                    masked = acc[j, n] * scale if kept else zero
                    value = masked * derivative(code, a[j, n], h[j, n])
                    acc[j, n] = value
                    total += float64(value)
                    n += lanes
            partial[base + lane] = total
            block_sum(partial, base, lane, lanes)
            if lane == 0 and j < a.shape[0]:
                db[j] = partial[base]
            first += cuda.gridDim.x * cuda.blockDim.y

    return {"apply_dropout": apply_dropout, "bias_activation_dropout": bias_activation_dropout,
            "dropout_activation_delta": dropout_activation_delta}


def arguments(real, mat, vec):
    mask = (uint64, uint64, uint64, real)  # key, first sample, cut, scale
    return {"apply_dropout": (mat, mat, *mask),
            "bias_activation_dropout": (mat, vec, mat, mat, int32, *mask),
            "dropout_activation_delta": (mat, mat, mat, vec, int32, *mask)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
