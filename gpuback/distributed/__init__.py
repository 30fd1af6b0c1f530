"""Data-parallel training over MPI: the world of a run, its collectives and buckets.

``mpi``: the world (``world()``), its collectives and failure handling; ``buckets``: the
flat gradient buffer cut into the all-reduces started during backward. Where the launcher
placed this process is ``gpuback.backends.launcher``'s (the backends need it too)."""

from __future__ import annotations

from ..backends.launcher import cores_per_rank, launched_by_mpi, ranks_per_node
from .buckets import BUCKET_BYTES, cut_buckets
from .mpi import (
    INSTALL_HINT,
    Done,
    MPIPending,
    MPIWorld,
    SingleProcess,
    mark_on_every_rank,
    on_every_rank,
    share_bounds,
    world,
)

__all__ = [
    "BUCKET_BYTES",
    "INSTALL_HINT",
    "Done",
    "MPIPending",
    "MPIWorld",
    "SingleProcess",
    "cores_per_rank",
    "cut_buckets",
    "launched_by_mpi",
    "mark_on_every_rank",
    "on_every_rank",
    "ranks_per_node",
    "share_bounds",
    "world",
]
