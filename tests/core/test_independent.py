"""gpuback against the independent implementation in ``tests/helpers/independent.py``.

gpuback's forward pass, loss and backprop gradients (Bishop PRML 5.48-5.56) are compared with
a batch-major complex128 forward pass and complex-step derivatives that involve no backprop.
The independent code is itself checked on hand-worked networks and against central
differences (5.69).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import independent
from helpers.networks import data_away_from_kinks, randomise_biases
from helpers.random_specs import SPEC_CASES, random_data
from helpers.tolerances import TOLERANCES, rel_error

import gpuback

DTYPES = ("float64", "float32")
CE_CASES = [(c, s) for c, s in SPEC_CASES if s["loss"] == "cross_entropy"]
KINKED = {"relu", "leaky_relu"}
SMOOTH_CASES = [(c, s) for c, s in SPEC_CASES
                if not any(g.get("activation") in KINKED for g in s["groups"])]


def _network_and_data(spec: dict, dtype: str, batch: int, labels: bool = False):
    """A gpuback network with random biases, and data away from relu kinks, cast to ``dtype``
    (so both implementations see exactly the same numbers)."""
    rng = np.random.default_rng(batch)
    net = gpuback.Network(spec, backend="numpy", dtype=dtype, seed=0)
    randomise_biases(net, rng)
    X, T = data_away_from_kinks(net, spec, batch, rng, labels=labels)
    X = X.astype(dtype)
    if not labels:
        T = T.astype(dtype)
    return net, X, T


def _compare(net: gpuback.Network, spec: dict, dtype: str, X: np.ndarray,
             T: np.ndarray) -> None:
    tol = TOLERANCES[dtype]
    params = {k: v.astype(np.float64) for k, v in net.parameters().items()}

    Y = net.forward(X)
    Y_ref = independent.forward(spec, params, X)
    assert Y.shape == Y_ref.shape
    err = rel_error(Y, Y_ref)
    assert err <= tol["independent_forward"], f"forward: relative error {err:.3e}"

    loss, grads = net.loss_and_grads(X, T)
    loss_ref = independent.loss(spec, params, X, T)
    err = rel_error(loss, loss_ref)
    assert err <= tol["independent_forward"], f"loss: {loss!r} vs {loss_ref!r} ({err:.3e})"

    grads_ref = independent.complex_step_grads(spec, params, X, T)
    assert set(grads) == set(grads_ref) == set(params)
    errors = {k: rel_error(grads[k], grads_ref[k]) for k in grads_ref}
    bad = {k: f"{e:.3e}" for k, e in errors.items() if not e <= tol["independent_grad"]}
    assert not bad, f"gradients off (normwise relative error): {bad}"


# --- gpuback against the independent implementation ---------------------------------------


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("case", "spec"), SPEC_CASES, ids=[c for c, _ in SPEC_CASES])
def test_matches_independent(case: str, spec: dict, dtype: str, batch: int) -> None:
    net, X, T = _network_and_data(spec, dtype, batch)
    _compare(net, spec, dtype, X, T)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("case", "spec"), CE_CASES, ids=[c for c, _ in CE_CASES])
def test_matches_independent_class_labels(case: str, spec: dict, dtype: str) -> None:
    net, X, T = _network_and_data(spec, dtype, batch=5, labels=True)
    assert T.ndim == 1
    _compare(net, spec, dtype, X, T)


# --- the independent implementation checked on its own ------------------------------------

W1 = np.array([[1.0, 2.0], [3.0, 4.0]])
B1 = np.array([0.5, -1.0])
W2 = np.array([[1.0, -1.0]])
B2 = np.array([0.25])
X1 = np.array([[1.0, 1.0]])


def _spec_2_2_1(hidden: str = "identity", kind: str = "dense") -> dict:
    """x(2) -> h(2) -> y(1), sum of squares; the first block dense, or sparse with all four
    edges listed in a scrambled order."""
    first: dict = {"src": "x", "dst": "h", "kind": "dense"}
    if kind == "sparse":
        first = {"src": "x", "dst": "h", "kind": "sparse", "edges": [[1, 0, 0, 1], [1, 1, 0, 0]]}
    return {"groups": [{"name": "y", "size": 1, "activation": "identity"},
                       {"name": "h", "size": 2, "activation": hidden},
                       {"name": "x", "size": 2}],
            "connections": [{"src": "h", "dst": "y", "kind": "dense"}, first],
            "input": "x", "output": "y", "loss": "sum_of_squares"}


def _params_2_2_1(W1: np.ndarray, kind: str = "dense") -> dict:
    # sparse edges (src, dst): (1,1), (0,1), (0,0), (1,0), so the weights are W1[dst, src]
    first = W1 if kind == "dense" else np.array([W1[1, 1], W1[1, 0], W1[0, 0], W1[0, 1]])
    return {"x->h": first, "h": B1, "h->y": W2, "y": B2}


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_hand_worked_identity_network(kind: str) -> None:
    # a_h = W1 x + b1 = [1 + 2 + 0.5, 3 + 4 - 1] = [3.5, 6];  y = 3.5 - 6 + 0.25 = -2.25
    # t = 0.75: E = 1/2 (-3)^2 = 4.5;  delta_y = y - t = -3                      (5.54)
    # dE/dW2 = delta_y z_h = [-10.5, -18], dE/db2 = -3                          (5.53)
    # delta_h = W2^T delta_y = [-3, 3] (identity: h' = 1)                      (5.56)
    # dE/dW1 = delta_h x^T = [[-3, -3], [3, 3]], dE/db1 = [-3, 3]
    spec, params = _spec_2_2_1(kind=kind), _params_2_2_1(W1, kind)
    T = np.array([[0.75]])
    assert independent.forward(spec, params, X1).tolist() == [[-2.25]]
    assert independent.loss(spec, params, X1, T) == 4.5
    grads = independent.complex_step_grads(spec, params, X1, T)
    expected_W1 = np.array([[-3.0, -3.0], [3.0, 3.0]])
    expected = {"x->h": expected_W1 if kind == "dense" else np.array([3.0, 3.0, -3.0, -3.0]),
                "h": np.array([-3.0, 3.0]), "h->y": np.array([[-10.5, -18.0]]),
                "y": np.array([-3.0])}
    assert set(grads) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(grads[key], value, err_msg=key)


def test_hand_worked_relu_network() -> None:
    # W1 with a negative second row: a_h = [3.5, -3 - 4 - 1] = [3.5, -8], z_h = [3.5, 0]
    # y = 3.5 + 0.25 = 3.75; t = 0.75: E = 4.5, delta_y = 3
    # delta_h = relu'(a_h) * W2^T delta_y = [1, 0] * [3, -3] = [3, 0]: the dead unit's
    # incoming weights and bias get no gradient, and h->y sees z_h = [3.5, 0].
    spec = _spec_2_2_1(hidden="relu")
    params = _params_2_2_1(np.array([[1.0, 2.0], [-3.0, -4.0]]))
    T = np.array([[0.75]])
    assert independent.forward(spec, params, X1).tolist() == [[3.75]]
    assert independent.loss(spec, params, X1, T) == 4.5
    grads = independent.complex_step_grads(spec, params, X1, T)
    np.testing.assert_array_equal(grads["h->y"], [[10.5, 0.0]])
    np.testing.assert_array_equal(grads["y"], [3.0])
    np.testing.assert_array_equal(grads["x->h"], [[3.0, 3.0], [0.0, 0.0]])
    np.testing.assert_array_equal(grads["h"], [3.0, 0.0])


def test_hand_worked_softmax_cross_entropy() -> None:
    # x(1) -> y(2) softmax with zero weights: y = [1/2, 1/2] whatever x is, so
    # E = -log(1/2) = log 2 for either label; delta_y = y - t                  (5.54)
    spec = {"groups": [{"name": "x", "size": 1}, {"name": "y", "size": 2,
                                                  "activation": "softmax"}],
            "connections": [{"src": "x", "dst": "y", "kind": "dense"}],
            "input": "x", "output": "y", "loss": "cross_entropy"}
    params = {"x->y": np.zeros((2, 1)), "y": np.zeros(2)}
    X = np.array([[2.0], [-1.0]])
    labels = np.array([0, 1])
    np.testing.assert_allclose(independent.forward(spec, params, X), 0.5, rtol=0, atol=0)
    assert independent.loss(spec, params, X, labels) == pytest.approx(np.log(2.0), abs=1e-15)
    assert independent.loss(spec, params, X, np.eye(2)[labels]) == pytest.approx(
        np.log(2.0), abs=1e-15)
    # mean over the two samples of (y - t) x and (y - t)
    grads = independent.complex_step_grads(spec, params, X, labels)
    np.testing.assert_allclose(grads["y"], [0.0, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(grads["x->y"], [[-0.75], [0.75]], rtol=0, atol=1e-15)


def test_topological_order_follows_connections_not_listing() -> None:
    spec = {"groups": [{"name": n, "size": 1} for n in ["d", "c", "b", "a"]],
            "connections": [{"src": s, "dst": d, "kind": "dense"}
                            for s, d in [("c", "d"), ("a", "b"), ("b", "c"), ("a", "c")]]}
    assert independent.topological_order(spec) == ["a", "b", "c", "d"]
    spec["connections"].append({"src": "d", "dst": "b", "kind": "dense"})
    with pytest.raises(ValueError, match="cycle"):
        independent.topological_order(spec)


def _random_parameters(spec: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Parameters of the right shapes drawn without gpuback, small enough not to saturate."""
    sizes = {g["name"]: g["size"] for g in spec["groups"]}
    params = {}
    for c in spec["connections"]:
        if c["kind"] == "identity":  # no parameter
            continue
        shape = ((sizes[c["dst"]], sizes[c["src"]]) if c["kind"] == "dense"
                 else (len(c["edges"][0]),))
        params[independent.connection_name(c)] = rng.normal(scale=0.5, size=shape)
    for g in spec["groups"]:
        if g["name"] != spec["input"]:
            params[g["name"]] = rng.normal(scale=0.5, size=g["size"])
        if "norm" in g:
            params[g["name"] + ".gain"] = 1.0 + rng.normal(scale=0.5, size=g["size"])
            params[g["name"] + ".shift"] = rng.normal(scale=0.5, size=g["size"])
    return params


def _central_differences(spec: dict, params: dict[str, np.ndarray], key: str, X: np.ndarray,
                         T: np.ndarray, eps: float) -> np.ndarray:
    """``D(eps) = (E(w + eps) - E(w - eps)) / (2 eps)`` (5.69) for every entry of one
    parameter, improved by one Richardson step ``(4 D(eps/2) - D(eps)) / 3``: the eps^2 term
    cancels, so a step large enough to keep rounding small (1e-3) is also accurate."""
    value = params[key]

    def difference(step: float, idx: tuple[int, ...]) -> float:
        plus, minus = value.copy(), value.copy()
        plus[idx] += step
        minus[idx] -= step
        return (independent.loss(spec, {**params, key: plus}, X, T)
                - independent.loss(spec, {**params, key: minus}, X, T)) / (2 * step)

    out = np.empty_like(value)
    for idx in np.ndindex(value.shape):
        out[idx] = (4 * difference(eps / 2, idx) - difference(eps, idx)) / 3
    return out


@pytest.mark.parametrize(("case", "spec"), SMOOTH_CASES, ids=[c for c, _ in SMOOTH_CASES])
def test_complex_step_matches_central_differences(case: str, spec: dict) -> None:
    """The complex step against central differences (5.69) of the same independent loss, on
    every case without relu kinks (a central difference straddling a kink is no derivative).
    """
    rng = np.random.default_rng(7)
    params = _random_parameters(spec, rng)
    X, T = random_data(spec, 3, rng)
    grads = independent.complex_step_grads(spec, params, X, T)
    for key in params:
        central = _central_differences(spec, params, key, X, T, eps=1e-3)
        err = rel_error(central, grads[key])
        assert err <= TOLERANCES["float64"]["central_differences"], f"{key}: {err:.3e}"
