"""The exit codes of the ``gpuback`` command, defined once here.

0 is success. What each failure exits with is decided in one place,
``gpuback.cli.failures.describe``; ``gpuback.cli.app``'s docstring lists the cases.
"""

from __future__ import annotations

import signal

EXIT_FAILED = 1  # the run or the check itself failed (and any unexpected error)
EXIT_USAGE = 2  # bad arguments or bad input
SIGNAL_BASE = 128  # a run stopped by signal N exits with 128 + N, as shells report it


def signal_exit_code(signum: int) -> int:
    """The exit code of a run stopped by the signal ``signum``: 130 for SIGINT (Ctrl-C),
    143 for SIGTERM, 129 for SIGHUP."""
    return SIGNAL_BASE + signum


EXIT_INTERRUPTED = signal_exit_code(signal.SIGINT)  # Ctrl-C: 130

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "SIGNAL_BASE", "signal_exit_code"]
