"""Optimisers: SGD (momentum, Nesterov), Adam, AdamW, learning-rate schedules.

``optimizers``: the optimisers and schedules, each step one fused backend op over the flat
parameter buffer; ``param_options``: per-parameter learning-rate multipliers, frozen
parameters, and the segments of the flat buffer they make."""

from __future__ import annotations

from .optimizers import (
    OPTIMIZERS,
    SCHEDULES,
    SGD,
    Adam,
    AdamW,
    Constant,
    Cosine,
    Optimizer,
    Schedule,
    StepDecay,
    from_config,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Adam",
    "AdamW",
    "Constant",
    "Cosine",
    "Optimizer",
    "Schedule",
    "StepDecay",
    "from_config",
]
