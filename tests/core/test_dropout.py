"""Dropout: z = h(a) m / (1 - p) in training, so delta = h'(a) m / (1 - p) sum_k w_kj delta_k.

The masks come from a counter-based hash of (seed, step, group, unit, sample): the same on
every backend bit for bit, drawn again by backward, never stored. Training passes
(``fit``, ``loss_and_grads(training=True, step=s)``) apply them; ``forward``, ``predict``,
``evaluate`` and the default ``loss_and_grads`` do not. The gradients are held to the
independent complex-step evaluation with the masks ``trace`` returns.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from gpuback.kernels.mask_hash import dropout_key, mix32, threshold
from helpers import independent
from helpers.backend_params import backend_cases
from helpers.random_specs import SIM_CASES, SPEC_CASES, random_data
from helpers.tolerances import TOLERANCES, rel_error

import gpuback

TOL = TOLERANCES["float64"]
DROPOUT_CASES = [(n, s) for n, s in SPEC_CASES if n.startswith("residual")]
DROPOUT_SIM_CASES = [(n, s) for n, s in SIM_CASES if n.startswith("residual")]


def _spec(p: float = 0.5, size: int = 6) -> dict:
    return gpuback.validate_spec({
        "groups": [{"name": "x", "size": 4},
                   {"name": "h", "size": size, "activation": "tanh", "dropout": p},
                   {"name": "r", "size": size, "activation": "sigmoid", "norm": "layer",
                    "dropout": 0.25},
                   {"name": "y", "size": 3, "activation": "softmax"}],
        "connections": [{"src": "x", "dst": "h", "kind": "dense"},
                        {"src": "h", "dst": "r", "kind": "identity"},
                        {"src": "x", "dst": "r", "kind": "dense"},
                        {"src": "r", "dst": "y", "kind": "dense"},
                        {"src": "h", "dst": "y", "kind": "dense"}],
        "input": "x", "output": "y", "loss": "cross_entropy"})


def test_the_hash_is_lowbias32_on_32_bits() -> None:
    """mix32 against the published lowbias32 written with Python's integers."""
    def lowbias32(x: int) -> int:
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    values = np.array([0, 1, 2, 12345, 2**31, 2**32 - 1], dtype=np.uint64)
    assert [int(v) for v in mix32(values)] == [lowbias32(int(v)) for v in values]
    assert int(mix32(np.uint64(2**32 + 5))) == lowbias32(5)  # the low 32 bits only
    assert int(threshold(0.0)) == 0 and int(threshold(0.25)) == 2**30


def test_masks_are_the_same_on_every_backend_bit_for_bit(backend: str) -> None:
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(9, 4)), rng.integers(0, 3, 9)
    here = gpuback.Network(_spec(), backend=backend, seed=4).trace(X, T, training=True, step=3)
    reference = gpuback.Network(_spec(), backend="numpy", seed=4).trace(X, T, training=True,
                                                                         step=3)
    assert set(here.mask) == {"h", "r"}
    for g in here.mask:
        np.testing.assert_array_equal(here.mask[g], reference.mask[g])
        np.testing.assert_array_equal(here.z[g] == 0, here.mask[g] == 0)  # the outputs masked
        assert rel_error(here.z[g], reference.z[g]) <= TOL["backend"]


@pytest.mark.parametrize("batch", [1, 6])
@pytest.mark.parametrize(("backend", "case", "spec"),
                         backend_cases(DROPOUT_CASES, DROPOUT_SIM_CASES), indirect=["backend"])
def test_training_gradients_match_the_independent_evaluation_under_the_traced_masks(
        backend: str, case: str, spec: dict, batch: int) -> None:
    rng = np.random.default_rng(batch)
    net = gpuback.Network(spec, backend=backend, dtype="float64", seed=1)
    net.set_parameters({k: v + rng.normal(scale=0.3, size=v.shape)
                        for k, v in net.parameters().items()})
    X, T = random_data(spec, batch, rng)
    trace = net.trace(X, T, training=True, step=7)
    dropped = [g["name"] for g in spec["groups"] if g.get("dropout", 0) > 0]
    assert sorted(trace.mask) == sorted(dropped)
    loss, grads = net.loss_and_grads(X, T, training=True, step=7)
    params = net.parameters()
    assert rel_error(loss, independent.loss(spec, params, X, T, trace.mask)) <= \
        TOL["independent_forward"]
    expected = independent.complex_step_grads(spec, params, X, T, masks=trace.mask)
    for name, grad in expected.items():
        assert rel_error(grads[name], grad) <= TOL["independent_grad"], name
    # evaluation: no dropout at all
    assert rel_error(net.loss_and_grads(X, T)[0], independent.loss(spec, params, X, T)) <= \
        TOL["independent_forward"]


def test_masks_keep_one_minus_p_and_change_with_step_group_unit_and_sample() -> None:
    p, units, batch = 0.3, 400, 500
    net = gpuback.Network(_spec(p, size=units), backend="cpu", seed=9)
    X = np.random.default_rng(0).normal(size=(batch, 4))
    masks = net.trace(X, training=True, step=0).mask
    n = units * batch
    # the kept fraction within 5 standard deviations of a binomial's
    assert abs(masks["h"].mean() - (1 - p)) <= 5 * math.sqrt(p * (1 - p) / n)
    assert abs(masks["r"].mean() - 0.75) <= 5 * math.sqrt(0.25 * 0.75 / n)
    again = net.trace(X, training=True, step=0).mask["h"]
    np.testing.assert_array_equal(again, masks["h"])
    later = net.trace(X, training=True, step=1).mask["h"]
    other_seed = gpuback.Network(_spec(p, size=units), backend="cpu", seed=10).trace(
        X, training=True, step=0).mask["h"]
    for other in (later, other_seed):  # independent draws agree on p^2 + (1-p)^2 of them
        agree = (other == masks["h"]).mean()
        assert abs(agree - (p * p + (1 - p) ** 2)) <= 5 * math.sqrt(0.25 / n)
    # neighbouring units and samples are not correlated
    h = masks["h"] - masks["h"].mean()
    assert abs((h[:, 1:] * h[:, :-1]).mean()) <= 5 * p * (1 - p) / math.sqrt(n)
    assert abs((h[1:] * h[:-1]).mean()) <= 5 * p * (1 - p) / math.sqrt(n)
    assert dropout_key(9, 0, 1) != dropout_key(9, 0, 2)


def test_forward_predict_and_evaluate_apply_no_dropout(backend: str) -> None:
    spec = _spec(0.5)
    net = gpuback.Network(spec, backend=backend, seed=2)
    rng = np.random.default_rng(1)
    X, T = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    expected = independent.forward(spec, net.parameters(), X)
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-12)
    np.testing.assert_allclose(net.predict(X, batch_size=3), expected, rtol=1e-12)
    assert net.evaluate(X, T)["loss"] == pytest.approx(
        independent.loss(spec, net.parameters(), X, T), rel=1e-12)
    assert net.trace(X).mask == {}


def test_fit_trains_with_the_masks_of_each_step() -> None:
    """One SGD step per epoch on the whole batch: after fit's epoch e the parameters are
    those of gradient steps with loss_and_grads(training=True, step=e)."""
    spec, lr = _spec(0.5), 0.1
    rng = np.random.default_rng(3)
    X, T = rng.normal(size=(10, 4)), rng.integers(0, 3, 10)
    trained = gpuback.Network(spec, backend="numpy", seed=5)
    by_hand = gpuback.Network(spec, backend="numpy", seed=5)
    trained.fit(X, T, epochs=2, batch_size=10, optimizer=gpuback.optim.SGD(lr=lr),
                shuffle=False, progress=False)
    for step in (0, 1):
        _, grads = by_hand.loss_and_grads(X, T, training=True, step=step)
        by_hand.set_parameters({k: v - lr * grads[k] for k, v in by_hand.parameters().items()})
    for name, value in trained.parameters().items():
        np.testing.assert_allclose(value, by_hand.parameters()[name], rtol=1e-12, atol=1e-15)
    # not the masks of other steps, nor none
    _, unmasked = gpuback.Network(spec, backend="numpy", seed=5).loss_and_grads(X, T)
    _, first = gpuback.Network(spec, backend="numpy", seed=5).loss_and_grads(
        X, T, training=True, step=0)
    assert rel_error(unmasked["x->h"], first["x->h"]) > 1e-3


def test_a_resumed_run_is_bitwise_the_unbroken_one(tmp_path) -> None:
    spec = _spec(0.3)
    rng = np.random.default_rng(4)
    X, T = rng.normal(size=(24, 4)), rng.integers(0, 3, 24)

    def fit(net: gpuback.Network, epochs: int) -> None:
        net.fit(X, T, epochs=epochs, batch_size=5, optimizer=gpuback.optim.SGD(lr=0.05),
                seed=11, progress=False)

    unbroken = gpuback.Network(spec, backend="cpu", dtype="float32", seed=8)
    fit(unbroken, 3)
    first = gpuback.Network(spec, backend="cpu", dtype="float32", seed=8)
    fit(first, 1)
    first.save(tmp_path / "model")
    resumed = gpuback.Network.load(tmp_path / "model", backend="cpu")
    assert resumed.seed == 8
    fit(resumed, 2)
    for name, value in unbroken.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[name], value, err_msg=name)


def test_a_share_of_the_batch_draws_the_masks_of_its_rows_in_the_whole_batch() -> None:
    """What a data-parallel rank relies on: rows lo..hi passed with first_sample = lo draw
    the masks of those rows in the whole batch, so the ranks' masks are the single
    process's, distinct from rank to rank."""
    net = gpuback.Network(_spec(0.5), backend="numpy", seed=6)
    X = np.random.default_rng(5).normal(size=(10, 4))

    def masked_outputs(rows: slice, first_sample: int) -> np.ndarray:
        ws, _ = net.load_batch(X[rows])
        net.run_forward(ws, dropout=net.dropout_draw(4, first_sample))
        return net.ops.to_host(ws.z["h"]).T.copy()

    whole = masked_outputs(slice(0, 10), 0)
    np.testing.assert_array_equal(masked_outputs(slice(6, 10), 6), whole[6:])
    assert not np.array_equal(masked_outputs(slice(6, 10), 0) != 0, whole[6:] != 0)


def test_gradcheck_holds_under_a_fixed_mask(backend: str, simulated: bool) -> None:
    net = gpuback.Network(_spec(0.5), backend=backend, dtype="float64", seed=3)
    rng = np.random.default_rng(2)
    X, T = rng.normal(size=(4, 4)), rng.integers(0, 3, 4)
    report = gpuback.gradcheck(net, X, T, training=True, step=5,
                               mode="direction" if simulated else "full")
    assert report.passed, f"\n{report}"


@pytest.mark.parametrize(("change", "match"), [
    ({"dropout": 1.0}, r"\['dropout'\]: expected a number in \[0, 1\), got 1.0"),
    ({"dropout": -0.1}, r"\['dropout'\]: expected a number in \[0, 1\)"),
    ({"dropout": "0.5"}, r"\['dropout'\]: expected a real number"),
])
def test_bad_dropout_is_refused(change: dict, match: str) -> None:
    spec = _spec()
    spec["groups"][1].update(change)
    with pytest.raises((TypeError, ValueError), match=match):
        gpuback.validate_spec(spec)


def test_dropout_is_for_hidden_groups() -> None:
    spec = _spec()
    spec["groups"][3]["dropout"] = 0.1
    with pytest.raises(ValueError, match="group 'y': dropout is for hidden groups"):
        gpuback.validate_spec(spec)
    spec = _spec()
    spec["groups"][0]["dropout"] = 0.1
    with pytest.raises(ValueError, match="the input group takes no dropout"):
        gpuback.validate_spec(spec)


@pytest.mark.parametrize(("kwargs", "exc"), [({"training": 1}, TypeError),
                                             ({"training": True, "step": -1}, ValueError),
                                             ({"training": True, "step": 1.5}, TypeError)])
def test_training_and_step_are_checked(kwargs: dict, exc: type) -> None:
    net = gpuback.Network(_spec(), backend="numpy")
    with pytest.raises(exc):
        net.loss_and_grads(np.zeros((2, 4)), [0, 1], **kwargs)
