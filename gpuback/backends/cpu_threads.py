"""How the cpu backend shares work over the cores: one small thread pool owns them all.

An op splits its rows (or samples, or elements) into one contiguous range per core;
this thread runs the first range and a persistent pool the others, each range a
``nogil`` Numba kernel or a single-threaded BLAS product. Ranges never overlap, so
there are no races, and the split depends only on the sizes and the number of cores:
on one machine, results are bitwise reproducible.

Why not Numba's ``parallel=True`` beside multi-threaded BLAS: after its work each
pool keeps its threads spinning for a while (OpenBLAS about 0.1 s), and two pools
spinning over the same few cores starve each other. Measured on 2 cores, a sparse
training step ran 2-3x slower that way than with one pool. So while this pool runs
BLAS products, BLAS itself is held to one thread (``threadpoolctl``), and the pool's
idle threads sleep instead of spinning.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

# Handing ranges to the pool costs about 30 us (measured), so work is shared only when it
# is well above that: SPLIT_MIN_WORK elementwise operations (the cheapest kind: an add, a
# max), SPLIT_MIN_PRODUCT multiply-adds of a BLAS product. A smaller product still runs
# with BLAS held to one thread when it reaches BLAS_THREADED_MIN (m * n * k), OpenBLAS's
# own threshold for waking its threads; below that BLAS is single-threaded anyway.
SPLIT_MIN_WORK = 1 << 20
SPLIT_MIN_PRODUCT = 1 << 23
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


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """A context in which BLAS uses one thread (each library's setting restored on exit)."""
    saved = [(lib, lib.get_num_threads()) for lib in _blas_controller().lib_controllers]
    for lib, _ in saved:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, threads in saved:
            lib.set_num_threads(threads)


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


def run_split(kernel: Callable[..., None], n: int, work_per_item: float, *args: Any) -> None:
    """``kernel(lo, hi, *args)`` over ``range(n)``: in one call on this thread when the work
    (n * work_per_item, in cheap elementwise operations) is too small to share, else one
    equal range per core."""
    if n * work_per_item < SPLIT_MIN_WORK or core_count() == 1:
        kernel(0, n, *args)
        return
    parts = min(core_count(), n)
    run_ranges(lambda lo, hi: kernel(lo, hi, *args), [n * i // parts for i in range(parts + 1)])


def balanced_bounds(ptr: np.ndarray, work_per_item: int) -> list[int]:
    """Split the rows of a CSR/CSC pointer array so each range holds about the same number
    of edges (rows may hold very different numbers of them)."""
    n_rows = len(ptr) - 1
    parts = min(core_count(), n_rows) if ptr[-1] * work_per_item >= SPLIT_MIN_WORK else 1
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
    size = rows * cols * inner
    if size < BLAS_THREADED_MIN:
        product(everything, everything)
        return
    if size < SPLIT_MIN_PRODUCT or core_count() == 1:
        with single_threaded_blas():
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
