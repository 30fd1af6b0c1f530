"""The exit codes of the ``gpuback`` command: defined once (``gpuback.cli.exit_codes``),
given to each failure in one place (``gpuback.cli.failures.describe``), as the docstring of
``gpuback.cli.app`` promises; no other module of gpuback/cli writes one as a number."""

from __future__ import annotations

import ast
import errno
import signal

import pytest
from helpers import REPO_ROOT

from gpuback.checkpoint import files as checkpoint
from gpuback.cli import app, failures
from gpuback.cli.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, signal_exit_code
from gpuback.cli.failures import (
    InterruptedRunError,
    ParseError,
    RunFailedError,
    UsageError,
    describe,
)
from gpuback.cli.signals import Terminated, stop_reason
from gpuback.training import TrainingDivergedError


class PreflightMemoryError(MemoryError, ValueError):
    """Stands for the memory pre-flight's refusal: a MemoryError that is bad input too."""


def test_the_codes_are_the_documented_ones() -> None:
    assert (EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED) == (1, 2, 130)
    assert signal_exit_code(signal.SIGTERM) == 143
    assert app.EXIT_USAGE is EXIT_USAGE  # the import path tests elsewhere use
    for code in ("2 (``EXIT_USAGE``)", "1 (``EXIT_FAILED``)", "130 (``EXIT_INTERRUPTED``)"):
        assert code in (app.__doc__ or "")


@pytest.mark.parametrize(("exc", "code", "line"), [
    (ParseError("gpuback: error: bad (see gpuback --help)"), EXIT_USAGE,
     "gpuback: error: bad (see gpuback --help)"),
    (UsageError("--data x: no such file"), EXIT_USAGE, "gpuback c: error: --data x: no such file"),
    (ValueError("X: expected 2-D"), EXIT_USAGE, "gpuback c: error: X: expected 2-D"),
    (TypeError("bad type"), EXIT_USAGE, "gpuback c: error: bad type"),
    (OSError(errno.EROFS, "Read-only file system"), EXIT_USAGE,
     "gpuback c: error: [Errno 30] Read-only file system"),
    # a backend failing outside train's epochs (predict, evaluate, gradcheck, bench, ...)
    (RuntimeError("CUDA error: launch failed"), EXIT_USAGE,
     "gpuback c: error: CUDA error: launch failed"),
    (RuntimeError(), EXIT_USAGE, "gpuback c: error: RuntimeError"),
    (checkpoint.CheckpointError("m: not a checkpoint"), EXIT_USAGE,
     "gpuback c: error: m: not a checkpoint"),
    (PreflightMemoryError("training needs 9 GiB"), EXIT_USAGE,
     "gpuback c: error: training needs 9 GiB"),
    # train wraps a backend or system failure during its epochs into RunFailedError
    (RunFailedError("launch failed; no checkpoint was written yet"), EXIT_FAILED,
     "gpuback c: error: launch failed; no checkpoint was written yet"),
    (TrainingDivergedError("loss is nan at epoch 3"), EXIT_FAILED,
     "gpuback c: loss is nan at epoch 3"),
    (MemoryError(), EXIT_FAILED, "gpuback c: error: out of memory"),
    (MemoryError("needs 12 GiB"), EXIT_FAILED, "gpuback c: error: out of memory: needs 12 GiB"),
    (KeyboardInterrupt(), EXIT_INTERRUPTED, "gpuback c: interrupted"),
    (Terminated(signal.SIGTERM), 143, "gpuback c: terminated by SIGTERM"),
    (InterruptedRunError("interrupted at epoch 2; ...", 130), 130,
     "gpuback c: interrupted at epoch 2; ..."),
])
def test_each_failure_gets_its_code_and_line(exc: BaseException, code: int, line: str) -> None:
    assert describe("gpuback c", exc) == (code, line)


def test_an_unexpected_error_is_an_internal_error_exit_1() -> None:
    code, line = describe("gpuback c", ZeroDivisionError("division by zero"))
    assert code == EXIT_FAILED
    assert line.startswith("gpuback c: internal error: ZeroDivisionError: division by zero;")
    assert failures.TRACEBACK_ENV in line


def test_a_stop_is_described_by_its_signal() -> None:
    assert stop_reason(KeyboardInterrupt()) == ("interrupted", EXIT_INTERRUPTED)
    if hasattr(signal, "SIGHUP"):
        assert stop_reason(Terminated(signal.SIGHUP)) == ("terminated by SIGHUP", 129)


def _int_literals(node: ast.AST) -> list[int]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and type(n.value) is int and n.value != 0]


def test_no_other_module_writes_an_exit_code_as_a_number() -> None:
    """What a command returns, and the arithmetic of a signal's code, come from
    ``exit_codes``: a ``return 2`` or ``128 + signum`` elsewhere would be a second
    definition."""
    found = []
    for path in sorted((REPO_ROOT / "gpuback" / "cli").glob("*.py")):
        if path.name == "exit_codes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            returned = isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) \
                and _int_literals(node)
            added = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and \
                any(v in (128, 130) for v in _int_literals(node))
            if returned or added:
                found.append(f"{path.name}:{node.lineno}")
    assert found == []
