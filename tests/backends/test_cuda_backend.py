"""The cuda backend against the NumPy reference: under the Numba simulator (``sim``, every CI
run) and on a real GPU with CuPy (``gpu``, ``pytest -m gpu``). Same test bodies for both."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.networks import randomise_biases
from helpers.random_specs import SIM_CASES, random_data
from helpers.tolerances import TOLERANCES, rel_error

import gpuback
from gpuback import profile
from gpuback.backends.cuda import backend as cuda_backend
from gpuback.backends.cuda import device as cuda_device
from gpuback.core.checks import check_inputs, check_targets

MODES = [pytest.param("sim", marks=pytest.mark.sim), pytest.param("gpu", marks=pytest.mark.gpu)]
DTYPES = ["float64", "float32"]


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


def _pair(spec: dict, dtype: str, deterministic: bool, rng: np.random.Generator):
    """A reference network and a cuda network with the same (random-bias) parameters."""
    ref = gpuback.Network(spec, backend="numpy", dtype=dtype, seed=1)
    randomise_biases(ref, rng)
    cuda = gpuback.Network(spec, backend="cuda", dtype=dtype, seed=1,
                           deterministic=deterministic)
    cuda.set_parameters(ref.parameters())
    return ref, cuda


def _assert_matches(ref: gpuback.Network, cuda: gpuback.Network, X, T, dtype: str) -> None:
    tol = TOLERANCES[dtype]["backend"]
    err = rel_error(cuda.forward(X), ref.forward(X))
    assert err <= tol, f"forward: {err:.3e}"
    loss_c, grads_c = cuda.loss_and_grads(X, T)
    loss_r, grads_r = ref.loss_and_grads(X, T)
    assert rel_error(loss_c, loss_r) <= tol, f"loss {loss_c!r} vs {loss_r!r}"
    assert grads_c.keys() == grads_r.keys()
    errors = {k: rel_error(grads_c[k], grads_r[k]) for k in grads_r}
    assert max(errors.values()) <= tol, errors
    assert all(isinstance(g, np.ndarray) and g.dtype == np.dtype(dtype) for g in grads_c.values())


@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("case", "spec"), SIM_CASES, ids=[c for c, _ in SIM_CASES])
def test_cuda_matches_reference(mode: str, case: str, spec: dict, dtype: str,
                                deterministic: bool) -> None:
    rng = np.random.default_rng(11)
    ref, cuda = _pair(spec, dtype, deterministic, rng)
    X, T = random_data(spec, 3, rng)
    _assert_matches(ref, cuda, X, T, dtype)


@pytest.mark.parametrize("batch", [1, 5])
def test_cuda_class_labels_and_batch_sizes(mode: str, batch: int) -> None:
    spec = dict(SIM_CASES)["dag-2"]
    assert spec["loss"] == "cross_entropy"
    rng = np.random.default_rng(batch)
    ref, cuda = _pair(spec, "float64", False, rng)
    X, T = random_data(spec, batch, rng, labels=True)
    _assert_matches(ref, cuda, X, T, "float64")
    # a second batch size on the same network reallocates its workspace and still agrees
    X, T = random_data(spec, batch + 2, rng, labels=True)
    _assert_matches(ref, cuda, X, T, "float64")


def test_deterministic_mode_is_bitwise_reproducible(mode: str) -> None:
    spec = dict(SIM_CASES)["sparse-chain"]
    rng = np.random.default_rng(5)
    X, T = random_data(spec, 4, rng)
    runs = []
    for _ in range(2):
        net = gpuback.Network(spec, backend="cuda", dtype="float32", seed=3, deterministic=True)
        runs.append(net.loss_and_grads(X, T))
        runs.append(net.loss_and_grads(X, T))
    loss0, grads0 = runs[0]
    for loss, grads in runs[1:]:
        assert loss == loss0
        for k in grads0:
            assert np.array_equal(grads[k], grads0[k]), k


@pytest.mark.parametrize("inputs", ["numpy", "device"])
def test_loss_and_grads_steady_state_costs(mode: str, inputs: str) -> None:
    """After the first call, a call allocates nothing; it uploads X and T when they are host
    arrays (nothing when they are device arrays) and reads back only the loss (one wait)."""
    spec = dict(SIM_CASES)["dag-1"]
    rng = np.random.default_rng(6)
    net = gpuback.Network(spec, backend="cuda", dtype="float32")
    X, T = random_data(spec, 4, rng)
    if inputs == "device":
        X, T = cuda_backend.from_host(X, np.float32), cuda_backend.from_host(T, np.float32)
    net.loss_and_grads(X, T, as_device=True)  # first call: the workspace
    calls = 3
    with profile.counters() as validation:  # device inputs are checked on the device
        for _ in range(calls):
            check_inputs(net.ops, X, net.plan.n_in, net.dtype)
            check_targets(net.ops, T, net.plan.loss, net.plan.n_out, 4, net.dtype)
    with profile.counters() as counts:
        for _ in range(calls):
            net.loss_and_grads(X, T, as_device=True)
    step = counts - validation
    assert step.allocations == 0, step
    assert step.host_to_device == (2 * calls if inputs == "numpy" else 0), step
    assert step.device_to_host == calls and step.host_waits == calls, step
    assert step.launches > 0 and step.gemms > 0, step


def test_as_device_returns_the_backend_gradient_buffers(mode: str) -> None:
    spec = dict(SIM_CASES)["dense-tanh"]
    rng = np.random.default_rng(7)
    net = gpuback.Network(spec, backend="cuda")
    X, T = random_data(spec, 2, rng)
    loss_host, grads_host = net.loss_and_grads(X, T)
    loss_dev, grads_dev = net.loss_and_grads(X, T, as_device=True)
    assert loss_dev == loss_host
    for k, g in grads_dev.items():
        assert cuda_device.is_device_array(g)
        np.testing.assert_array_equal(cuda_device.to_numpy(g), grads_host[k])


def test_device_inputs_are_accepted(mode: str) -> None:
    spec = dict(SIM_CASES)["bce"]
    rng = np.random.default_rng(8)
    net = gpuback.Network(spec, backend="cuda")
    X, T = random_data(spec, 3, rng)
    X_dev, T_dev = cuda_backend.from_host(X, np.float64), cuda_backend.from_host(T, np.float64)
    assert cuda_device.is_device_array(X_dev)
    loss_dev, _ = net.loss_and_grads(X_dev, T_dev)
    loss_host, _ = net.loss_and_grads(X, T)
    assert loss_dev == loss_host
    np.testing.assert_array_equal(net.forward(X_dev), net.forward(X))


def test_auto_never_picks_the_simulator() -> None:
    net = gpuback.Network(gpuback.mlp_spec([2, 2]), backend="auto")
    state = cuda_device.status()
    assert net.backend == ("cuda" if state.usable and not state.simulated else
                           _best_cpu_backend())


def _best_cpu_backend() -> str:
    from gpuback.backends.cpu import backend as cpu_backend

    return "cpu" if cpu_backend.status().usable else "numpy"


def test_cuda_without_a_gpu_says_what_to_install(monkeypatch) -> None:
    from gpuback.backends.status import BackendStatus

    missing = BackendStatus(False, False, f"CuPy is not installed: {cuda_device.INSTALL_HINT}")
    monkeypatch.setattr(cuda_backend, "status", lambda: missing)
    with pytest.raises(RuntimeError, match=r"'cuda' cannot run here: CuPy is not installed.*"
                                           r"gpuback\[cuda12\].*gpuback\[cuda13\].*'numpy'"):
        gpuback.Network(gpuback.mlp_spec([2, 2]), backend="cuda")
    assert gpuback.Network(gpuback.mlp_spec([2, 2]), backend="auto").backend == \
        _best_cpu_backend()


def test_info_reports_backends_and_versions() -> None:
    report = gpuback.info()
    assert set(report["backends"]) == {"numpy", "cpu", "cuda"}
    assert report["backends"]["numpy"]["usable"]
    cuda = report["backends"]["cuda"]
    assert cuda["usable"] == cuda_device.status().usable
    assert report["numpy"] == np.__version__
    assert "numba" in cuda["details"] and "cupy" in cuda["details"]
    assert report["backends"]["cpu"]["details"]["cores"] >= 1


INDEPENDENT_CASES = [c for c in SIM_CASES if c[0].startswith(("dag", "sparse", "bce"))]


@pytest.mark.parametrize(("case", "spec"), INDEPENDENT_CASES,
                         ids=[c for c, _ in INDEPENDENT_CASES])
def test_cuda_matches_the_independent_implementation(mode: str, case: str, spec: dict) -> None:
    from helpers import independent

    rng = np.random.default_rng(13)
    net = gpuback.Network(spec, backend="cuda", dtype="float64", seed=2)
    randomise_biases(net, rng)
    X, T = random_data(spec, 3, rng)
    params = net.parameters()
    tol = TOLERANCES["float64"]
    assert rel_error(net.forward(X), independent.forward(spec, params, X)) \
        <= tol["independent_forward"]
    loss, grads = net.loss_and_grads(X, T)
    assert rel_error(loss, independent.loss(spec, params, X, T)) <= tol["independent_forward"]
    reference = independent.complex_step_grads(spec, params, X, T)
    errors = {k: rel_error(grads[k], reference[k]) for k in reference}
    assert max(errors.values()) <= tol["independent_grad"], errors


@pytest.mark.parametrize(("value", "allowed"), [(None, False), ("0", False), ("", False),
                                                ("1", True)])
def test_tf32_is_off_unless_cupy_tf32_is_set(monkeypatch, value, allowed: bool) -> None:
    if value is None:
        monkeypatch.delenv("CUPY_TF32", raising=False)
    else:
        monkeypatch.setenv("CUPY_TF32", value)
    assert cuda_device.tf32_allowed() is allowed
