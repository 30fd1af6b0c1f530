"""Shared fixtures and the CUDA test modes. Test modules import helpers from this directory
(random_specs, tolerances).

CUDA modes: a plain ``pytest`` runs the cuda backend under the Numba simulator
(``NUMBA_ENABLE_CUDASIM=1`` is set here, before anything imports Numba); tests marked
``gpu`` then skip with their reason. ``pytest -m gpu`` on a machine with an NVIDIA GPU
leaves the simulator off and runs the same comparisons against CuPy.

Every backend, through one fixture. A test that takes the argument ``backend`` (or
``other_backend``, for a second one: load on another backend) runs once per name of
``gpuback.backends.backend_names()``: a new backend is tested by registering it, nothing
here names one. A backend that cannot run here shows as a skip with its status's reason
(in CI, ``CI=true``, where every backend is meant to run, as a failure instead). A simulated
backend's cases are marked ``sim``; a real device backend's ``gpu`` (so ``pytest -m gpu``
selects them on a GPU machine). The ``simulated`` fixture says whether the backend under
test is emulated (the cuda backend under the simulator, ~70 us per simulated thread), so a
test can pick small sizes there; ``backend_cases(cases, small_cases)`` parametrises
``(backend, case, spec)`` with the small case list on simulated backends.

Unsupported behaviour, declared once. ``UNSUPPORTED[(backend, behaviour)]`` gives the
reason a backend does not support a behaviour of ``BEHAVIOURS``; a test (or one of its
parameters) that relies on one says so with ``@pytest.mark.needs("behaviour")``, and on
such a backend it is skipped with the table's reason (a skip, not an expected failure: a
behaviour that holds only by chance, like the order of atomic additions, would pass now
and then). Nothing else skips a test for its backend.
"""

from __future__ import annotations

import os
import random
import signal
import sys

# Before SciPy loads (Numba imports it when it is installed): scikit-learn's estimator
# checks of array-API input run only with SciPy's array API support on
# (tests/sklearn/test_estimators.py).
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest
from helpers.backend_params import IN_CI, backend_param
from helpers.backend_params import state as _status

from gpuback.backends import backend_names

# What a test may rely on that not every backend gives: behaviour -> what it means.
BEHAVIOURS = {
    "bitwise_without_deterministic":
        "training twice from the same seed gives bitwise equal weights with the default "
        "Network(..., deterministic=False)",
}
# (backend, behaviour) -> why the backend does not support it.
UNSUPPORTED: dict[tuple[str, str], str] = {
    ("cuda", "bitwise_without_deterministic"):
        "the sparse backward scatter-adds w_kj delta_k with atomics, whose order is not "
        "fixed, so the last bits vary from run to run; Network(..., deterministic=True) "
        "gathers instead and is bitwise reproducible",
}
BACKEND_FIXTURES = ("backend", "other_backend")


def pytest_configure(config: pytest.Config) -> None:
    # A suite started with SIGINT ignored (a background job of a script: ``pytest &``) would
    # hand that on to every child process (an ignored signal stays ignored across exec), and a
    # child Python then never turns SIGINT into KeyboardInterrupt: a test that sends a real
    # Ctrl-C would wait for ever. A handler set here is reset to the default in each child
    # at exec, so every child (xdist workers included) starts as a shell would start it.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers", "needs(*behaviours): the test relies on these BEHAVIOURS (tests/conftest.py); "
        "it is skipped on a backend that UNSUPPORTED says lacks one")
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


def _parametrized_names(metafunc: pytest.Metafunc) -> set[str]:
    names: set[str] = set()
    for mark in metafunc.definition.iter_markers("parametrize"):
        argnames = mark.args[0] if mark.args else mark.kwargs["argnames"]
        if isinstance(argnames, str):
            argnames = argnames.split(",")
        names.update(a.strip() for a in argnames)
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that takes ``backend`` (``other_backend``) on each backend, unless the
    test parametrises that argument itself."""
    explicit = _parametrized_names(metafunc)
    for fixture in BACKEND_FIXTURES:
        if fixture in metafunc.fixturenames and fixture not in explicit:
            metafunc.parametrize(fixture, [backend_param(n) for n in backend_names()],
                                 indirect=True)


def _checked_backend(name: str) -> str:
    status = _status(name)
    if not status.usable:  # reached only in CI, where every backend is meant to run
        pytest.fail(f"backend {name!r} cannot run here, and CI is meant to run it: "
                    f"{status.reason}")
    return name


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test (see the module docstring)."""
    return _checked_backend(request.param)


@pytest.fixture
def other_backend(request: pytest.FixtureRequest) -> str:
    """A second backend, for tests across two (every ordered pair with ``backend``)."""
    return _checked_backend(request.param)


@pytest.fixture
def simulated(backend: str) -> bool:
    """Whether ``backend`` is emulated here (pick small sizes: ~70 us a simulated thread)."""
    return _status(backend).simulated


def _skip_unsupported(item: pytest.Item) -> None:
    callspec = getattr(item, "callspec", None)
    names = [] if callspec is None else [callspec.params[f] for f in BACKEND_FIXTURES
                                         if f in callspec.params]
    for mark in item.iter_markers("needs"):
        for behaviour in mark.args:
            if behaviour not in BEHAVIOURS:
                raise pytest.UsageError(f"{item.nodeid}: needs({behaviour!r}): not one of "
                                        f"conftest.BEHAVIOURS {sorted(BEHAVIOURS)}")
            for name in names:
                reason = UNSUPPORTED.get((name, behaviour))
                if reason is not None:
                    item.add_marker(pytest.mark.skip(
                        reason=f"backend {name!r} does not support {behaviour}: {reason}"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from gpuback.backends.cuda import device as cuda_device

    state = cuda_device.status()
    for item in items:
        _skip_unsupported(item)
        if "gpu" in item.keywords and (state.simulated or not state.usable):
            item.add_marker(pytest.mark.skip(
                reason=f"needs a real NVIDIA GPU; the cuda backend here runs on {state.reason}"
                       " (on a GPU machine: pip install '.[test,cuda13]' && pytest -m gpu)"))
        if "sim" in item.keywords and not state.simulated and not IN_CI:
            item.add_marker(pytest.mark.skip(
                reason="simulator tests need NUMBA_ENABLE_CUDASIM=1 (set by conftest unless "
                       f"-m gpu is given); the cuda backend here runs on {state.reason}"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _fixed_global_seeds() -> None:
    """Every test starts from the same state of NumPy's global generator and Python's
    ``random``: code that draws from them unseeded (a scikit-learn estimator without a
    ``random_state``, a library's own default) gives the same numbers in every run, on
    every machine and on whichever xdist worker the test lands."""
    np.random.seed(0)
    random.seed(0)
