"""Explicit kernel signatures, and the ``KERNELS`` tables built from them.

Every kernel module builds its kernels per float type (``build(real)``: the kernel functions
compute in ``real``, their float scalar parameters are ``real`` too) and declares their
arguments per type; ``kernel_table`` turns the two into the module's ``KERNELS`` table,
``{kernel name: {dtype name: (python function, signature)}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba import float32, float64, int64, void

DTYPES = {"float32": float32, "float64": float64}
INDEX = int64[::1]  # sparse index arrays (COO, CSR, CSC), sample orders, status pairs


def kernel_table(build: Callable[[Any], dict[str, Callable]],
                 arguments: Callable[[Any, Any, Any], dict[str, tuple]],
                 dtypes: dict[str, Any] = DTYPES) -> dict[str, dict[str, tuple]]:
    """``{name: {dtype: (build(real)[name], void(*arguments(real, matrix, vector)[name]))}}``
    for each ``real`` of ``dtypes``; matrix and vector are C-contiguous arrays of ``real``."""
    table: dict[str, dict[str, tuple]] = {}
    for dtype, real in dtypes.items():
        functions = build(real)
        for name, args in arguments(real, real[:, ::1], real[::1]).items():
            table.setdefault(name, {})[dtype] = (functions[name], void(*args))
    return table
