"""Data larger than the backend's budget streams to it in batches: the same training as
data held on the backend, two staging buffers in turn, streaming exactly when the bytes
exceed the budget, batches staged in the network's dtype."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.training_runs import three_class_net, three_class_problem

import gpuback
from gpuback import training
from gpuback.optim import optimizers as optim

HOST = [b for b in ("numpy", "cpu") if b in gpuback.available_backends()]


def _bce_net(backend: str = "numpy", **kwargs) -> gpuback.Network:
    return gpuback.Network(gpuback.mlp_spec([4, 5, 2], activation="tanh",
                                            loss="binary_cross_entropy"), backend=backend,
                           seed=1, **kwargs)


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _run(net: gpuback.Network, X, T, Xv, Tv) -> tuple[dict, dict, np.ndarray, dict]:
    history = net.fit(X, T, epochs=2, batch_size=4, optimizer=optim.SGD(lr=0.1, momentum=0.5),
                      validation=(Xv, Tv), seed=3, progress=False)
    return history, net.parameters(), net.predict(X, batch_size=3), net.evaluate(Xv, Tv, 7)


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("targets", ["labels", "rows"])
def test_streamed_data_gives_what_data_on_the_backend_gives(backend: str, targets: str,
                                                             monkeypatch) -> None:
    X, y = three_class_problem(10)
    Xv, yv = three_class_problem(6, seed=1)
    if targets == "rows":  # soft targets: probabilities, not just 0 and 1
        T, Tv = np.abs(np.sin(X[:, :2])), np.abs(np.sin(Xv[:, :2]))
        make = _bce_net
    else:
        T, Tv, make = y, yv, three_class_net
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
    X, y = three_class_problem(5)
    expected = (three_class_net().predict(X, batch_size=8),
                three_class_net().evaluate(X, y, batch_size=8))
    net = three_class_net()
    monkeypatch.setattr(net.ops, "memory_budget", lambda: 0.0)
    np.testing.assert_array_equal(net.predict(X, batch_size=8), expected[0])
    assert net.evaluate(X, y, batch_size=8) == expected[1]


def test_streaming_alternates_two_staging_buffers_and_waits_two_batches_back(
        monkeypatch) -> None:
    # Each batch is gathered into one of two host buffers and copied from it; before a
    # buffer is refilled, the host waits for the copy made from it two batches earlier.
    net = three_class_net()
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
    X = three_class_problem(10)[0]
    out = net.predict(X, batch_size=3)  # 4 batches of 3, 3, 3, 1 samples
    monkeypatch.undo()
    np.testing.assert_array_equal(out, three_class_net().predict(X, batch_size=3))
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
    X, y = three_class_problem(6)
    net = _bce_net(dtype=dtype) if targets == "rows" else three_class_net(dtype=dtype)
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
    X, y = three_class_problem(10)
    net = _bce_net(dtype="float32") if targets == "rows" else three_class_net(dtype="float32")
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
    X, y = three_class_problem(6)
    data = training.dataset(three_class_net(dtype="float32"), X, y, 4)
    assert isinstance(data, training.Dataset)
    assert data.X.dtype == np.float32 and data.T.dtype == np.int64
    rows = training.dataset(_bce_net(dtype="float32"), X, np.eye(2)[y % 2], 4)
    assert rows.T.dtype == np.float32
