"""Validation of user data (inputs, targets, parameters) before it reaches a backend.

Every check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind,
wrong shape or content) with a message naming the argument, what was expected and
what was given, so that no bad value ever reaches a kernel. The checks run where the
data lives: ``ops`` (the network's backend) says whether a value is a device array and
which array module computes on it, so a user's CuPy data is checked on the GPU.

Values are checked against the network's dtype (``dtype``), not only their own: a float64
1e39 is finite, but cast into a float32 network it becomes inf, so every float value must
also lie within ``numpy.finfo(dtype).max`` in magnitude (``check_finite``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .backends.protocol import Backend

FLOAT_DTYPES = ("float32", "float64")  # the dtypes a network computes in
PROBABILITY_ATOL = 1e-6  # how far a cross-entropy target row may sum from 1


def check_int(where: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``: TypeError if it is not an integer, else ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: expected an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{where}: expected an integer >= {minimum}, got {value}")
    return int(value)


def as_numeric_array(ops: Backend, name: str, value: Any) -> Any:
    """``value`` as an array of real numbers: a device (CuPy) array stays on the device,
    anything else becomes a NumPy array. TypeError for non-numeric values."""
    try:
        arr = ops.as_array(value)
    except ValueError as exc:  # ragged nested sequences
        raise TypeError(f"{name}: expected a numeric array, got a ragged sequence "
                        f"({exc})") from None
    if arr.dtype.kind not in "iuf":  # signed, unsigned, float (not bool, complex, object)
        raise TypeError(f"{name}: expected a numeric (integer or float) array, "
                        f"got dtype {arr.dtype}")
    return arr


def check_finite(ops: Backend, name: str, arr: Any, dtype: Any) -> None:
    """Every value of a float ``arr`` finite and, given the network's ``dtype``, within its
    range (``check_range``): ValueError naming the first bad entry."""
    if arr.dtype.kind != "f":
        return
    xp = ops.array_namespace(arr)
    if not bool(xp.isfinite(arr).all()):
        bad = xp.argwhere(~xp.isfinite(arr))[0].tolist()
        raise ValueError(f"{name}: expected finite values, got {arr[tuple(bad)]} at index "
                         f"{tuple(int(i) for i in bad)}")
    check_range(ops, name, arr, dtype)


def check_range(ops: Backend, name: str, arr: Any, dtype: Any) -> None:
    """Every finite value of ``arr`` small enough in magnitude to stay finite when cast to
    ``dtype`` (None: no cast), ``numpy.finfo(dtype).max``: ValueError naming the first one
    that is not. Infinities and NaN are left to ``check_finite``.

    Only a narrowing cast (float64 data into a float32 network) can overflow; integer data
    always fits (the largest int64 is far below float32's maximum). The range is checked
    with two reductions (max, min), no temporary copy of the data.
    """
    if dtype is None or arr.dtype.kind != "f" or arr.size == 0:
        return
    target = np.dtype(dtype)
    limit = float(np.finfo(target).max)
    if float(np.finfo(arr.dtype).max) <= limit:
        return  # the cast widens (or keeps) the dtype: nothing can overflow
    if not (float(arr.max()) > limit or float(arr.min()) < -limit):
        return  # (a NaN makes both comparisons false: check_finite reports it)
    xp = ops.array_namespace(arr)
    outside = xp.isfinite(arr) & (abs(arr) > limit)
    if not bool(outside.any()):
        return  # only infinities
    bad = tuple(int(i) for i in xp.argwhere(outside)[0].tolist())
    raise ValueError(f"{name}: {float(arr[bad]):.3g} at index {bad} is outside the "
                     f"{target.name} range (max {limit:.2g}): it does not fit the network's "
                     f"dtype")


def check_inputs(ops: Backend, X: Any, n_in: int, dtype: Any, name: str = "X") -> Any:
    """X as a (batch, n_in) array of finite numbers, batch >= 1, each within the range of
    the network's ``dtype`` (see ``check_finite``). ``name``: what messages call it."""
    arr = as_numeric_array(ops, name, X)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (batch, {n_in}), got ndim "
                         f"{arr.ndim} (shape {arr.shape})")
    if arr.shape[1] != n_in:
        raise ValueError(f"{name}: expected shape (batch, {n_in}), got {arr.shape}: the input "
                         f"group has {n_in} units")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one sample, got an empty batch (shape "
                         f"{arr.shape})")
    check_finite(ops, name, arr, dtype)
    return arr


def check_targets(ops: Backend, T: Any, loss: str, n_out: int, batch: int,
                  dtype: Any, name: str = "T") -> Any:
    """T checked against the loss: (batch, n_out) rows, or (batch,) labels for cross-entropy.

    Cross-entropy rows must be non-negative and sum to 1; binary cross-entropy
    targets must lie in [0, 1]; integer class labels must lie in [0, n_out). Target rows
    must be finite within the range of the network's ``dtype`` (``check_finite``).
    """
    arr = as_numeric_array(ops, name, T)
    if loss == "cross_entropy" and arr.ndim == 1:
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name}: class labels of shape ({batch},) must be integers, got dtype "
                            f"{arr.dtype} (or pass (batch, {n_out}) probability rows)")
        if arr.shape[0] != batch:
            raise ValueError(f"{name}: expected {batch} class labels (one per sample of X), "
                             f"got shape {arr.shape}")
        if batch and (int(arr.min()) < 0 or int(arr.max()) >= n_out):
            bad = int(ops.array_namespace(arr).flatnonzero((arr < 0) | (arr >= n_out))[0])
            raise ValueError(f"{name}: class labels must lie in [0, {n_out}), got {int(arr[bad])} "
                             f"at index {bad}")
        return arr.astype(np.int64, copy=False)
    labels_hint = f" or ({batch},) integer class labels" if loss == "cross_entropy" else ""
    if arr.shape != (batch, n_out):
        raise ValueError(f"{name}: expected shape ({batch}, {n_out}){labels_hint} for loss "
                         f"{loss!r}, got {arr.shape}")
    check_finite(ops, name, arr, dtype)
    if loss == "binary_cross_entropy" and ((arr < 0) | (arr > 1)).any():
        raise ValueError(f"{name}: binary cross-entropy targets must lie in [0, 1], got values in "
                         f"[{arr.min()}, {arr.max()}]")
    if loss == "cross_entropy":
        if (arr < 0).any():
            raise ValueError(f"{name}: cross-entropy target rows must be non-negative, got a "
                             f"minimum of {arr.min()}")
        sums = arr.sum(axis=1)
        off = ops.array_namespace(arr).flatnonzero(abs(sums - 1.0) > PROBABILITY_ATOL)
        if off.size:
            raise ValueError(f"{name}: cross-entropy target rows must sum to 1, row {int(off[0])} "
                             f"sums to {sums[off[0]]}")
    return arr


def check_parameters(ops: Backend, params: Any, shapes: Mapping[str, tuple[int, ...]],
                     dtype: Any) -> dict[str, Any]:
    """Parameters given by name: known names, exact shapes, finite numbers within the range
    of the network's ``dtype`` (a subset of the names is fine)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of name -> array, got {type(params).__name__}")
    checked = {}
    for key, value in params.items():
        if key not in shapes:
            raise ValueError(f"params: unknown parameter {key!r}, expected names from "
                             f"{list(shapes)}")
        arr = as_numeric_array(ops, f"params[{key!r}]", value)
        if arr.shape != tuple(shapes[key]):
            raise ValueError(f"params[{key!r}]: expected shape {tuple(shapes[key])}, got "
                             f"{arr.shape}")
        check_finite(ops, f"params[{key!r}]", arr, dtype)
        checked[key] = arr
    return checked
