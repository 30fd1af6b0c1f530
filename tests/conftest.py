"""Shared fixtures and the CUDA test modes. Test modules import helpers from this directory
(random_specs, tolerances).

CUDA modes: a plain ``pytest`` runs the cuda backend under the Numba simulator
(``NUMBA_ENABLE_CUDASIM=1`` is set here, before anything imports Numba); tests marked
``gpu`` then skip with their reason. ``pytest -m gpu`` on a machine with an NVIDIA GPU
leaves the simulator off and runs the same comparisons against CuPy.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from random_specs import random_data

import gpuback


def randomise_biases(net: gpuback.Network, rng: np.random.Generator) -> None:
    """Give every bias a random value, so that bias paths carry real numbers in the checks
    (initial biases are zero) and no unit sits exactly on relu's kink."""
    params = net.parameters()
    net.set_parameters({g["name"]: rng.normal(scale=0.5, size=g["size"])
                        for g in net.spec["groups"] if g["name"] in params})


KINKED = ("relu", "leaky_relu")


def kink_margin(net: gpuback.Network, X: np.ndarray) -> float:
    """The smallest |a| over every relu-family unit and sample (inf if there are none).

    Reads every pre-activation through ``Network.trace``.
    """
    pre_activations = net.trace(X).a
    margins = [np.abs(pre_activations[g["name"]]).min() for g in net.spec["groups"]
               if g.get("activation") in KINKED]
    return float(min(margins, default=np.inf))


def data_away_from_kinks(net: gpuback.Network, spec: dict, batch: int,
                         rng: np.random.Generator, labels: bool = False, margin: float = 2e-2):
    """``random_data``, redrawn until no relu-family pre-activation lies within ``margin`` of 0.

    A central difference whose step moves a pre-activation across relu's kink measures an
    average of the two slopes, not the derivative; gradcheck's default step is 2e-3.
    """
    for _ in range(200):
        X, T = random_data(spec, batch, rng, labels=labels)
        if kink_margin(net, X) > margin:
            return X, T
    raise AssertionError("could not draw data away from relu kinks")


def pytest_configure(config: pytest.Config) -> None:
    markexpr = (config.getoption("markexpr") or "").replace("not gpu", "")
    if "gpu" not in markexpr:
        os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
        # The simulator runs a block's threads as Python threads and polls them from the
        # main thread; each syncthreads waits for the GIL to change hands, every 5 ms by
        # default. A 0.1 ms switch interval simulates block reductions about 9x faster.
        sys.setswitchinterval(1e-4)
        _make_simulator_shared_arrays_thread_safe()


def _make_simulator_shared_arrays_thread_safe() -> None:
    """Work around a race in the Numba CUDA simulator (numba-cuda 0.30).

    The simulator runs a block's threads as Python threads and finds a block's shared array
    by the source line that declares it: ``get``, and if missing, create and store. Two
    threads reaching the declaration together can both create one, and then they reduce
    into different arrays: about 1 launch in 300 of a block-reduction kernel came out wrong
    here, the more often the shorter the GIL switch interval. ``dict.setdefault`` makes the
    create-or-get one step, so every thread of the block gets the same array, as on a GPU.
    """
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original = kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory, or unsupported
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)  # noqa: SLF001  (CPython's documented frame access)
        key = (caller.f_code.co_filename, caller.f_lineno)
        return self._allocations.setdefault(key, np.empty(shape, dtype))

    kernelapi.FakeCUDAShared.array = array


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from gpuback.backends import cuda_device

    state = cuda_device.status()
    in_ci = os.environ.get("CI", "").lower() == "true"
    for item in items:
        if "gpu" in item.keywords and (state.simulated or not state.usable):
            item.add_marker(pytest.mark.skip(
                reason=f"needs a real NVIDIA GPU; the cuda backend here runs on {state.reason}"
                       " (on a GPU machine: pip install '.[test,cuda13]' && pytest -m gpu)"))
        if "sim" in item.keywords and not state.simulated and not in_ci:
            item.add_marker(pytest.mark.skip(
                reason="simulator tests need NUMBA_ENABLE_CUDASIM=1 (set by conftest unless "
                       f"-m gpu is given); the cuda backend here runs on {state.reason}"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
