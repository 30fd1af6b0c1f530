"""Rules of the NumPy reference's op set that the comparisons with other backends do not pin
down: the status pair, kinks and thresholds taken exactly, the working dtype of h'(a),
and what ``describe`` reports. Each is checked against an independent statement of the rule
(NumPy's own report, float32 arithmetic done here, hand-made arrays)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gpuback
from gpuback.backends import numpy_backend
from gpuback.backends.cuda import device as cuda_device
from gpuback.backends.status import BackendStatus
from gpuback.training.metrics import STATUS_WHAT


def test_describe_reports_numpy_and_the_blas_numpy_was_built_with() -> None:
    info = numpy_backend.describe()
    assert set(info) == {"numpy", "blas"}
    assert info["numpy"] == np.__version__
    built = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    assert isinstance(info["blas"], str) and info["blas"] == built


def _old_numpy_show_config(mode=None):
    raise TypeError("show_config() got an unexpected keyword argument 'mode'")  # < 1.25


@pytest.mark.parametrize("show_config", [
    lambda mode=None: {}, lambda mode=None: {"Build Dependencies": {}},
    lambda mode=None: {"Build Dependencies": {"blas": {}}}, _old_numpy_show_config,
], ids=["nothing", "no-blas", "no-name", "numpy-before-1.25"])
def test_describe_without_a_blas_report_says_none(monkeypatch, show_config) -> None:
    monkeypatch.setattr(np, "show_config", show_config)
    assert numpy_backend.describe() == {"numpy": np.__version__, "blas": None}


def test_status_is_usable_host_computation_with_a_reason() -> None:
    state = numpy_backend.status()
    assert isinstance(state, BackendStatus)
    assert (state.usable, state.simulated) == (True, False)
    assert isinstance(state.reason, str) and state.reason


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_asarray_converts_to_the_dtype_asked_for(dtype) -> None:
    out = numpy_backend.asarray(np.arange(6).reshape(2, 3)[:, ::2], dtype)
    assert out.dtype == dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out, [[0, 2], [3, 5]])


def test_asarray_of_a_backend_array_is_the_array_itself() -> None:
    a = np.arange(6.0).reshape(2, 3)
    assert numpy_backend.asarray(a, np.float64) is a


def test_from_host_and_to_host_make_c_contiguous_copies() -> None:
    a = np.asfortranarray(np.arange(6).reshape(2, 3))
    out = numpy_backend.from_host(a, np.float32)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, a)
    same = np.arange(4.0)
    for copy in (numpy_backend.from_host(same, np.float64), numpy_backend.to_host(same)):
        np.testing.assert_array_equal(copy, same)
        assert not np.shares_memory(copy, same)


def test_copy_into_casts() -> None:
    dst = np.zeros(3, dtype=np.int64)
    numpy_backend.copy_into(dst, np.array([1.0, 2.0, 3.0]))
    assert dst.tolist() == [1, 2, 3]


def test_a_device_array_is_read_back_to_the_host() -> None:
    # a simulator device array stands in for a CuPy one: reading it counts a copy and a wait
    device = np.arange(6.0).reshape(2, 3).view(cuda_device.SimDeviceArray)
    dst = np.zeros((2, 3), np.float32)
    with gpuback.profile.counters() as counts:
        out = numpy_backend.asarray(device, np.float32)
        numpy_backend.copy_into(dst, device)
    assert type(out) is np.ndarray and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(dst, out)
    assert (counts.device_to_host, counts.host_waits) == (2, 2)


# --- the status pair: (first bad step, what went non-finite) ---------------------------------

def test_accumulate_metrics_records_the_first_non_finite_loss_only() -> None:
    totals, status = np.zeros(2), np.zeros(2, dtype=np.int64)
    correct = np.ones(2, dtype=np.float32)
    numpy_backend.accumulate_metrics(np.array([1.0, 2.0], np.float32), correct, totals, status, 1)
    assert status.tolist() == [0, 0]
    numpy_backend.accumulate_metrics(np.array([np.inf, 1.0], np.float32), correct, totals,
                                     status, 4)
    assert status[0] == 4 and STATUS_WHAT[int(status[1])] == "loss"
    numpy_backend.accumulate_metrics(np.array([np.nan, 1.0], np.float32), correct, totals,
                                     status, 6)
    assert status[0] == 4 and STATUS_WHAT[int(status[1])] == "loss"  # the first is kept


def test_a_recorded_step_is_never_overwritten() -> None:
    # status[0] != 0 means a step is recorded, whatever status[1] holds
    for op, bad in ((numpy_backend.accumulate_metrics, None), (numpy_backend.check_finite, 1)):
        status = np.array([3, 0], dtype=np.int64)
        if bad is None:
            op(np.array([np.inf], np.float32), np.zeros(1, np.float32), np.zeros(2), status, 7)
        else:
            op(np.array([np.nan, 1.0]), status, 7)
        assert status.tolist() == [3, 0], op


def test_check_finite_records_a_gradient() -> None:
    status = np.zeros(2, dtype=np.int64)
    numpy_backend.check_finite(np.array([1.0, 2.0]), status, 2)
    assert status.tolist() == [0, 0]
    numpy_backend.check_finite(np.array([1.0, -np.inf]), status, 5)
    assert status[0] == 5 and STATUS_WHAT[int(status[1])] == "a gradient"


def test_correct_counts_are_totalled_in_float64() -> None:
    # 2**24 + 1 is not a float32: a float32 sum of these counts would lose the 1
    totals, status = np.zeros(2), np.zeros(2, dtype=np.int64)
    correct = np.array([2.0**24, 1.0], dtype=np.float32)
    numpy_backend.accumulate_metrics(np.zeros(2, np.float32), correct, totals, status, 1)
    assert totals[1] == math.fsum([2.0**24, 1.0])


@pytest.mark.parametrize("update", ["sgd", "adam"])
def test_updates_are_skipped_while_a_step_is_recorded(update: str) -> None:
    param, grad = np.ones(3), np.full(3, 0.5)
    state = [np.zeros(3), np.zeros(3)]
    for status, moves in ((np.array([2, 0]), False), (np.array([0, 0]), True)):
        before = param.copy()
        if update == "sgd":
            numpy_backend.sgd_update(param, grad, state[0], 0.1, 0.0, False, 0.0, status,
                                     param, 0)
        else:
            numpy_backend.adam_update(param, grad, state[0], state[1], 0.1, 0.9, 0.999, 1e-8,
                                      0.0, False, 1, status, param, 0)
        assert (not np.array_equal(param, before)) == moves, status


# --- kinks and thresholds, taken exactly ---------------------------------------------------

def test_relu_slope_at_zero_is_zero_and_leaky_relu_slope_is_the_small_one() -> None:
    # h'(0) = 0 for relu and LEAKY_SLOPE for leaky relu: the unit counts as inactive at 0
    a = np.array([[-1.0, 0.0, 2.0]])
    for activation, at_zero in (("relu", 0.0), ("leaky_relu", numpy_backend.LEAKY_SLOPE)):
        z = np.empty_like(a)
        numpy_backend.bias_activation(activation, np.zeros(1), a.copy(), z)
        acc, db = np.ones_like(a), np.zeros(1)
        numpy_backend.activation_delta(activation, a, z, acc, db)
        slope = numpy_backend.LEAKY_SLOPE if activation == "leaky_relu" else 0.0
        assert acc.tolist() == [[slope, at_zero, 1.0]], activation


def test_leaky_relu_slope_is_taken_in_the_working_dtype() -> None:
    # float32: h'(a) is float32(LEAKY_SLOPE) and delta = acc * h'(a), one rounding in float32
    rng = np.random.default_rng(0)
    a = -rng.uniform(0.5, 2.0, size=(8, 512)).astype(np.float32)
    acc = rng.normal(size=a.shape).astype(np.float32)
    z = np.empty_like(a)
    numpy_backend.bias_activation("leaky_relu", np.zeros(8, np.float32), a.copy(), z)
    expected = acc * np.float32(numpy_backend.LEAKY_SLOPE)
    db = np.zeros(8, np.float32)
    numpy_backend.activation_delta("leaky_relu", a, z, acc, db)
    assert acc.dtype == np.float32
    np.testing.assert_array_equal(acc, expected)


def test_unknown_activation_and_loss_are_named() -> None:
    a = np.zeros((2, 1))
    with pytest.raises(ValueError, match=r"^activation: unknown 'swish'$"):
        numpy_backend.bias_activation("swish", np.zeros(2), a.copy(), a.copy())
    with pytest.raises(ValueError, match=r"^loss: unknown 'hinge'$"):
        numpy_backend.loss_and_output_delta("hinge", "identity", a, a.copy(), a.copy(),
                                            a.copy(), np.zeros(1), np.zeros(1))


def test_activation_delta_refuses_softmax() -> None:
    a = np.zeros((2, 1))
    with pytest.raises(ValueError, match=r"^activation: no elementwise derivative for "
                                         r"'softmax'$"):
        numpy_backend.activation_delta("softmax", a, a.copy(), a.copy(), np.zeros(2))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_an_output_of_one_half_predicts_zero(backend: str) -> None:
    # all parameters zero: every output is sigmoid(0) = 0.5 exactly, which is not > 0.5, so
    # it matches a target 0 and misses a target 1
    if backend not in gpuback.available_backends():
        pytest.skip(f"backend {backend!r} is not available here")
    net = gpuback.Network(gpuback.mlp_spec([2, 3], loss="binary_cross_entropy"),
                          backend=backend)
    net.set_parameters({k: np.zeros_like(v) for k, v in net.parameters().items()})
    X = np.ones((4, 2))
    np.testing.assert_array_equal(net.predict(X), np.full((4, 3), 0.5))
    assert net.evaluate(X, np.zeros((4, 3)))["accuracy"] == 1.0
    assert net.evaluate(X, np.ones((4, 3)))["accuracy"] == 0.0


def test_poisson_is_scikit_learns_half_poisson_deviance() -> None:
    """The per-sample losses summed over the batch and divided by it are scikit-learn's
    ``poisson_loss`` (what ``MLPRegressor(loss="poisson")`` minimises), zero targets
    included; the output deltas are (e^a - t) / N, its gradient with respect to a."""
    base = pytest.importorskip("sklearn.neural_network._base",
                               reason="scikit-learn (the sklearn extra) defines the loss")
    rng = np.random.default_rng(8)
    a = rng.normal(scale=2.0, size=(3, 7))
    t = rng.poisson(2.0, size=(3, 7)).astype(np.float64)
    t[0, :3] = 0.0
    y, delta = np.exp(a), np.zeros((3, 7))
    losses, correct = np.zeros(7), np.ones(7)
    numpy_backend.loss_and_output_delta("poisson", "exp", a, y, t, delta, losses, correct)
    # scikit-learn's arrays are batch-major (samples, outputs)
    expected = base.poisson_loss(t.T, y.T)
    assert losses.mean() == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(delta, (y - t) / 7, rtol=1e-15)
    assert correct.tolist() == [0.0] * 7
