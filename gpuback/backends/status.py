"""What a backend reports about itself: can it run here, and on what."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendStatus:
    usable: bool
    simulated: bool  # runs, but emulated (the CUDA simulator): never picked by "auto"
    reason: str  # why it cannot run, or what it runs on
