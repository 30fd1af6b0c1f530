"""Data sets: the embedded digits, and labelled data read from files.

``loaders`` reads them (see its docstring for the formats); ``data/`` holds the digits."""

from __future__ import annotations

from .loaders import (
    TARGET_KINDS,
    DataError,
    Split,
    is_idx_images,
    load_digits,
    load_file,
    load_idx,
    split,
)

__all__ = [
    "TARGET_KINDS",
    "DataError",
    "Split",
    "is_idx_images",
    "load_digits",
    "load_file",
    "load_idx",
    "split",
]
