"""The NumPy reference backend: the op set every other backend implements and is tested against.

Buffers are feature-major, shape ``(units, batch)``, as in Bishop's column-vector
notation: ``A = W @ Z``, ``acc = W.T @ Delta``, ``dW = Delta @ Z.T``. Every op
writes into a buffer it is given (the workspace) and returns nothing, except the
loss op, which returns the loss as a Python float. Ops with ``accumulate``
overwrite their output when it is False and add to it when it is True; the
backward pass uses that to realise the sum over consumers of Bishop eq. 5.56.

Precision: in float32, every sum is accumulated in float64 and rounded to float32 once,
at the end (``_wide`` casts a float32 operand up; in float64 it is a no-op). That covers the
dense and sparse weight gradients (5.53; a float32 x float32 product is exact in float64, so
dW is the exact sum rounded once), the bias gradients, the sparse gathers over an edge list
(5.48, 5.56), the per-sample losses (computed wholly in float64 from the float32 a, y, t),
the softmax normaliser and the metrics' running totals. The cpu backend accumulates its bias
gradients, losses, softmax sums and metrics in float64 too, and its weight gradients in the
network's dtype (float32 BLAS for a dense block): a reference that summed in float32 would
be the less exact side of a float32 comparison, which would then measure the reference's
rounding, not the backend's.

Two products stay in float32: the dense forward ``W @ Z`` (5.48) and backward ``W.T @ Delta``
(5.56). The cpu and cuda backends run exactly these as float32 BLAS (sgemm), their sums run
over a layer's fan-in or fan-out rather than the batch, and they are two of a dense step's
three products, which float64 would make about twice as slow. Elementwise ops (activations,
h'(a), output deltas, optimiser steps) round once per element and stay in the working dtype.

This module is meant to be read: it is backprop in about a hundred lines.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..kernels.mask_hash import mix32, threshold
from ..kernels.precision import CODES as PRECISION_CODES
from ..kernels.precision import FP32
from ..kernels.scalar import NORM_EPS
from . import arrays, precision
from .host import allocation_hook as allocation_hook  # the op set's ops of every host backend
from .host import array_namespace as array_namespace
from .host import as_array as as_array
from .host import device as device
from .host import device_collectives as device_collectives
from .host import free_memory as free_memory
from .host import is_device_array as is_device_array
from .host import pinned_empty as pinned_empty
from .host import record_event as record_event
from .host import wait_for as wait_for
from .protocol import SparseIndex
from .status import BackendStatus

PRECISION_NAMES = {code: name for name, code in PRECISION_CODES.items()}

name = "numpy"
LEAKY_SLOPE = 0.01
_GELU_C = math.sqrt(2.0 / math.pi)  # Python floats: no upcast of float32 arrays
_GELU_K = 0.044715


def status() -> BackendStatus:
    return BackendStatus(usable=True, simulated=False, reason="NumPy on the CPU")


def describe() -> dict[str, Any]:
    """What this backend runs on, for ``gpuback.info()``: NumPy and its BLAS."""
    try:  # NumPy >= 1.25
        config: Any = np.show_config(mode="dicts")
    except TypeError:
        config = {}
    return {"numpy": np.__version__,
            "blas": config.get("Build Dependencies", {}).get("blas", {}).get("name")}


# --- buffers ---------------------------------------------------------------------------

def zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def from_host(array: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """A backend copy of a host array, C-contiguous, in ``dtype``."""
    return np.array(array, dtype=dtype, order="C", copy=True)


def asarray(array: Any, dtype: np.dtype | type) -> np.ndarray:
    """``array`` as a C-contiguous backend array in ``dtype``: itself when it already is one,
    else a copy (a device array, CuPy's say, is copied to the host)."""
    return np.ascontiguousarray(_host(array), dtype=dtype)


def memory_budget() -> float:
    """Bytes of backend memory a data set may take before training streams it instead:
    unlimited here, the data is in host memory either way."""
    return float("inf")


def to_host(array: np.ndarray) -> np.ndarray:
    """A host NumPy copy of a backend array."""
    return np.array(array, copy=True)


def copy_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` with casting; ``src`` may be a host or a device array."""
    np.copyto(dst, _host(src), casting="unsafe")


def _host(array: Any) -> Any:
    """A device array (CuPy's, say) copied to the host; anything else as it is."""
    return arrays.to_numpy(array) if arrays.is_device_array(array) else array


def take_batch(source: np.ndarray, order: np.ndarray, start: int, out: np.ndarray) -> None:
    """One mini-batch gathered from a data set that lives on the backend.

    ``source`` is batch-major, ``(samples, features)`` or ``(samples,)`` (class labels);
    ``order`` (int64) is the sample order of the epoch. With b = ``out.shape[-1]``,
    ``out[:, i] = source[order[start + i], :]`` (feature-major, cast to ``out``'s dtype), or
    ``out[i] = source[order[start + i]]`` for labels.
    """
    rows = order[start:start + out.shape[-1]]
    if source.ndim == 1:
        out[...] = source[rows]
    else:
        np.copyto(out, source[rows].T, casting="unsafe")


def _wide(array: np.ndarray) -> np.ndarray:
    """``array`` in float64, where this module accumulates its sums (itself if it already is)."""
    return array.astype(np.float64, copy=False)


def fill_zero(array: np.ndarray) -> None:
    """Set every entry of a backend array to zero, in place."""
    array[...] = 0


# Codes written to ``status[1]`` when a step first goes non-finite (``status[0]`` = the step),
# shared with the kernels.
from ..kernels.scalar import GRADIENT_NOT_FINITE, LOSS_NOT_FINITE  # noqa: E402


def accumulate_metrics(losses: np.ndarray, correct: np.ndarray, totals: np.ndarray,
                       status: np.ndarray, step: int) -> None:
    """totals[0] += sum of the per-sample losses, totals[1] += sum of ``correct``, in float64.

    If the loss sum is NaN or infinite and ``status[0] == 0``, record
    ``status = (step, LOSS_NOT_FINITE)``: the first bad step, kept on the backend until read.
    """
    loss = np.sum(losses, dtype=np.float64)
    totals[0] += loss
    totals[1] += np.sum(correct, dtype=np.float64)
    if not np.isfinite(loss) and status[0] == 0:
        status[0], status[1] = step, LOSS_NOT_FINITE


def check_finite(array: np.ndarray, status: np.ndarray, step: int) -> None:
    """If any entry of ``array`` is NaN or infinite and ``status[0] == 0``, record
    ``status = (step, GRADIENT_NOT_FINITE)``; the optimiser ops then skip their update."""
    if status[0] == 0 and not np.isfinite(array).all():
        status[0], status[1] = step, GRADIENT_NOT_FINITE


def prepare_index(index: SparseIndex, deterministic: bool) -> SparseIndex:
    """The backend form of a sparse block's index arrays (here: the host arrays).

    ``deterministic`` asks for a bitwise reproducible backward; ``np.add.at`` adds
    in edge order, so this backend always is.
    """
    return index


# --- activations (5.49) and their derivatives h'(a) ------------------------------------

def _sigmoid(a: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(a))  # never overflows
    z: np.ndarray = np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return z


def _gelu_tanh(a: np.ndarray) -> np.ndarray:
    return np.tanh(_GELU_C * (a + _GELU_K * a**3))


def _activate(activation: str, a: np.ndarray, out: np.ndarray) -> None:
    if activation == "identity":
        out[...] = a
    elif activation == "tanh":
        np.tanh(a, out=out)
    elif activation == "sigmoid":
        out[...] = _sigmoid(a)
    elif activation == "relu":
        np.maximum(a, 0, out=out)
    elif activation == "leaky_relu":
        out[...] = np.where(a > 0, a, LEAKY_SLOPE * a)
    elif activation == "softplus":
        out[...] = np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))  # log(1 + e^a), stable
    elif activation == "gelu":
        out[...] = 0.5 * a * (1.0 + _gelu_tanh(a))
    elif activation == "silu":  # a * sigmoid(a), also called swish
        out[...] = a * _sigmoid(a)
    elif activation == "exp":
        with np.errstate(over="ignore"):  # an infinite y is what the loss's status reports
            np.exp(a, out=out)
    elif activation == "softmax":  # over the units of each sample (axis 0), shifted by the max
        e = np.exp(_wide(a) - a.max(axis=0, keepdims=True))
        out[...] = e / e.sum(axis=0, keepdims=True)
    else:
        raise ValueError(f"activation: unknown {activation!r}")


def _derivative(activation: str, a: np.ndarray, z: np.ndarray) -> np.ndarray:
    """h'(a) for an elementwise activation, given a and z = h(a)."""
    h_prime: np.ndarray
    if activation == "identity":
        h_prime = np.ones_like(a)
    elif activation == "tanh":
        h_prime = 1.0 - z * z
    elif activation == "sigmoid":
        h_prime = z * (1.0 - z)
    elif activation == "relu":
        h_prime = (a > 0).astype(a.dtype)
    elif activation == "leaky_relu":
        h_prime = np.where(a > 0, 1.0, LEAKY_SLOPE).astype(a.dtype)
    elif activation == "softplus":
        h_prime = _sigmoid(a)
    elif activation == "gelu":
        t = _gelu_tanh(a)
        h_prime = 0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * _GELU_C * (1.0 + 3 * _GELU_K * a * a)
    elif activation == "silu":
        s = _sigmoid(a)
        h_prime = s * (1.0 + a * (1.0 - s))
    elif activation == "exp":  # d/da e^a = e^a = z
        h_prime = z.copy()
    else:
        raise ValueError(f"activation: no elementwise derivative for {activation!r}")
    return h_prime


# --- forward (5.48, 5.49) -----------------------------------------------------------------

def dense_forward(w: np.ndarray, z_src: np.ndarray, a_dst: np.ndarray, accumulate: bool) -> None:
    """a_dst (+)= W @ z_src: sum_j w_kj z_j over a dense block (5.48)."""
    if accumulate:
        a_dst += w @ z_src
    else:
        np.matmul(w, z_src, out=a_dst)


def sparse_forward(w: np.ndarray, index: SparseIndex, z_src: np.ndarray, a_dst: np.ndarray,
                   accumulate: bool) -> None:
    """a_dst[k] (+)= sum over edges e into k of w_e z_src[src_e] (5.48 over an edge list)."""
    _add_at(a_dst, index.dst, _wide(w)[:, None] * z_src[index.src], accumulate)


def _add_at(out: np.ndarray, rows: np.ndarray, values: np.ndarray, accumulate: bool) -> None:
    """out[rows[e]] (+)= values[e] for every edge e, summed in float64 and rounded once."""
    total = out.astype(np.float64) if accumulate else np.zeros(out.shape)
    np.add.at(total, rows, values)
    out[...] = total


def add_into(src: np.ndarray, dst: np.ndarray, accumulate: bool) -> None:
    """dst (+)= src: an identity connection (5.48 forward, 5.56 backward, with W = I)."""
    if accumulate:
        dst += src
    else:
        dst[...] = src


def layer_norm(b: np.ndarray, gain: np.ndarray, a: np.ndarray, xhat: np.ndarray,
               rstd: np.ndarray, u: np.ndarray) -> None:
    """a += b; per sample, over the units: xhat = (a - mean) / sqrt(var + eps) and u = gain *
    xhat. The mean and the variance (two passes) are taken in float64."""
    a += b[:, None]
    wide = _wide(a)
    centred = wide - wide.mean(axis=0)
    r = 1.0 / np.sqrt((centred * centred).mean(axis=0) + NORM_EPS)
    rstd[...] = r
    xhat[...] = centred * r
    np.multiply(gain[:, None], xhat, out=u)


def layer_norm_backward(gain: np.ndarray, xhat: np.ndarray, rstd: np.ndarray,
                        delta: np.ndarray, dgain: np.ndarray, db: np.ndarray) -> None:
    """delta: dE/du in, dE/da out (every unit of the group through its mean and variance);
    dgain = sum over the batch of dE/du * xhat, db = sum over the batch of dE/da; in
    float64."""
    du, x = _wide(delta), _wide(xhat)
    dgain[...] = (du * x).sum(axis=1)
    g = _wide(gain)[:, None] * du
    da = _wide(rstd) * (g - g.mean(axis=0) - x * (g * x).mean(axis=0))
    delta[...] = da
    db[...] = da.sum(axis=1)


def dropout(x: np.ndarray, out: np.ndarray, p: float, key: int, first_sample: int) -> None:
    """out = x * m / (1 - p), m drawn from (key, unit, first_sample + sample) by
    ``gpuback.kernels.mask_hash``, vectorised."""
    units = np.arange(x.shape[0], dtype=np.uint64)[:, None] ^ np.uint64(key)
    samples = np.uint64(first_sample) + np.arange(x.shape[1], dtype=np.uint64)[None, :]
    kept = mix32(samples ^ mix32(units)) >= threshold(p)
    scale = x.dtype.type(1.0 / (1.0 - p))
    out[...] = np.where(kept, x * scale, x.dtype.type(0.0))


def bias_activation_dropout(activation: str, b: np.ndarray, a: np.ndarray, h: np.ndarray,
                            z: np.ndarray, p: float, key: int, first_sample: int) -> None:
    """a += b, h = h(a), then z = h * m / (1 - p): ``bias_activation`` and ``dropout``."""
    bias_activation(activation, b, a, h)
    dropout(h, z, p, key, first_sample)


def dropout_activation_delta(activation: str, a: np.ndarray, h: np.ndarray, acc: np.ndarray,
                             db: np.ndarray, p: float, key: int, first_sample: int) -> None:
    """acc = h'(a) * m / (1 - p) * acc and db its sum over the batch: ``dropout`` on acc,
    then ``activation_delta``."""
    dropout(acc, acc, p, key, first_sample)
    activation_delta(activation, a, h, acc, db)


def bias_activation(activation: str, b: np.ndarray, a: np.ndarray, z: np.ndarray) -> None:
    """Add the bias to the pre-activations in place (5.48), then z = h(a) (5.49)."""
    a += b[:, None]
    _activate(activation, a, z)


# --- output deltas and the loss (5.54) -----------------------------------------------------

def _half_poisson_deviance(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """t log(t / y) - t + y per element, y = e^a and t log t = 0 at t = 0 (scikit-learn's
    half Poisson deviance), from a: with r = a - log t, t (expm1(r) - r) where r <= 1 (exact
    where y is near t, where t log t - t a and y - t cancel), e^a - t (1 + r) where r > 1
    (t e^r would overflow before e^a for a tiny t), e^a where t = 0."""
    positive = t > 0
    r = a - np.log(np.where(positive, t, 1.0))
    with np.errstate(over="ignore"):  # e^a overflows where y does
        y = np.exp(a)
    near = t * (np.expm1(np.minimum(r, 1.0)) - r)
    deviance: np.ndarray = np.where(positive, np.where(r > 1.0, y - t * (1.0 + r), near), y)
    return deviance


def loss_and_output_delta(loss: str, activation: str, a: np.ndarray, y: np.ndarray,
                          t: np.ndarray, delta: np.ndarray, losses: np.ndarray,
                          correct: np.ndarray) -> None:
    """Per-sample losses, delta = dE/da for the output units (5.54), and correct predictions.

    ``t`` is feature-major targets ``(n_out, batch)``, or integer class labels
    ``(batch,)`` for cross-entropy. For the canonical pairings delta = (y - t) / N;
    for sum of squares with a non-identity output, delta = h'(a) (y - t) / N.
    ``losses`` (batch,) receives the per-sample losses E_n (the mean loss is their mean).
    ``correct`` (batch,) receives, per sample: cross-entropy, 1 if the first arg-max of y is
    the label (or the first arg-max of the target row), else 0; binary cross-entropy, the
    number of outputs with (y > 0.5) == (t > 0.5); sum of squares and Poisson, 0.
    """
    n = a.shape[1]
    if loss == "cross_entropy":
        label = t if t.ndim == 1 else t.argmax(axis=0)
        correct[...] = y.argmax(axis=0) == label
    elif loss == "binary_cross_entropy":
        correct[...] = np.sum((y > 0.5) == (t > 0.5), axis=0)
    else:
        correct[...] = 0
    if t.ndim == 1:  # class labels: the one-hot target, without building it
        rows = np.arange(n)
        target = np.zeros_like(y)
        target[t, rows] = 1.0
        t = target
    a64, y64, t64 = _wide(a), _wide(y), _wide(t)  # the losses: in float64, rounded once
    if loss == "sum_of_squares":
        losses[...] = 0.5 * np.sum((y64 - t64) ** 2, axis=0)
        delta[...] = _derivative(activation, a, y) * (y - t)
    elif loss == "binary_cross_entropy":
        # -[t log y + (1 - t) log(1 - y)] with y = sigmoid(a) equals softplus(a) - t a.
        softplus = np.maximum(a64, 0) + np.log1p(np.exp(-np.abs(a64)))
        losses[...] = np.sum(softplus - t64 * a64, axis=0)
        delta[...] = y - t
    elif loss == "cross_entropy":
        # -sum_k t_k log y_k with log y_k = a_k - logsumexp(a); rows of t sum to 1.
        m = a64.max(axis=0, keepdims=True)
        log_y = a64 - (m + np.log(np.exp(a64 - m).sum(axis=0, keepdims=True)))
        losses[...] = -np.sum(t64 * log_y, axis=0)
        delta[...] = y - t
    elif loss == "poisson":  # y = e^a, the canonical (log) link: delta = y - t as in 5.54
        losses[...] = np.sum(_half_poisson_deviance(a64, t64), axis=0)
        delta[...] = y - t
    else:
        raise ValueError(f"loss: unknown {loss!r}")
    delta /= n


def weight_samples(delta: np.ndarray, losses: np.ndarray, weights: np.ndarray) -> None:
    """Each sample's output deltas and loss times its weight: ``delta[:, n] *= weights[n]``,
    ``losses[n] *= weights[n]`` (the deltas of a weighted mean loss: 5.53 then sums
    w_n delta_n z_n over the batch)."""
    delta *= weights
    losses *= weights


# --- backward: hidden deltas (5.56) and gradients (5.53) -----------------------------------

def dense_backward(w: np.ndarray, delta_dst: np.ndarray, acc_src: np.ndarray,
                   accumulate: bool) -> None:
    """acc_src (+)= W.T @ delta_dst: this block's share of sum_k w_kj delta_k (5.56)."""
    if accumulate:
        acc_src += w.T @ delta_dst
    else:
        np.matmul(w.T, delta_dst, out=acc_src)


def sparse_backward(w: np.ndarray, index: SparseIndex, delta_dst: np.ndarray,
                    acc_src: np.ndarray, accumulate: bool) -> None:
    """The scatter-add: acc_src[src_e] += w_e delta_dst[dst_e] for every edge e (5.56)."""
    _add_at(acc_src, index.src, _wide(w)[:, None] * delta_dst[index.dst], accumulate)


def activation_delta(activation: str, a: np.ndarray, z: np.ndarray, acc: np.ndarray,
                     db: np.ndarray) -> None:
    """Turn the accumulated sum_k w_kj delta_k into delta_j = h'(a_j) * sum (5.56), in place,
    and write the bias gradient dE/db_j = sum over the batch of delta_j into ``db``."""
    acc *= _derivative(activation, a, z)
    bias_grad(acc, db)


def dense_weight_grad(delta_dst: np.ndarray, z_src: np.ndarray, dw: np.ndarray) -> None:
    """dE/dw_kj = sum over the batch of delta_k z_j (5.53): dW = Delta @ Z.T, in float64."""
    dw[...] = _wide(delta_dst) @ _wide(z_src).T


def sparse_weight_grad(index: SparseIndex, delta_dst: np.ndarray, z_src: np.ndarray,
                       dw: np.ndarray) -> None:
    """dE/dw_e = sum over the batch of delta_dst[dst_e] z_src[src_e] (5.53), per edge."""
    dw[...] = np.einsum("en,en->e", _wide(delta_dst[index.dst]), _wide(z_src[index.src]))


def sparse_block_backward(w: np.ndarray, index: SparseIndex, delta_dst: np.ndarray,
                          z_src: np.ndarray, dw: np.ndarray, acc_src: np.ndarray | None,
                          accumulate: bool) -> None:
    """A sparse block's backward: ``sparse_weight_grad`` (5.53), then, unless ``acc_src`` is
    None (the block's source is the input), ``sparse_backward`` (5.56)."""
    sparse_weight_grad(index, delta_dst, z_src, dw)
    if acc_src is not None:
        sparse_backward(w, index, delta_dst, acc_src, accumulate)


def bias_grad(delta: np.ndarray, db: np.ndarray) -> None:
    """dE/db_k = sum over the batch of delta_k (5.53 with z_j = 1), in float64."""
    db[...] = np.sum(delta, axis=1, dtype=np.float64)


# --- optimiser updates (one fused op over the flat parameter buffer) ----------------------
# ``status`` is the int64 pair of ``check_finite``: while ``status[0] != 0`` (a step went
# non-finite) the update is skipped, so the parameters keep their last good values (and
# their rounded copy: neither buffer is written). ``rounded``, ``code``: below fp32 each
# update also writes the network's copy of the parameters rounded to the precision ``code``.

def round_to_precision(x: np.ndarray, code: int) -> None:
    """Round every element of the float32 ``x`` in place to the precision of ``code``
    (``gpuback.kernels.precision.CODES``; FP32: unchanged): nearest, ties to even, through
    ``gpuback.precision.round_to`` (ml_dtypes and NumPy's float16: the reference)."""
    if code != FP32:
        x[...] = precision.round_to(x, PRECISION_NAMES[code])


def sgd_update(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float,
               momentum: float, nesterov: bool, weight_decay: float,
               status: np.ndarray, rounded: np.ndarray, code: int) -> None:
    """g = grad + wd w;  v = mu v + g;  w -= lr (g + mu v if nesterov else v); then
    ``rounded`` = w rounded to ``code`` (``_write_rounded``)."""
    if status[0] != 0:
        return
    g = grad + weight_decay * param
    velocity *= momentum
    velocity += g
    param -= lr * (g + momentum * velocity if nesterov else velocity)
    _write_rounded(param, rounded, code)


def adam_update(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float,
                beta1: float, beta2: float, eps: float, weight_decay: float, decoupled: bool,
                step: int, status: np.ndarray, rounded: np.ndarray, code: int) -> None:
    """Adam at step t (from 1): L2 decay (g = grad + wd w), or AdamW's decoupled decay
    (w -= lr wd w); m, v moving averages of g and g^2; w -= lr m_hat / (sqrt(v_hat) + eps);
    then ``rounded`` = w rounded to ``code`` (``_write_rounded``)."""
    if status[0] != 0:
        return
    if decoupled:
        param -= lr * weight_decay * param
        g = grad
    else:
        g = grad + weight_decay * param
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    param -= lr * m_hat / (np.sqrt(v_hat) + eps)
    _write_rounded(param, rounded, code)


def _write_rounded(param: np.ndarray, rounded: np.ndarray, code: int) -> None:
    """Mixed precision: the network's rounded copy of the updated master, ``rounded =
    round_to(param, code)`` (what the products read), in the update itself; FP32: nothing
    is written (``rounded`` is then the master itself)."""
    if code == FP32:
        return
    if code not in PRECISION_NAMES:
        raise ValueError(f"code: expected one of {sorted(PRECISION_NAMES)} "
                         f"(gpuback.kernels.precision.CODES), got {code!r}")
    rounded[...] = precision.round_to(param, PRECISION_NAMES[code])


# --- gradient clipping by global norm -------------------------------------------------------

from ..kernels.scalar import CLIP_EPS  # noqa: E402  (max_norm / (norm + 1e-6))

_CLIP_CHUNK = 1 << 20  # elements widened to float64 at a time (a bounded temporary)


def clip_gradient_norm(grad: np.ndarray, max_norm: float, norm: np.ndarray) -> None:
    """``norm[0]`` = ||grad||_2 (the squares summed in float64, chunk by chunk); where
    ``max_norm / (norm + 1e-6)`` is below 1, ``grad *=`` that factor (rounded once to
    ``grad``'s dtype), as ``torch.nn.utils.clip_grad_norm_``."""
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, grad.size, _CLIP_CHUNK):
            chunk = _wide(grad[start:start + _CLIP_CHUNK])
            total += float(np.dot(chunk, chunk))
        real = grad.dtype.type
        norm[0] = real(math.sqrt(total))
        factor = real(max_norm) / (real(norm[0]) + real(CLIP_EPS))
        if factor < 1:
            grad *= factor


# --- dynamic loss scaling (fp16: gpuback.loss_scale) ---------------------------------------
# ``scaler`` is the pair (S, clean steps in a row) in the gradients' float type; ``step_status``
# an int64 pair like ``status``, cleared before each step's ``unscale_gradients``.

from ..kernels.scalar import BACKOFF_FACTOR, GROWTH_FACTOR, SCALE_OVERFLOW  # noqa: E402


def scale_by_loss_scale(x: np.ndarray, scaler: np.ndarray) -> None:
    """``x *= S`` in place, S = ``scaler[0]`` cast to ``x``'s dtype (the output deltas of the
    loss, before they are stored rounded to fp16)."""
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is what is checked for
        x *= x.dtype.type(scaler[0])


def unscale_gradients(grad: np.ndarray, scaler: np.ndarray, step_status: np.ndarray,
                      step: int) -> None:
    """``grad *= 1/S`` in place (1/S rounded once to ``grad``'s dtype); if any result is NaN
    or infinite, ``step_status = (step, SCALE_OVERFLOW)``."""
    real = grad.dtype.type
    with np.errstate(over="ignore", invalid="ignore"):
        grad *= real(1.0) / real(scaler[0])
    if not np.isfinite(grad).all():
        step_status[0], step_status[1] = step, SCALE_OVERFLOW


def update_loss_scale(scaler: np.ndarray, step_status: np.ndarray, status: np.ndarray,
                      growth_interval: int) -> None:
    """After ``unscale_gradients``: an overflow (``step_status[0] != 0``) multiplies S by
    ``BACKOFF_FACTOR`` and zeroes the count; a clean step adds one to it, and at
    ``growth_interval`` multiplies S by ``GROWTH_FACTOR`` and zeroes it. Then, if ``status``
    records a non-finite step and ``step_status`` is clear, ``step_status = status`` (so an
    optimiser op given ``step_status`` skips either way)."""
    real = scaler.dtype.type  # every value in the pair's float type, as the kernels compute
    if step_status[0] != 0:
        scaler[0], scaler[1] = scaler[0] * real(BACKOFF_FACTOR), 0.0
    else:
        count = scaler[1] + real(1.0)
        if count >= real(growth_interval):
            scaler[0], count = scaler[0] * real(GROWTH_FACTOR), real(0.0)
        scaler[1] = count
    if status[0] != 0 and step_status[0] == 0:
        step_status[:] = status
