"""The cpu backend: the reference op set as Numba kernels and BLAS, shared over the cores.

Dense blocks are BLAS products on contiguous feature-major buffers, a large one split
into one block of rows per core (``cpu_products``). Everything else is a Numba
kernel (``cpu_kernels``) that mirrors the CUDA kernel of the same op: the sparse
forward gathers over a CSR-by-destination index; a sparse block's backward is one pass
over its CSC-by-source index that both accumulates sum_k w_kj delta_k and writes the
edge gradients (race-free and deterministic, like the cuda backend's
``deterministic=True``); a block out of the input only gets its edge gradients; bias +
activation, h'(a) * acc, the losses and the optimiser steps are each one fused pass.
Each op hands one range of rows, samples or elements to each core (``cpu_threads``).

Needs Numba and threadpoolctl (both installed with gpuback).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...kernels.mask_hash import threshold
from ...kernels.precision import FP32
from ...kernels.scalar import CODES, GRADIENT_NOT_FINITE, NORM_EPS
from .. import numpy_backend
from ..host import allocation_hook as allocation_hook  # the op set's ops of every host backend
from ..host import array_namespace as array_namespace
from ..host import as_array as as_array
from ..host import device as device
from ..host import device_collectives as device_collectives
from ..host import free_memory as free_memory
from ..host import is_device_array as is_device_array
from ..host import pinned_empty as pinned_empty
from ..host import record_event as record_event
from ..host import wait_for as wait_for
from ..loss_dispatch import loss_kernel
from ..numpy_backend import accumulate_metrics as accumulate_metrics  # the reference's ops
from ..numpy_backend import add_into as add_into
from ..numpy_backend import asarray as asarray
from ..numpy_backend import clip_gradient_norm as clip_gradient_norm
from ..numpy_backend import copy_into as copy_into
from ..numpy_backend import fill_zero as fill_zero
from ..numpy_backend import from_host as from_host
from ..numpy_backend import memory_budget as memory_budget
from ..numpy_backend import scale_by_loss_scale as scale_by_loss_scale
from ..numpy_backend import to_host as to_host
from ..numpy_backend import unscale_gradients as unscale_gradients
from ..numpy_backend import update_loss_scale as update_loss_scale
from ..numpy_backend import weight_samples as weight_samples
from ..numpy_backend import zeros as zeros
from ..protocol import SparseIndex
from ..status import BackendStatus
from . import products as cpu_products
from . import threads as cpu_threads

name = "cpu"
# Activations whose forward runs as NumPy's SIMD ufuncs (tanh; exp and log1p; exp) on each
# core's rows: a Numba kernel calls the scalar libm functions, measured 37x (tanh), 7x
# (softplus) and 1.8x (exp, float32 1024 x 256; 2.4x in float64) slower. Every other
# activation, and every derivative, is a Numba kernel (exp's h'(a) is z itself: no exp).
UFUNC_ACTIVATIONS = frozenset({"tanh", "softplus", "exp"})
# An element of an activation (or derivative) that calls exp, tanh or log costs roughly this
# many cheap operations (relu's max, an add); used to decide when to share work over cores.
TRANSCENDENTAL_COST = 16
PIECEWISE_LINEAR = frozenset({"identity", "relu", "leaky_relu"})


@functools.cache
def status() -> BackendStatus:
    try:
        import numba
        import threadpoolctl  # noqa: F401
    except ImportError as error:
        return BackendStatus(False, False, f"{error.name} is not installed: pip install "
                                           f"numba threadpoolctl (or use backend='numpy')")
    return BackendStatus(True, False, f"Numba {numba.__version__} kernels and BLAS on "
                                      f"{cpu_threads.core_count()} CPU cores")


def describe() -> dict[str, Any]:
    """What this backend runs on, for ``gpuback.info()``: cores and BLAS libraries."""
    if not status().usable:
        return {"cores": cpu_threads.core_count()}
    from threadpoolctl import threadpool_info

    return {"cores": cpu_threads.core_count(),
            "blas": [f"{lib['internal_api']} {lib['version']}" for lib in threadpool_info()
                     if lib.get("user_api") == "blas"]}


@functools.cache
def _kernels() -> Any:
    from . import kernels as cpu_kernels

    return cpu_kernels


@functools.cache
def _float32_activations() -> Any:
    from . import float32_activations

    return float32_activations


# Activations with a vectorised float32 kernel (``float32_activations``), by its code there.
FLOAT32_ACTIVATIONS = {"gelu": 0, "silu": 1}


@functools.cache
def _mlp_kernels() -> Any:
    from . import mlp_kernels

    return mlp_kernels


def _by_rows(kernel: Any, array: np.ndarray, *args: Any, cost: float = 1) -> None:
    """``kernel(lo, hi, *args)`` over the rows (units) of ``array``; ``cost``: of one element,
    in cheap operations."""
    cpu_threads.run_split(kernel, array.shape[0], array.shape[1] * cost, *args)


def _by_samples(kernel: Any, array: np.ndarray, *args: Any) -> None:
    """``kernel(lo, hi, *args)`` over the samples (columns) of ``array``."""
    cpu_threads.run_split(kernel, array.shape[1], array.shape[0] * TRANSCENDENTAL_COST, *args)


def _cost(activation: str) -> float:
    return 1 if activation in PIECEWISE_LINEAR else TRANSCENDENTAL_COST


def _numpy_bias_activation(lo: int, hi: int, activation: str, b: np.ndarray, a: np.ndarray,
                           z: np.ndarray) -> None:
    numpy_backend.bias_activation(activation, b[lo:hi], a[lo:hi], z[lo:hi])


@dataclass(frozen=True)
class CpuIndex:
    """A sparse block's index as the cpu kernels walk it: for each order (CSR by destination,
    CSC by source) the row pointers, the edge (weight) numbers in that order and the unit at
    the other end of each, contiguous, in int32 when every number fits (half the bytes to
    stream per edge and pass)."""

    n_edges: int
    csr_ptr: np.ndarray
    csr_edges: np.ndarray
    csr_src: np.ndarray
    csc_ptr: np.ndarray
    csc_edges: np.ndarray
    csc_dst: np.ndarray


def prepare_index(index: SparseIndex, deterministic: bool) -> CpuIndex:
    """The index in both walking orders (``CpuIndex``); every op here is deterministic (the
    backward is a gather)."""
    small = max(index.n_edges, len(index.dst_ptr), len(index.src_ptr)) < np.iinfo(np.int32).max
    kind = np.int32 if small else np.int64
    return CpuIndex(index.n_edges, index.dst_ptr, index.dst_edges.astype(kind),
                    index.src[index.dst_edges].astype(kind), index.src_ptr,
                    index.src_edges.astype(kind), index.dst[index.src_edges].astype(kind))


def take_batch(source: np.ndarray, order: np.ndarray, start: int, out: np.ndarray) -> None:
    """One mini-batch: ``out[:, i] = source[order[start + i], :]`` (feature-major ``out``), or
    ``out[i] = source[order[start + i]]`` for labels; no temporary batch-major copy."""
    if source.ndim == 1 or source.dtype != out.dtype:
        numpy_backend.take_batch(source, order, start, out)  # labels, or a cast on the way
        return
    cpu_threads.run_split(_kernels().take_batch, out.shape[0], out.shape[1], source, order,
                          int(start), out)


def check_finite(array: np.ndarray, status: np.ndarray, step: int) -> None:
    """status = (step, GRADIENT_NOT_FINITE) if any entry is NaN or infinite and ``status[0]``
    is still 0; one vectorised pass, shared over the cores."""
    if status[0] != 0:
        return
    flat = array.reshape(-1)
    cpu_threads.run_split(_kernels().check_finite, flat.size, 1, flat, status, int(step),
                          GRADIENT_NOT_FINITE)


# --- forward (5.48, 5.49) -----------------------------------------------------------------

def dense_forward(w: np.ndarray, z_src: np.ndarray, a_dst: np.ndarray, accumulate: bool) -> None:
    """a_dst (+)= W @ z_src: sum_j w_kj z_j over a dense block (5.48)."""
    cpu_products.multiply(w, z_src, a_dst, accumulate)


def sparse_forward(w: np.ndarray, index: CpuIndex, z_src: np.ndarray, a_dst: np.ndarray,
                   accumulate: bool) -> None:
    """a_dst[k] (+)= sum over edges e into k of w_e z_src[src_e] (5.48): the CSR gather."""
    _gather(w, index.csr_ptr, index.csr_edges, index.csr_src, z_src, a_dst, accumulate)


def _gather(w: np.ndarray, ptr: np.ndarray, edges: np.ndarray, other: np.ndarray,
            x: np.ndarray, out: np.ndarray, accumulate: bool) -> None:
    """``cpu_kernels.gather`` over ranges of rows holding about equal numbers of edges."""
    gather = _kernels().gather
    cpu_threads.run_ranges(lambda lo, hi: gather(lo, hi, w, ptr, edges, other, x, out,
                                                 accumulate),
                           cpu_threads.balanced_bounds(ptr, out.shape[1]))


def bias_activation(activation: str, b: np.ndarray, a: np.ndarray, z: np.ndarray) -> None:
    """a += b (5.48), then z = h(a) (5.49), in one pass (``UFUNC_ACTIVATIONS``: NumPy's)."""
    if activation == "softmax":
        _by_samples(_kernels().softmax_bias, a, b, a, z)
    elif activation in FLOAT32_ACTIVATIONS and a.dtype == np.float32:
        _by_rows(_float32_activations().bias_activation, a, FLOAT32_ACTIVATIONS[activation],
                 b, a, z)
    elif activation in UFUNC_ACTIVATIONS:
        _by_rows(_numpy_bias_activation, a, activation, b, a, z, cost=TRANSCENDENTAL_COST)
    else:
        _by_rows(_kernels().bias_activation(CODES[activation]), a, b, a, z,
                 cost=_cost(activation))


def layer_norm(b: np.ndarray, gain: np.ndarray, a: np.ndarray, xhat: np.ndarray,
               rstd: np.ndarray, u: np.ndarray) -> None:
    """a += b, then per sample xhat, rstd and u = gain * xhat: one pass per core over its
    samples (``mlp_kernels.layer_norm_columns``)."""
    _by_samples(_mlp_kernels().layer_norm_columns, a, b, gain, a, xhat, rstd, u, NORM_EPS)


def layer_norm_backward(gain: np.ndarray, xhat: np.ndarray, rstd: np.ndarray,
                        delta: np.ndarray, dgain: np.ndarray, db: np.ndarray) -> None:
    """dgain by rows, each sample's two means by samples, then dE/da in place with db by
    rows (``mlp_kernels``)."""
    kernels, batch = _mlp_kernels(), delta.shape[1]
    _by_rows(kernels.gain_grad_rows, delta, delta, xhat, dgain)
    mean, mean_moment = np.empty(batch), np.empty(batch)
    _by_samples(kernels.layer_norm_moments_columns, delta, gain, delta, xhat, mean,
                mean_moment)
    _by_rows(kernels.layer_norm_backward_rows, delta, gain, xhat, rstd, delta, mean,
             mean_moment, db)


def dropout(x: np.ndarray, out: np.ndarray, p: float, key: int, first_sample: int) -> None:
    """out = x * m / (1 - p), the masks drawn per unit and sample by the shared hash."""
    scale = x.dtype.type(1.0 / (1.0 - p))
    _by_rows(_mlp_kernels().dropout_rows, x, x, out, np.uint64(key), np.uint64(first_sample),
             threshold(p), scale, x.dtype.type(0.0), cost=TRANSCENDENTAL_COST)


def bias_activation_dropout(activation: str, b: np.ndarray, a: np.ndarray, h: np.ndarray,
                            z: np.ndarray, p: float, key: int, first_sample: int) -> None:
    """``bias_activation`` into h, then ``dropout`` into z: two passes, each over every core
    (both memory-light next to the products)."""
    bias_activation(activation, b, a, h)
    dropout(h, z, p, key, first_sample)


# --- output deltas and the loss (5.54) -----------------------------------------------------

def loss_and_output_delta(loss: str, activation: str, a: np.ndarray, y: np.ndarray,
                          t: np.ndarray, delta: np.ndarray, losses: np.ndarray,
                          correct: np.ndarray) -> None:
    """Per-sample losses, output deltas (5.54) and correct counts, one fused pass per sample."""
    kernel, args = loss_kernel(loss, activation, a, y, t, delta, losses, correct)
    _by_samples(getattr(_kernels(), kernel), a, *args)


# --- backward: hidden deltas (5.56) and gradients (5.53) -----------------------------------

def dense_backward(w: np.ndarray, delta_dst: np.ndarray, acc_src: np.ndarray,
                   accumulate: bool) -> None:
    """acc_src (+)= W.T @ delta_dst: this block's share of sum_k w_kj delta_k (5.56)."""
    cpu_products.multiply(w.T, delta_dst, acc_src, accumulate)


def sparse_backward(w: np.ndarray, index: CpuIndex, delta_dst: np.ndarray,
                    acc_src: np.ndarray, accumulate: bool) -> None:
    """acc_src[j] (+)= sum over edges e out of j of w_e delta_dst[dst_e] (5.56): CSC gather."""
    _gather(w, index.csc_ptr, index.csc_edges, index.csc_dst, delta_dst, acc_src, accumulate)


def sparse_block_backward(w: np.ndarray, index: CpuIndex, delta_dst: np.ndarray,
                          z_src: np.ndarray, dw: np.ndarray, acc_src: np.ndarray | None,
                          accumulate: bool) -> None:
    """dw (5.53) and, unless ``acc_src`` is None, acc_src (+)= this block's share of 5.56, in
    one pass over the edges in CSC order (``cpu_kernels.block_backward``): both read
    delta_dst[dst_e], and a row read once serves both."""
    if acc_src is None:
        sparse_weight_grad(index, delta_dst, z_src, dw)
        return
    kernel, zero = _kernels().block_backward, dw.dtype.type(0)
    ptr = index.csc_ptr
    cpu_threads.run_ranges(lambda lo, hi: kernel(lo, hi, w, ptr, index.csc_edges,
                                                 index.csc_dst, delta_dst, z_src, acc_src, dw,
                                                 accumulate, zero),
                           cpu_threads.balanced_bounds(ptr, 3 * z_src.shape[1]))


def activation_delta(activation: str, a: np.ndarray, z: np.ndarray, acc: np.ndarray,
                     db: np.ndarray) -> None:
    """acc *= h'(a): the accumulated sum_k w_kj delta_k becomes delta_j (5.56), in place; and
    db = its sum over the batch (the bias gradient), in the same pass."""
    if activation in FLOAT32_ACTIVATIONS and a.dtype == np.float32:
        _by_rows(_float32_activations().activation_delta, a, FLOAT32_ACTIVATIONS[activation],
                 a, acc, db)
        return
    _by_rows(_kernels().activation_delta(CODES[activation]), a, a, z, acc, db,
             cost=_cost(activation))


def dropout_activation_delta(activation: str, a: np.ndarray, h: np.ndarray, acc: np.ndarray,
                             db: np.ndarray, p: float, key: int, first_sample: int) -> None:
    """``dropout`` on acc in place, then ``activation_delta``: two passes over the cores."""
    dropout(acc, acc, p, key, first_sample)
    activation_delta(activation, a, h, acc, db)


def dense_weight_grad(delta_dst: np.ndarray, z_src: np.ndarray, dw: np.ndarray) -> None:
    """dE/dw_kj = sum over the batch of delta_k z_j (5.53): dW = Delta @ Z.T."""
    cpu_products.multiply(delta_dst, z_src.T, dw, False)


def sparse_weight_grad(index: CpuIndex, delta_dst: np.ndarray, z_src: np.ndarray,
                       dw: np.ndarray) -> None:
    """dE/dw_e = sum over the batch of delta_dst[dst_e] z_src[src_e] (5.53), per edge, in CSR
    order (each delta row read once for a group of edges)."""
    kernel, zero, ptr = _kernels().edge_grad, dw.dtype.type(0), index.csr_ptr
    cpu_threads.run_ranges(lambda lo, hi: kernel(lo, hi, ptr, index.csr_edges, index.csr_src,
                                                 delta_dst, z_src, dw, zero),
                           cpu_threads.balanced_bounds(ptr, 2 * z_src.shape[1]))


def bias_grad(delta: np.ndarray, db: np.ndarray) -> None:
    """dE/db_k = sum over the batch of delta_k."""
    _by_rows(_kernels().row_sum, delta, delta, db)


# --- optimiser updates (one fused pass per parameter buffer) -------------------------------
# Skipped while ``status[0] != 0`` (a step went non-finite: see ``check_finite``).

def round_to_precision(x: np.ndarray, code: int) -> None:
    """Round every element of the C-contiguous float32 ``x`` in place to the precision of
    ``code`` (``gpuback.kernels.precision``; FP32: unchanged), split over the cores."""
    if code == FP32:
        return
    flat = x.reshape(-1)
    cpu_threads.run_split(_kernels().round_to_precision(int(code)), flat.size, 4, flat)


def sgd_update(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float,
               momentum: float, nesterov: bool, weight_decay: float,
               status: np.ndarray, rounded: np.ndarray, code: int) -> None:
    """SGD with momentum / Nesterov and L2 decay, over the flat buffer; below fp32 the same
    pass writes ``rounded`` (each element rounded to ``code`` once updated)."""
    if status[0] != 0:
        return
    flat = [x.reshape(-1) for x in (param, grad, velocity)]
    scalars = (float(lr), float(momentum), bool(nesterov), float(weight_decay))
    if code == FP32:
        cpu_threads.run_split(_kernels().sgd, param.size, 1, *flat, *scalars)
    else:
        cpu_threads.run_split(_kernels().sgd_rounding(int(code)), param.size, 5, *flat,
                              *scalars, rounded.reshape(-1))


def adam_update(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float,
                beta1: float, beta2: float, eps: float, weight_decay: float, decoupled: bool,
                step: int, status: np.ndarray, rounded: np.ndarray, code: int) -> None:
    """Adam / AdamW over the flat buffer; bias corrections 1 - beta^t computed once;
    ``rounded`` as in ``sgd_update``."""
    if status[0] != 0:
        return
    flat = [x.reshape(-1) for x in (param, grad, m, v)]
    scalars = (float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
               bool(decoupled), 1.0 - beta1**step, 1.0 - beta2**step)
    if code == FP32:
        cpu_threads.run_split(_kernels().adam, param.size, 4, *flat, *scalars)
    else:
        cpu_threads.run_split(_kernels().adam_rounding(int(code)), param.size, 8, *flat,
                              *scalars, rounded.reshape(-1))
