"""Mixed-precision formats on the host: which precisions exist, and rounding to them in NumPy.

``Network(..., precision=P)`` reads every product's operands rounded to ``P`` and
accumulates in float32; this module is the NumPy reference of that rounding, which the device
functions of ``gpuback.kernels.precision`` (cpu and cuda backends) match bit for bit.

``round_to(x, P)`` takes float32 values and returns float32 values that ``P`` represents
exactly, rounded to nearest with ties to even:

* ``"fp32"``: the identity (``x`` itself is returned).
* ``"tf32"``: NVIDIA's TensorFloat-32, a 10-bit mantissa with float32's exponent range: the
  low 13 mantissa bits of the float32 pattern are rounded off (integer arithmetic on the
  bits, as ml_dtypes has no tf32). Float32 subnormals round to multiples of 2^-136; values
  that round up past the largest tf32 value become inf.
* ``"bf16"``: bfloat16, through ``ml_dtypes.bfloat16``.
* ``"fp16"``: IEEE binary16, through NumPy's ``float16``: 65520 and above become inf,
  magnitudes below 2^-14 round to multiples of 2^-24 (half subnormals) or to a signed zero.
* In every precision inf stays inf, and a NaN stays a NaN: the quiet NaN with x's sign and
  the top payload bits that ``P`` holds (the same bits on every backend).

The unit roundoff ``u = 2^-p`` of a format with ``p`` significand bits bounds the relative
error of one rounding, ``|round_to(x) - x| <= u |x|`` for normal results (Higham, "Accuracy
and Stability of Numerical Algorithms", 2.1): 2^-24 (fp32), 2^-11 (tf32 and fp16), 2^-8
(bf16). ``ml_dtypes`` is imported when bf16 is first used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
# Significand bits p, the implicit leading bit included.
SIGNIFICAND_BITS = {"fp32": 24, "tf32": 11, "bf16": 8, "fp16": 11}
# Mantissa bits of a float32 pattern that a rounding to the format drops (NaN payloads).
_DROPPED = {"tf32": 13, "bf16": 16, "fp16": 13}
_QUIET = np.uint32(0x00400000)
_MAGNITUDE = np.uint32(0x7FFFFFFF)
_INF = np.uint32(0x7F800000)


def check_precision(value: Any, dtype: DTypeLike = "float32") -> str:
    """``value`` as a precision name, after checking it is one of ``PRECISIONS`` and that
    the master dtype ``dtype`` of parameters and gradients allows it (every precision but
    fp32 needs float32 masters)."""
    if not isinstance(value, str):
        raise TypeError(f"precision must be a string, one of {', '.join(PRECISIONS)}; "
                        f"got {value!r}")
    if value not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {value!r}")
    master = np.dtype(dtype).name
    if value != "fp32" and master != "float32":
        raise ValueError(f"precision {value!r} needs dtype='float32' (the master copy), "
                         f"got {master!r}")
    return value


def storage_dtype(precision: str, dtype: DTypeLike = "float32") -> np.dtype[Any]:
    """The dtype a device stores values of ``precision`` in: ``ml_dtypes.bfloat16`` (bf16),
    ``float16`` (fp16), ``float32`` (tf32: TF32 is a product mode, stored in float32), and
    the master ``dtype`` itself for fp32."""
    check_precision(precision, dtype)
    if precision == "bf16":
        return np.dtype(_bfloat16())
    if precision == "fp16":
        return np.dtype(np.float16)
    if precision == "tf32":
        return np.dtype(np.float32)
    return np.dtype(dtype)


def unit_roundoff(precision: str) -> float:
    """u = 2^-p for ``precision``'s p significand bits: the largest relative error of one
    round-to-nearest (2^-24 fp32, 2^-11 tf32 and fp16, 2^-8 bf16)."""
    return 2.0 ** -SIGNIFICAND_BITS[check_precision(precision)]


def round_to(x: np.ndarray, precision: str) -> np.ndarray:
    """``x`` (float32) rounded to ``precision`` with round-to-nearest-even, as a new float32
    array of the same shape holding values ``precision`` represents exactly; for fp32, ``x``
    itself. NaN and inf as in the module docstring."""
    check_precision(precision)
    if precision == "fp32":
        return x
    values = np.asarray(x)
    if values.dtype != np.float32:
        raise TypeError(f"x: round_to(..., {precision!r}) rounds float32 values, "
                        f"got dtype {values.dtype}")
    bits = values.view(np.uint32)
    with np.errstate(over="ignore", invalid="ignore"):
        if precision == "tf32":
            rounded = _round_off(bits, 13).view(np.float32)
        else:
            rounded = values.astype(storage_dtype(precision)).astype(np.float32)
    keep = np.uint32(0xFFFFFFFF ^ ((1 << _DROPPED[precision]) - 1))
    quiet_nan = ((bits & keep) | _QUIET).view(np.float32)
    return np.where(np.isnan(values), quiet_nan, rounded)


def _round_off(bits: np.ndarray, drop: int) -> np.ndarray:
    """Float32 bit patterns with the low ``drop`` mantissa bits rounded off (nearest, ties
    to even; a carry out of the top binade gives inf's pattern); inf and NaN patterns are
    passed through (``round_to`` replaces the NaNs)."""
    keep = np.uint32(0xFFFFFFFF ^ ((1 << drop) - 1))
    odd = (bits >> np.uint32(drop)) & np.uint32(1)
    rounded = (bits + np.uint32((1 << (drop - 1)) - 1) + odd) & keep  # wraps only for NaNs
    return np.where((bits & _MAGNITUDE) >= _INF, bits, rounded)


def _bfloat16() -> type[np.generic]:
    try:
        import ml_dtypes
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("precision 'bf16' needs the ml_dtypes package: "
                          "pip install ml_dtypes") from exc
    bfloat16: type[np.generic] = ml_dtypes.bfloat16  # (ml_dtypes ships no type information)
    return bfloat16
