"""The cpu backend: the NumPy reference's op set, with Numba kernels for sparse blocks.

Dense blocks are BLAS products on contiguous feature-major buffers (as in the
reference). Sparse blocks, where the reference's ``np.add.at`` is slow, run as Numba
``parallel=True`` kernels (``cpu_kernels``): the forward CSR gather, the backward
CSC gather (race-free, deterministic) and per-edge weight gradients. Needs Numba
(``pip install numba``, or any extra that brings it).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..plan import SparseIndex
from . import numpy_backend
from .numpy_backend import (  # noqa: F401  (re-exported: the rest of the op set)
    activation_delta,
    adam_update,
    all_finite,
    bias_activation,
    bias_grad,
    copy_into,
    dense_backward,
    dense_forward,
    dense_weight_grad,
    from_host,
    loss_and_output_delta,
    sgd_update,
    to_host,
    zeros,
)
from .status import BackendStatus

name = "cpu"


@functools.cache
def status() -> BackendStatus:
    try:
        import numba
    except ImportError:
        return BackendStatus(False, False, "Numba is not installed: pip install numba "
                                           "(or use backend='numpy')")
    return BackendStatus(True, False, f"Numba {numba.__version__} parallel kernels on the CPU")


def _kernels() -> Any:
    from . import cpu_kernels

    return cpu_kernels


def prepare_index(index: SparseIndex, deterministic: bool) -> SparseIndex:
    """The host index arrays; the CSC gather backward is always deterministic."""
    return numpy_backend.prepare_index(index, deterministic)


def sparse_forward(w: np.ndarray, index: SparseIndex, z_src: np.ndarray, a_dst: np.ndarray,
                   accumulate: bool) -> None:
    """a_dst[k] (+)= sum over edges e into k of w_e z_src[src_e] (5.48): CSR gather."""
    _kernels().gather(w, index.dst_ptr, index.dst_edges, index.src, z_src, a_dst, accumulate)


def sparse_backward(w: np.ndarray, index: SparseIndex, delta_dst: np.ndarray,
                    acc_src: np.ndarray, accumulate: bool) -> None:
    """acc_src[j] (+)= sum over edges e out of j of w_e delta_dst[dst_e] (5.56): CSC gather."""
    _kernels().gather(w, index.src_ptr, index.src_edges, index.dst, delta_dst, acc_src,
                      accumulate)


def sparse_weight_grad(index: SparseIndex, delta_dst: np.ndarray, z_src: np.ndarray,
                       dw: np.ndarray) -> None:
    """dE/dw_e = sum over the batch of delta_dst[dst_e] z_src[src_e] (5.53), per edge."""
    _kernels().edge_grad(index.src, index.dst, delta_dst, z_src, dw)
