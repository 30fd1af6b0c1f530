"""Counts of what the cuda backend asks of the device, kept while a counter is open.

The one module that touches the device (``gpuback.backends.cuda.device``, and the simulator's
arrays in ``gpuback.backends.arrays``) calls ``count`` for every launch, cuBLAS call, copy,
host wait and allocation; ``gpuback.profile.counters()`` opens a ``Counts`` and hands it to
the user (see ``gpuback.diagnostics.profiling`` for what each field counts).
"""


from __future__ import annotations

from dataclasses import asdict, dataclass

FIELDS = ("launches", "gemms", "host_to_device", "device_to_host", "host_waits", "allocations")


@dataclass
class Counts:
    """Integer counts of device work, one attribute per kind (see the module docstring)."""

    launches: int = 0
    gemms: int = 0
    host_to_device: int = 0
    device_to_host: int = 0
    host_waits: int = 0
    allocations: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __sub__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f) - getattr(other, f) for f in FIELDS))


_open: list[Counts] = []


def open_counts(counts: Counts) -> None:
    """Start counting into ``counts`` (until ``close_counts``)."""
    _open.append(counts)


def close_counts(counts: Counts) -> None:
    """Stop counting into ``counts``."""
    _open.remove(counts)


def count(field: str, n: int = 1) -> None:
    """Add ``n`` to ``field`` of every open counter (called by ``cuda_device``)."""
    for counts in _open:
        setattr(counts, field, getattr(counts, field) + n)


def active() -> bool:
    """Whether any counter is open."""
    return bool(_open)
