"""``Network``'s public API beyond forward and gradients: ``trace`` and ``loss`` (what
explain and finite-difference checks read), and the engine underneath (``ops``, ``plan``,
``layout``, the flat buffers, workspaces and ``run_*`` passes) that training loops use."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.networks import randomise_biases
from helpers.random_specs import SPEC_CASES, random_data
from helpers.tolerances import TOLERANCES, rel_error

import gpuback
from gpuback.diagnostics.explanation import DEMO_SPEC

SMOOTH = {"tanh": lambda a, z: 1 - z * z, "sigmoid": lambda a, z: z * (1 - z),
          "softplus": lambda a, z: 1 / (1 + np.exp(-a)), "identity": lambda a, z: 1 + 0 * a}


def _demo(backend: str, dtype: str = "float64") -> gpuback.Network:
    net = gpuback.Network(DEMO_SPEC, backend=backend, dtype=dtype, seed=1)
    randomise_biases(net, np.random.default_rng(1))
    return net


def test_trace_holds_every_group_and_h_prime_by_its_textbook_formula(backend: str) -> None:
    net = _demo(backend)
    rng = np.random.default_rng(2)
    X, T = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    trace = net.trace(X, T)
    np.testing.assert_array_equal(trace.z["x"], X)
    np.testing.assert_allclose(trace.z["y"], net.forward(X), rtol=1e-12)
    hidden = {g["name"]: g["activation"] for g in DEMO_SPEC["groups"][1:-1]}
    assert set(trace.h_prime) == set(hidden)
    for group, activation in hidden.items():
        expected = SMOOTH[activation](trace.a[group], trace.z[group])
        assert rel_error(trace.h_prime[group], expected) <= 1e-12, group
    loss, grads = net.loss_and_grads(X, T)
    assert trace.loss == pytest.approx(loss, rel=1e-12)
    # dE/db_k is the sum over the batch of delta_k (5.53 with z = 1)
    for group in trace.delta:
        assert rel_error(trace.delta[group].sum(axis=0), grads[group]) <= 1e-12, group
    assert net.trace(X).delta is None and net.trace(X).loss is None


def test_trace_deltas_are_de_da_measured_by_nudging_a(backend: str) -> None:
    """Bishop 5.55: delta_j = dE/da_j, measured here by moving a_j itself."""
    net = _demo(backend)
    rng = np.random.default_rng(3)
    X, T = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    trace, eps = net.trace(X, T), 1e-6
    for g in ("h", "g1", "g2", "y"):
        for unit in range(trace.a[g].shape[1]):
            # the nudge moves a_j in every sample, so it measures the sum over the batch
            measured = (net.loss(X, T, nudge=(g, unit, eps))
                        - net.loss(X, T, nudge=(g, unit, -eps))) / (2 * eps)
            assert measured == pytest.approx(trace.delta[g][:, unit].sum(), rel=1e-6,
                                             abs=1e-9), (g, unit)


@pytest.mark.parametrize(("nudge", "exc", "match"), [
    (("nope", 0, 1.0), ValueError, "expected a computed group"),
    (("x", 0, 1.0), ValueError, "expected a computed group"),
    (("h", 4, 1.0), ValueError, r"unit must be an integer in \[0, 4\)"),
    (("h", True, 1.0), ValueError, "unit"),
    (("h", 0, float("nan")), ValueError, "amount must be a finite number"),
    (["h", 0, 1.0], TypeError, r"nudge: expected \(group, unit, amount\)"),
])
def test_loss_rejects_a_bad_nudge(nudge, exc, match: str) -> None:
    net = _demo("numpy")
    with pytest.raises(exc, match=match):
        net.loss(np.zeros((1, 3)), np.zeros((1, 2)), nudge=nudge)


def test_loss_without_nudge_is_the_mean_loss() -> None:
    net = _demo("numpy")
    rng = np.random.default_rng(4)
    X, T = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    Y = net.forward(X)
    assert net.loss(X, T) == pytest.approx(np.mean(0.5 * np.sum((Y - T) ** 2, axis=1)),
                                           rel=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_loop_of_ones_own_on_the_engine_equals_loss_and_grads(backend: str,
                                                                 dtype: str) -> None:
    spec = next(s for c, s in SPEC_CASES if c == "dag-2")  # cross-entropy, skip links
    net = gpuback.Network(spec, backend=backend, dtype=dtype, seed=5, deterministic=True)
    rng = np.random.default_rng(5)
    X, T = random_data(spec, 9, rng, labels=True)
    loss, grads = net.loss_and_grads(X, T)

    ops, plan = net.ops, net.plan
    net.reserve(16)
    ws = net.workspace(9)
    ops.copy_into(ws.z[plan.input], X.T)
    ops.copy_into(ws.labels, T)
    net.run_forward(ws)
    net.run_backward(ws, ws.labels)
    mine = net.layout.unpack(ops.to_host(net.flat_gradients))
    assert mine.keys() == grads.keys()
    for k in grads:
        np.testing.assert_array_equal(mine[k], grads[k], err_msg=k)
    assert float(np.sum(ops.to_host(ws.losses), dtype=np.float64)) / 9 == \
        pytest.approx(loss, rel=TOLERANCES[dtype]["invariance"])
    params = net.layout.unpack(ops.to_host(net.flat_parameters))
    for k, v in net.parameters().items():
        np.testing.assert_array_equal(params[k], v, err_msg=k)
    assert plan.n_in == X.shape[1] and ops.name == net.backend


def test_backpropagation_from_the_loss_deltas_of_ones_own_equals_loss_and_grads(
        backend: str) -> None:
    """``run_backpropagate`` from the output deltas the loss op wrote ("a"): the gradients of
    ``loss_and_grads``; refused from dE/dy ("z") through a softmax output."""
    spec = next(s for c, s in SPEC_CASES if c == "dag-2")  # softmax output, skip links
    net = gpuback.Network(spec, backend=backend, seed=5, deterministic=True)
    X, T = random_data(spec, 7, np.random.default_rng(2), labels=True)
    _, grads = net.loss_and_grads(X, T)
    ws, targets = net.load_batch(X, T)
    net.run_forward(ws)
    net.run_loss(ws, targets)
    net.run_backpropagate(ws, "a")
    mine = net.layout.unpack(net.ops.to_host(net.flat_gradients))
    for k in grads:
        np.testing.assert_array_equal(mine[k], grads[k], err_msg=k)
    with pytest.raises(ValueError, match="elementwise output activation"):
        net.run_backpropagate(ws, "z")
