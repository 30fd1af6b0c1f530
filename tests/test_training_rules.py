"""Rules of the fit loop, evaluation and prediction that test_training.py does not pin down:
streaming from the host when the data exceeds the memory budget, batching, the status pair's
step numbering, the progress bar, argument messages, allocations. On the host backends (the
loop is backend-independent Python; test_training.py runs the behaviour on every backend)."""

from __future__ import annotations

import io
import itertools
import math
import re
import sys
import time

import numpy as np
import pytest

import gpuback
from gpuback.optim import optimizers as optim
from gpuback.training import loop as training

HOST = [b for b in ("numpy", "cpu") if b in gpuback.available_backends()]


def _problem(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5).astype(int)


def _net(backend: str = "numpy", seed: int = 0, **kwargs) -> gpuback.Network:
    return gpuback.Network(gpuback.mlp_spec([4, 5, 3], activation="tanh"), backend=backend,
                           seed=seed, **kwargs)


def _bce_net(backend: str = "numpy", **kwargs) -> gpuback.Network:
    return gpuback.Network(gpuback.mlp_spec([4, 5, 2], activation="tanh",
                                            loss="binary_cross_entropy"), backend=backend,
                           seed=1, **kwargs)


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --- streaming: data over the memory budget stays on the host --------------------------------

def _run(net: gpuback.Network, X, T, Xv, Tv) -> tuple[dict, dict, np.ndarray, dict]:
    history = net.fit(X, T, epochs=2, batch_size=4, optimizer=optim.SGD(lr=0.1, momentum=0.5),
                      validation=(Xv, Tv), seed=3, progress=False)
    return history, net.parameters(), net.predict(X, batch_size=3), net.evaluate(Xv, Tv, 7)


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("targets", ["labels", "rows"])
def test_streamed_data_gives_what_data_on_the_backend_gives(backend: str, targets: str,
                                                             monkeypatch) -> None:
    X, y = _problem(10)
    Xv, yv = _problem(6, seed=1)
    if targets == "rows":  # soft targets: probabilities, not just 0 and 1
        T, Tv = np.abs(np.sin(X[:, :2])), np.abs(np.sin(Xv[:, :2]))
        make = _bce_net
    else:
        T, Tv, make = y, yv, _net
    in_memory = _run(make(backend), X, T, Xv, Tv)
    streamed_net = make(backend)
    monkeypatch.setattr(streamed_net.ops, "memory_budget", lambda: 0.0)
    assert isinstance(training.dataset(streamed_net, X, T, 4), training.StreamedDataset)
    streamed = _run(streamed_net, X, T, Xv, Tv)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert streamed[0][key] == in_memory[0][key], key
    _same(streamed[1], in_memory[1])
    np.testing.assert_array_equal(streamed[2], in_memory[2])
    assert streamed[3] == in_memory[3]


def test_streaming_a_batch_larger_than_the_data(monkeypatch) -> None:
    X, y = _problem(5)
    expected = _net().predict(X, batch_size=8), _net().evaluate(X, y, batch_size=8)
    net = _net()
    monkeypatch.setattr(net.ops, "memory_budget", lambda: 0.0)
    np.testing.assert_array_equal(net.predict(X, batch_size=8), expected[0])
    assert net.evaluate(X, y, batch_size=8) == expected[1]


def test_streaming_alternates_two_staging_buffers_and_waits_two_batches_back(
        monkeypatch) -> None:
    # Each batch is gathered into one of two host buffers and copied from it; before a
    # buffer is refilled, the host waits for the copy made from it two batches earlier.
    net = _net()
    ops = net.ops
    log: list[tuple] = []
    pinned: list[np.ndarray] = []
    real_pinned, real_copy = ops.pinned_empty, ops.copy_into
    events = iter(range(100))

    def pinned_empty(shape, dtype):
        pinned.append(real_pinned(shape, dtype))
        return pinned[-1]

    def copy_into(dst, src):
        owner = next((i for i, p in enumerate(pinned)
                      if isinstance(src, np.ndarray) and src.base is p), None)
        if owner is not None:
            log.append(("copy", owner))
        real_copy(dst, src)

    def record_event():
        log.append(("event", next(events)))
        return log[-1][1]

    monkeypatch.setattr(ops, "memory_budget", lambda: 0.0)
    monkeypatch.setattr(ops, "pinned_empty", pinned_empty)
    monkeypatch.setattr(ops, "copy_into", copy_into)
    monkeypatch.setattr(ops, "record_event", record_event)
    monkeypatch.setattr(ops, "wait_for", lambda event: log.append(("wait", event)))
    X = _problem(10)[0]
    out = net.predict(X, batch_size=3)  # 4 batches of 3, 3, 3, 1 samples
    monkeypatch.undo()
    np.testing.assert_array_equal(out, _net().predict(X, batch_size=3))
    assert len(pinned) == 2  # X only: one buffer per turn
    assert log == [("copy", 0), ("event", 0),
                   ("copy", 1), ("event", 1),
                   ("wait", 0), ("copy", 0), ("event", 2),
                   ("wait", 1), ("copy", 1), ("event", 3)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("targets", ["labels", "rows", "none"])
def test_data_streams_exactly_when_its_bytes_exceed_the_budget(monkeypatch, dtype: str,
                                                               targets: str) -> None:
    # the bytes the data takes on the backend: X in the network's dtype, class labels as
    # int64, target rows in the network's dtype
    X, y = _problem(6)
    net = _bce_net(dtype=dtype) if targets == "rows" else _net(dtype=dtype)
    T = {"labels": y, "rows": np.eye(2)[y % 2], "none": None}[targets]
    size = X.astype(dtype).nbytes
    if targets == "labels":
        size += y.astype(np.int64).nbytes
    elif targets == "rows":
        size += T.astype(dtype).nbytes
    for budget, streamed in ((size, False), (size - 1, True)):
        monkeypatch.setattr(net.ops, "memory_budget", lambda budget=budget: float(budget))
        data = training.dataset(net, X, T, 4)
        assert isinstance(data, training.StreamedDataset) == streamed, budget


@pytest.mark.parametrize("targets", ["labels", "rows", "none"])
def test_streamed_data_stages_batches_in_the_networks_dtype(monkeypatch, targets: str) -> None:
    # like data on the backend: X and T (None without targets) hold a batch's samples
    X, y = _problem(10)
    net = _bce_net(dtype="float32") if targets == "rows" else _net(dtype="float32")
    T = {"labels": y, "rows": np.abs(np.sin(X[:, :2])), "none": None}[targets]
    monkeypatch.setattr(net.ops, "memory_budget", lambda: 0.0)
    data = training.dataset(net, X, T, 4)
    assert isinstance(data, training.StreamedDataset) and data.n == 10
    assert data.X.shape == (4, 4) and data.X.dtype == np.float32
    if targets == "none":
        assert data.T is None
    else:
        assert data.T.shape == (4, *T.shape[1:])
        assert data.T.dtype == (np.int64 if targets == "labels" else np.float32)


def test_data_on_the_backend_is_in_the_networks_dtype_and_labels_int64() -> None:
    X, y = _problem(6)
    data = training.dataset(_net(dtype="float32"), X, y, 4)
    assert isinstance(data, training.Dataset)
    assert data.X.dtype == np.float32 and data.T.dtype == np.int64
    rows = training.dataset(_bce_net(dtype="float32"), X, np.eye(2)[y % 2], 4)
    assert rows.T.dtype == np.float32


# --- batching ------------------------------------------------------------------------------

def _batches(monkeypatch, net: gpuback.Network, method: str) -> list[int]:
    seen: list[int] = []
    real = getattr(net, method)

    def spy(ws, *args, **kwargs):
        seen.append(ws.batch)
        return real(ws, *args, **kwargs)

    monkeypatch.setattr(net, method, spy)
    return seen


def test_predict_and_evaluate_run_batch_size_samples_at_a_time(monkeypatch) -> None:
    X, y = _problem(10)
    net = _net(dtype="float32")
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
    X, y = _problem(10)
    net = _net()
    seen = _batches(monkeypatch, net, "run_backward")
    net.fit(X, y, epochs=2, batch_size=4, progress=False)
    assert seen == [4, 4, 2] * 2
    seen.clear()
    net.fit(X, y, epochs=1, batch_size=1, progress=False)
    assert seen == [1] * 10


def test_fit_allocates_nothing_after_its_first_step(monkeypatch) -> None:
    # validation batches are larger than training ones: both are reserved before step one
    X, y = _problem(20)
    Xv, yv = _problem(300, seed=1)
    net, opt = _net(), optim.Adam(lr=1e-2)
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


# --- history -------------------------------------------------------------------------------

def test_history_numbers_are_the_epochs_measurements() -> None:
    X, y = _problem(30)
    Xv, yv = _problem(12, seed=1)
    net = _net()
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
    X, y = _problem(12)
    runs = []
    for seed in (1, 2):
        net = _net()
        net.fit(X, y, epochs=2, batch_size=4, optimizer=optim.SGD(lr=0.1), shuffle=False,
                seed=seed, progress=False)
        runs.append(net.parameters())
    _same(*runs)


def test_early_stopping_waits_for_a_strictly_lower_validation_loss() -> None:
    # a step that cannot move any weight: the validation loss ties in every epoch, and a tie
    # is no improvement, so the run stops after the first epoch plus the patience
    X, y = _problem(12)
    Xv, yv = _problem(6, seed=1)
    net = _net()
    net.set_parameters({k: np.where(v == 0, 0.5, v) for k, v in net.parameters().items()})
    history = net.fit(X, y, epochs=10, batch_size=4, optimizer=optim.SGD(lr=1e-300),
                      validation=(Xv, yv), early_stopping=3, progress=False)
    assert len(set(history["val_loss"])) == 1
    assert len(history["val_loss"]) == 1 + 3
    assert net.epochs_trained == 1


def test_patience_of_one_epoch_is_accepted() -> None:
    X, y = _problem(8)
    history = _net().fit(X, y, epochs=2, validation=(X, y), early_stopping=1, progress=False)
    assert 1 <= len(history["loss"]) <= 2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_names_the_first_bad_step_counted_from_one() -> None:
    # Step 1 starts from finite weights: its loss and gradients are finite, and the huge
    # step throws the weights out to ~1e300. Step 2's outputs then square to infinity.
    X = _problem(10)[0]
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
    X = np.abs(_problem(6)[0]) + 1.0
    result = net.evaluate(X, np.zeros((6, 2)), batch_size=4)
    assert result["loss"] == np.inf and result["accuracy"] is None


# --- metrics ---------------------------------------------------------------------------------

def test_metrics_buffers_and_the_first_bad_step() -> None:
    ops = _net().ops
    metrics = training.Metrics(ops)
    assert metrics.totals.dtype == np.float64 and metrics.totals.shape == (2,)
    assert metrics.status.dtype == np.int64 and metrics.status.shape == (2,)
    assert metrics.first_bad_step() is None
    for code, what in ((1, "loss"), (2, "a gradient"), (99, "a value")):
        ops.copy_into(metrics.status, np.array([3, code]))
        assert metrics.first_bad_step() == (3, what)


# --- argument checks -------------------------------------------------------------------------

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
    X, y = _problem(6)
    with pytest.raises(exc, match=match):
        call(_net(), X, y)


# --- the progress bar ------------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def _fit_on(stream: io.StringIO, monkeypatch, **kwargs) -> tuple[dict, str]:
    monkeypatch.setattr(sys, "stderr", stream)
    X, y = _problem(120)
    history = _net().fit(X, y, epochs=2, batch_size=2, optimizer=optim.SGD(lr=0.05), **kwargs)
    monkeypatch.undo()
    return history, stream.getvalue()


def test_progress_bar_on_a_terminal(monkeypatch) -> None:
    ticks = itertools.count()
    # 0.03 s a step: REDRAW_SECONDS (0.1) have passed every 4 steps, so the bar redraws
    # at steps 4, 8, ..., 120 (the bar reads its clock once a step, and once at the start)
    monkeypatch.setattr(training, "progress_clock", lambda: 0.03 * next(ticks))
    history, out = _fit_on(_Terminal(), monkeypatch)  # progress is on by default
    frames = [f for f in out.split("\r") if "loss=" in f]
    parsed = [re.search(r"(\d+)/(\d+) .*epoch=(\d+), loss=([0-9.]+)", f) for f in frames]
    assert all(parsed), frames
    # 60 steps an epoch; each redraw shows the epoch and its running mean loss then
    assert [(int(p[1]), int(p[2]), int(p[3])) for p in parsed] == [
        (step, 120, 1 if step <= 60 else 2) for step in range(4, 121, 4)]
    at_epoch_ends = [float(p[4]) for p in parsed if int(p[1]) in (60, 120)]
    assert at_epoch_ends == [float(f"{loss:.4f}") for loss in history["loss"]]
    assert math.isclose(float(parsed[0][4]), history["loss"][0], rel_tol=0.5)
    assert "step/s" in out or "s/step" in out
    assert not out.endswith("\n") and out.split("\r")[-2].strip() == ""  # cleared at the end


@pytest.mark.parametrize(("stream", "progress"), [(_Terminal, False), (_Pipe, True)])
def test_no_progress_bar_when_not_wanted_or_not_a_terminal(monkeypatch, stream,
                                                           progress: bool) -> None:
    _, out = _fit_on(stream(), monkeypatch, progress=progress)
    assert out == ""
