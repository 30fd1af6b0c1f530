"""Signals that stop a command: SIGTERM and SIGHUP raise ``Terminated`` where the program
is, as Ctrl-C raises ``KeyboardInterrupt``, so a run stops as cleanly on each; a stop is
reported as what stopped it and exits with 128 + the signal's number."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from .exit_codes import signal_exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is (as Ctrl-C raises KeyboardInterrupt),
    so a run stops as cleanly as on Ctrl-C; ``signum`` is the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_reason(exc: KeyboardInterrupt) -> tuple[str, int]:
    """How a stop is described ("interrupted", "terminated by SIGTERM") and its exit code,
    128 + the signal number as shells report it (130 for Ctrl-C)."""
    if isinstance(exc, Terminated):
        return f"terminated by {signal.Signals(exc.signum).name}", signal_exit_code(exc.signum)
    return "interrupted", signal_exit_code(signal.SIGINT)


@contextlib.contextmanager
def signals_stop_the_run() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM and SIGHUP raise ``Terminated``
    instead of killing the process outright: the run reports what its checkpoint holds
    and exits 143 or 129. The previous handlers come back afterwards."""
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    wanted = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, stop) for s in wanted}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


__all__ = ["Terminated", "signals_stop_the_run", "stop_reason"]
