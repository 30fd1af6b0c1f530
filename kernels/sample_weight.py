"""The CUDA kernel of per-sample loss weights (``gpuback.training.data.SampleWeights``).

* ``weight_samples``: over the output deltas ``delta`` (K, B), flat and C-contiguous,
  ``delta[k, n] *= w[n]``, and over the per-sample losses ``losses[n] *= w[n]``: one
  grid-stride pass, element i of the flat deltas is sample ``i % B``; the first B threads of
  the pass also weight the losses. Everything in the deltas' float type.
"""

from __future__ import annotations

from .device import grid_1d
from .signatures import kernel_table


def build(real):
    """The sample-weight kernel for arrays of ``real``."""

    def weight_samples(delta, losses, weights):
        """delta[i] *= weights[i % B] over the flat (K * B) deltas; losses[n] *= weights[n]."""
        start, stride = grid_1d()
        batch = weights.shape[0]
        i = start
        while i < delta.shape[0]:
            delta[i] = delta[i] * weights[i % batch]
            i += stride
        n = start
        while n < batch:
            losses[n] = losses[n] * weights[n]
            n += stride

    return {"weight_samples": weight_samples}


def arguments(real, mat, vec):
    return {"weight_samples": (vec, vec, vec)}


# name -> {dtype: (kernel function, explicit signature)}
KERNELS = kernel_table(build, arguments)
