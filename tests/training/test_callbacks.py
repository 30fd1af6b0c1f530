"""``fit``'s callbacks (``gpuback.training.callbacks``): when each method is called, what it
sees, and a callback's stop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import gpuback
from gpuback import training
from gpuback.optim import optimizers as optim


def _problem(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5).astype(int)


def _net(seed: int = 0) -> gpuback.Network:
    return gpuback.Network(gpuback.mlp_spec([4, 5, 3], activation="tanh"), backend="numpy",
                           seed=seed)


class _Steps(training.Callback):
    """Records every ``before_update``: the step, the batch, and the network's parameters
    and gradients at that moment."""

    def __init__(self, net: gpuback.Network) -> None:
        self.net, self.calls = net, []

    def before_update(self, step: int, batch: int) -> None:
        self.calls.append((step, batch, self.net.parameters(),
                           self.net.ops.to_host(self.net.flat_gradients).copy()))


def test_before_update_comes_after_the_steps_passes_and_before_its_update() -> None:
    X, y = _problem(10)
    net, twin = _net(), _net()
    steps = _Steps(net)
    net.fit(X, y, epochs=2, batch_size=4, optimizer=optim.SGD(lr=0.1), shuffle=False,
            progress=False, callbacks=[steps])
    # 10 samples in batches of 4: steps 1-3 of 4, 4 and 2 samples, in each epoch
    assert [(step, batch) for step, batch, _, _ in steps.calls] == [(1, 4), (2, 4), (3, 2)] * 2
    # step 1: the initial parameters (no update yet) and the gradient of the first batch
    _, _, params, grads = steps.calls[0]
    for name, value in twin.parameters().items():
        np.testing.assert_array_equal(params[name], value, err_msg=name)
    _, expected = twin.loss_and_grads(X[:4], y[:4])
    views = net.layout.views(grads)
    for name, value in expected.items():
        np.testing.assert_allclose(views[name], value, rtol=1e-12, atol=0, err_msg=name)
    # every step's update comes after its before_update: the next one sees new parameters
    for (_, _, before, _), (_, _, after, _) in itertools.pairwise(steps.calls):
        assert any(not np.array_equal(before[k], after[k]) for k in before)


class _Recorder(training.Callback):
    def __init__(self, name: str, log: list, stop_at: int | None = None) -> None:
        self.name, self.log, self.stop_at = name, log, stop_at
        self.figures: list[training.EpochFigures] = []

    def on_epoch_end(self, epoch: int, figures: training.EpochFigures) -> bool:
        self.log.append((self.name, epoch))
        self.figures.append(figures)
        return epoch == self.stop_at


def test_epoch_end_callbacks_run_in_order_before_the_checkpoint_and_can_stop(tmp_path) -> None:
    X, y = _problem(12)
    path = tmp_path / "ckpt"
    log: list = []

    def after(epochs_trained: int) -> None:  # fit's own on_epoch_end, after the checkpoint
        log.append(("function", epochs_trained,
                    gpuback.Network.load(path).epochs_trained))

    first, second = _Recorder("first", log), _Recorder("second", log, stop_at=2)
    net = _net()
    history = net.fit(X, y, epochs=5, batch_size=4, optimizer=optim.SGD(lr=0.1),
                      checkpoint=str(path), progress=False, on_epoch_end=after,
                      callbacks=[first, second])
    # the second callback stops training after epoch 2; the first still ran for epoch 2,
    # and epoch 2 is counted and checkpointed
    assert log == [("first", 1), ("second", 1), ("function", 1, 1),
                   ("first", 2), ("second", 2), ("function", 2, 2)]
    assert net.epochs_trained == 2 and len(history["loss"]) == 2
    assert gpuback.Network.load(path).epochs_trained == 2


def test_epoch_figures_are_the_historys() -> None:
    X, y = _problem(12)
    Xv, yv = _problem(6, seed=1)
    recorder = _Recorder("figures", [])
    history = _net().fit(X, y, epochs=3, batch_size=5, validation=(Xv, yv), progress=False,
                         callbacks=[recorder])
    figures = recorder.figures
    assert [f.loss for f in figures] == history["loss"]
    assert [f.accuracy for f in figures] == history["accuracy"]
    assert [f.val_loss for f in figures] == history["val_loss"]
    assert [f.val_accuracy for f in figures] == history["val_accuracy"]
    assert [f.samples / f.seconds for f in figures] == history["samples_per_second"]
    assert all(f.samples == 12 and f.loss == f.loss_sum / 12 for f in figures)
    assert all(f.accuracy == f.correct / 12 for f in figures)


def test_the_callback_defaults_change_nothing() -> None:
    X, y = _problem(12)
    plain, called = _net(), _net()
    plain.fit(X, y, epochs=2, batch_size=4, progress=False)
    called.fit(X, y, epochs=2, batch_size=4, progress=False,
               callbacks=[training.Callback(), training.Callback()])
    for name, value in plain.parameters().items():
        np.testing.assert_array_equal(called.parameters()[name], value, err_msg=name)


@pytest.mark.parametrize(("callbacks", "match"), [
    (training.Callback(), r"^callbacks: expected a list of callbacks"),
    ([object()], r"^callbacks: expected objects with the methods before_update and "
                 r"on_epoch_end"),
    ([lambda step, batch: None], r"^callbacks: expected objects with the methods"),
])
def test_bad_callbacks_are_refused_before_training(callbacks, match: str) -> None:
    X, y = _problem(8)
    net = _net()
    with pytest.raises(TypeError, match=match):
        net.fit(X, y, epochs=1, progress=False, callbacks=callbacks)
    assert net.epochs_trained == 0
