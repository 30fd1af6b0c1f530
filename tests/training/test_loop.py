"""The fit loop, evaluation and prediction, on every backend (the ``backend`` fixture,
tests/conftest.py: smaller problems, fewer epochs where the backend is simulated).
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from helpers.tolerances import TOLERANCES
from helpers.training_runs import three_class_net, three_class_problem

import gpuback
from gpuback import training
from gpuback.checkpoint import files as checkpoint
from gpuback.optim import optimizers as optim

EXACT = TOLERANCES["float64"]["invariance"]  # one computation reached two ways


def _problem(n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = (X[:, 0] - 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)  # 3 classes
    return X, y


def _net(seed: int = 0, hidden: int = 12, **kwargs) -> gpuback.Network:
    return gpuback.Network(gpuback.mlp_spec([6, hidden, 3], activation="tanh"), seed=seed,
                           **kwargs)


# Sizes at full speed, and (key True) for a simulated backend, ~70 us a simulated thread:
# fewer samples, epochs and hidden units there.
HIDDEN = {False: 12, True: 4}


LEARN = {False: {"n": 240, "n_val": 60, "batch": 16, "epochs": 20, "lr": 2e-2},
         True: {"n": 32, "n_val": 8, "batch": 16, "epochs": 3, "lr": 3e-1}}


def test_fit_learns_and_reports_history(backend: str, simulated: bool) -> None:
    size = LEARN[simulated]
    X, y = _problem(size["n"])
    Xv, yv = X[:size["n_val"]], y[:size["n_val"]]
    net = _net(hidden=HIDDEN[simulated], backend=backend)
    before = net.evaluate(X, y)
    history = net.fit(X, y, epochs=size["epochs"], batch_size=size["batch"],
                      optimizer=optim.Adam(lr=size["lr"]), validation=(Xv, yv), progress=False)
    after = net.evaluate(X, y)
    assert set(history) == {"loss", "accuracy", "samples_per_second", "val_loss",
                            "val_accuracy"}
    assert all(len(v) == size["epochs"] for v in history.values())
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert after["loss"] < 0.5 * before["loss"] and after["accuracy"] > 0.9
    assert all(s > 0 for s in history["samples_per_second"])
    # the validation numbers are those evaluate() gives on the same data
    assert history["val_loss"][-1] == pytest.approx(net.evaluate(Xv, yv)["loss"], rel=EXACT)


def _sparse_net(backend: str, hidden: int, deterministic: bool) -> gpuback.Network:
    """Sparse blocks into the hidden and the output group: the backward through h1->y is the
    sparse scatter-add (atomic on the cuda backend unless ``deterministic``)."""
    spec = gpuback.sparse_mlp_spec([6, hidden, 3], density=0.5, seed=1, activation="tanh",
                                   sparse_output=True)
    return gpuback.Network(spec, backend=backend, seed=3, deterministic=deterministic)


@pytest.mark.parametrize(("kind", "deterministic"), [
    ("dense", False),  # no sparse block: reproducible with the defaults on every backend
    ("sparse", True),
    pytest.param("sparse", False, marks=pytest.mark.needs("bitwise_without_deterministic")),
])
def test_same_seed_same_weights_bitwise(backend: str, simulated: bool, kind: str,
                                        deterministic: bool) -> None:
    X, y = _problem(16 if simulated else 240)

    def run(seed: int) -> dict[str, np.ndarray]:
        hidden = HIDDEN[simulated]
        net = (_net(seed=3, hidden=hidden, backend=backend, deterministic=deterministic)
               if kind == "dense" else _sparse_net(backend, hidden, deterministic))
        net.fit(X, y, epochs=2, batch_size=8 if simulated else 32,
                optimizer=optim.SGD(lr=0.1, momentum=0.9), seed=seed, progress=False)
        return net.parameters()

    runs = [run(7), run(7)]
    other = run(8)  # another shuffle: the seed is what fixes the result
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k], err_msg=k)
    assert any(not np.array_equal(runs[0][k], other[k]) for k in runs[0])


# samples, learning rate and batch size of a run whose loss or gradients go NaN or infinite
# within the first epoch (on 240 samples; on a simulated backend a faster blow-up on 16)
DIVERGE = {False: (240, 1e6, 8), True: (16, 1e100, 4)}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow warnings on the way
def test_divergence_stops_with_epoch_and_step(backend: str, simulated: bool) -> None:
    n, lr, batch = DIVERGE[simulated]
    X, y = _problem(n)
    X = X * 1e3

    def diverge(name: str) -> tuple[gpuback.Network, tuple[int, int]]:
        net = gpuback.Network(gpuback.mlp_spec([6, 12, 3], activation="relu"), backend=name,
                              seed=0)
        with pytest.raises(gpuback.TrainingDivergedError,
                           match=r"NaN or infinite at epoch \d+, step \d+") as info:
            net.fit(X, y, epochs=50, batch_size=batch, optimizer=optim.SGD(lr=lr),
                    progress=False)
        where = re.search(r"epoch (\d+), step (\d+)", str(info.value))
        assert where is not None
        return net, (int(where[1]), int(where[2]))

    net, where = diverge(backend)
    assert where == diverge("numpy")[1]  # the same epoch and step as the reference
    # the update of the bad step was skipped: the parameters are those of the last good one
    assert all(np.isfinite(v).all() for v in net.parameters().values())


def test_a_loss_exploding_in_the_first_epoch_is_measured_against_its_first_batch(
        backend: str, simulated: bool, tmp_path) -> None:
    # Adam at lr 1e6: the loss explodes at once but stays finite (tanh saturates), so no
    # step is NaN; the first epoch's mean is compared with the first batch's loss
    n, batch = (32, 16) if simulated else (240, 16)
    X, y = _problem(n)
    path = tmp_path / "ckpt"
    net = _net(hidden=HIDDEN[simulated], backend=backend)
    with pytest.raises(gpuback.TrainingDivergedError, match=r"epoch 1.* more than 10x") as info:
        net.fit(X, y, epochs=3, batch_size=batch, optimizer=optim.Adam(lr=1e6), seed=5,
                checkpoint=str(path), progress=False)
    error = info.value
    # the reference, from another path: the loss of the run's first batch before any update
    first = np.random.default_rng([5, 0]).permutation(n)[:batch]
    fresh = _net(hidden=HIDDEN[simulated], backend=backend)
    assert error.reference == pytest.approx(fresh.loss_and_grads(X[first], y[first])[0],
                                            rel=EXACT)
    assert (error.epoch, error.step) == (1, None)
    assert error.loss > training.DIVERGENCE_FACTOR * error.reference
    assert net.epochs_trained == 0 and not path.exists()  # the epoch was not saved


def test_an_exploding_loss_stops_before_its_epochs_checkpoint(backend: str, simulated: bool,
                                                              tmp_path) -> None:
    # SGD whose learning rate is multiplied by 1e4 after two epochs: epoch 3's mean loss is
    # finite but more than 10x the first epoch's
    n, batch = (32, 16) if simulated else (240, 16)
    X, y = _problem(n)
    path = tmp_path / "ckpt"

    def run(epochs: int, **kwargs) -> tuple[gpuback.Network, dict]:
        schedule = optim.StepDecay(step_size=2 * -(-n // batch), gamma=1e4)
        net = _net(hidden=HIDDEN[simulated], backend=backend)
        history = net.fit(X, y, epochs=epochs, batch_size=batch, progress=False,
                          optimizer=optim.SGD(lr=0.05, schedule=schedule), **kwargs)
        return net, history

    with pytest.raises(gpuback.TrainingDivergedError, match=r"epoch 3.* first epoch") as info:
        run(10, checkpoint=str(path))
    error = info.value
    good, history = run(2)  # the same run, stopped before the bad epoch
    assert error.epoch == 3 and error.step is None
    assert error.reference == pytest.approx(history["loss"][0], rel=EXACT)
    assert error.loss > training.DIVERGENCE_FACTOR * error.reference
    assert history["loss"][1] <= training.DIVERGENCE_FACTOR * history["loss"][0]  # epoch 2 ok
    saved = gpuback.Network.load(path, backend=backend)  # the last good epoch, untouched
    assert saved.epochs_trained == 2
    for k, v in good.parameters().items():
        np.testing.assert_array_equal(saved.parameters()[k], v, err_msg=k)


def test_on_epoch_end_follows_each_checkpoint(backend: str, tmp_path) -> None:
    X, y = _problem(n=20)
    net = _net(backend=backend)
    seen: list[tuple[int, int]] = []

    def after(epochs_trained: int) -> None:
        seen.append((epochs_trained, gpuback.Network.load(tmp_path / "c").epochs_trained))

    training.fit(net, X, y, epochs=3, batch_size=8, checkpoint=str(tmp_path / "c"),
                 progress=False, on_epoch_end=after)
    assert seen == [(1, 1), (2, 2), (3, 3)]


def _early_stopping_run(backend: str, simulated: bool, **kwargs):
    """A run whose validation loss falls for a few epochs and then rises (some validation
    labels are wrong, and training grows confident in the right ones), so that early stopping
    with patience 2 stops well before 30 epochs at a best epoch that is neither the first
    nor the last one run. The network, its optimiser, the history and steps per epoch."""
    n, n_val, batch, lr, wrong = (16, 8, 16, 1e-1, 2) if simulated else (240, 40, 16, 3e-3, 16)
    X, y = _problem(n, seed=1)
    Xv, yv = _problem(n_val, seed=2)
    yv[:wrong] = (yv[:wrong] + 1) % 3
    net, opt = _net(hidden=HIDDEN[simulated], backend=backend), optim.Adam(lr=lr)
    history = net.fit(X, y, epochs=30, batch_size=batch, optimizer=opt, validation=(Xv, yv),
                      early_stopping=2, progress=False, **kwargs)
    run = len(history["val_loss"])
    best = int(np.argmin(history["val_loss"])) + 1  # epochs count from 1
    assert run < 30 and run == best + 2  # it stopped, after two epochs without a new best
    assert best > 1, "the run must improve on its first epoch, or the test shows little"
    return net, opt, history, (Xv, yv), best, -(-n // batch)


def test_early_stopping_keeps_the_best_weights(backend: str, simulated: bool) -> None:
    net, opt, history, (Xv, yv), best, steps_per_epoch = _early_stopping_run(backend, simulated)
    assert net.evaluate(Xv, yv)["loss"] == pytest.approx(min(history["val_loss"]), rel=EXACT)
    # the whole best epoch: its epoch count and its optimiser state too
    assert net.epochs_trained == best
    assert opt.steps == best * steps_per_epoch


def test_early_stopping_rewrites_the_checkpoint_from_the_best_epoch(
        backend: str, simulated: bool, tmp_path) -> None:
    path = tmp_path / "ckpt"
    net, opt, _, _, best, steps_per_epoch = _early_stopping_run(backend, simulated,
                                                                checkpoint=str(path))
    saved = gpuback.Network.load(path, backend=backend)
    for k, v in net.parameters().items():
        np.testing.assert_array_equal(saved.parameters()[k], v, err_msg=k)
    assert saved.epochs_trained == net.epochs_trained == best
    saved_opt = checkpoint.load_optimizer(path, saved)
    assert saved_opt is not None and saved_opt.steps == opt.steps == best * steps_per_epoch
    state, saved_state = opt.state_dict(), saved_opt.state_dict()
    for name, buffers in state["buffers"].items():
        for buf, value in buffers.items():
            np.testing.assert_array_equal(saved_state["buffers"][name][buf], value,
                                          err_msg=f"{name}/{buf}")


def test_predict_and_evaluate_match_forward(backend: str, simulated: bool) -> None:
    X, y = _problem(n=20 if simulated else 50)
    net = _net(hidden=HIDDEN[simulated], backend=backend)
    np.testing.assert_allclose(net.predict(X, batch_size=7), net.forward(X), rtol=EXACT)
    loss, _ = net.loss_and_grads(X, y)
    result = net.evaluate(X, y, batch_size=9)
    assert result["loss"] == pytest.approx(loss, rel=EXACT)
    assert result["accuracy"] == np.mean(net.forward(X).argmax(1) == y)


def _targets(kind: str, X: np.ndarray, rng: np.random.Generator):
    """A spec and targets for each way accuracy is counted."""
    if kind == "binary_cross_entropy":
        spec = gpuback.mlp_spec([6, 5, 4], activation="tanh", loss="binary_cross_entropy")
        return spec, (rng.uniform(size=(X.shape[0], 4)) > 0.5).astype(float)
    spec = gpuback.mlp_spec([6, 5, 4], activation="tanh")
    labels = rng.integers(0, 4, size=X.shape[0])
    return spec, (labels if kind == "labels" else np.eye(4)[labels])


@pytest.mark.parametrize("kind", ["labels", "probability_rows", "binary_cross_entropy"])
def test_accuracy_is_the_fraction_of_correct_outputs(backend: str, simulated: bool,
                                                     kind: str) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(19 if simulated else 37, 6))
    spec, T = _targets(kind, X, rng)
    net = gpuback.Network(spec, backend=backend, seed=2)
    Y = net.predict(X)
    if kind == "binary_cross_entropy":
        expected = np.mean((Y > 0.5) == (T > 0.5))
    else:
        expected = np.mean(Y.argmax(1) == (T if T.ndim == 1 else T.argmax(1)))
    assert 0 < expected < 1
    # counts of correct outputs over the count of outputs: the same division, exactly
    assert net.evaluate(X, T, batch_size=10)["accuracy"] == expected
    # the training accuracy of an epoch that barely moves the weights is the same count
    history = net.fit(X, T, epochs=1, batch_size=8, optimizer=optim.SGD(lr=1e-12),
                      progress=False)
    assert history["accuracy"][0] == expected


def test_sum_of_squares_has_no_accuracy(backend: str) -> None:
    X, _ = _problem(n=20)
    net = gpuback.Network(gpuback.mlp_spec([6, 4, 2], loss="sum_of_squares"), backend=backend,
                          seed=0)
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
def test_fit_rejects_bad_arguments(backend: str, kwargs: dict, exc, match: str) -> None:
    X, y = _problem(n=10)
    net = _net(backend=backend)
    before = net.parameters()
    with pytest.raises(exc, match=match):
        net.fit(X, y, progress=False, **kwargs)
    assert net.epochs_trained == 0
    for k, v in before.items():
        np.testing.assert_array_equal(net.parameters()[k], v, err_msg=k)


def test_fit_rejects_bad_data_before_training(backend: str) -> None:
    X, y = _problem(n=10)
    y[3] = 5
    net = _net(backend=backend)
    with pytest.raises(ValueError, match="class labels must lie in"):
        net.fit(X, y, progress=False)
    assert net.epochs_trained == 0


def test_host_backends_ask_nothing_of_a_device() -> None:
    X, y = _problem(n=30)
    for backend in {"numpy", "cpu"} & set(gpuback.available_backends()):
        with gpuback.profile.counters() as counts:
            _net(backend=backend).fit(X, y, epochs=1, batch_size=8, progress=False)
        assert counts == gpuback.profile.Counts(), (backend, counts)


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _batches(monkeypatch, net: gpuback.Network, method: str) -> list[int]:
    seen: list[int] = []
    real = getattr(net, method)

    def spy(ws, *args, **kwargs):
        seen.append(ws.batch)
        return real(ws, *args, **kwargs)

    monkeypatch.setattr(net, method, spy)
    return seen


def test_predict_and_evaluate_run_batch_size_samples_at_a_time(monkeypatch) -> None:
    X, y = three_class_problem(10)
    net = three_class_net(dtype="float32")
    seen = _batches(monkeypatch, net, "run_forward")
    out = net.predict(X, batch_size=4)
    assert seen == [4, 4, 2] and out.dtype == np.float32 and out.shape == (10, 3)
    seen.clear()
    net.evaluate(X, y, batch_size=3)
    assert seen == [3, 3, 3, 1]
    seen.clear()
    net.predict(X, batch_size=1)
    assert seen == [1] * 10


def test_fit_steps_over_the_epoch_in_batches(monkeypatch) -> None:
    X, y = three_class_problem(10)
    net = three_class_net()
    seen = _batches(monkeypatch, net, "run_backward")
    net.fit(X, y, epochs=2, batch_size=4, progress=False)
    assert seen == [4, 4, 2] * 2
    seen.clear()
    net.fit(X, y, epochs=1, batch_size=1, progress=False)
    assert seen == [1] * 10


def test_fit_allocates_nothing_after_its_first_step(monkeypatch) -> None:
    # validation batches are larger than training ones: both are reserved before step one
    X, y = three_class_problem(20)
    Xv, yv = three_class_problem(300, seed=1)
    net, opt = three_class_net(), optim.Adam(lr=1e-2)
    stepped = []
    real_step, real_zeros = opt.step, net.ops.zeros

    def step(*args, **kwargs):
        real_step(*args, **kwargs)
        stepped.append(True)

    def zeros(shape, dtype):
        assert not stepped, f"allocated {shape} after the first step"
        return real_zeros(shape, dtype)

    monkeypatch.setattr(opt, "step", step)
    monkeypatch.setattr(net.ops, "zeros", zeros)
    net.fit(X, y, epochs=2, batch_size=4, optimizer=opt, validation=(Xv, yv), progress=False)
    assert stepped


def test_history_numbers_are_the_epochs_measurements() -> None:
    X, y = three_class_problem(30)
    Xv, yv = three_class_problem(12, seed=1)
    net = three_class_net()
    before = net.evaluate(X, y)
    start = time.perf_counter()
    # a step far too small to move the weights: the epoch's loss is the loss before it
    history = net.fit(X, y, epochs=1, batch_size=8, optimizer=optim.SGD(lr=1e-300),
                      validation=(Xv, yv), progress=False)
    wall = time.perf_counter() - start
    assert history["loss"][0] == pytest.approx(before["loss"], rel=1e-12)
    assert history["accuracy"][0] == before["accuracy"]
    after = net.evaluate(Xv, yv)
    assert history["val_loss"] == [after["loss"]]
    assert history["val_accuracy"] == [after["accuracy"]] and after["accuracy"] is not None
    # samples per second: the epoch took no longer than the whole call
    assert 0 < 30 / history["samples_per_second"][0] <= wall


def test_without_shuffling_the_seed_changes_nothing() -> None:
    X, y = three_class_problem(12)
    runs = []
    for seed in (1, 2):
        net = three_class_net()
        net.fit(X, y, epochs=2, batch_size=4, optimizer=optim.SGD(lr=0.1), shuffle=False,
                seed=seed, progress=False)
        runs.append(net.parameters())
    _same(*runs)


def test_early_stopping_waits_for_a_strictly_lower_validation_loss() -> None:
    # a step that cannot move any weight: the validation loss ties in every epoch, and a tie
    # is no improvement, so the run stops after the first epoch plus the patience
    X, y = three_class_problem(12)
    Xv, yv = three_class_problem(6, seed=1)
    net = three_class_net()
    net.set_parameters({k: np.where(v == 0, 0.5, v) for k, v in net.parameters().items()})
    history = net.fit(X, y, epochs=10, batch_size=4, optimizer=optim.SGD(lr=1e-300),
                      validation=(Xv, yv), early_stopping=3, progress=False)
    assert len(set(history["val_loss"])) == 1
    assert len(history["val_loss"]) == 1 + 3
    assert net.epochs_trained == 1


def test_patience_of_one_epoch_is_accepted() -> None:
    X, y = three_class_problem(8)
    history = three_class_net().fit(X, y, epochs=2, validation=(X, y), early_stopping=1,
                                    progress=False)
    assert 1 <= len(history["loss"]) <= 2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_names_the_first_bad_step_counted_from_one() -> None:
    # Step 1 starts from finite weights: its loss and gradients are finite, and the huge
    # step throws the weights out to ~1e300. Step 2's outputs then square to infinity.
    X = three_class_problem(10)[0]
    net = gpuback.Network(gpuback.mlp_spec([4, 2], activation="identity",
                                           loss="sum_of_squares"), seed=0)
    with pytest.raises(gpuback.TrainingDivergedError, match=(
            r"^training diverged: loss is NaN or infinite at epoch 1, step 2; the parameters "
            r"are those before that step; lower the learning rate \(1e\+300\)$")):
        net.fit(X, np.ones((10, 2)), epochs=1, batch_size=4, optimizer=optim.SGD(lr=1e300),
                progress=False)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow on the way to inf
def test_evaluate_reports_an_infinite_loss() -> None:
    # outputs of ~1e200 square to infinity: evaluation reports it rather than failing
    net = gpuback.Network(gpuback.mlp_spec([4, 2], activation="identity",
                                           loss="sum_of_squares"), seed=0)
    net.set_parameters({"x->y": np.full((2, 4), 1e200)})
    X = np.abs(three_class_problem(6)[0]) + 1.0
    result = net.evaluate(X, np.zeros((6, 2)), batch_size=4)
    assert result["loss"] == np.inf and result["accuracy"] is None


def test_metrics_buffers_and_the_first_bad_step() -> None:
    ops = three_class_net().ops
    metrics = training.Metrics(ops)
    assert metrics.totals.dtype == np.float64 and metrics.totals.shape == (2,)
    assert metrics.status.dtype == np.int64 and metrics.status.shape == (2,)
    assert metrics.first_bad_step() is None
    for code, what in ((1, "loss"), (2, "a gradient"), (99, "a value")):
        ops.copy_into(metrics.status, np.array([3, code]))
        assert metrics.first_bad_step() == (3, what)


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda n, X, y: n.predict(X, batch_size=0), ValueError,
     r"^batch_size: expected an integer >= 1, got 0$"),
    (lambda n, X, y: n.evaluate(X, y, batch_size=0), ValueError,
     r"^batch_size: expected an integer >= 1, got 0$"),
    (lambda n, X, y: n.fit(X, y, batch_size=0, progress=False), ValueError,
     r"^batch_size: expected an integer >= 1, got 0$"),
    (lambda n, X, y: n.fit(X, y, epochs=0, progress=False), ValueError,
     r"^epochs: expected an integer >= 1, got 0$"),
    (lambda n, X, y: n.fit(X, y, validation=(X, y), early_stopping=True, progress=False),
     ValueError, r"^early_stopping: expected a positive integer \(epochs of patience\) or "
                 r"None, got True$"),
    (lambda n, X, y: n.fit(X, y, validation=(X, y), early_stopping=2.5, progress=False),
     ValueError, r"^early_stopping: .* got 2\.5$"),
    (lambda n, X, y: n.fit(X, y, early_stopping=2, progress=False), ValueError,
     r"^early_stopping: needs validation data to watch$"),
    (lambda n, X, y: n.fit(X, y, validation=(X, y, X), progress=False), TypeError,
     r"^validation: expected a pair \(X_val, T_val\)$"),
])
def test_bad_arguments_are_named(call, exc, match: str) -> None:
    X, y = three_class_problem(6)
    with pytest.raises(exc, match=match):
        call(three_class_net(), X, y)
