"""The cpu backend (Numba kernels and BLAS, split over the cores) against the NumPy reference."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers.networks import randomise_biases
from helpers.op_checks import DTYPES, NON_COMPUTING_OPS, cases, check_case
from helpers.random_specs import ELEMENTWISE, SPEC_CASES, chain_spec, random_dag_spec, random_data
from helpers.tolerances import TOLERANCES, rel_error

import gpuback
from gpuback.backends import OP_SET, numpy_backend, resolve_backend_name
from gpuback.backends.cpu import backend as cpu_backend
from gpuback.backends.cpu import products as cpu_products
from gpuback.backends.cpu import threads as cpu_threads

OP_CASES = [c for dtype in DTYPES for c in cases(dtype)]


@pytest.mark.parametrize("case", OP_CASES, ids=[c.id for c in OP_CASES])
def test_cpu_op_matches_reference(case) -> None:
    check_case(cpu_backend, case)


SPLIT_OP_CASES = [c for c in OP_CASES if c.dtype == "float32"]


@pytest.mark.parametrize("case", SPLIT_OP_CASES, ids=[c.id for c in SPLIT_OP_CASES])
def test_cpu_op_split_over_cores_matches_reference(case, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each op shared over three ranges however small (check_finite's ranges race to write
    the same status pair: harmless)."""
    monkeypatch.setattr(cpu_threads, "core_count", lambda: 3)
    monkeypatch.setattr(cpu_threads, "SPLIT_MIN_WORK", 0)
    for threshold in ("SPLIT_MIN_PRODUCT", "SHARE_MIN_PRODUCT", "BLAS_THREADED_MIN"):
        monkeypatch.setattr(cpu_products, threshold, 0)
    check_case(cpu_backend, case)


def test_cpu_op_cases_cover_every_computing_op() -> None:
    assert {c.op for c in OP_CASES} == set(OP_SET) - NON_COMPUTING_OPS
    assert not hasattr(cpu_backend, "all_finite")


@pytest.mark.parametrize("batch", [1, 6])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("case", "spec"), SPEC_CASES, ids=[c for c, _ in SPEC_CASES])
def test_cpu_matches_reference(case: str, spec: dict, dtype: str, batch: int) -> None:
    compare_with_reference(spec, dtype, batch)


SPLIT_CASES = [(f"dag-{seed}", random_dag_spec(seed, sizes=(5, 17, 40))) for seed in range(6)]
SPLIT_CASES += [(f"{kind}-{act}", chain_spec([15, 30, 26, 3], act, "cross_entropy", kind))
                for act in ELEMENTWISE for kind in ("dense", "sparse")]


@pytest.mark.parametrize("cores", [3, 1])
@pytest.mark.parametrize(("case", "spec"), SPLIT_CASES, ids=[c for c, _ in SPLIT_CASES])
def test_cpu_split_over_cores_matches_reference(case: str, spec: dict, cores: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Every op shared over three ranges (uneven, and more than this machine may have cores),
    however small, or run whole."""
    monkeypatch.setattr(cpu_threads, "core_count", lambda: cores)
    monkeypatch.setattr(cpu_threads, "SPLIT_MIN_WORK", 0)
    for threshold in ("SPLIT_MIN_PRODUCT", "SHARE_MIN_PRODUCT", "BLAS_THREADED_MIN"):
        monkeypatch.setattr(cpu_products, threshold, 0)
    split_into = []
    run_ranges = cpu_threads.run_ranges

    def counting(task, bounds):
        split_into.append(len(bounds) - 1)
        run_ranges(task, bounds)

    monkeypatch.setattr(cpu_threads, "run_ranges", counting)
    compare_with_reference(spec, "float32", 7)
    assert max(split_into, default=1) == cores


def compare_with_reference(spec: dict, dtype: str, batch: int) -> None:
    rng = np.random.default_rng(batch)
    ref = gpuback.Network(spec, backend="numpy", dtype=dtype, seed=1)
    randomise_biases(ref, rng)
    cpu = gpuback.Network(spec, backend="cpu", dtype=dtype)
    cpu.set_parameters(ref.parameters())
    X, T = random_data(spec, batch, rng)
    tol = TOLERANCES[dtype]["backend"]
    assert rel_error(cpu.forward(X), ref.forward(X)) <= tol
    loss_c, grads_c = cpu.loss_and_grads(X, T)
    loss_r, grads_r = ref.loss_and_grads(X, T)
    assert rel_error(loss_c, loss_r) <= tol
    errors = {k: rel_error(grads_c[k], grads_r[k]) for k in grads_r}
    assert max(errors.values()) <= tol, errors


def test_cpu_is_bitwise_reproducible() -> None:
    spec = gpuback.sparse_mlp_spec([40, 30, 20, 5], density=0.2, seed=2)
    rng = np.random.default_rng(3)
    X, T = random_data(spec, 17, rng, labels=True)
    first = gpuback.Network(spec, backend="cpu", dtype="float32").loss_and_grads(X, T)
    second = gpuback.Network(spec, backend="cpu", dtype="float32").loss_and_grads(X, T)
    assert first[0] == second[0]
    for k in first[1]:
        assert np.array_equal(first[1][k], second[1][k])


def test_without_numba_auto_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    cpu_backend.status.cache_clear()
    try:
        state = cpu_backend.status()
        assert not state.usable and "numba is not installed" in state.reason
        assert resolve_backend_name("auto") == "numpy"  # the cuda simulator does not count
        with pytest.raises(RuntimeError, match="'cpu' cannot run here: numba is not installed"):
            gpuback.Network(gpuback.mlp_spec([2, 2]), backend="cpu")
    finally:
        cpu_backend.status.cache_clear()


@pytest.mark.parametrize(("activation", "forward", "derivative", "near"), [
    ("gelu", 3e-6, 5e-5, 3e-6), ("silu", 3e-6, 2e-6, 2e-6)])
def test_float32_gelu_and_silu_stay_within_their_stated_error(activation: str, forward: float,
                                                              derivative: float,
                                                              near: float) -> None:
    """The vectorised float32 kernels (a rational tanh) against h and h' in float64, on
    [-12, 12] and, for h', on [-4, 4] (gpuback/backends/cpu/float32_activations.py)."""
    for span, most in ((12.0, derivative), (4.0, near)):
        a = np.linspace(-span, span, 64 * 513).reshape(64, 513)
        h, truth = np.empty_like(a), np.ones_like(a)  # h(a) and h'(a) * 1, by the reference
        numpy_backend.bias_activation(activation, np.zeros(64), a.copy(), h)
        numpy_backend.activation_delta(activation, a, h, truth, np.empty(64))
        a32, z32 = a.astype(np.float32), np.empty(a.shape, np.float32)
        cpu_backend.bias_activation(activation, np.zeros(64, np.float32), a32, z32)
        assert np.abs(z32 - h).max() <= forward
        acc, db = np.ones(a.shape, np.float32), np.empty(64, np.float32)
        cpu_backend.activation_delta(activation, a32, z32, acc, db)
        assert np.abs(acc - truth).max() <= most, span
        np.testing.assert_allclose(db, acc.sum(axis=1, dtype=np.float64), rtol=1e-6)
