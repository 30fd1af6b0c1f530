"""Numba's on-disk kernel cache, keyed on every source file a kernel is compiled from.

Numba stamps a cached kernel with the hash of the one file that defines it (and the
function's own bytecode): functions it inlines from another module (the activations,
losses and optimiser steps of ``gpuback.kernels.scalar``) are not in the key, so an edit
there would keep running the old machine code (numba/numba#8396, still open). Every
cached kernel of the cpu backend is made through :func:`cached`, which adds the hash of
each file of ``gpuback.kernels`` and of the kernel's own module to the stamp: a changed
file in a checkout recompiles, an unchanged one loads.

Numba has no public hook for this; the stamp is the one its index file compares on
load (``IndexDataCacheFile``). If a Numba release lays its cache out differently, the
kernel is compiled without the disk cache (slower to start, never stale), with a warning.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def kernel_sources() -> tuple[Path, ...]:
    """The source files every kernel may compile code from (``gpuback.kernels``)."""
    from ...kernels import scalar

    return tuple(sorted(Path(scalar.__file__).resolve().parent.glob("*.py")))


def sources_digest(paths: tuple[Path, ...]) -> str:
    """SHA-256 over the names and contents of ``paths`` (read now, so an edit is seen)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def cached(module_file: str, **options: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``numba.njit(cache=True, **options)`` whose cache is stamped with the digest of
    ``module_file`` and of every file of ``gpuback.kernels``. The compiled kernel is called
    as the Python function is, with the same arguments."""
    from numba import njit

    stamp = _stamp(module_file)

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        dispatcher: Callable[P, R] = njit(cache=True, **options)(function)
        _key_on(dispatcher, stamp)
        return dispatcher

    return decorate


def inlined(function: Callable[P, R]) -> Callable[P, R]:
    """``numba.njit(inline="always")``: a device function Numba inlines into each kernel
    that calls it (no cache of its own: it is compiled into theirs)."""
    from numba import njit

    compiled: Callable[P, R] = njit(inline="always")(function)
    return compiled


@functools.cache
def _stamp(module_file: str) -> str:
    return sources_digest((*kernel_sources(), Path(module_file).resolve()))


def _key_on(dispatcher: Any, stamp: str) -> None:
    """Add ``stamp`` to the source stamp the dispatcher's cache index is checked against."""
    from numba.core.caching import NullCache

    index = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if index is None or not hasattr(index, "_source_stamp"):
        warnings.warn(
            f"this Numba's kernel cache has an unknown layout: {dispatcher.__name__} is "
            "compiled in each process instead of loaded from disk",
            RuntimeWarning,
            stacklevel=3,
        )
        dispatcher._cache = NullCache()  # noqa: SLF001 -- Numba's one place for it
        return
    index._source_stamp = (index._source_stamp, stamp)  # noqa: SLF001 -- see above
