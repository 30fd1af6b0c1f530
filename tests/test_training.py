"""The fit loop, evaluation and prediction."""

from __future__ import annotations

import numpy as np
import pytest

import gpuback
from gpuback import optim


def _problem(n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = (X[:, 0] - 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)  # 3 classes
    return X, y


def _net(seed: int = 0, **kwargs) -> gpuback.Network:
    return gpuback.Network(gpuback.mlp_spec([6, 12, 3], activation="tanh"), seed=seed, **kwargs)


def test_fit_learns_and_reports_history() -> None:
    X, y = _problem()
    net = _net()
    before = net.evaluate(X, y)
    history = net.fit(X, y, epochs=20, batch_size=16, optimizer=optim.Adam(lr=2e-2),
                      validation=(X[:60], y[:60]), progress=False)
    after = net.evaluate(X, y)
    assert set(history) == {"loss", "accuracy", "samples_per_second", "val_loss",
                            "val_accuracy"}
    assert all(len(v) == 20 for v in history.values())
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert after["loss"] < 0.5 * before["loss"] and after["accuracy"] > 0.9
    assert all(s > 0 for s in history["samples_per_second"])
    # the validation numbers are those evaluate() gives on the same data
    assert history["val_loss"][-1] == pytest.approx(net.evaluate(X[:60], y[:60])["loss"])


def test_same_seed_same_weights_bitwise() -> None:
    X, y = _problem()
    runs = []
    for _ in range(2):
        net = _net(seed=3)
        net.fit(X, y, epochs=2, batch_size=32, optimizer=optim.SGD(lr=0.1, momentum=0.9),
                seed=7, progress=False)
        runs.append(net.parameters())
    other = _net(seed=3)
    other.fit(X, y, epochs=2, batch_size=32, optimizer=optim.SGD(lr=0.1, momentum=0.9),
              seed=8, progress=False)
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    assert any(not np.array_equal(runs[0][k], other.parameters()[k]) for k in runs[0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow warnings on the way
def test_divergence_stops_with_epoch_and_step() -> None:
    X, y = _problem()
    X = X * 1e3
    net = gpuback.Network(gpuback.mlp_spec([6, 12, 3], activation="relu"), seed=0)
    with pytest.raises(gpuback.TrainingDivergedError,
                       match=r"NaN or infinite at epoch \d+, step \d+"):
        net.fit(X, y, epochs=50, batch_size=8, optimizer=optim.SGD(lr=1e6), progress=False)


def test_early_stopping_keeps_the_best_weights() -> None:
    X, y = _problem(seed=1)
    Xv, yv = _problem(n=40, seed=2)
    yv = (yv + 1) % 3  # validation labels that training makes worse
    net = _net()
    history = net.fit(X, y, epochs=30, batch_size=16, optimizer=optim.Adam(lr=1e-2),
                      validation=(Xv, yv), early_stopping=2, progress=False)
    assert len(history["val_loss"]) < 30
    assert net.evaluate(Xv, yv)["loss"] == pytest.approx(min(history["val_loss"]))


def test_predict_and_evaluate_match_forward() -> None:
    X, y = _problem(n=50)
    net = _net()
    np.testing.assert_allclose(net.predict(X, batch_size=7), net.forward(X), rtol=1e-12)
    loss, _ = net.loss_and_grads(X, y)
    result = net.evaluate(X, y, batch_size=9)
    assert result["loss"] == pytest.approx(loss, rel=1e-12)
    assert result["accuracy"] == pytest.approx(np.mean(net.forward(X).argmax(1) == y))


def _targets(kind: str, X: np.ndarray, rng: np.random.Generator):
    """A spec and targets for each way accuracy is counted."""
    if kind == "binary_cross_entropy":
        spec = gpuback.mlp_spec([6, 5, 4], activation="tanh", loss="binary_cross_entropy")
        return spec, (rng.uniform(size=(X.shape[0], 4)) > 0.5).astype(float)
    spec = gpuback.mlp_spec([6, 5, 4], activation="tanh")
    labels = rng.integers(0, 4, size=X.shape[0])
    return spec, (labels if kind == "labels" else np.eye(4)[labels])


@pytest.mark.parametrize("kind", ["labels", "probability_rows", "binary_cross_entropy"])
def test_accuracy_is_the_fraction_of_correct_outputs(kind: str) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(37, 6))
    spec, T = _targets(kind, X, rng)
    net = gpuback.Network(spec, seed=2)
    Y = net.predict(X)
    if kind == "binary_cross_entropy":
        expected = np.mean((Y > 0.5) == (T > 0.5))
    else:
        expected = np.mean(Y.argmax(1) == (T if T.ndim == 1 else T.argmax(1)))
    assert 0 < expected < 1
    assert net.evaluate(X, T, batch_size=10)["accuracy"] == pytest.approx(expected, abs=1e-12)
    # the training accuracy of an epoch that barely moves the weights is the same count
    history = net.fit(X, T, epochs=1, batch_size=8, optimizer=optim.SGD(lr=1e-12),
                      progress=False)
    assert history["accuracy"][0] == pytest.approx(expected, abs=1e-12)


def test_sum_of_squares_has_no_accuracy() -> None:
    X, _ = _problem(n=20)
    net = gpuback.Network(gpuback.mlp_spec([6, 4, 2], loss="sum_of_squares"), seed=0)
    T = np.zeros((20, 2))
    assert net.evaluate(X, T)["accuracy"] is None
    assert net.fit(X, T, epochs=1, progress=False)["accuracy"] == [None]


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"epochs": 0}, ValueError, "epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"optimizer": "adam"}, TypeError, "optimizer"),
    ({"early_stopping": 2}, ValueError, "early_stopping: needs validation"),
    ({"early_stopping": 0, "validation": (np.zeros((2, 6)), np.zeros(2, int))}, ValueError,
     "early_stopping"),
    ({"validation": np.zeros((2, 6))}, TypeError, "validation"),
])
def test_fit_rejects_bad_arguments(kwargs: dict, exc, match: str) -> None:
    X, y = _problem(n=10)
    with pytest.raises(exc, match=match):
        _net().fit(X, y, progress=False, **kwargs)


def test_fit_rejects_bad_data_before_training() -> None:
    X, y = _problem(n=10)
    y[3] = 5
    with pytest.raises(ValueError, match="class labels must lie in"):
        _net().fit(X, y, progress=False)


def test_host_backends_ask_nothing_of_a_device() -> None:
    X, y = _problem(n=30)
    for backend in {"numpy", "cpu"} & set(gpuback.available_backends()):
        with gpuback.profile.counters() as counts:
            _net(backend=backend).fit(X, y, epochs=1, batch_size=8, progress=False)
        assert counts == gpuback.profile.Counts(), (backend, counts)
