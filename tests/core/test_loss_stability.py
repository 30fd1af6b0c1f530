"""Numerical stability on every backend: huge pre-activations give finite losses and exact
canonical deltas (log-sum-exp, binary cross-entropy from the logits, saturated activations,
the Poisson deviance far from its targets)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tolerances import TOLERANCES, rel_error

import gpuback


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_cross_entropy_with_huge_logits(backend: str, dtype: str) -> None:
    net = gpuback.Network(gpuback.mlp_spec([2, 3], loss="cross_entropy"), backend=backend,
                          dtype=dtype)
    net.set_parameters({"x->y": np.zeros((3, 2)), "y": np.array([1000.0, 0.0, -1000.0])})
    X = np.zeros((2, 2))
    y = net.forward(X)
    np.testing.assert_array_equal(y, [[1.0, 0.0, 0.0]] * 2)
    loss, grads = net.loss_and_grads(X, np.array([2, 1]))
    # E_n = logsumexp(a) - a_t = 1000 - (-1000) and 1000 - 0; the mean is 1500.
    assert loss == pytest.approx(1500.0, rel=TOLERANCES[dtype]["invariance"])
    # dE/db = mean over the batch of (y - t)
    assert rel_error(grads["y"], np.array([1.0, -0.5, -0.5])) <= TOLERANCES[dtype]["invariance"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sigmoid_cross_entropy_with_huge_logits(backend: str, dtype: str) -> None:
    net = gpuback.Network(gpuback.mlp_spec([1, 2], loss="binary_cross_entropy"),
                          backend=backend, dtype=dtype)
    net.set_parameters({"x->y": np.zeros((2, 1)), "y": np.array([800.0, -800.0])})
    X = np.zeros((1, 1))
    loss, grads = net.loss_and_grads(X, np.array([[0.0, 0.0]]))
    # E = softplus(800) + softplus(-800) = 800 (+ e^-800, far below rounding)
    assert loss == pytest.approx(800.0, rel=TOLERANCES[dtype]["invariance"])
    assert rel_error(grads["y"], np.array([1.0, 0.0])) <= TOLERANCES[dtype]["invariance"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["sigmoid", "softplus", "tanh", "gelu", "silu"])
def test_saturating_activations_stay_finite(backend: str, activation: str, dtype: str) -> None:
    spec = gpuback.mlp_spec([1, 2, 1], activation=activation, loss="sum_of_squares")
    X = np.array([[1e4], [-1e4]])
    results = []
    for name, net_dtype in (("numpy", "float64"), (backend, dtype)):
        net = gpuback.Network(spec, backend=name, dtype=net_dtype)
        net.set_parameters({"x->h1": np.array([[1.0], [-1.0]])})
        loss, grads = net.loss_and_grads(X, np.zeros((2, 1)))
        assert np.isfinite(loss)
        assert all(np.isfinite(g).all() for g in grads.values())
        results.append((loss, grads))
    # and the saturated values are the float64 reference's (h' = 0, or 1 on a linear tail)
    (loss_ref, grads_ref), (loss, grads) = results
    tol = TOLERANCES[dtype]["backend"]
    assert rel_error(loss, loss_ref) <= tol
    for k, g in grads_ref.items():
        assert rel_error(grads[k], g) <= tol, k


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bias", [[80.0, 30.0], [-80.0, -30.0]], ids=["far-above", "far-below"])
def test_poisson_far_from_its_targets(backend: str, dtype: str, bias: list[float]) -> None:
    """y = e^a up to e^80 and down to e^-80 (both within float32's range): E_n = sum_k
    t_k log(t_k / y_k) - t_k + y_k stays finite and exact, with t log t = 0 where t = 0, and
    dE/db = y - t (5.54, with the exp output's log link)."""
    net = gpuback.Network(gpuback.mlp_spec([1, 2], loss="poisson"), backend=backend,
                          dtype=dtype)
    b = np.array(bias)
    net.set_parameters({"x->y": np.zeros((2, 1)), "y": b})
    t = np.array([2.0, 0.0])
    loss, grads = net.loss_and_grads(np.zeros((1, 1)), t[None, :])
    expected = 2.0 * np.log(2.0) - 2.0 * b[0] - 2.0 + np.exp(b[0]) + np.exp(b[1])
    assert loss == pytest.approx(expected, rel=TOLERANCES[dtype]["invariance"])
    assert rel_error(grads["y"], np.exp(b) - t) <= TOLERANCES[dtype]["invariance"]
