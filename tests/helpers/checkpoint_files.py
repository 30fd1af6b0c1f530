"""Reach into a saved checkpoint's files the way a user (or a disk) could: the current
version's folder, a file rewritten with its checksum updated (so a test reaches the field
checks behind the checksum), and the entries a directory holds."""

from __future__ import annotations

import hashlib
import json
import pathlib


def version_folder(target: pathlib.Path) -> pathlib.Path:
    """The folder ``latest.json`` names as current."""
    return target / json.loads((target / "latest.json").read_text())["version"]


def current(target: pathlib.Path, name: str) -> pathlib.Path:
    """The path of file ``name`` of the current version."""
    return version_folder(target) / name


def rewrite(target: pathlib.Path, name: str, data: bytes) -> None:
    """Replace file ``name`` of the current version by ``data`` and record its new size and
    SHA-256 in ``latest.json``, as a save would have."""
    current(target, name).write_bytes(data)
    pointer = json.loads((target / "latest.json").read_text())
    pointer["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (target / "latest.json").write_text(json.dumps(pointer))


def edit_json(target: pathlib.Path, name: str, edit) -> None:
    """Apply ``edit`` to the JSON file ``name`` of the current version, checksum updated."""
    data = json.loads(current(target, name).read_text())
    edit(data)
    rewrite(target, name, json.dumps(data).encode())


def entries(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def only_one_version(target: pathlib.Path) -> bool:
    """The directory holds the pointer, the lock and the current version, no debris."""
    names = entries(target)
    return names == [".lock", "latest.json", version_folder(target).name]
