"""What a network and a training run need in memory, checked before anything is allocated.

The public path of ``gpuback.core.memory`` (a network's figure) and
``gpuback.training.memory`` (a training run's)."""

from __future__ import annotations

from .core.memory import (
    UNITS,
    InsufficientMemoryError,
    Need,
    check_network,
    human,
    network_needs,
    parameter_count,
)
from .training.memory import check_run, check_training, training_needs

__all__ = [
    "UNITS",
    "InsufficientMemoryError",
    "Need",
    "check_network",
    "check_run",
    "check_training",
    "human",
    "network_needs",
    "parameter_count",
    "training_needs",
]
