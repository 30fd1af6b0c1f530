"""The progress bar of ``fit`` (``gpuback.training.progress``): drawn on a terminal only, at
most once every ``REDRAW_SECONDS``, reading the loss back only when it redraws. The bar's
clock is replaced through ``gpuback.training.progress.progress_clock``."""

from __future__ import annotations

import io
import itertools
import math
import re
import sys
import time

import pytest
from helpers.training_runs import three_class_net, three_class_problem

import gpuback
from gpuback import training
from gpuback.optim import optimizers as optim
from gpuback.training import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def _fit_on(stream: io.StringIO, monkeypatch, **kwargs) -> tuple[dict, str]:
    monkeypatch.setattr(sys, "stderr", stream)
    X, y = three_class_problem(120)
    history = three_class_net().fit(X, y, epochs=2, batch_size=2,
                                    optimizer=optim.SGD(lr=0.05), **kwargs)
    monkeypatch.undo()
    return history, stream.getvalue()


def test_progress_bar_on_a_terminal(monkeypatch) -> None:
    ticks = itertools.count()
    # 0.03 s a step: REDRAW_SECONDS (0.1) have passed every 4 steps, so the bar redraws
    # at steps 4, 8, ..., 120 (the bar reads its clock once a step, and once at the start)
    monkeypatch.setattr(progress, "progress_clock", lambda: 0.03 * next(ticks))
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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_at_most_ten_times_a_second(monkeypatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    data = gpuback.datasets.load_digits()
    net = gpuback.Network(gpuback.mlp_spec([64, 16, 10]), backend="numpy", dtype="float32")
    start = time.perf_counter()
    net.fit(data.X_train, data.y_train, epochs=3, batch_size=8)  # 540 steps
    seconds = time.perf_counter() - start
    draws = terminal.getvalue().count("\r")
    assert draws >= 2  # tqdm's first and last
    # one each REDRAW_SECONDS, tqdm's first and its last two (close)
    assert draws <= seconds / training.REDRAW_SECONDS + 4, (draws, seconds)


class _FakeBar:
    def __init__(self) -> None:
        self.n, self.draws, self.postfix = 0, 0, {}

    def set_postfix(self, refresh: bool, **values) -> None:
        assert refresh is False  # drawn by the update that follows, once
        self.postfix = values

    def update(self, n: int) -> None:
        self.n += n
        self.draws += 1


def test_the_bar_reads_the_loss_only_when_it_redraws(monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr(progress, "progress_clock", lambda: now[0])
    fake = _FakeBar()
    bar = training.ProgressBar(fake)
    tick = 1 / 1024  # a step about a millisecond: one second in all, in exact binary steps
    reads = [0]
    for step in range(1, 1025):
        now[0] = step * tick
        bar.advance(lambda step=step: reads.append(step) or (1, 0.5))
    gaps = [(b - a) * tick for a, b in itertools.pairwise(reads)]
    # each redraw as soon as REDRAW_SECONDS have passed since the last, and not before
    assert all(training.REDRAW_SECONDS <= g < training.REDRAW_SECONDS + tick for g in gaps)
    assert fake.draws == len(gaps) == 9  # in one second: at most ten
    assert fake.n == reads[-1] and fake.postfix == {"epoch": 1, "loss": "0.5000"}
