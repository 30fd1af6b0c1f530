"""``gpuback.info()``: what this machine offers gpuback (backends, GPU, versions)."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from .backends import _module, backend_names, cuda_device


def info() -> dict[str, Any]:
    """Backends (usable or not, and why), the GPU and compute capability if there is one,
    and the versions of Python, NumPy, Numba, numba-cuda, CuPy and the CUDA runtime."""
    backends = {}
    for name in backend_names():
        state = _module(name).status()
        backends[name] = {"usable": state.usable, "simulated": state.simulated,
                          "reason": state.reason}
    return {"python": platform.python_version(), "numpy": np.__version__,
            "backends": backends, "cuda": cuda_device.describe()}
