"""Dynamic loss scaling for fp16 mixed precision (PyTorch ``GradScaler``'s rule).

The public path of ``gpuback.core.loss_scale`` (the scale kept on the backend) and of the
constants the device code shares (``gpuback.kernels.scalar``)."""

from __future__ import annotations

from .core.loss_scale import (
    GROWTH_INTERVAL,
    INIT_SCALE,
    MIN_SCALE,
    STATE_FIELDS,
    LossScale,
    LossScaler,
    check_state,
    for_fit,
    resolve,
)
from .kernels.scalar import (
    BACKOFF_FACTOR,
    GROWTH_FACTOR,
    SCALE_OVERFLOW,
)

__all__ = [
    "BACKOFF_FACTOR",
    "GROWTH_FACTOR",
    "GROWTH_INTERVAL",
    "INIT_SCALE",
    "MIN_SCALE",
    "SCALE_OVERFLOW",
    "STATE_FIELDS",
    "LossScale",
    "LossScaler",
    "check_state",
    "for_fit",
    "resolve",
]
