"""gpuback.lbfgs: full-batch L-BFGS (SciPy's L-BFGS-B) on gpuback's loss and backprop.

The strong checks are convex problems with a unique optimum, solved independently: a linear
network with sum-of-squares loss is ridge regression with an unpenalised intercept (closed
form: the normal equations), and a linear softmax network is multinomial logistic regression
(minimised here by SciPy on a NumPy objective of its own, no gpuback in it). L-BFGS must land
on the same optimum, whatever path it takes.
"""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

import gpuback
from gpuback.training.lbfgs import fit_lbfgs

pytest.importorskip("scipy", reason="gpuback.lbfgs needs SciPy (the lbfgs extra)")
from scipy.optimize import minimize
from scipy.special import logsumexp

# Convergence tolerances (not rounding tolerances, so not in tests/helpers/tolerances.py): with
# gtol=1e-10 and ftol=0 the iterate's error is about |gradient| / smallest Hessian
# eigenvalue (~1e-10 / 0.5 here), its loss error the square of that; 1e-7 and 1e-10 leave
# three orders of room and still catch any wrong convention (a penalised intercept, l2 / 2,
# a missing 1/N), which moves the optimum by far more than 1e-3.
PARAMETERS = 1e-7
LOSS = 1e-10


def linear_net(n_in: int, n_out: int, loss: str, backend: str = "numpy") -> gpuback.Network:
    return gpuback.Network(gpuback.mlp_spec([n_in, n_out], loss=loss), backend=backend,
                           dtype="float64", seed=3)


def ridge(X: np.ndarray, Y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """argmin (1/2N) sum |W x + b - y|^2 + (l2/2N) |W|^2: W (n_out, n_in), b (n_out,)."""
    xm, ym = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - xm, Y - ym
    W = np.linalg.solve(Xc.T @ Xc + l2 * np.eye(X.shape[1]), Xc.T @ Yc).T
    return W, ym - W @ xm


def test_a_linear_network_reaches_the_ridge_solution(backend: str, simulated: bool) -> None:
    rng = np.random.default_rng(0)
    n = 12 if simulated else 40
    X = rng.normal(size=(n, 3))
    Y = X @ rng.normal(size=(3, 2)) + 5.0 + 0.3 * rng.normal(size=(n, 2))  # far-off mean
    l2 = 2.0
    net = linear_net(3, 2, "sum_of_squares", backend)
    result = fit_lbfgs(net, X, Y, max_iter=500, tol=1e-10, ftol=0.0, l2=l2)
    W, b = ridge(X, Y, l2)
    params = net.parameters()
    np.testing.assert_allclose(params["x->y"], W, rtol=0, atol=PARAMETERS * np.abs(W).max())
    np.testing.assert_allclose(params["y"], b, rtol=0, atol=PARAMETERS * np.abs(b).max())
    expected = 0.5 * np.mean(np.sum((X @ W.T + b - Y) ** 2, axis=1)) + \
        0.5 * l2 * np.sum(W**2) / n
    assert result["loss"] == pytest.approx(expected, rel=LOSS)
    assert result["converged"] and result["status"] == 0
    assert len(result["loss_curve"]) == result["n_iter"] >= 1
    assert result["loss_curve"][-1] == pytest.approx(result["loss"], rel=1e-12)


def softmax_objective(theta: np.ndarray, X: np.ndarray, labels: np.ndarray, k: int,
                      l2: float) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(W x + b) plus (l2/2N)|W|^2, and its gradient: NumPy
    only, W (k, d) then b (k,) in theta."""
    n, d = X.shape
    W, b = theta[:k * d].reshape(k, d), theta[k * d:]
    logits = X @ W.T + b
    log_p = logits - logsumexp(logits, axis=1, keepdims=True)
    onehot = np.eye(k)[labels]
    loss = -np.sum(onehot * log_p) / n + 0.5 * l2 * np.sum(W**2) / n
    delta = (np.exp(log_p) - onehot) / n
    grad_W = delta.T @ X + l2 * W / n
    return loss, np.concatenate([grad_W.ravel(), delta.sum(axis=0)])


def test_a_linear_softmax_network_reaches_the_independent_optimum() -> None:
    rng = np.random.default_rng(1)
    n, d, k, l2 = 90, 4, 3, 0.5
    labels = rng.integers(0, k, size=n)
    X = rng.normal(size=(n, d)) + 0.8 * np.eye(k, d)[labels]  # overlapping classes
    independent = minimize(softmax_objective, np.zeros(k * d + k), args=(X, labels, k, l2),
                           jac=True, method="L-BFGS-B",
                           options={"gtol": 1e-12, "ftol": 0.0, "maxiter": 10_000})
    assert independent.success
    net = linear_net(d, k, "cross_entropy")
    result = fit_lbfgs(net, X, labels, max_iter=1000, tol=1e-10, ftol=0.0, l2=l2)
    assert result["loss"] == pytest.approx(independent.fun, rel=LOSS)
    # the biases are determined only up to a common shift (softmax is shift-invariant and
    # they are not penalised); the probabilities and the weights are unique
    W = independent.x[:k * d].reshape(k, d)
    np.testing.assert_allclose(net.parameters()["x->y"], W, rtol=0,
                               atol=1e-6 * np.abs(W).max())
    logits = X @ W.T + independent.x[k * d:]
    probabilities = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    np.testing.assert_allclose(net.predict(X), probabilities, rtol=0, atol=1e-6)


def test_chunked_evaluations_equal_the_whole_batch() -> None:
    """Chunks of 7 samples (the last one shorter) weighted by their sizes give the loss and
    gradient of one pass over all 50, so L-BFGS takes the same steps."""
    rng = np.random.default_rng(2)
    X, labels = rng.normal(size=(50, 5)), rng.integers(0, 3, size=50)
    results = []
    for chunk in (7, 50):
        net = gpuback.Network(gpuback.mlp_spec([5, 6, 3], activation="tanh"),
                              backend="numpy", seed=4)
        results.append((fit_lbfgs(net, X, labels, max_iter=8, l2=0.1, chunk_size=chunk),
                        net.parameters()))
    (chunked, p7), (whole, p50) = results
    assert chunked["n_iter"] == whole["n_iter"] == 8
    np.testing.assert_allclose(chunked["loss_curve"], whole["loss_curve"], rtol=1e-10)
    for name in p50:
        np.testing.assert_allclose(p7[name], p50[name], rtol=0, atol=1e-9)


def test_the_loss_decreases_and_the_limits_are_reported() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    net = gpuback.Network(gpuback.mlp_spec([4, 10, 1], activation="tanh",
                                           loss="sum_of_squares"), backend="numpy")
    first = net.loss(X, y)
    result = fit_lbfgs(net, X, y, max_iter=15)
    curve = result["loss_curve"]
    assert result["status"] == 1 and not result["converged"]  # the iteration limit
    assert "ITERATIONS" in result["message"].upper()
    assert result["n_iter"] == len(curve) == 15
    assert curve[0] < first and all(b <= a for a, b in itertools.pairwise(curve))
    assert net.loss(X, y) == pytest.approx(result["loss"], rel=1e-12)  # kept in the net
    few = fit_lbfgs(gpuback.Network(net.spec, backend="numpy"), X, y, max_iter=100, max_fun=5)
    assert few["n_fun"] <= 6 and few["status"] == 1  # stopped by max_fun (+1 line search)


def test_verbose_prints_each_iteration(capsys: pytest.CaptureFixture[str]) -> None:
    X = np.random.default_rng(4).normal(size=(20, 2))
    fit_lbfgs(linear_net(2, 1, "sum_of_squares"), X, X[:, 0], max_iter=3, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines and lines[0].startswith("Iteration 1, loss = ")


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"max_iter": 2.5}, TypeError, "max_iter"),
    ({"max_fun": 0}, ValueError, "max_fun"),
    ({"tol": -1.0}, ValueError, "tol"),
    ({"l2": float("nan")}, ValueError, "l2"),
    ({"l2": "big"}, TypeError, "l2"),
    ({"ftol": -1e-3}, ValueError, "ftol"),
    ({"chunk_size": 0}, ValueError, "chunk_size"),
    ({"verbose": "yes"}, TypeError, "verbose"),
])
def test_bad_arguments_are_refused_by_name(kwargs: dict, error: type, match: str) -> None:
    X = np.zeros((4, 2))
    with pytest.raises(error, match=match):
        fit_lbfgs(linear_net(2, 1, "sum_of_squares"), X, np.zeros(4), **kwargs)


def test_bad_data_and_networks_are_refused() -> None:
    net = linear_net(2, 1, "sum_of_squares")
    with pytest.raises(ValueError, match="X"):
        fit_lbfgs(net, np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="T"):
        fit_lbfgs(net, np.zeros((4, 2)), np.zeros(5))
    with pytest.raises(TypeError, match="net"):
        fit_lbfgs("network", np.zeros((4, 2)), np.zeros(4))


def test_without_scipy_the_error_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'gpuback\[lbfgs\]'"):
        fit_lbfgs(linear_net(2, 1, "sum_of_squares"), np.zeros((4, 2)), np.zeros(4))
