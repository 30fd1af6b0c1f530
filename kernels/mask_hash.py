"""The counter-based hash behind dropout's masks, in NumPy integer arithmetic that Numba
compiles unchanged for the devices (``gpuback.kernels.dropout``) and NumPy runs on arrays
(the host backends), without importing Numba.

``mix32`` is a 32-bit integer hash (Chris Wellons' lowbias32: xor-shift, multiply,
xor-shift, multiply, xor-shift), every product of two values below 2^32 held in 64 bits and
cut back to 32, so no arithmetic ever overflows, on the host, in NumPy or on a GPU. A mask
value is ``mix32(sample ^ mix32(unit ^ key))`` with ``key = dropout_key(seed, step,
group)``, and the unit is kept when it is at least ``threshold(p)`` = round(p * 2^32): with
probability 1 - p (to within 2^-32). The comparison is of integers: no rounding can make
two backends differ.
"""

from __future__ import annotations

import numpy as np

MASK32 = np.uint64(0xFFFFFFFF)
_M1 = np.uint64(0x7FEB352D)
_M2 = np.uint64(0x846CA68B)
_S15 = np.uint64(15)
_S16 = np.uint64(16)


def mix32(x):
    """lowbias32 of the low 32 bits of ``x`` (a uint64 scalar or array): a 32-bit value."""
    x = x & MASK32
    x = x ^ (x >> _S16)
    x = (x * _M1) & MASK32
    x = x ^ (x >> _S15)
    x = (x * _M2) & MASK32
    return x ^ (x >> _S16)


def dropout_key(seed: int, step: int, group: int) -> np.uint64:
    """The 32-bit key of one step's masks in one group (seed, step and group each taken
    modulo 2^32)."""
    key = mix32(np.uint64(seed & 0xFFFFFFFF))
    key = mix32(np.uint64(step & 0xFFFFFFFF) ^ key)
    return mix32(np.uint64(group & 0xFFFFFFFF) ^ key)


def threshold(p: float) -> np.uint64:
    """The smallest hash kept: round(p * 2^32) (0 for p = 0: every unit kept)."""
    return np.uint64(round(p * 2.0**32))
