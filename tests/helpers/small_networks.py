"""A small network, inputs with one chosen value, and a recorder of what a backend
allocates: shared by the tests of memory figures and of input values."""

from __future__ import annotations

import numpy as np
import pytest

import gpuback
from gpuback.backends import backend_module

LABELS = np.array([0, 1, 1])  # targets of ``inputs``' three samples


def small_net(backend: str, loss: str = "cross_entropy",
              dtype: str = "float32") -> gpuback.Network:
    """A 4-3-2 tanh network."""
    return gpuback.Network(gpuback.mlp_spec([4, 3, 2], activation="tanh", loss=loss),
                           backend=backend, dtype=dtype)


def inputs(value: float, at: tuple[int, int] = (0, 3)) -> np.ndarray:
    """Three float64 samples of ``small_net``'s four features, ``value`` at ``at``."""
    X = np.linspace(-1, 1, 12).reshape(3, 4)
    X[at] = value
    return X


class Allocations:
    """Records the buffers a backend module allocates (zeros, from_host) while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
        module = backend_module(backend)
        self.nbytes: list[int] = []
        for op in ("zeros", "from_host"):
            original = getattr(module, op)

            def recording(*args, _original=original, **kwargs):
                out = _original(*args, **kwargs)
                self.nbytes.append(int(out.nbytes))
                return out

            monkeypatch.setattr(module, op, recording)


def stub_free(monkeypatch: pytest.MonkeyPatch, backend: str, free: int) -> None:
    """Make ``backend``'s ``free_memory`` answer ``free`` bytes."""
    monkeypatch.setattr(backend_module(backend), "free_memory", lambda: free)
