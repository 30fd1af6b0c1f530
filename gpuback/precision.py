"""Mixed precision's numerics: rounding to tf32, bf16 and fp16, and what each keeps.

The public path of ``gpuback.backends.precision`` (the names, the checks and the NumPy
reference of the rounding every backend's ``round_to_precision`` is held to)."""

from __future__ import annotations

from .backends.precision import (
    PRECISIONS,
    SIGNIFICAND_BITS,
    check_precision,
    round_to,
    storage_dtype,
    unit_roundoff,
)

__all__ = [
    "PRECISIONS",
    "SIGNIFICAND_BITS",
    "check_precision",
    "round_to",
    "storage_dtype",
    "unit_roundoff",
]
