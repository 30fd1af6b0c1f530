"""The ``gpuback`` command (``gpuback --help``): train, predict, evaluate, spec, bench, ...

``app``: the parser and the commands' dispatch; one module per command family beside it."""

from __future__ import annotations

from .app import main

__all__ = [
    "main",
]
