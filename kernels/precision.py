"""Rounding float32 values to the mixed-precision formats, in integer arithmetic on their bits.

Mixed precision reads every product's operands rounded to the precision ``P`` and
stores activations and deltas in ``P``. The functions below do that rounding for one float32
value and return a float32 that holds exactly the value ``P`` represents, so a kernel can
round in registers and keep computing (and accumulating) in float32. They use integer
operations on the float32 bit pattern only (``x.view(np.uint32)``, shifts, masks, adds), no
float16 or bfloat16 hardware and no float arithmetic, so the same source compiles for the cpu
backend (``numba.njit``), for CUDA (device functions; no ``.f64`` PTX) and runs under the
Numba CUDA simulator, and every target gives the same bits as the NumPy reference
(``gpuback.precision.round_to``).

Rules, for a float32 ``x`` (round-to-nearest, ties to even, always):

* ``tf32`` (code ``TF32``): the float32 exponent range with a 10-bit mantissa; the low 13
  mantissa bits are rounded off. Float32 subnormals round to multiples of 2^-136; a value that
  rounds up past the largest tf32 value (above 0x7F7FF000 in magnitude bits) becomes inf.
* ``bf16`` (code ``BF16``): the top 16 bits of the float32 pattern (8-bit exponent, 7-bit
  mantissa); the low 16 bits are rounded off, with the same overflow to inf.
* ``fp16`` (code ``FP16``): IEEE binary16. Normals (|x| >= 2^-14) keep 10 mantissa bits;
  |x| >= 65520 (the tie above the largest half, 65504) becomes inf; below 2^-14 the result is
  a multiple of 2^-24 (a half subnormal), and values that round to none become a zero of
  x's sign.
* ``fp32`` (code ``FP32``): the identity.
* In every precision inf stays inf (its sign kept) and a NaN stays a NaN: the quiet NaN with
  x's sign and the top mantissa bits of its payload that ``P`` holds (the rounding carry never
  turns a NaN into inf).

``compile_for(device)`` decorates the functions with ``device`` and returns them by name, as
``scalar.compile_for`` does; integer constants only, so nothing here meets a float64. Nothing
here imports a Numba target at import time: ``cuda_functions`` and ``cuda_round_kernel``
import CUDA when they are called.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

FP32, TF32, BF16, FP16 = range(4)
CODES = {"fp32": FP32, "tf32": TF32, "bf16": BF16, "fp16": FP16}

# Float32 bit fields, as int64 values (Numba's integer type: no unsigned/signed mixing, which
# would promote to float64).
SIGN = 0x80000000
MAGNITUDE = 0x7FFFFFFF
INF = 0x7F800000
QUIET = 0x00400000  # the quiet bit of a NaN's mantissa
MANTISSA = 0x007FFFFF
HIDDEN = 0x00800000  # the implicit leading 1 of a normal float32
TF32_DROP = 13  # mantissa bits rounded off: 23 - 10
BF16_DROP = 16  # 23 - 7
FP16_OVERFLOW = 0x477FF000  # 65520.0: the tie between 65504 and 65536 (= inf) rounds to inf
FP16_MIN_NORMAL = 0x38800000  # 2^-14
FP16_SUBNORMAL_EXPONENT = 126  # 2^-24 = 2^(e - 150) * 2^(126 - e): shift a significand by it
FP16_FLOOR_EXPONENT = 102  # float32 exponents below it (|x| < 2^-25) round to zero in fp16


def float_bits(x):
    """The bit pattern of the float32 ``x``, as an int in [0, 2^32) (NumPy's scalar view:
    Numba's CPU target and the CUDA simulator's Python)."""
    return np.int64(np.float32(x).view(np.uint32))


def bits_float(u):
    """The float32 whose bit pattern is the int ``u`` in [0, 2^32) (as ``float_bits``)."""
    return np.uint32(u).view(np.float32)


def round_off(u, drop):
    """Float32 bits ``u`` with the low ``drop`` mantissa bits rounded off (nearest, ties to
    even); the exponent range stays float32's, a carry out of the top finite binade gives
    inf. Inf stays inf; a NaN keeps its sign and kept payload bits, made quiet."""
    keep = 0xFFFFFFFF ^ ((1 << drop) - 1)
    magnitude = u & MAGNITUDE
    if magnitude > INF:
        return (u & keep) | QUIET
    if magnitude == INF:
        return u
    # Half an ulp of the result, less one unless the kept lowest bit is odd: a tie then
    # carries only from an odd value (to the even one above).
    return (u + (1 << (drop - 1)) - 1 + ((u >> drop) & 1)) & keep


def fp16_bits(u):
    """Float32 bits ``u`` rounded to the nearest IEEE half value (ties to even), as float32
    bits: 10 mantissa bits above 2^-14, multiples of 2^-24 below it, inf from 65520 up."""
    sign = u & SIGN
    magnitude = u & MAGNITUDE
    if magnitude > INF:
        return (u & (0xFFFFFFFF ^ ((1 << TF32_DROP) - 1))) | QUIET
    if magnitude >= FP16_OVERFLOW:
        return sign | INF
    if magnitude >= FP16_MIN_NORMAL:
        # round_off(magnitude, TF32_DROP), written out: no carry reaches inf below 65520.
        return sign | ((magnitude + 0xFFF + ((magnitude >> TF32_DROP) & 1)) & 0x7FFFE000)
    exponent = magnitude >> 23
    if exponent < FP16_FLOOR_EXPONENT:
        return sign
    # |x| = m 2^(exponent - 150) with the significand m in [2^23, 2^24); in units of 2^-24
    # that is m / 2^shift, shift in [14, 24]: round it to an integer q in [0, 1024].
    shift = FP16_SUBNORMAL_EXPONENT - exponent
    significand = (magnitude & MANTISSA) | HIDDEN
    q = significand >> shift
    rest = significand & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if rest > half or (rest == half and (q & 1) == 1):
        q += 1
    if q == 0:
        return sign
    # q 2^-24 as float32 bits: the leading bit of q at position top gives exponent top - 24.
    top = 0
    while (q >> (top + 1)) != 0:
        top += 1
    return sign | ((top + 103) << 23) | ((q << (23 - top)) & MANTISSA)


def compile_for(device: Callable[[Callable], Any], to_bits: Callable = float_bits,
                from_bits: Callable = bits_float) -> SimpleNamespace:
    """The rounding functions, each decorated with ``device`` (``numba.njit(inline="always")``
    for the cpu backend, ``cuda.jit(device=True, inline=True)`` for CUDA), by name:
    ``round_tf32(x)``, ``round_bf16(x)``, ``round_fp16(x)`` and ``round_code(code, x)`` on a
    float32 ``x``, each returning a float32. ``to_bits`` / ``from_bits`` reinterpret a float32
    as its bits and back (``float_bits`` / ``bits_float``; libdevice's for compiled CUDA, see
    ``cuda_functions``)."""
    as_bits = device(to_bits)
    as_float = device(from_bits)
    off = device(round_off)
    half_bits = device(fp16_bits)

    @device
    def round_tf32(x):
        """x rounded to tf32 (10-bit mantissa, float32 exponent range)."""
        return as_float(off(as_bits(x), TF32_DROP))

    @device
    def round_bf16(x):
        """x rounded to bfloat16."""
        return as_float(off(as_bits(x), BF16_DROP))

    @device
    def round_fp16(x):
        """x rounded to IEEE half (float16)."""
        return as_float(half_bits(as_bits(x)))

    @device
    def round_code(code, x):
        """x rounded to the precision of ``code`` (``CODES``); FP32 (or any other code) is
        the identity."""
        if code == TF32:
            return round_tf32(x)
        if code == BF16:
            return round_bf16(x)
        if code == FP16:
            return round_fp16(x)
        return x

    return SimpleNamespace(float_bits=as_bits, bits_float=as_float, round_off=off,
                           fp16_bits=half_bits, round_tf32=round_tf32, round_bf16=round_bf16,
                           round_fp16=round_fp16, round_code=round_code)


def round_elements(round_code: Callable, grid_1d: Callable) -> Callable:
    """The CUDA kernel ``round_elements(code, x)``: ``x[i] = round_code(code, x[i])`` in place
    over a 1-D float32 array, grid-stride (one element per thread when the grid covers x)."""

    def kernel(code, x):
        i, stride = grid_1d()
        while i < x.size:
            x[i] = round_code(code, x[i])
            i += stride

    return kernel


@functools.cache
def cuda_functions() -> SimpleNamespace:
    """``compile_for`` as CUDA device functions (inlined), cached: libdevice's bit
    reinterpretation when compiling, NumPy's scalar view under the simulator (which runs the
    functions as Python, where the libdevice names are stubs). Imports numba.cuda."""
    from numba import config

    from .device import inline

    if config.ENABLE_CUDASIM:  # type: ignore[attr-defined]
        return compile_for(inline)
    # Numba's scalar ``view`` compiles for CUDA only with a GPU present (its overload asks
    # the current device for its compute capability), so ``compile_ptx`` without one could
    # not build it: libdevice's reinterpretation instead, through int32.
    from numba.cuda.libdevice import float_as_int, int_as_float

    def cuda_float_bits(x):
        return np.int64(float_as_int(x)) & 0xFFFFFFFF

    def cuda_bits_float(u):
        return int_as_float(np.int32(u))  # the int32 cast keeps the low 32 bits

    return compile_for(inline, cuda_float_bits, cuda_bits_float)


def cuda_round_kernel() -> tuple[Callable, str]:
    """``(python function, signature)`` of the CUDA rounding kernel, in the form of a
    ``KERNELS`` table entry: compile it with ``cuda.jit(signature)(function)``, launch it as
    ``kernel[blocks, threads](code, x)``. Imports numba.cuda (the simulator's, under
    ``NUMBA_ENABLE_CUDASIM=1``)."""
    from .device import grid_1d

    return round_elements(cuda_functions().round_code, grid_1d), "void(int64, float32[::1])"
