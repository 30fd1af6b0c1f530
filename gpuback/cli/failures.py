"""How a ``gpuback`` command fails: the errors the commands raise, and for any exception
the exit code (``gpuback.cli.exit_codes``) and the one line on stderr that report it.

``describe`` is the one place that decides the exit code of a failure; the docstring of
``gpuback.cli.app`` lists its cases.
"""

from __future__ import annotations

from ..training.stopping import TrainingDivergedError
from .exit_codes import EXIT_FAILED, EXIT_USAGE
from .signals import stop_reason

TRACEBACK_ENV = "GPUBACK_TRACEBACK"  # set to 1: print the traceback of a failure too


class UsageError(Exception):
    """Bad input the user can fix; printed as one line, exit 2."""


class ParseError(Exception):
    """A bad command line (argparse's complaint); the message is the whole line to print."""


class RunFailedError(Exception):
    """The run could not be completed (a checkpoint that could not be written, the backend
    or the system failing while ``train`` trains); exit 1."""


class InterruptedRunError(Exception):
    """Ctrl-C or a termination signal, with a message saying what was saved; ``code`` is
    the exit code (130 for Ctrl-C, 128 + the signal's number otherwise)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# what a command raises for bad input (besides UsageError): gpuback's own checks raise
# ValueError and TypeError, files OSError, a backend that cannot run RuntimeError
BAD_INPUT = (UsageError, ValueError, TypeError, OSError, RuntimeError)


def describe(command: str, exc: BaseException) -> tuple[int, str]:
    """The exit code and the message for ``exc``, raised by ``command`` ("gpuback train")."""
    text = str(exc).strip()
    if isinstance(exc, ParseError):
        return EXIT_USAGE, text
    if isinstance(exc, InterruptedRunError):
        return exc.code, f"{command}: {text}"
    if isinstance(exc, KeyboardInterrupt):
        how, code = stop_reason(exc)
        return code, f"{command}: {how}"
    if isinstance(exc, TrainingDivergedError):
        return EXIT_FAILED, f"{command}: {text}"
    if isinstance(exc, RunFailedError):
        return EXIT_FAILED, f"{command}: error: {text}"
    if isinstance(exc, MemoryError) and isinstance(exc, ValueError):
        return EXIT_USAGE, f"{command}: error: {text}"  # a pre-flight refusal: sizes too big
    if isinstance(exc, MemoryError):
        return EXIT_FAILED, f"{command}: error: out of memory{f': {text}' if text else ''}"
    if isinstance(exc, BAD_INPUT):
        return EXIT_USAGE, f"{command}: error: {text or type(exc).__name__}"
    return EXIT_FAILED, (f"{command}: internal error: {type(exc).__name__}: {text}; please "
                         f"report it, with the traceback that {TRACEBACK_ENV}=1 prints")


__all__ = ["BAD_INPUT", "TRACEBACK_ENV", "InterruptedRunError", "ParseError", "RunFailedError",
           "UsageError", "describe"]
