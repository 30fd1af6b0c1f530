"""Validation of what users hand in (arguments, inputs, targets, parameters) before it
reaches a backend.

Arguments: integer, real-number and flag arguments are checked with ``is_integer``,
``is_real``, ``is_number``, ``check_int``, ``check_real`` and ``check_bool``, the package's
one helper for them: a bool is never taken for a count or a rate, a NumPy scalar is taken
for the number it is, and every message reads alike.

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

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

if TYPE_CHECKING:
    from ..backends.protocol import Backend

FLOAT_DTYPES = ("float32", "float64")  # the dtypes a network computes in
PROBABILITY_ATOL = 1e-6  # how far a cross-entropy target row may sum from 1
# the range a loss's target rows must lie in, as the messages of ``check_targets`` say it
TARGET_RANGES = {"binary_cross_entropy": " in [0, 1]", "poisson": " >= 0"}


# --- numbers and flags handed in as arguments ----------------------------------------------
# A bool is an int to Python (True == 1), but never a count, a size or a rate to gpuback.

Integer = int | np.integer[Any]  # what ``is_integer`` accepts
Real = int | float | np.integer[Any] | np.floating[Any]  # what ``is_real`` accepts


def is_integer(value: object, minimum: int | None = None,
               maximum: int | None = None) -> TypeGuard[Integer]:
    """Whether ``value`` is an integer (Python's or NumPy's, not a bool) in
    ``[minimum, maximum]`` (a bound of None: unbounded on that side)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return False
    return bool((minimum is None or value >= minimum) and (maximum is None or value <= maximum))


def is_real(value: object) -> TypeGuard[Real]:
    """Whether ``value`` is a finite real number: a Python or NumPy integer or float (not a
    bool), neither NaN nor infinite."""
    return is_number(value) and math.isfinite(value)


def is_number(value: object) -> TypeGuard[Real]:
    """Whether ``value`` is a Python or NumPy integer or float (not a bool); NaN and the
    infinities included."""
    return isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, bool)


def check_int(where: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum``: TypeError if it is not an integer, else ValueError."""
    if not is_integer(value):
        raise TypeError(f"{where}: expected an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{where}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_real(where: str, value: object, low: float, high: float = math.inf,
               low_open: bool = False, high_open: bool = True) -> float:
    """``value`` as a float in the interval from ``low`` to ``high``, each end open or closed:
    TypeError if it is not a real number (a bool is not one), ValueError if it is NaN,
    infinite or outside the interval."""
    if not is_number(value):
        raise TypeError(f"{where}: expected a real number, got {value!r} "
                        f"({type(value).__name__})")
    number = float(value)
    inside = (number > low if low_open else number >= low) and \
        (number < high if high_open else number <= high)
    if not (inside and math.isfinite(number)):
        raise ValueError(f"{where}: expected {_interval(low, high, low_open, high_open)}, "
                         f"got {value!r}")
    return number


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    """The numbers ``check_real`` accepts, in words: "a finite number > 0", "a number in
    [0, 1)"."""
    if high == math.inf:
        return f"a finite number {'>' if low_open else '>='} {low}"
    return f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_bool(where: str, value: object) -> bool:
    """``value`` as a bool: True or False (Python's or NumPy's), else TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: expected True or False, got {value!r}")
    return bool(value)


def as_numeric_array(ops: Backend, name: str, value: Any, accepted: str = "",
                     bool_hint: str = "") -> Any:
    """``value`` as an array of real numbers: a device (CuPy) array stays on the device,
    anything else becomes a NumPy array. TypeError for non-numeric values; ``accepted``
    (what the caller accepts) and, for a boolean array, ``bool_hint`` extend its message."""
    tail = f"; accepted: {accepted}" if accepted else ""
    try:
        arr = ops.as_array(value)
    except ValueError as exc:  # ragged nested sequences
        raise TypeError(f"{name}: expected a numeric array, got a ragged sequence "
                        f"({exc}){tail}") from None
    if arr.dtype.kind not in "iuf":  # signed, unsigned, float (not bool, complex, object)
        hint = f" ({bool_hint})" if arr.dtype.kind == "b" and bool_hint else ""
        raise TypeError(f"{name}: expected a numeric (integer or float) array, "
                        f"got dtype {arr.dtype}{tail}{hint}")
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


def accepted_targets(loss: str, n_out: int, batch: int) -> str:
    """The target forms ``check_targets`` accepts for ``loss``, ``n_out`` outputs and
    ``batch`` samples, as every refusal message names them."""
    if loss == "cross_entropy":
        labels = f"({batch},) / ({batch}, 1)" if n_out >= 2 else f"({batch},)"
        return (f"({batch}, {n_out}) probability rows, or {labels} class labels "
                f"0..{n_out - 1}, for loss {loss!r}")
    rows = f"({batch}, {n_out}) targets" + TARGET_RANGES.get(loss, "")
    if n_out == 1:
        return f"{rows}, or ({batch},) for a single output, for loss {loss!r}"
    return f"{rows} for loss {loss!r}"


def check_targets(ops: Backend, T: Any, loss: str, n_out: int, batch: int,
                  dtype: Any, name: str = "T") -> Any:
    """T checked against the loss and normalised: (batch, n_out) rows, or int64 (batch,)
    class labels for cross-entropy. The returned array is what the engine loads.

    Accepted forms (every refusal names the ones for its loss and ``n_out``, see
    ``accepted_targets``):

    * cross-entropy: (batch, n_out) probability rows, non-negative, each summing to 1; or
      class labels in [0, n_out) as a (batch,) array or, with n_out >= 2, a (batch, 1)
      column, of any integer dtype or of floats whose every value is finite and integral
      (0.0, 1.0, ...). Labels come back as int64 (batch,). Non-integral floats in a labels
      shape (0.5) are refused: probability rows must have shape (batch, n_out). With
      n_out == 1 a (batch, 1) array is a probability row, as for any n_out.
    * sum of squares, binary cross-entropy, Poisson: (batch, n_out) targets (binary
      cross-entropy's in [0, 1], Poisson's >= 0: counts or rates); with a single output
      (n_out == 1) also (batch,), returned as (batch, 1).
      A 1-D array for n_out > 1 is refused: 1-D targets are accepted only for one output.
    * Boolean arrays are refused (as for X): their meaning, labels or 0/1 rows, is the
      caller's to say with ``.astype(int)`` or ``.astype(float)``.

    Target rows must be finite within the range of the network's ``dtype``
    (``check_finite``); float labels must be finite (they become int64, not ``dtype``).
    """
    accepted = accepted_targets(loss, n_out, batch)
    as_what = "int) for class labels or .astype(float" if loss == "cross_entropy" else "float"
    arr = as_numeric_array(ops, name, T, accepted, f"booleans are not read as targets: pass "
                           f"T.astype({as_what}) for rows")
    if loss == "cross_entropy" and (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1
                                                      and n_out >= 2)):
        return _check_labels(ops, name, arr, n_out, batch, accepted)
    given = arr  # what finiteness messages index, as the caller passed it
    if loss != "cross_entropy" and n_out == 1 and arr.shape == (batch,):
        arr = arr.reshape(batch, 1)  # one output: (batch,) targets are its column
    if arr.shape != (batch, n_out):
        why = ""
        if arr.ndim == 1 and n_out > 1:
            why = (f": 1-D targets are accepted only for a single output, and this network "
                   f"has {n_out} outputs")
        raise ValueError(f"{name}: expected {accepted}; got shape {arr.shape}{why}")
    _with_forms(check_finite, accepted, ops, name, given, dtype)
    if loss == "binary_cross_entropy" and ((arr < 0) | (arr > 1)).any():
        raise ValueError(f"{name}: binary cross-entropy targets must lie in [0, 1], got values in "
                         f"[{arr.min()}, {arr.max()}]; accepted: {accepted}")
    if loss == "poisson" and (arr < 0).any():
        raise ValueError(f"{name}: Poisson targets must be >= 0 (counts or rates), got a "
                         f"minimum of {arr.min()}; accepted: {accepted}")
    if loss == "cross_entropy":
        if (arr < 0).any():
            raise ValueError(f"{name}: cross-entropy target rows must be non-negative, got a "
                             f"minimum of {arr.min()}; accepted: {accepted}")
        sums = arr.sum(axis=1)
        off = ops.array_namespace(arr).flatnonzero(abs(sums - 1.0) > PROBABILITY_ATOL)
        if off.size:
            raise ValueError(f"{name}: cross-entropy target rows must sum to 1, row {int(off[0])} "
                             f"sums to {sums[off[0]]}; accepted: {accepted}")
    return arr


def _check_labels(ops: Backend, name: str, arr: Any, n_out: int, batch: int,
                  accepted: str) -> Any:
    """Cross-entropy class labels, (batch,) or a (batch, 1) column, integers or integral
    finite floats in [0, n_out), as int64 (batch,)."""
    if arr.shape[0] != batch:
        raise ValueError(f"{name}: expected {batch} class labels (one per sample of X), "
                         f"got shape {arr.shape}; accepted: {accepted}")
    labels = arr[:, 0] if arr.ndim == 2 else arr
    xp = ops.array_namespace(labels)
    if labels.dtype.kind == "f":
        # finite first, so that NaN gets the finite-value message; no dtype range: labels
        # become int64, and [0, n_out) below bounds them
        _with_forms(check_finite, accepted, ops, name, arr, None)
        fractional = labels != xp.round(labels)
        if bool(fractional.any()):
            bad = int(xp.flatnonzero(fractional)[0])
            raise ValueError(f"{name}: class labels must be integral, got {float(labels[bad])} "
                             f"at index {bad}; probability rows must have shape "
                             f"({batch}, {n_out}); accepted: {accepted}")
    if batch and (float(labels.min()) < 0 or float(labels.max()) >= n_out):
        bad = int(xp.flatnonzero((labels < 0) | (labels >= n_out))[0])
        value = labels[bad].item()
        shown = f"{value:g}" if isinstance(value, float) else value
        raise ValueError(f"{name}: class labels must lie in [0, {n_out}), got {shown} at "
                         f"index {bad}; accepted: {accepted}")
    return labels.astype(np.int64, copy=False)


def _with_forms(check: Any, accepted: str, *args: Any) -> None:
    """``check(*args)``, its ValueError's message extended by the accepted target forms."""
    try:
        check(*args)
    except ValueError as exc:
        raise ValueError(f"{exc}; accepted: {accepted}") from None


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
