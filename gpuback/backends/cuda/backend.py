"""The cuda backend: the reference op set as Numba CUDA kernels on CuPy memory.

Dense blocks go to cuBLAS (``cuda_device.gemm``); every other op launches a kernel from
``gpuback.kernels``, compiled once per process for each dtype it meets (and cached on disk),
with the explicit signature that kernel module declares. Launch configurations come from
``cuda_launch`` (pure functions of the sizes, legal at any size); every launch goes through
``cuda_device.launch``, on the one stream the network runs on; array handling lives in
``cuda_device``. Nothing here waits for the device: losses, correct counts and the
non-finite status stay on the device until the caller reads them.

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
import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...kernels.mask_hash import threshold as dropout_threshold
from ...kernels.precision import FP32
from ...kernels.scalar import CODES
from ..loss_dispatch import loss_kernel
from ..protocol import SparseIndex
from ..status import BackendStatus
from . import device as cuda_device
from . import launch as cuda_launch
from .device import allocation_hook as allocation_hook  # the op set's ops cuda_device implements
from .device import array_namespace as array_namespace
from .device import as_array as as_array
from .device import describe as describe
from .device import device_collectives as device_collectives
from .device import free_memory as free_memory
from .device import is_device_array as is_device_array
from .device import pinned_empty as pinned_empty
from .device import record_event as record_event
from .device import wait_for as wait_for

name = "cuda"
device = "cuda"  # where this backend's arrays live (PyTorch's device name for it)


def status() -> BackendStatus:
    """Usable with a GPU and CuPy, or under the Numba simulator; otherwise says what is missing."""
    return cuda_device.status()


# --- kernels and their launches ------------------------------------------------------------

@functools.cache
def _kernel(family: str, kernel: str, dtype: str) -> Any:
    """The compiled kernel ``gpuback.kernels.<family>.<kernel>`` for ``dtype`` (cached).

    ``cache=True``: numba-cuda keeps the compiled kernel on disk (``__pycache__`` beside the
    kernel module, else the user's Numba cache directory, or ``NUMBA_CACHE_DIR``), one file
    per compute capability, so a new process loads it instead of compiling. Its index key
    is the kernel function's bytecode and its closure (pickled: the device functions it
    calls and the float type, so an edit of ``scalar.py`` reaches the key through them),
    with the kernel module file's time stamp. Device functions reached only through module
    globals (``device.block_sum``, ``grid_2d``) are not in the key: after editing
    ``kernels/device.py`` in a checkout, touch the kernel modules or clear the cache.
    The simulator ignores ``cache``.
    """
    from numba import cuda

    module = importlib.import_module(f"gpuback.kernels.{family}")
    pyfunc, signature = module.KERNELS[kernel][dtype]
    return cuda.jit(signature, cache=True)(pyfunc)


def _simulated() -> bool:
    """Whether kernels run in the Numba simulator (smaller blocks; see ``cuda_launch``)."""
    return cuda_device.status().simulated


def _launch(family: str, kernel: str, dtype: str, config: cuda_launch.Launch,
            *args: Any) -> None:
    grid, block = config
    cuda_device.launch(_kernel(family, kernel, dtype), grid, block, *args)


def _dtype(array: Any) -> str:
    return str(array.dtype.name)


def _real(array: Any, value: float) -> Any:
    """``value`` as a scalar of ``array``'s float type (the kernels' float parameters)."""
    return np.dtype(array.dtype).type(value)


def _flat(array: Any) -> Any:
    """A 1-D view of a C-contiguous backend array."""
    return array.reshape(-1)


# --- buffers ---------------------------------------------------------------------------

def zeros(shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """A new zero-filled device array (an allocation: for workspaces, not for steps)."""
    return cuda_device.zeros(shape, dtype)


def from_host(array: np.ndarray, dtype: np.dtype | type) -> Any:
    """A device copy of a host (or device) array, C-contiguous, in ``dtype``."""
    return cuda_device.from_host(array, dtype)


def asarray(array: Any, dtype: np.dtype | type) -> Any:
    """``array`` as a C-contiguous device array in ``dtype``: itself when it already is one
    (a user's CuPy data is used in place), else a copy."""
    return cuda_device.asarray(array, dtype)


def memory_budget() -> float:
    """Bytes of device memory a data set may take before training streams it instead."""
    return cuda_device.memory_budget()


def to_host(array: Any) -> np.ndarray:
    """A host NumPy copy of a device array."""
    return cuda_device.to_numpy(array)


def copy_into(dst: Any, src: Any) -> None:
    """``dst[...] = src`` with casting; ``src`` may be a host or a device array."""
    cuda_device.copy_into(dst, src)


def fill_zero(array: Any) -> None:
    """Set every entry of a (C-contiguous) device array to zero, in place: one kernel."""
    flat = _flat(array)
    _launch("buffers", "fill_zero", _dtype(array), cuda_launch.elementwise(flat.size,
                                                                          _simulated()), flat)


def take_batch(source: Any, order: Any, start: int, out: Any) -> None:
    """One mini-batch gathered on the device: ``out[:, i] = source[order[start + i], :]``
    (feature-major out), or ``out[i] = source[order[start + i]]`` for int64 labels.

    ``source`` is in ``out``'s dtype (the network uploads its data in its own dtype)."""
    if source.dtype != out.dtype:
        raise TypeError(f"take_batch: source dtype {source.dtype} must match out dtype "
                        f"{out.dtype} on the cuda backend (upload the data in that dtype)")
    if source.ndim == 1:
        _launch("buffers", "take_labels", _dtype(out),
                cuda_launch.elementwise(out.shape[0], _simulated()), source, order,
                np.int64(start), out)
    else:
        _launch("buffers", "take_batch", _dtype(out),
                cuda_launch.rows_by_samples(out.shape[0], out.shape[1], _simulated()),
                source, order, np.int64(start), out)


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
    def put(a: np.ndarray) -> Any:
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
    _launch("sparse", "gather", _dtype(a_dst),
            cuda_launch.rows_by_samples(a_dst.shape[0], a_dst.shape[1], _simulated()),
            w, index.dst_ptr, index.dst_edges, index.src, z_src, a_dst, bool(accumulate))


def add_into(src: Any, dst: Any, accumulate: bool) -> None:
    """dst (+)= src: an identity connection, forward (5.48) or backward (5.56), W = I."""
    _launch("identity", "add_into", _dtype(dst),
            cuda_launch.rows_by_samples(dst.shape[0], dst.shape[1], _simulated()),
            src, dst, bool(accumulate))


def bias_activation(activation: str, b: Any, a: Any, z: Any) -> None:
    """a += b (5.48), then z = h(a) (5.49), in one kernel (softmax: a block per sample)."""
    if activation == "softmax":
        _launch("activation", "softmax_bias", _dtype(a),
                cuda_launch.per_sample(a.shape[1], a.shape[0], _simulated()), a, b, z)
    else:
        _launch("activation", "bias_activation", _dtype(a),
                cuda_launch.rows_by_samples(a.shape[0], a.shape[1], _simulated()),
                a, b, z, np.int32(CODES[activation]))


def layer_norm(b: Any, gain: Any, a: Any, xhat: Any, rstd: Any, u: Any) -> None:
    """a += b, then xhat, rstd and u = gain * xhat per sample over the units: one kernel,
    a block per sample."""
    _launch("layer_norm", "normalise", _dtype(a),
            cuda_launch.per_sample(a.shape[1], a.shape[0], _simulated()),
            a, b, gain, xhat, rstd, u)


def dropout(x: Any, out: Any, p: float, key: int, first_sample: int) -> None:
    """out = x * m / (1 - p), the mask drawn in the kernel from (key, unit, sample): one
    kernel, nothing stored."""
    _launch("dropout", "apply_dropout", _dtype(x),
            cuda_launch.rows_by_samples(x.shape[0], x.shape[1], _simulated()),
            x, out, *_mask_arguments(x, p, key, first_sample))


def _mask_arguments(x: Any, p: float, key: int, first_sample: int) -> tuple[Any, ...]:
    """The mask's kernel arguments: key, first sample, the cut and the scale 1 / (1 - p)."""
    return (np.uint64(key), np.uint64(first_sample), dropout_threshold(p),
            _real(x, 1.0 / (1.0 - p)))


def bias_activation_dropout(activation: str, b: Any, a: Any, h: Any, z: Any, p: float,
                            key: int, first_sample: int) -> None:
    """a += b, h = h(a) and z = h * m / (1 - p) in one kernel (elementwise activations)."""
    _launch("dropout", "bias_activation_dropout", _dtype(a),
            cuda_launch.rows_by_samples(a.shape[0], a.shape[1], _simulated()),
            a, b, h, z, np.int32(CODES[activation]), *_mask_arguments(a, p, key, first_sample))


# --- output deltas, the loss (5.54) and per-step metrics ------------------------------------

def loss_and_output_delta(loss: str, activation: str, a: Any, y: Any, t: Any, delta: Any,
                          losses: Any, correct: Any) -> None:
    """Per-sample losses, output deltas (5.54) and correct counts, from one fused kernel (a
    block per sample); nothing is read back."""
    kernel, args = loss_kernel(loss, activation, a, y, t, delta, losses, correct)
    *arrays, inv_batch = args
    if kernel == "sum_of_squares":
        arrays[-1] = np.int32(arrays[-1])  # the output activation's code
    _launch("loss", kernel, _dtype(a), cuda_launch.per_sample(a.shape[1], a.shape[0],
                                                             _simulated()),
            *arrays, _real(a, inv_batch))


def weight_samples(delta: Any, losses: Any, weights: Any) -> None:
    """``delta[:, n] *= weights[n]``, ``losses[n] *= weights[n]``: one elementwise kernel."""
    flat = _flat(delta)
    _launch("sample_weight", "weight_samples", _dtype(delta),
            cuda_launch.elementwise(flat.size, _simulated()), flat, losses, weights)


def accumulate_metrics(losses: Any, correct: Any, totals: Any, status: Any, step: int) -> None:
    """totals (float64) += (sum of losses, sum of correct), in a fixed order (one block); the
    first non-finite loss sum recorded in ``status``."""
    _launch("metrics", "accumulate_metrics", _dtype(losses),
            cuda_launch.single_block(_simulated()), losses, correct, totals, status,
            np.int64(step))


def check_finite(array: Any, status: Any, step: int) -> None:
    """status = (step, GRADIENT_NOT_FINITE) if any entry is NaN or infinite and none was
    recorded before."""
    flat = _flat(array)
    _launch("metrics", "check_finite", _dtype(array),
            cuda_launch.elementwise(flat.size, _simulated()), flat, status, np.int64(step))


# --- backward: hidden deltas (5.56) and gradients (5.53) -----------------------------------

def dense_backward(w: Any, delta_dst: Any, acc_src: Any, accumulate: bool) -> None:
    """acc_src (+)= W.T @ delta_dst (5.56), on cuBLAS."""
    cuda_device.gemm(w.T, delta_dst, acc_src, accumulate)


def sparse_backward(w: Any, index: DeviceIndex, delta_dst: Any, acc_src: Any,
                    accumulate: bool) -> None:
    """acc_src[src_e] += w_e delta_dst[dst_e] over every edge (5.56): the scatter-add
    (atomic), or with ``deterministic`` the CSC gather."""
    dtype, batch = _dtype(acc_src), acc_src.shape[1]
    if index.deterministic:
        _launch("sparse", "gather", dtype,
                cuda_launch.rows_by_samples(acc_src.shape[0], batch, _simulated()), w,
                index.src_ptr, index.src_edges, index.dst, delta_dst, acc_src, bool(accumulate))
        return
    if not accumulate:
        fill_zero(acc_src)
    _launch("sparse", "scatter_add", dtype,
            cuda_launch.rows_by_samples(index.src.shape[0], batch, _simulated()),
            w, index.src, index.dst, delta_dst, acc_src)


def activation_delta(activation: str, a: Any, z: Any, acc: Any, db: Any) -> None:
    """acc *= h'(a): the accumulated sum becomes delta_j (5.56); and db = the bias gradient,
    the sum of the new acc over the batch: one kernel."""
    _launch("activation", "activation_delta", _dtype(a),
            cuda_launch.row_reduction(a.shape[0], a.shape[1], _simulated()),
            a, z, acc, db, np.int32(CODES[activation]))


def layer_norm_backward(gain: Any, xhat: Any, rstd: Any, delta: Any, dgain: Any,
                        db: Any) -> None:
    """dgain from dE/du (a row reduction), then dE/du -> dE/da in place (a block per
    sample), then db = its sum over the batch: three kernels."""
    dtype, units, batch = _dtype(delta), delta.shape[0], delta.shape[1]
    _launch("layer_norm", "gain_grad", dtype,
            cuda_launch.row_reduction(units, batch, _simulated()), delta, xhat, dgain)
    _launch("layer_norm", "normalise_backward", dtype,
            cuda_launch.per_sample(batch, units, _simulated()), gain, xhat, rstd, delta)
    bias_grad(delta, db)


def dropout_activation_delta(activation: str, a: Any, h: Any, acc: Any, db: Any, p: float,
                             key: int, first_sample: int) -> None:
    """acc *= m / (1 - p) * h'(a) and db = its sum over the batch, in one kernel."""
    _launch("dropout", "dropout_activation_delta", _dtype(a),
            cuda_launch.row_reduction(a.shape[0], a.shape[1], _simulated()),
            a, h, acc, db, np.int32(CODES[activation]), *_mask_arguments(a, p, key, first_sample))


def dense_weight_grad(delta_dst: Any, z_src: Any, dw: Any) -> None:
    """dW = Delta @ Z.T (5.53), on cuBLAS."""
    cuda_device.gemm(delta_dst, z_src.T, dw, False)


def sparse_weight_grad(index: DeviceIndex, delta_dst: Any, z_src: Any, dw: Any) -> None:
    """dw_e = sum over the batch of delta_dst[dst_e] z_src[src_e] (5.53), lanes per edge."""
    _launch("sparse", "edge_grad", _dtype(dw),
            cuda_launch.row_reduction(dw.shape[0], z_src.shape[1], _simulated()),
            index.src, index.dst, delta_dst, z_src, dw)


def sparse_block_backward(w: Any, index: DeviceIndex, delta_dst: Any, z_src: Any, dw: Any,
                          acc_src: Any | None, accumulate: bool) -> None:
    """A sparse block's backward: ``sparse_weight_grad`` (5.53), then, unless ``acc_src`` is
    None (the block's source is the input), ``sparse_backward`` (5.56)."""
    sparse_weight_grad(index, delta_dst, z_src, dw)
    if acc_src is not None:
        sparse_backward(w, index, delta_dst, acc_src, accumulate)


def bias_grad(delta: Any, db: Any) -> None:
    """dE/db_k = sum over the batch of delta_k."""
    _launch("reduce", "row_sum", _dtype(db),
            cuda_launch.row_reduction(delta.shape[0], delta.shape[1], _simulated()), delta, db)


# --- gradient clipping by global norm ------------------------------------------------------

def clip_gradient_norm(grad: Any, max_norm: float, norm: Any) -> None:
    """``norm[0]`` = ||grad||_2 by one block (a fixed summation order), then the elementwise
    scale by ``max_norm / (norm + 1e-6)`` where it is below 1: two kernels, no host wait."""
    flat = _flat(grad)
    _launch("clip", "global_norm", _dtype(grad), cuda_launch.single_block(_simulated()),
            flat, norm)
    _launch("clip", "clip_scale", _dtype(grad),
            cuda_launch.elementwise(flat.size, _simulated()), flat, norm,
            _real(grad, max_norm))


# --- mixed precision ------------------------------------------------------------------------

def round_to_precision(x: Any, code: int) -> None:
    """Round every element of the C-contiguous float32 device array ``x`` in place to the
    precision of ``code`` (``gpuback.kernels.precision``; FP32: unchanged): one kernel."""
    if code == FP32:
        return
    flat = _flat(x)
    _launch("rounding", "round_elements", "float32",
            cuda_launch.elementwise(flat.size, _simulated()), np.int64(code), flat)


# --- dynamic loss scaling (fp16: gpuback.loss_scale) ------------------------------------------
# ``scaler`` (the pair S, clean steps, in the gradients' float type) and ``step_status`` stay
# on the device: S is read
# and updated by the kernels, and the optimiser kernels read ``step_status``; no host wait.

def scale_by_loss_scale(x: Any, scaler: Any) -> None:
    """``x *= S`` in place (S = ``scaler[0]``), one elementwise kernel."""
    flat = _flat(x)
    _launch("loss_scale", "scale_elements", _dtype(x),
            cuda_launch.elementwise(flat.size, _simulated()), flat, scaler)


def unscale_gradients(grad: Any, scaler: Any, step_status: Any, step: int) -> None:
    """``grad *= 1/S`` and ``step_status = (step, SCALE_OVERFLOW)`` if any result is not
    finite, one elementwise kernel."""
    flat = _flat(grad)
    _launch("loss_scale", "unscale_check", _dtype(grad),
            cuda_launch.elementwise(flat.size, _simulated()), flat, scaler, step_status,
            np.int64(step))


def update_loss_scale(scaler: Any, step_status: Any, status: Any, growth_interval: int) -> None:
    """S halved or its count advanced (doubled at ``growth_interval``), then ``status``
    merged into ``step_status``: one thread."""
    _launch("loss_scale", "update_scale", _dtype(scaler), ((1,), (1,)), scaler, step_status,
            status, np.int64(growth_interval))


# --- optimiser updates ----------------------------------------------------------------------
# ``status`` (int64 pair, see ``check_finite``) is read by the kernels themselves: while
# status[0] != 0 they change nothing; the host never waits for it. Below fp32 the same
# launch writes the rounded copy ``rounded`` of each updated element (kernels/optimizer.py).

def sgd_update(param: Any, grad: Any, velocity: Any, lr: float, momentum: float,
               nesterov: bool, weight_decay: float, status: Any, rounded: Any,
               code: int) -> None:
    """SGD with momentum / Nesterov and L2 decay, one fused kernel over the flat buffer,
    writing ``rounded`` too unless ``code`` is FP32."""
    flat = [_flat(x) for x in (param, grad, velocity)]
    _launch("optimizer", "sgd", _dtype(param), cuda_launch.elementwise(param.size, _simulated()),
            *flat, _real(param, lr), _real(param, momentum), bool(nesterov),
            _real(param, weight_decay), status, _rounded_argument(param, rounded, code),
            np.int64(code))


def adam_update(param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float,
                eps: float, weight_decay: float, decoupled: bool, step: int,
                status: Any, rounded: Any, code: int) -> None:
    """Adam / AdamW, one fused kernel over the flat buffer (``rounded`` as ``sgd_update``);
    bias corrections 1 - beta^t from the host (in float64, then cast)."""
    flat = [_flat(x) for x in (param, grad, m, v)]
    _launch("optimizer", "adam", _dtype(param), cuda_launch.elementwise(param.size,
                                                                       _simulated()),
            *flat, _real(param, lr), _real(param, beta1), _real(param, beta2),
            _real(param, eps), _real(param, weight_decay), bool(decoupled),
            _real(param, 1.0 - beta1**step), _real(param, 1.0 - beta2**step), status,
            _rounded_argument(param, rounded, code), np.int64(code))


def _rounded_argument(param: Any, rounded: Any, code: int) -> Any:
    """The kernel's ``rounded`` argument: the flat copy, or with ``code`` FP32 (the kernel
    writes none) an empty view of ``param`` instead, whatever was passed. The simulator
    copies each array argument in and out of the kernel in turn, so a ``param`` passed
    twice would have its update overwritten by the second argument's stale copy."""
    return _flat(param)[:0] if code == FP32 else _flat(rounded)
