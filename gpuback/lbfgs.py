"""Full-batch L-BFGS training through ``scipy.optimize.minimize``.

The public path of ``gpuback.training.lbfgs``."""

from __future__ import annotations

from .training.lbfgs import (
    DEFAULT_CHUNK,
    INSTALL_HINT,
    Objective,
    fit_lbfgs,
)

__all__ = [
    "DEFAULT_CHUNK",
    "INSTALL_HINT",
    "Objective",
    "fit_lbfgs",
]
