"""How the cpu backend shares work over the cores: one small thread pool owns them all.

An op splits its rows (or samples, or elements) into one contiguous range per core;
this thread runs the first range and a persistent pool the others, each range a
``nogil`` Numba kernel or a single-threaded BLAS product. Ranges never overlap, so
there are no races, and the split depends only on the sizes: results are bitwise
reproducible.

Why not Numba's ``parallel=True`` beside multi-threaded BLAS: after its work each
pool keeps its threads spinning for a while (OpenBLAS about 0.1 s), and two pools
spinning over the same few cores starve each other. Measured on 2 cores, a sparse
training step ran 2-3x slower that way than with one pool. So while this pool runs
BLAS products, BLAS itself is held to one thread (``threadpoolctl``), and the pool's
idle threads sleep instead of spinning.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

# Below these sizes an op runs on the calling thread: handing work to the pool costs
# tens of microseconds. BLAS_THREADED_MIN is OpenBLAS's own threshold (m * n * k) for
# using more than one thread; under it a product is single-threaded anyway.
SPLIT_MIN_ELEMENTS = 1 << 15
BLAS_THREADED_MIN = 1 << 18


@functools.cache
def core_count() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, core_count() - 1),
                              thread_name_prefix="gpuback-cpu")


@functools.cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def single_threaded_blas() -> AbstractContextManager:
    """A context in which BLAS uses one thread (restored on exit)."""
    controller = _blas_controller()
    return controller.limit(limits=1) if controller.lib_controllers else nullcontext()


def run_ranges(task: Callable[[int, int], None], bounds: Sequence[int]) -> None:
    """``task(bounds[i], bounds[i + 1])`` for every i: the first range here, the rest on the
    pool, all finished on return (the first error raised is re-raised here)."""
    ranges = [(int(bounds[i]), int(bounds[i + 1])) for i in range(len(bounds) - 1)
              if bounds[i + 1] > bounds[i]]
    if not ranges:
        return
    futures = [_pool().submit(task, lo, hi) for lo, hi in ranges[1:]]
    try:
        task(*ranges[0])
    finally:
        for future in futures:
            future.result()


def run_split(kernel: Callable[..., None], n: int, work_per_item: int, *args: Any) -> None:
    """``kernel(lo, hi, *args)`` over ``range(n)``: in one call on this thread when the work
    (n * work_per_item) is too small to share, else one equal range per core."""
    if n * work_per_item < SPLIT_MIN_ELEMENTS or core_count() == 1:
        kernel(0, n, *args)
        return
    parts = min(core_count(), n)
    run_ranges(lambda lo, hi: kernel(lo, hi, *args), [n * i // parts for i in range(parts + 1)])


def balanced_bounds(ptr: np.ndarray, work_per_item: int) -> list[int]:
    """Split the rows of a CSR/CSC pointer array so each range holds about the same number
    of edges (rows may hold very different numbers of them)."""
    n_rows = len(ptr) - 1
    parts = min(core_count(), n_rows) if ptr[-1] * work_per_item >= SPLIT_MIN_ELEMENTS else 1
    if parts == 1:
        return [0, n_rows]
    targets = np.linspace(0, ptr[-1], parts + 1)[1:-1]
    return [0, *np.searchsorted(ptr, targets).tolist(), n_rows]


def run_product(product: Callable[[slice, slice], None], out: np.ndarray, inner: int) -> None:
    """Fill ``out`` (rows, cols) by ``product(row_slice, col_slice)``, a BLAS product into that
    block of ``out``, over one block of rows per core (of columns, when ``out`` has too few
    rows), with BLAS single-threaded. ``inner`` is the product's inner dimension."""
    rows, cols = out.shape
    everything = slice(None)
    if rows * cols * inner < BLAS_THREADED_MIN or core_count() == 1:
        product(everything, everything)
        return
    along_rows = rows >= min(cols, 8 * core_count())
    n = rows if along_rows else cols
    parts = min(core_count(), n)
    bounds = [n * i // parts for i in range(parts + 1)]

    def part(lo: int, hi: int) -> None:
        if along_rows:
            product(slice(lo, hi), everything)
        else:
            product(everything, slice(lo, hi))

    with single_threaded_blas():
        run_ranges(part, bounds)
