"""A directory whose contents are replaced whole or not at all, even by a crash.

    path/
      latest.json      the pointer: which version is current, and the SHA-256 of its files
      v00000007/       the current version's files
      .lock            the advisory lock (``fcntl.flock``) writers and readers take
      notes.txt        anything else is the user's, and is never touched

A write (``VersionedDir.write``) takes the lock (a second writer waits for it), removes
what crashed writes left behind (staging directories, versions no pointer names, a
half-written pointer), writes the new version's files into a staging directory, fsyncs
each file and the directory, renames the staging directory to the next version and
fsyncs ``path``, then switches ``latest.json`` to it with one ``os.replace`` (the only
commit point; fsynced too), and removes the version it replaced. A crash (kill -9,
power loss, Ctrl-C) at any instruction before the switch leaves the old version
current; after it, the new one; never a mixture. A read follows the pointer under a
shared lock (so no writer removes the files being read) and checks every file's size
and SHA-256 against the pointer before anything is parsed: a flipped byte is an error
naming the file, not different weights.

POSIX only for the lock (``fcntl``); where it is missing, writes are not serialised.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.checks import is_integer

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock
    fcntl = None  # type: ignore[assignment]

POINTER = "latest.json"
LOCK = ".lock"
POINTER_FORMAT = 1
LOCK_TIMEOUT = 300.0  # seconds a writer or reader waits for another writer's lock
_VERSION = re.compile(r"v(\d{8})")
_STAGING_PREFIX = ".staging-"
_POINTER_TMP_PREFIX = f".{POINTER}."
_CHUNK = 1 << 20


class StoreError(ValueError):
    """A versioned directory that cannot be read or written; the message names the path."""


class NewerFormatError(StoreError):
    """A pointer written by a newer version of gpuback: read it with that version."""


@dataclass(frozen=True)
class Version:
    """The current version of a versioned directory: its folder and, per file name, the
    (size in bytes, SHA-256 hex digest) recorded when it was written."""

    folder: Path
    files: dict[str, tuple[int, str]]

    def verify(self, name: str) -> Path:
        """The path of ``name``, after checking its size and SHA-256 against the pointer."""
        file = self.folder / name
        if name not in self.files:
            raise StoreError(f"{file}: not part of this checkpoint version")
        size, digest = self.files[name]
        try:
            actual_size = file.stat().st_size
        except FileNotFoundError:
            raise StoreError(f"{file}: missing from the checkpoint") from None
        if actual_size != size:
            raise StoreError(f"{file}: {actual_size} bytes, but {size} were written; the file "
                             f"is truncated or corrupted")
        actual = _sha256(file)
        if actual != digest:
            raise StoreError(f"{file}: SHA-256 {actual[:16]}... does not match the "
                             f"{digest[:16]}... recorded at save; the file is corrupted")
        return file


class VersionedDir:
    """The directory ``path`` holding versions of a set of files (see the module doc)."""

    def __init__(self, path: str | os.PathLike[str], owned: tuple[str, ...]) -> None:
        """``owned``: the file names a version holds; only those are ever deleted from an
        old version (a foreign file inside one keeps that folder)."""
        self.path = Path(path)
        self.owned = owned

    @staticmethod
    def is_own_entry(name: str) -> bool:
        """Whether a directory entry is one a write (perhaps a crashed one) makes."""
        return (name in (POINTER, LOCK) or bool(_VERSION.fullmatch(name))
                or name.startswith((_STAGING_PREFIX, _POINTER_TMP_PREFIX)))

    # --- reading ---------------------------------------------------------------------------

    def has_pointer(self) -> bool:
        return (self.path / POINTER).is_file()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Version]:
        """The current version, held (shared lock) until the block ends."""
        with self._lock(shared=True):
            yield self._current()

    def _current(self) -> Version:
        pointer = self.path / POINTER
        data = read_json_object(pointer, "missing; no checkpoint was completed there")
        fmt = data.get("format")
        if not is_integer(fmt, 1):
            raise StoreError(f"{pointer}: 'format' must be a positive integer, got {fmt!r}")
        if fmt > POINTER_FORMAT:
            raise NewerFormatError(f"{pointer}: format {fmt} was written by a newer gpuback "
                                   f"(this one reads format {POINTER_FORMAT}); upgrade gpuback "
                                   f"to read it")
        version = data.get("version")
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise StoreError(f"{pointer}: 'version' must name a folder like 'v00000001', got "
                             f"{version!r}")
        files = data.get("files")
        if not isinstance(files, dict) or not all(
                isinstance(v, dict) and is_integer(v.get("bytes"), 0) and
                isinstance(v.get("sha256"), str) for v in files.values()):
            raise StoreError(f"{pointer}: 'files' must map each file name to its 'bytes' and "
                             f"'sha256'")
        folder = self.path / version
        if not folder.is_dir():
            raise StoreError(f"{folder}: missing; {pointer} names it as the current version")
        return Version(folder, {k: (v["bytes"], v["sha256"]) for k, v in files.items()})

    # --- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[Path]:
        """A staging folder to write the new version's files into; when the block ends
        without an error they become the current version (see the module doc). On an
        error or interrupt the staging folder is removed and the old version stays."""
        self.path.mkdir(parents=True, exist_ok=True)
        with self._lock(shared=False):
            try:
                current: str | None = self._current().folder.name
            except NewerFormatError as exc:
                raise StoreError(f"{exc}; refusing to replace it") from None
            except StoreError:  # no pointer, or a damaged one: keep its versions for now
                current = None
            self._remove_debris(keep=current, versions=current is not None or
                                not (self.path / POINTER).exists())
            staging = self.path / f"{_STAGING_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
            staging.mkdir()
            committed = None
            try:
                yield staging
                files = {p.name: _fsync_and_describe(p) for p in sorted(staging.iterdir())
                         if p.is_file()}
                _fsync_dir(staging)
                name = f"v{self._next_number():08d}"
                os.rename(staging, self.path / name)
                committed = self.path / name
                _fsync_dir(self.path)
                self._switch_pointer(name, files)
            except BaseException:
                if committed is not None and self._current_name() != committed.name:
                    self._remove_version(committed)
                shutil.rmtree(staging, ignore_errors=True)
                raise
            if current is not None and current != name:
                self._remove_version(self.path / current)

    def remove_files(self, names: tuple[str, ...]) -> None:
        """Remove the files ``names`` directly under ``path`` (a layout this one replaced)."""
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()

    def _switch_pointer(self, name: str, files: dict[str, tuple[int, str]]) -> None:
        data = {"format": POINTER_FORMAT, "version": name,
                "files": {k: {"bytes": size, "sha256": digest}
                          for k, (size, digest) in files.items()}}
        tmp = self.path / f"{_POINTER_TMP_PREFIX}{os.getpid()}.tmp"
        write_file(tmp, (json.dumps(data) + "\n").encode(), sync=True)
        os.replace(tmp, self.path / POINTER)
        _fsync_dir(self.path)

    def _current_name(self) -> str | None:
        """The version the pointer names, or None if there is no readable pointer."""
        try:
            return self._current().folder.name
        except StoreError:
            return None

    def _next_number(self) -> int:
        numbers = [int(m.group(1)) for p in self.path.iterdir()
                   if (m := _VERSION.fullmatch(p.name))]
        return max(numbers, default=0) + 1

    def _remove_debris(self, keep: str | None, versions: bool) -> None:
        """Remove staging folders, stray pointer temps and (with ``versions``) every version
        other than ``keep``. A damaged pointer keeps its versions one save longer: the
        user may want to recover one by hand."""
        for entry in self.path.iterdir():
            if entry.name.startswith(_STAGING_PREFIX) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(_POINTER_TMP_PREFIX) and entry.is_file():
                entry.unlink(missing_ok=True)
            elif versions and _VERSION.fullmatch(entry.name) and entry.name != keep \
                    and entry.is_dir():
                self._remove_version(entry)

    def _remove_version(self, folder: Path) -> None:
        """Remove a version's own files, then the folder if nothing foreign is left in it."""
        for name in self.owned:
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
        with contextlib.suppress(OSError):  # not empty: a file the user put there stays
            folder.rmdir()

    @contextlib.contextmanager
    def _lock(self, shared: bool) -> Iterator[None]:
        """``flock`` on ``path/.lock``: exclusive for a writer, shared for a reader, waiting
        up to ``LOCK_TIMEOUT`` seconds. A reader that cannot open the lock file (a
        read-only directory no writer has locked) reads without it."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        file = self.path / LOCK
        try:
            fd = os.open(file, os.O_RDONLY if shared else os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            if not shared:
                raise
            yield
            return
        try:
            mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, mode)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(f"{self.path}: another process has held its lock "
                                         f"({file}) for over {LOCK_TIMEOUT:g} s; is a save "
                                         f"still running?") from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def read_json_object(file: Path, missing: str) -> dict[str, Any]:
    """The JSON object in ``file``; ``StoreError`` naming the file if it is missing (the
    message ``missing``), not JSON, or not an object."""
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise StoreError(f"{file}: {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StoreError(f"{file}: expected a JSON object, got {type(data).__name__}")
    return data


def write_file(file: Path, data: bytes, sync: bool = False) -> None:
    """Write ``data`` to ``file`` (and fsync it with ``sync``: a staging folder's files
    are fsynced together when the write commits)."""
    with open(file, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def _fsync_and_describe(file: Path) -> tuple[int, str]:
    """fsync ``file`` (it may have been written by a library that does not) and return its
    size and SHA-256."""
    with open(file, "rb") as f:
        os.fsync(f.fileno())
        digest = hashlib.sha256()
        size = 0
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    """fsync a directory, so the renames and new entries in it survive a power loss."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # pragma: no cover - file systems that refuse directory fsync
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)

