"""The cuda backend: the reference op set as Numba CUDA kernels on CuPy memory.

Dense blocks go to cuBLAS (``cuda_device.gemm``); every other op launches a kernel
from ``gpuback.kernels``, compiled once per process for each dtype it meets, with
the explicit signature that kernel module declares. Launch configuration lives here,
device code in ``gpuback.kernels``, array handling in ``cuda_device``.

Sparse backward (5.56): by default the scatter-add kernel, one thread per (edge,
sample) adding ``w_kj delta_k`` into the source unit's accumulator with an atomic
add. It reads the edge list in its natural order, so the delta and weight loads of
a warp are coalesced, and its work does not depend on how unevenly fan-out is
spread over the source units; the price is that floating-point additions land in
no fixed order, so the last bits may vary between runs. ``deterministic=True``
selects the CSC gather instead: one thread per (source unit, sample) summing its
out-edges in a fixed order, bitwise reproducible, with no atomics.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..plan import SparseIndex
from . import cuda_device
from .status import BackendStatus

name = "cuda"


def status() -> BackendStatus:
    """Usable with a GPU and CuPy, or under the Numba simulator; otherwise says what is missing."""
    return cuda_device.status()


# --- kernels and launch configuration ------------------------------------------------------

@functools.cache
def _kernel(family: str, kernel: str, dtype: str) -> Any:
    """The compiled kernel ``gpuback.kernels.<family>.<kernel>`` for ``dtype`` (cached)."""
    import importlib

    from numba import cuda

    module = importlib.import_module(f"gpuback.kernels.{family}")
    pyfunc, signatures = module.KERNELS[kernel]
    return cuda.jit(signatures[dtype])(pyfunc)


@functools.cache
def _block_2d() -> tuple[int, int]:
    """Threads per block for (sample, unit) grids: a warp spans 32 consecutive samples.

    Under the simulator every thread costs about 70 us, so blocks shrink to 8 x 4 there.
    """
    return (8, 4) if cuda_device.status().simulated else (32, 8)


def _launch_2d(kernel: Any, n_cols: int, n_rows: int, *args: Any) -> None:
    bx, by = _block_2d()
    grid = ((n_cols + bx - 1) // bx, (n_rows + by - 1) // by)
    kernel[grid, (bx, by)](*args)


def _launch_1d(kernel: Any, n_threads: int, *args: Any) -> None:
    """One thread per sample (loss, softmax) or per element (optimiser updates)."""
    threads = _block_2d()[0] * _block_2d()[1]
    kernel[(n_threads + threads - 1) // threads, threads](*args)


def _launch_rows(kernel: Any, n_rows: int, *args: Any) -> None:
    from ..kernels.reduce import LANES, ROWS

    kernel[(n_rows + ROWS - 1) // ROWS, (LANES, ROWS)](*args)


def _dtype(array: Any) -> str:
    return array.dtype.name


# --- buffers ---------------------------------------------------------------------------

def zeros(shape: tuple[int, ...], dtype: np.dtype) -> Any:
    return cuda_device.xp().zeros(shape, dtype=dtype)


def from_host(array: np.ndarray, dtype: np.dtype | type) -> Any:
    """A device copy of a host (or device) array, C-contiguous, in ``dtype``."""
    return cuda_device.from_host(array, dtype)


def to_host(array: Any) -> np.ndarray:
    """A host NumPy copy of a device array."""
    return cuda_device.to_numpy(array)


def copy_into(dst: Any, src: Any) -> None:
    """``dst[...] = src`` with casting; ``src`` may be a host or a device array."""
    cuda_device.copy_into(dst, src)


def all_finite(array: Any) -> bool:
    """True when no entry is NaN or infinite (one reduction, one sync)."""
    return bool(cuda_device.xp().isfinite(array).all())


@dataclass(frozen=True)
class DeviceIndex:
    """A sparse block's index arrays on the device, and which backward it uses."""

    src: Any
    dst: Any
    dst_ptr: Any
    dst_edges: Any
    src_ptr: Any
    src_edges: Any
    deterministic: bool


def prepare_index(index: SparseIndex, deterministic: bool) -> DeviceIndex:
    """Copy a sparse block's index arrays to the device, once, when the network is built."""
    def put(a):
        return from_host(a, np.int64)

    return DeviceIndex(put(index.src), put(index.dst), put(index.dst_ptr), put(index.dst_edges),
                       put(index.src_ptr), put(index.src_edges), bool(deterministic))


# --- forward (5.48, 5.49) -----------------------------------------------------------------

def dense_forward(w: Any, z_src: Any, a_dst: Any, accumulate: bool) -> None:
    """a_dst (+)= W @ z_src (5.48), on cuBLAS."""
    cuda_device.gemm(w, z_src, a_dst, accumulate)


def sparse_forward(w: Any, index: DeviceIndex, z_src: Any, a_dst: Any,
                   accumulate: bool) -> None:
    """a_dst[k] (+)= sum over edges e into k of w_e z_src[src_e] (5.48): the CSR gather."""
    _launch_2d(_kernel("sparse", "gather", _dtype(a_dst)), a_dst.shape[1], a_dst.shape[0], w,
               index.dst_ptr, index.dst_edges, index.src, z_src, a_dst, accumulate)


def bias_activation(activation: str, b: Any, a: Any, z: Any) -> None:
    """a += b (5.48), then z = h(a) (5.49), in one kernel."""
    from ..kernels.activation import CODES

    if activation == "softmax":
        _launch_1d(_kernel("activation", "softmax_bias", _dtype(a)), a.shape[1], a, b, z)
    else:
        _launch_2d(_kernel("activation", "bias_activation", _dtype(a)), a.shape[1], a.shape[0],
                   a, b, z, CODES[activation])


# --- output deltas and the loss (5.54) -----------------------------------------------------

def loss_and_output_delta(loss: str, activation: str, a: Any, y: Any, t: Any, delta: Any,
                          losses: Any) -> float:
    """Mean loss over the batch and the output deltas (5.54), from one fused kernel.

    ``losses`` (batch,) receives E_n per sample; their sum is taken on the host in
    float64 (the loss is returned to the host anyway).
    """
    from ..kernels.scalar import loss_kernel

    kernel, args = loss_kernel(loss, activation, a, y, t, delta, losses)
    _launch_1d(_kernel("loss", kernel, _dtype(a)), a.shape[1], *args)
    return float(np.sum(to_host(losses), dtype=np.float64)) / a.shape[1]


# --- backward: hidden deltas (5.56) and gradients (5.53) -----------------------------------

def dense_backward(w: Any, delta_dst: Any, acc_src: Any, accumulate: bool) -> None:
    """acc_src (+)= W.T @ delta_dst (5.56), on cuBLAS."""
    cuda_device.gemm(w.T, delta_dst, acc_src, accumulate)


def sparse_backward(w: Any, index: DeviceIndex, delta_dst: Any, acc_src: Any,
                    accumulate: bool) -> None:
    """acc_src[src_e] += w_e delta_dst[dst_e] over every edge (5.56): the scatter-add
    (atomic), or with ``deterministic`` the CSC gather."""
    dtype, n = _dtype(acc_src), acc_src.shape[1]
    if index.deterministic:
        _launch_2d(_kernel("sparse", "gather", dtype), n, acc_src.shape[0], w,
                   index.src_ptr, index.src_edges, index.dst, delta_dst, acc_src, accumulate)
        return
    if not accumulate:
        acc_src.fill(0)
    _launch_2d(_kernel("sparse", "scatter_add", dtype), n, index.src.shape[0], w, index.src,
               index.dst, delta_dst, acc_src)


def activation_delta(activation: str, a: Any, z: Any, acc: Any) -> None:
    """acc *= h'(a): the accumulated sum becomes delta_j (5.56)."""
    from ..kernels.activation import CODES

    _launch_2d(_kernel("activation", "activation_delta", _dtype(a)), a.shape[1], a.shape[0],
               a, z, acc, CODES[activation])


def dense_weight_grad(delta_dst: Any, z_src: Any, dw: Any) -> None:
    """dW = Delta @ Z.T (5.53), on cuBLAS."""
    cuda_device.gemm(delta_dst, z_src.T, dw, False)


def sparse_weight_grad(index: DeviceIndex, delta_dst: Any, z_src: Any, dw: Any) -> None:
    """dw_e = sum over the batch of delta_dst[dst_e] z_src[src_e] (5.53), one block row per
    edge."""
    _launch_rows(_kernel("sparse", "edge_grad", _dtype(dw)), dw.shape[0], index.src, index.dst,
                 delta_dst, z_src, dw)


def bias_grad(delta: Any, db: Any) -> None:
    """dE/db_k = sum over the batch of delta_k."""
    _launch_rows(_kernel("reduce", "row_sum", _dtype(db)), db.shape[0], delta, db)


# --- optimiser updates ----------------------------------------------------------------------

def sgd_update(param: Any, grad: Any, velocity: Any, lr: float, momentum: float,
               nesterov: bool, weight_decay: float) -> None:
    """SGD with momentum / Nesterov and L2 decay, one fused kernel over the flat buffer."""
    flat = [x.reshape(-1) for x in (param, grad, velocity)]
    _launch_1d(_kernel("optimizer", "sgd", _dtype(param)), param.size, *flat, float(lr),
                 float(momentum), bool(nesterov), float(weight_decay))


def adam_update(param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float,
                eps: float, weight_decay: float, decoupled: bool, step: int) -> None:
    """Adam / AdamW, one fused kernel over the flat buffer; bias corrections from the host."""
    flat = [x.reshape(-1) for x in (param, grad, m, v)]
    _launch_1d(_kernel("optimizer", "adam", _dtype(param)), param.size, *flat, float(lr),
                 float(beta1), float(beta2), float(eps), float(weight_decay), bool(decoupled),
                 1.0 - beta1**step, 1.0 - beta2**step)
