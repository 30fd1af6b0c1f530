"""What the cuda backend asks of the device, counted: ``gpuback.profile.counters()``.

The public path of ``gpuback.diagnostics.profiling``."""

from __future__ import annotations

from .diagnostics.profiling import (
    FIELDS,
    Counts,
    active,
    count,
    counters,
)

__all__ = [
    "FIELDS",
    "Counts",
    "active",
    "count",
    "counters",
]
