"""Numba CPU kernels of today's MLP pieces for the cpu backend: layer normalisation (forward
and backward) and dropout's masks, each over one range as ``cpu_threads`` hands them out.

On the feature-major ``(units, batch)`` buffers a sample is a column, so the per-sample
statistics of layer norm run over a range of *columns*: the units are the outer loop and the
range's samples the inner, contiguous one (vectorised), each sample's sums kept in a float64
accumulator of its own (as the reference takes them). What sums over the batch (the gain and
bias gradients) runs over a range of *rows*. Dropout's kernel draws the masks with the very
hash of the CUDA kernel and the reference (``gpuback.kernels.mask_hash``): the same masks, bit
for bit, and the same products.
"""

from __future__ import annotations

import numpy as np

from ...kernels.mask_hash import mix32
from .kernel_cache import cached, inlined

Array = np.ndarray
kernel = cached(__file__, nogil=True)
mix = inlined(mix32)


@kernel
def layer_norm_columns(lo: int, hi: int, b: Array, gain: Array, a: Array, xhat: Array,
                       rstd: Array, u: Array, eps: float) -> None:
    """For samples lo..hi: a += b; mean and rstd = 1 / sqrt(var + eps) over the units (two
    passes, float64); xhat = (a - mean) * rstd, u = gain * xhat."""
    units, width = a.shape[0], hi - lo
    total = np.zeros(width)
    for k in range(units):
        bk = b[k]
        for n in range(lo, hi):
            value = a[k, n] + bk
            a[k, n] = value
            total[n - lo] += value
    mean = total / units
    squares = np.zeros(width)
    for k in range(units):
        for n in range(lo, hi):
            centred = a[k, n] - mean[n - lo]
            squares[n - lo] += centred * centred
    r = 1.0 / np.sqrt(squares / units + eps)
    for n in range(lo, hi):
        rstd[n] = r[n - lo]
    for k in range(units):
        gk = gain[k]
        for n in range(lo, hi):
            x = (a[k, n] - mean[n - lo]) * r[n - lo]
            xhat[k, n] = x
            u[k, n] = gk * x


@kernel
def gain_grad_rows(lo: int, hi: int, delta: Array, xhat: Array, dgain: Array) -> None:
    """dgain[k] = sum over the batch of delta[k, n] * xhat[k, n] (delta: dE/du), float64."""
    for k in range(lo, hi):
        total = 0.0
        for n in range(delta.shape[1]):
            total += float(delta[k, n]) * float(xhat[k, n])
        dgain[k] = total


@kernel
def layer_norm_moments_columns(lo: int, hi: int, gain: Array, delta: Array, xhat: Array,
                               mean: Array, mean_moment: Array) -> None:
    """For samples lo..hi, with g = gain * dE/du: the means over the units of g and of
    g * xhat (float64)."""
    units = delta.shape[0]
    for n in range(lo, hi):
        mean[n] = 0.0
        mean_moment[n] = 0.0
    for k in range(units):
        gk = float(gain[k])
        for n in range(lo, hi):
            g = gk * delta[k, n]
            mean[n] += g
            mean_moment[n] += g * xhat[k, n]
    for n in range(lo, hi):
        mean[n] /= units
        mean_moment[n] /= units


@kernel
def layer_norm_backward_rows(lo: int, hi: int, gain: Array, xhat: Array, rstd: Array,
                             delta: Array, mean: Array, mean_moment: Array, db: Array) -> None:
    """For units lo..hi: dE/du -> dE/da = rstd * (g - mean(g) - xhat * mean(g xhat)) in
    place, and db = its sum over the batch (float64)."""
    for k in range(lo, hi):
        gk = float(gain[k])
        total = 0.0
        for n in range(delta.shape[1]):
            value = float(rstd[n]) * (gk * delta[k, n] - mean[n] - xhat[k, n] * mean_moment[n])
            delta[k, n] = value
            total += value
        db[k] = total


@kernel
def dropout_rows(lo: int, hi: int, x: Array, out: Array, key: np.uint64, first: np.uint64,
                 cut: np.uint64, scale: np.floating, zero: np.floating) -> None:
    """For units lo..hi: out[k, n] = x[k, n] * scale where mix32((first + n) ^ mix32(k ^
    key)) >= cut, else 0 (``gpuback.kernels.mask_hash``)."""
    for k in range(lo, hi):
        unit_key = mix(np.uint64(k) ^ key)
        for n in range(x.shape[1]):
            h = mix((first + np.uint64(n)) ^ unit_key)
            out[k, n] = x[k, n] * scale if h >= cut else zero
