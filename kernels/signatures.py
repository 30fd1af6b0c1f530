"""Explicit kernel signatures, one per float dtype a kernel is launched with."""

from __future__ import annotations

from numba import float32, float64, int64, void

DTYPES = {"float32": float32, "float64": float64}
INDEX = int64[::1]  # sparse index arrays (COO, CSR, CSC), C-contiguous


def for_each_dtype(arguments) -> dict:
    """``{dtype name: void(*arguments(matrix type, vector type))}`` for float32 and float64."""
    return {name: void(*arguments(t[:, ::1], t[::1])) for name, t in DTYPES.items()}
