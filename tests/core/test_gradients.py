"""Backprop gradients against central differences (Bishop 5.69) on random specs, on every
backend (the ``backend`` fixture, tests/conftest.py), in float64 to the same tolerance.

A simulated backend (~70 us a simulated thread) gets the small specs of ``SIM_CASES``, and
the random-spec sweep checks random directions there (4 directional derivatives, each 4
losses) rather than every entry (4 losses per parameter entry); the class-label DAG, the
wrong-gradient and the float32 checks perturb every entry on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.backend_params import backend_cases
from helpers.networks import data_away_from_kinks, randomise_biases
from helpers.random_specs import SIM_CASES, SPEC_CASES, random_data
from helpers.tolerances import TOLERANCES

import gpuback

TOL = TOLERANCES["float64"]["gradcheck"]


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize(("backend", "case", "spec"), backend_cases(SPEC_CASES, SIM_CASES),
                         indirect=["backend"])
def test_gradcheck_random_specs(backend: str, simulated: bool, case: str, spec: dict,
                                batch: int) -> None:
    rng = np.random.default_rng(batch)
    net = gpuback.Network(spec, backend=backend, dtype="float64", seed=3)
    randomise_biases(net, rng)
    X, T = data_away_from_kinks(net, spec, batch, rng)
    mode = "direction" if simulated else "full"
    report = gpuback.gradcheck(net, X, T, mode=mode, n_directions=4, seed=batch)
    assert report.passed, f"\n{report}"
    assert report.max_rel_error <= TOL
    if mode == "full":
        assert {c.name for c in report.checks} == set(net.parameters())
    else:
        assert len(report.checks) == 4


@pytest.mark.parametrize("batch", [1, 7])
def test_gradcheck_class_labels(backend: str, simulated: bool, batch: int) -> None:
    spec = dict(SIM_CASES if simulated else SPEC_CASES)["dag-2"]  # a cross-entropy DAG
    assert spec["loss"] == "cross_entropy"
    rng = np.random.default_rng(0)
    net = gpuback.Network(spec, backend=backend)
    randomise_biases(net, rng)
    X, T = data_away_from_kinks(net, spec, batch, rng, labels=True)
    assert T.ndim == 1
    report = gpuback.gradcheck(net, X, T)
    assert report.max_rel_error <= TOL, f"\n{report}"


def test_labels_and_one_hot_rows_agree(backend: str) -> None:
    spec = gpuback.mlp_spec([5, 4, 3], activation="tanh")
    rng = np.random.default_rng(1)
    net = gpuback.Network(spec, backend=backend)
    X = rng.normal(size=(6, 5))
    labels = rng.integers(0, 3, size=6)
    loss_l, grads_l = net.loss_and_grads(X, labels)
    loss_h, grads_h = net.loss_and_grads(X, np.eye(3)[labels])
    assert loss_l == pytest.approx(loss_h, rel=TOLERANCES["float64"]["invariance"])
    for k in grads_l:
        np.testing.assert_allclose(grads_l[k], grads_h[k],
                                   rtol=TOLERANCES["float64"]["invariance"], atol=0)


def test_direction_mode_on_a_larger_sparse_network(backend: str, simulated: bool) -> None:
    sizes, batch = ([24, 16, 12, 5], 3) if simulated else ([64, 48, 32, 10], 9)
    spec = gpuback.sparse_mlp_spec(sizes, density=0.2, seed=4, activation="tanh")
    rng = np.random.default_rng(2)
    net = gpuback.Network(spec, backend=backend)
    randomise_biases(net, rng)
    X, T = data_away_from_kinks(net, spec, batch, rng, labels=True)
    report = gpuback.gradcheck(net, X, T, mode="direction", n_directions=6, seed=1)
    assert len(report.checks) == 6
    assert report.max_rel_error <= TOL, f"\n{report}"


WRONG_BY = 1.001


class _OneWrongGradient(gpuback.Network):
    """A network whose backprop is off by a factor ``WRONG_BY`` in one entry."""

    def loss_and_grads(self, X, T):
        loss, grads = super().loss_and_grads(X, T)
        grads["h1->y"][1, 2] *= WRONG_BY
        return loss, grads


@pytest.mark.parametrize("mode", ["full", "direction"])
def test_gradcheck_detects_a_wrong_gradient(backend: str, mode: str) -> None:
    spec = gpuback.mlp_spec([4, 3, 2], activation="tanh")
    rng = np.random.default_rng(3)
    net = _OneWrongGradient(spec, backend=backend)
    X, T = random_data(spec, 4, rng)
    report = gpuback.gradcheck(net, X, T, mode=mode, n_directions=3)
    assert not report.passed
    assert "FAILED" in str(report)
    if mode == "full":
        worst = max(report.checks, key=lambda c: c.max_rel_error)
        assert (worst.name, worst.worst_index) == ("h1->y", (1, 2))
        # |g WRONG_BY - g| / |g WRONG_BY|, up to the central differences' own error
        assert abs(worst.max_rel_error - (WRONG_BY - 1) / WRONG_BY) <= TOL


def test_gradcheck_of_a_float32_network_uses_float64_differences(backend: str) -> None:
    spec = gpuback.mlp_spec([3, 5, 2], activation="sigmoid")
    rng = np.random.default_rng(4)
    net = gpuback.Network(spec, backend=backend, dtype="float32")
    X, T = random_data(spec, 3, rng)
    report = gpuback.gradcheck(net, X, T, tol=TOLERANCES["float32"]["independent_grad"])
    assert report.passed, f"\n{report}"
    assert net.dtype == "float32"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mode": "sideways"}, "mode"),
    ({"eps": 0.0}, "eps"),
    ({"eps": float("nan")}, "eps"),
    ({"tol": -1.0}, "tol"),
    ({"n_directions": 0}, "n_directions"),
])
def test_gradcheck_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    net = gpuback.Network(gpuback.mlp_spec([2, 2]))
    with pytest.raises(ValueError, match=match):
        gpuback.gradcheck(net, np.ones((1, 2)), np.array([0]), **kwargs)
