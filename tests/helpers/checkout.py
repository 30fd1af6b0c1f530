"""Copies of this checkout, for tests that import gpuback from a tree of their own."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import REPO_ROOT as ROOT

COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".pytest_cache")


def copy_checkout(dest: Path, *, tests: bool = False) -> Path:
    """The parts of this checkout that gpuback needs (and its tests/ with ``tests``)."""
    dest.mkdir()
    for name in ("gpuback", "kernels", *(("tests",) if tests else ())):
        shutil.copytree(ROOT / name, dest / name, ignore=COPY_IGNORE)
    for name in ("pyproject.toml", "README.md", "LICENSE"):  # pyproject's readme, license
        shutil.copy2(ROOT / name, dest / name)
    return dest.resolve()
