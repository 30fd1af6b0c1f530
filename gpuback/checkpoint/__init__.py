"""Checkpoints: a network's weights, spec and training state, crash-safe on disk.

``files``: what a checkpoint holds, written and read back checked; ``versioned_dir``: the
crash-safe store of versions it is kept in (see each module)."""

from __future__ import annotations

from .files import (
    FILES,
    FORMAT,
    CheckpointError,
    Saved,
    check_target,
    exists,
    load_optimizer,
    read,
    save,
)

__all__ = [
    "FILES",
    "FORMAT",
    "CheckpointError",
    "Saved",
    "check_target",
    "exists",
    "load_optimizer",
    "read",
    "save",
]
