"""Initial weights: reproducible from the seed, fan-in scaled, zero biases."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.random_specs import SPEC_CASES

import gpuback


def test_same_seed_same_parameters_and_different_seed_differs() -> None:
    spec = SPEC_CASES[-1][1]
    a = gpuback.Network(spec, seed=5).parameters()
    b = gpuback.Network(spec, seed=5).parameters()
    c = gpuback.Network(spec, seed=6).parameters()
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in a if "->" in k)


def test_float32_parameters_are_the_float64_ones_rounded() -> None:
    spec = SPEC_CASES[-2][1]
    p64 = gpuback.Network(spec, dtype="float64", seed=2).parameters()
    p32 = gpuback.Network(spec, dtype="float32", seed=2).parameters()
    for k in p64:
        assert p32[k].dtype == np.float32 and p64[k].dtype == np.float64
        np.testing.assert_array_equal(p32[k], p64[k].astype(np.float32))


def test_biases_start_at_zero() -> None:
    params = gpuback.Network(gpuback.mlp_spec([5, 7, 3])).parameters()
    for name in ("h1", "y"):
        np.testing.assert_array_equal(params[name], np.zeros_like(params[name]))


@pytest.mark.parametrize(("activation", "expected_std"), [
    ("relu", np.sqrt(2 / 400)),                # He: sqrt(2 / fan_in)
    ("leaky_relu", np.sqrt(2 / 400)),
    ("tanh", np.sqrt(2 / (400 + 300))),        # Glorot: sqrt(2 / (fan_in + fan_out))
])
def test_fan_in_scaling(activation: str, expected_std: float) -> None:
    w = gpuback.Network(gpuback.mlp_spec([400, 300, 2], activation=activation),
                        seed=0).parameters()["x->h1"]
    assert w.mean() == pytest.approx(0.0, abs=3 * expected_std / np.sqrt(w.size))
    assert w.std() == pytest.approx(expected_std, rel=0.01)  # 120000 draws: ~0.2% sampling error


def test_sparse_fan_in_counts_edges() -> None:
    # Each of the 300 units of h1 receives 0.1 * 400 = 40 edges on average: He std sqrt(2/40).
    spec = gpuback.sparse_mlp_spec([400, 300, 2], density=0.1, seed=1, activation="relu")
    w = gpuback.Network(spec, seed=0).parameters()["x->h1"]
    assert w.std() == pytest.approx(np.sqrt(2 / 40), rel=0.02)
