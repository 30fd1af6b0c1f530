"""``gpuback.info()``: what this machine offers gpuback (backends, GPU, versions)."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from ..backends import backend_names, backend_status, describe
from ..backends.precision import PRECISIONS


def info() -> dict[str, Any]:
    """Python's and NumPy's versions, and for every backend whether it can run here
    (``usable``, ``simulated``, and the ``reason``) and what it runs on or would
    (``details``: cores and BLAS; for cuda the GPU, its compute capability and the
    versions of Numba, numba-cuda, CuPy and the CUDA runtime), and the precisions a
    ``Network`` takes (``gpuback.precision``: every backend computes each of them)."""
    backends = {}
    for name in backend_names():
        state = backend_status(name)
        backends[name] = {"usable": state.usable, "simulated": state.simulated,
                          "reason": state.reason, "details": describe(name)}
    return {"python": platform.python_version(), "numpy": np.__version__,
            "backends": backends, "precisions": list(PRECISIONS)}
