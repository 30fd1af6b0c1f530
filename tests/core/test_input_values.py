"""Values checked against the network's dtype, not only their own: inputs, targets and
parameters beyond ``numpy.finfo(dtype).max`` are refused at every entry point, with a
message that names the value, its place and the dtype, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.small_networks import LABELS, inputs, small_net

import gpuback
from gpuback.optim.optimizers import SGD

F32_MAX = float(np.finfo(np.float32).max)


TOO_BIG = 1e39  # finite in float64, inf in float32


FITS = 1e38  # below float32's maximum (3.4e38)


RANGE_X = r"X: 1e\+39 at index \(0, 3\) is outside the float32 range \(max 3\.4e\+38\)"




ROWS = np.array([[0.5, -0.5], [1.0, 0.0], [0.0, 2.0]])


def _input_entry_points(net: gpuback.Network, X: np.ndarray) -> dict:
    """Every public way inputs reach ``net``, as zero-argument calls."""
    good = inputs(0.0)
    sgd = SGD(lr=1e-3)
    return {
        "forward": lambda: net.forward(X),
        "loss_and_grads": lambda: net.loss_and_grads(X, LABELS),
        "loss": lambda: net.loss(X, LABELS),
        "trace": lambda: net.trace(X),
        "trace with targets": lambda: net.trace(X, LABELS),
        "fit": lambda: net.fit(X, LABELS, epochs=1, batch_size=3, optimizer=sgd,
                               progress=False),
        "fit validation": lambda: net.fit(good, LABELS, epochs=1, batch_size=3,
                                          optimizer=sgd, validation=(X, LABELS),
                                          progress=False),
        "predict": lambda: net.predict(X),
        "evaluate": lambda: net.evaluate(X, LABELS),
        "gradcheck": lambda: gpuback.gradcheck(net, X, LABELS),
    }


@pytest.mark.parametrize("value", [TOO_BIG, -TOO_BIG, 3.5e38])
def test_inputs_beyond_float32_are_refused_at_every_entry_point(backend: str,
                                                                value: float) -> None:
    net = small_net(backend)
    before = net.parameters()
    for name, call in _input_entry_points(net, inputs(value)).items():
        with pytest.raises(ValueError, match=r"X(_val)?: .* at index \(0, 3\) is outside the "
                                             r"float32 range \(max 3\.4e\+38\)") as info:
            call()
        assert f"{value:.3g}" in str(info.value), name
    for k, v in net.parameters().items():  # nothing ran: no training step was taken
        np.testing.assert_array_equal(v, before[k])


def test_the_message_names_the_value_its_place_and_the_dtype(backend: str) -> None:
    with pytest.raises(ValueError, match=RANGE_X + ": it does not fit the network's dtype"):
        small_net(backend).forward(inputs(TOO_BIG))
    with pytest.raises(ValueError, match=r"X_val: 1e\+39 at index \(0, 3\)"):
        small_net(backend).fit(inputs(0.0), LABELS, epochs=1, validation=(inputs(TOO_BIG), LABELS),
                          progress=False)


def test_inputs_that_fit_float32_are_accepted_at_every_entry_point(backend: str) -> None:
    net = small_net(backend)
    for name, call in _input_entry_points(net, inputs(FITS)).items():
        if name != "gradcheck":  # its finite differences are meaningless at 1e38
            call()
    y = net.forward(inputs(FITS))
    assert np.isfinite(y).all()  # tanh saturates: 1e38 is a legal, finite input
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)


def test_inf_and_nan_are_still_reported_as_not_finite(backend: str) -> None:
    net = small_net(backend)
    for value, shown in ((np.inf, "inf"), (np.nan, "nan")):
        for call in (lambda X: net.forward(X), lambda X: net.predict(X),
                     lambda X: net.fit(X, LABELS, epochs=1, progress=False)):
            with pytest.raises(ValueError, match=f"X: expected finite values, got {shown} "
                                                 r"at index \(0, 3\)"):
                call(inputs(value))


def test_a_float64_network_takes_float64_values_and_integers_always_fit(backend: str) -> None:
    assert np.isfinite(small_net(backend, dtype="float64").forward(inputs(TOO_BIG))).all()
    big_ints = np.full((3, 4), 2 ** 62, dtype=np.int64)  # 4.6e18, far below float32's max
    assert np.isfinite(small_net(backend).forward(big_ints)).all()
    at_max = inputs(0.0).astype(np.float32)
    at_max[0, 3] = F32_MAX  # float32 data into a float32 network: no cast, nothing to check
    assert np.isfinite(small_net(backend).forward(at_max)).all()


def _target_entry_points(net: gpuback.Network, T: np.ndarray) -> dict:
    X = inputs(0.0)
    sgd = SGD(lr=1e-3)
    return {
        "loss_and_grads": lambda: net.loss_and_grads(X, T),
        "loss": lambda: net.loss(X, T),
        "trace": lambda: net.trace(X, T),
        "fit": lambda: net.fit(X, T, epochs=1, batch_size=3, optimizer=sgd, progress=False),
        "fit validation": lambda: net.fit(X, ROWS, epochs=1, batch_size=3, optimizer=sgd,
                                          validation=(X, T), progress=False),
        "evaluate": lambda: net.evaluate(X, T),
        "gradcheck": lambda: gpuback.gradcheck(net, X, T),
    }


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # the float32 loss of 1e38
def test_targets_beyond_float32_are_refused_at_every_entry_point(backend: str) -> None:
    net = small_net(backend, loss="sum_of_squares")
    T = ROWS.copy()
    T[2, 1] = -TOO_BIG
    for name, call in _target_entry_points(net, T).items():
        with pytest.raises(ValueError, match=r"T(_val)?: -1e\+39 at index \(2, 1\) is outside "
                                             r"the float32 range"):
            call()
        del name
    T[2, 1] = -FITS  # fits: accepted (the loss itself may overflow float32, it is no error)
    net.loss_and_grads(inputs(0.0), T)
    net.evaluate(inputs(0.0), T)


def test_parameters_beyond_float32_are_refused_and_nothing_is_written(backend: str,
                                                                      tmp_path: Path) -> None:
    net = small_net(backend)
    before = net.parameters()
    W = before["x->h1"].astype(np.float64)
    W[1, 2] = TOO_BIG
    with pytest.raises(ValueError, match=r"params\['x->h1'\]: 1e\+39 at index \(1, 2\) is "
                                         r"outside the float32 range"):
        net.set_parameters({"h1": np.ones(3), "x->h1": W})  # a good one first: not written
    for k, v in net.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    W[1, 2] = FITS
    net.set_parameters({"x->h1": W})
    assert net.parameters()["x->h1"][1, 2] == np.float32(FITS)
    net.save(str(tmp_path / "model"))  # a value that fits is saved (1e39 stored inf before)
    loaded = gpuback.Network.load(str(tmp_path / "model"), backend=backend)
    assert loaded.parameters()["x->h1"][1, 2] == np.float32(FITS)
