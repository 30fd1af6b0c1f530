"""gradcheck's rules beyond "a correct gradient passes": the report table, direction mode's
random unit directions (their number, seed and names), what a direction check catches, the
backend of the float64 copy, and the argument messages. Kinks:
tests/diagnostics/test_gradient_check_kinks.py."""

from __future__ import annotations

import numpy as np
import pytest

import gpuback
from gpuback.backends import numpy_backend
from gpuback.diagnostics.gradient_check import GradcheckReport, ParameterCheck, gradcheck

SPEC = gpuback.mlp_spec([3, 4, 2], activation="tanh")


def _data(n: int = 5):
    rng = np.random.default_rng(2)
    return rng.normal(size=(n, 3)), rng.integers(0, 2, size=n)


def test_report_table() -> None:
    check = ParameterCheck("x->h1", 3e-9, (1, 0), 0.25, 0.2500007, 0, 6)
    lines = str(GradcheckReport("full", 2e-3, 1e-7, 1e-4, [check])).split("\n")
    assert len(lines) == 4
    head, rule, row, verdict = lines
    assert head.split() == ["parameter", "max", "rel", "error", "worst", "index", "backprop",
                            "central", "diff", "crossed", "a", "kink"]
    assert rule == "-" * len(head)
    assert row.split()[0] == "x->h1" and "(1, 0)" in row
    assert [float(v) for v in row.replace("(1, 0)", "").split()[1:]] == [3e-9, 0.25,
                                                                           0.2500007, 0]
    assert verdict == ("PASSED: max relative error 3.000e-09 (tolerance 1e-07, mode full, "
                       "eps 0.002)")
    failed = GradcheckReport("direction", 1e-3, 1e-7, 1e-4,
                             [ParameterCheck("direction 0", 2e-3, (0,), 1.0, 1.002, 0, 1)])
    assert str(failed).split("\n")[-1].startswith("FAILED: max relative error 2.000e-03 ")


def test_direction_mode_draws_four_named_directions_from_seed_zero() -> None:
    net = gpuback.Network(SPEC, seed=1)
    X, y = _data()
    default = gradcheck(net, X, y, mode="direction")
    assert [c.name for c in default.checks] == [f"direction {i}" for i in range(4)]
    assert [c.worst_index for c in default.checks] == [(i,) for i in range(4)]
    again = gradcheck(net, X, y, mode="direction", seed=0)
    assert [c.analytic for c in again.checks] == [c.analytic for c in default.checks]
    other = gradcheck(net, X, y, mode="direction", seed=1)
    assert [c.analytic for c in other.checks] != [c.analytic for c in default.checks]
    assert default.passed and other.passed
    assert len(gradcheck(net, X, y, mode="direction", n_directions=1).checks) == 1


def test_directions_are_unit_vectors() -> None:
    # Cauchy-Schwarz: for a unit direction v, |g . v| <= |g|. Two parameters (one weight,
    # one bias) and forty directions: a direction of another length would break it.
    net = gpuback.Network(gpuback.mlp_spec([1, 1], loss="sum_of_squares"), seed=0)
    X, T = np.array([[0.7], [-1.3]]), np.array([[0.2], [0.9]])
    _, grads = net.loss_and_grads(X, T)
    g_norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
    report = gradcheck(net, X, T, mode="direction", n_directions=40)
    assert all(abs(c.analytic) <= g_norm * (1 + 1e-12) for c in report.checks)
    assert max(abs(c.analytic) for c in report.checks) > 0.5 * g_norm  # they are not tiny


def test_direction_mode_catches_an_error_that_keeps_each_parameters_sum(monkeypatch) -> None:
    # Move gradient mass between two entries of one weight: every sum over a parameter is
    # unchanged, but a random direction over all entries sees the difference.
    net = gpuback.Network(SPEC, seed=1)
    X, y = _data()
    real = net.loss_and_grads

    def wrong(*args, **kwargs):
        loss, grads = real(*args, **kwargs)
        grads["x->h1"][0, 0] += 1e-3
        grads["x->h1"][1, 2] -= 1e-3
        return loss, grads

    assert gradcheck(net, X, y, mode="direction").passed
    monkeypatch.setattr(net, "loss_and_grads", wrong)
    report = gradcheck(net, X, y, mode="direction")
    assert not report.passed and report.max_rel_error > 1e-5


@pytest.mark.skipif("cpu" not in gpuback.available_backends(), reason="no cpu backend here")
def test_the_float64_copy_runs_on_the_networks_own_backend(monkeypatch) -> None:
    # the cpu backend has its own loss op; the numpy reference's must not be called
    def refuse(*args, **kwargs):
        raise AssertionError("the numpy backend was used")

    net = gpuback.Network(SPEC, backend="cpu", dtype="float32", seed=1)
    X, y = _data()
    monkeypatch.setattr(numpy_backend, "loss_and_output_delta", refuse)
    report = gradcheck(net, X, y, mode="direction", n_directions=2, tol=1e-4)
    assert report.passed


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"eps": 0}, ValueError, r"^eps: expected a finite number > 0, got 0$"),
    ({"eps": True}, TypeError, r"^eps: expected a real number, got True \(bool\)$"),
    ({"tol": -1.0}, ValueError, r"^tol: expected a finite number > 0, got -1\.0$"),
    ({"floor": float("nan")}, ValueError, r"^floor: expected a finite number > 0, got nan$"),
    ({"mode": "direction", "n_directions": True}, TypeError,
     r"^n_directions: expected an integer, got True \(bool\)$"),
    ({"mode": "direction", "n_directions": 0}, ValueError,
     r"^n_directions: expected an integer >= 1, got 0$"),
    ({"mode": "both"}, ValueError, r"^mode: expected one of \['full', 'direction'\], got 'both'$"),
])
def test_bad_arguments_are_named(kwargs: dict, exc: type[Exception], match: str) -> None:
    X, y = _data()
    with pytest.raises(exc, match=match):
        gradcheck(gpuback.Network(SPEC), X, y, **kwargs)


def test_report_records_its_settings_and_the_backprop_value_at_the_worst_entry() -> None:
    # a one-unit output: its bias is a parameter with a single entry, checked like any other
    net = gpuback.Network(gpuback.mlp_spec([3, 4, 1], activation="tanh",
                                           loss="sum_of_squares"), seed=3)
    X = _data()[0]
    T = np.linspace(-1.0, 1.0, 5)[:, None]
    _, grads = net.loss_and_grads(X, T)
    report = gradcheck(net, X, T)
    assert (report.mode, report.eps, report.tol, report.floor) == ("full", 2e-3, 1e-7, 1e-4)
    assert [c.name for c in report.checks] == list(grads)
    for c in report.checks:
        assert len(c.worst_index) == grads[c.name].ndim
        assert c.analytic == grads[c.name][c.worst_index], c.name
        assert c.numeric == pytest.approx(c.analytic, rel=1e-6, abs=1e-9), c.name
    assert grads["y"].shape == (1,) and grads["y"][0] != 0
    custom = gradcheck(net, X, T, mode="direction", eps=1e-3, tol=1e-6, floor=1e-3)
    assert (custom.mode, custom.eps, custom.tol, custom.floor) == ("direction", 1e-3, 1e-6,
                                                                   1e-3)
