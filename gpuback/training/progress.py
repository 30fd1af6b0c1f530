"""The progress bar of ``fit``: a tqdm bar of the run's steps on a terminal, redrawn at most
once every ``REDRAW_SECONDS``; each redraw is the only time the running loss is read back.

``progress_clock`` is the bar's clock, read once a step: a test replaces it with
``monkeypatch.setattr(gpuback.training.progress, "progress_clock", fake)`` (the bar looks
it up in this module at every step, so the replacement takes effect at once).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

REDRAW_SECONDS = 0.1  # least time between progress-bar redraws (each reads the loss back)
progress_clock: Callable[[], float] = time.perf_counter  # the bar's clock (see above)


class ProgressBar:
    """A tqdm bar of the run's steps, redrawn at most once every ``REDRAW_SECONDS`` (a
    redraw per step costs a third of a small network's throughput on a terminal; so does
    one per epoch, when epochs take milliseconds). Each redraw shows the epoch and its
    running mean loss, read back from the backend then, and only then."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.pending = 0
        self.last = progress_clock()

    @classmethod
    def on_terminal(cls, total: int, wanted: bool) -> ProgressBar | None:
        """A bar on stderr; None when not wanted, stderr is not a terminal, or tqdm is
        missing."""
        if not wanted or not sys.stderr.isatty():
            return None
        try:
            from tqdm.std import tqdm  # (tqdm.auto: 20 ms more import, for notebooks)
        except ImportError:
            return None
        # mininterval 0: tqdm draws when told to; the redraws are timed here
        return cls(tqdm(total=total, unit="step", leave=False, mininterval=0, miniters=1))

    def advance(self, status: Callable[[], tuple[int, float]]) -> None:
        """One step done; redraw if ``REDRAW_SECONDS`` have passed since the last redraw
        (``status()``: the epoch and its running mean loss, called only then)."""
        self.pending += 1
        now = progress_clock()
        if now - self.last < REDRAW_SECONDS:
            return
        epoch, loss = status()
        self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", refresh=False)
        self.bar.update(self.pending)
        self.pending, self.last = 0, now

    def close(self) -> None:
        self.bar.close()
