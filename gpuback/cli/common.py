"""What the ``gpuback`` commands share: their error types, option types checked by the
parser, help lines that state defaults and allowed values, and checks that an output
path can be written before any work is done."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class UsageError(Exception):
    """Bad input the user can fix; printed as one line, exit 2."""


class RunFailedError(Exception):
    """The run could not be completed (a checkpoint that could not be written); exit 1."""


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
        return f"terminated by {signal.Signals(exc.signum).name}", 128 + exc.signum
    return "interrupted", 128 + signal.SIGINT


@contextlib.contextmanager
def signals_stop_the_run() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM and SIGHUP raise ``Terminated``
    instead of killing the process outright: the run reports what its checkpoint holds
    and exits 143 or 129. The previous handlers come back afterwards."""
    def stop(signum: int, frame: Any) -> None:
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


class InterruptedRunError(Exception):
    """Ctrl-C or a termination signal, with a message saying what was saved; ``code`` is
    the exit code (130 for Ctrl-C, 128 + the signal's number otherwise)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def reading(path: Any, what: str) -> Iterator[None]:
    """Any unexpected error while reading the user's file ``path`` is bad input: a
    ``UsageError`` naming the file (the expected ones already name it)."""
    try:
        yield
    except (UsageError, ValueError, TypeError, OSError, RuntimeError, MemoryError):
        raise
    except Exception as exc:  # e.g. AttributeError on a JSON list
        raise UsageError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") \
            from exc


@contextlib.contextmanager
def stdout_for_json(wanted: bool) -> Iterator[Callable[[Any], None]]:
    """With ``--json`` stdout carries exactly one JSON document: while the block runs,
    everything the command prints goes to stderr instead, and the ``emit(document)``
    yielded writes the document to the real stdout. Without it ``emit`` prints the
    document as one line among the others."""
    out = sys.stdout

    def emit(document: Any) -> None:
        out.write(json.dumps(document) + "\n")
        out.flush()

    if not wanted:
        yield emit
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield emit


class Checked:
    """An argparse ``type=``: the text converted and checked; ``allowed`` says what is
    accepted (argparse prefixes the error with the option's name)."""

    def __init__(self, convert: Callable[[str], Any], test: Callable[[Any], bool],
                 allowed: str) -> None:
        self.convert, self.test, self.allowed = convert, test, allowed

    def __call__(self, text: str) -> Any:
        try:
            value = self.convert(text)
        except ValueError:
            value = None
        if value is None or not self.test(value):
            raise argparse.ArgumentTypeError(f"expected {self.allowed}, got {text!r}")
        return value


def finite(v: float) -> bool:
    return math.isfinite(v)


def auto_or_float(text: str) -> str | float:
    return text if text == "auto" else float(text)


POSITIVE_INT = Checked(int, lambda v: v >= 1, "an integer >= 1")
NON_NEGATIVE_INT = Checked(int, lambda v: v >= 0, "an integer >= 0")
FRACTION = Checked(float, lambda v: 0 < v < 1, "a number in (0, 1)")
DENSITY = Checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
MOMENTUM = Checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
POSITIVE = Checked(float, lambda v: finite(v) and v > 0, "a finite number > 0")
NON_NEGATIVE = Checked(float, lambda v: finite(v) and v >= 0, "a finite number >= 0")
SCALE = Checked(auto_or_float, lambda v: v == "auto" or (finite(v) and v > 0),
                 "'auto' or a finite number > 0")

def show_value(value: Any) -> str:
    """A default as the help and the README show it."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def add_option(parser: argparse.ArgumentParser, flag: str, text: str, default: Any = None,
               shown: str | None = None, sentinel: bool = False, **kwargs: Any) -> None:
    """Add option ``flag`` whose help is ``text``, then what it accepts (``choices`` or the
    ``type``'s ``allowed``) and its default (``shown``, else the default itself).
    ``sentinel``: the parser's default is None (train: to tell given from defaulted)."""
    allowed = kwargs.get("choices")
    extra = (f"one of {', '.join(map(str, allowed))}" if allowed else
             getattr(kwargs.get("type"), "allowed", None))
    help_text = text + (f"; {extra}" if extra else "")
    if shown is not None or default is not None:
        help_text += f" (default: {shown if shown is not None else show_value(default)})"
    parser.add_argument(flag, default=None if sentinel else default, help=help_text, **kwargs)


def check_writable_dir(option: str, path: Path) -> None:
    """``path`` is, or can be made, a directory we can write into: else a UsageError."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is not a directory")
    probe_writable(option, path, existing)


def probe_writable(option: str, path: Path, directory: Path) -> None:
    """Create and remove a temporary file in ``directory`` (permissions, a read-only file
    system: what os.access cannot tell for root)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write into {directory} "
                         f"({exc.strerror or exc})") from None


def check_writable_file(option: str, path: Path) -> None:
    """``path`` names a file that can be written (or replaced), before any work is done."""
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory; expected a file path")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{option}: no directory {str(path.parent)!r} to write into")
    probe_writable(option, path, parent)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to a temporary name beside ``path``, then move it over; the
    temporary file is removed if that fails."""
    write_text(path, json.dumps(data, indent=1) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path``, then move it over ``path``, so a
    reader never sees half a file; the temporary file is removed if that fails."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def add_out_file(parser: argparse.ArgumentParser, what: str) -> None:
    """``--out FILE`` (``what`` it is; stdout by default) and ``--overwrite``."""
    add_option(parser, "--out", what, metavar="FILE", shown="stdout")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists (default: off)")


def check_new_file(option: str, path: Path, overwrite: bool) -> None:
    """``path`` can be written, and is not an existing file unless ``overwrite``."""
    check_writable_file(option, path)
    if path.exists() and not overwrite:
        raise UsageError(f"{option} {path}: the file exists; pass --overwrite to replace it")


def read_spec_file(path: str, option: str) -> dict[str, Any]:
    """The spec in the JSON file ``path`` (also a checkpoint's ``network.json``, whose
    ``spec`` it takes), validated; a ``UsageError`` naming ``option`` and the file."""
    from ..core.spec import validate_spec

    file = Path(path)
    if file.is_dir():
        raise UsageError(f"{option} {path}: is a directory; expected a spec .json file")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{option} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option} {path}: cannot read it ({exc})") from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} {path}: not valid JSON ({exc})") from None
    if isinstance(spec, dict) and "spec" in spec and "groups" not in spec:
        spec = spec["spec"]  # a checkpoint's network.json: the spec inside it
    try:
        return validate_spec(spec)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{option} {path}: not a valid spec: {exc}") from None


