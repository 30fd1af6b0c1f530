"""The cpu backend (Numba parallel kernels for sparse blocks) against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import randomise_biases
from random_specs import SPEC_CASES, random_data
from tolerances import TOLERANCES, rel_error

import gpuback


@pytest.mark.parametrize("batch", [1, 6])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("case", "spec"), SPEC_CASES, ids=[c for c, _ in SPEC_CASES])
def test_cpu_matches_reference(case: str, spec: dict, dtype: str, batch: int) -> None:
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
