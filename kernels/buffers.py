"""Buffer kernels: zeroing a buffer, and gathering a mini-batch from data on the device.

``fill_zero`` runs over a flattened (C-contiguous) buffer of any shape: float activations and
gradients, float64 totals, int64 status pairs. ``take_batch`` reads a batch-major data set
``(samples, features)`` through the epoch's sample order into a feature-major ``(features, b)``
batch buffer; ``take_labels`` does the same for int64 class labels.
"""

from __future__ import annotations

from numba import int64

from .device import grid_1d, grid_2d
from .signatures import DTYPES, INDEX, kernel_table

FILL_DTYPES = {**DTYPES, "int64": int64}


def build(real):
    """The buffer kernels for arrays of ``real`` (a float type, or int64)."""
    zero = real(0)

    def fill_zero(x):
        """x[i] = 0 for every element of a flat buffer."""
        start, stride = grid_1d()
        i = start
        while i < x.shape[0]:
            x[i] = zero
            i += stride

    def take_batch(source, order, start, out):
        """out[f, i] = source[order[start + i], f]: threads x over the batch, y over features."""
        row, row_stride, sample, sample_stride = grid_2d()
        f = row
        while f < out.shape[0]:
            i = sample
            while i < out.shape[1]:
                out[f, i] = source[order[start + i], f]
                i += sample_stride
            f += row_stride

    def take_labels(source, order, start, out):
        """out[i] = source[order[start + i]] (class labels)."""
        first, stride = grid_1d()
        i = first
        while i < out.shape[0]:
            out[i] = source[order[start + i]]
            i += stride

    return {"fill_zero": fill_zero, "take_batch": take_batch, "take_labels": take_labels}


def _fill_arguments(real, mat, vec):
    return {"fill_zero": (vec,)}


def _take_arguments(real, mat, vec):
    return {"take_batch": (mat, INDEX, int64, mat)}


def _label_arguments(real, mat, vec):
    return {"take_labels": (vec, INDEX, int64, vec)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = {**kernel_table(build, _fill_arguments, FILL_DTYPES),
           **kernel_table(build, _take_arguments),
           **kernel_table(build, _label_arguments, {"int64": int64})}
