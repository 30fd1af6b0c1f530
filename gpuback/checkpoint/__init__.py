"""Checkpoints: a network's weights, spec and training state, crash-safe on disk.

``files``: what a checkpoint holds, written and read back checked; ``versioned_dir``: the
crash-safe store of versions it is kept in (see each module).

The public door to save is ``Network.save`` (and ``fit(..., checkpoint=...)``); this package
presents the reading side: ``read`` (the network part, checked), ``load_optimizer`` (the
optimiser saved beside it, bound to a network), ``exists``, and ``CheckpointError``, what
every failure raises. ``files.save`` is the writer those doors call."""

from __future__ import annotations

from .files import (
    FORMAT,
    CheckpointError,
    Saved,
    exists,
    load_optimizer,
    read,
)

__all__ = [
    "FORMAT",
    "CheckpointError",
    "Saved",
    "exists",
    "load_optimizer",
    "read",
]
