"""The files a command reads and writes: user input read with errors that name the file,
output paths checked before any work is done, and files written whole (a temporary file
moved over the target)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.spec import validate_spec
from .failures import BAD_INPUT, UsageError


@contextlib.contextmanager
def reading(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Any unexpected error while reading the user's file ``path`` is bad input: a
    ``UsageError`` naming the file (the expected ones already name it)."""
    try:
        yield
    except (*BAD_INPUT, MemoryError):
        raise
    except Exception as exc:  # e.g. AttributeError on a JSON list
        raise UsageError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") \
            from exc


def read_spec_file(path: str, option: str) -> dict[str, Any]:
    """The spec in the JSON file ``path`` (also a checkpoint's ``network.json``, whose
    ``spec`` it takes), validated; a ``UsageError`` naming ``option`` and the file."""
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


def check_writable_dir(option: str, path: Path) -> None:
    """``path`` is, or can be made, a directory we can write into: else a UsageError."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is not a directory")
    _probe_writable(option, path, existing)


def check_writable_file(option: str, path: Path) -> None:
    """``path`` names a file that can be written (or replaced), before any work is done."""
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory; expected a file path")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{option}: no directory {str(path.parent)!r} to write into")
    _probe_writable(option, path, parent)


def check_new_file(option: str, path: Path, overwrite: bool) -> None:
    """``path`` can be written, and is not an existing file unless ``overwrite``."""
    check_writable_file(option, path)
    if path.exists() and not overwrite:
        raise UsageError(f"{option} {path}: the file exists; pass --overwrite to replace it")


def _probe_writable(option: str, path: Path, directory: Path) -> None:
    """Create and remove a temporary file in ``directory`` (permissions, a read-only file
    system: what os.access cannot tell for root)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write into {directory} "
                         f"({exc.strerror or exc})") from None


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path``, then move it over ``path``, so a
    reader never sees half a file; the temporary file is removed if that fails."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to a temporary name beside ``path``, then move it over; the
    temporary file is removed if that fails."""
    write_text(path, json.dumps(data, indent=1) + "\n")


__all__ = ["check_new_file", "check_writable_dir", "check_writable_file", "read_spec_file",
           "reading", "write_json", "write_text"]
