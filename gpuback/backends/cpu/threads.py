"""How the cpu backend shares work over the cores: one small thread pool owns them all.

An op splits its rows (or samples, or elements) into one contiguous range per core;
the calling thread runs the first range and a persistent pool the others, each range a
``nogil`` Numba kernel or a single-threaded BLAS product. Ranges never overlap, so
there are no races, and the split depends only on the sizes and the number of cores:
on one machine, results are bitwise reproducible.

Why not Numba's ``parallel=True`` beside multi-threaded BLAS: after its work each
pool keeps its threads spinning for a while (OpenBLAS about 0.1 s), and two pools
spinning over the same few cores starve each other. Measured on 2 cores, a sparse
training step ran 2-3x slower that way than with one pool. So while this pool runs
BLAS products, BLAS itself is held to one thread (``threadpoolctl``), and the pool's
idle threads sleep instead of spinning.

Concurrency rules (the pool is shared by the whole process):

- Any number of Python threads may run ops at once (say, each training its own
  network): their ranges queue on the same pool, and each thread's results are
  bitwise what they would be alone (the split never depends on timing). Only one
  op may touch a given buffer at a time, as with NumPy.
- BLAS's thread count is process-wide, so ``single_threaded_blas`` is reference
  counted under a lock: the first thread to enter saves each library's count and
  sets 1, the last to leave restores it (entries nest, and overlap across threads).
  While any op is inside, BLAS calls made elsewhere in the process run on one thread
  too; changing BLAS's thread count from another thread meanwhile is not supported.
  It works from any thread: threadpoolctl >= 3.8 lets only one "controlling" thread
  set OpenBLAS's count (other threads' calls silently do nothing), so it takes control
  for its own calls and gives it up on restoring. A count that is per thread (OpenBLAS
  on OpenMP, under threadpoolctl >= 3.8) is set and restored by each thread's
  outermost context for that thread alone.
- ``run_ranges`` returns only when every range has finished, also when one raises
  (or the wait is interrupted): it awaits them all, then re-raises the first error
  (the calling thread's own range's, else the pool's in range order). No range of a
  call writes anything after it has returned or raised.
- An op started on a pool worker (a nested ``run_ranges``, or a task that calls an
  op) runs all its ranges on that worker in turn: waiting there for the pool's other
  workers, which may themselves be waiting, could deadlock.
- A forked child process (``multiprocessing`` with "fork") has none of its parent's
  threads: it forgets the parent's pool and BLAS bookkeeping and starts its own on its
  first op (an inherited pool would queue work for workers that do not exist, and hang).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .. import launcher

# Handing ranges to the pool costs 30-90 us (measured), so work is shared only when it is
# well above that: SPLIT_MIN_WORK elementwise operations (the cheapest kind: an add, a max).
# (The dense products have their own rule: ``products``.)
SPLIT_MIN_WORK = 1 << 20


@functools.cache
def core_count() -> int:
    """The threads the cpu backend runs: the cores this process may run on, its share of
    them under MPI (``gpuback.backends.launcher.cores_per_rank``, cached here)."""
    return launcher.cores_per_rank()


# --- the pool -------------------------------------------------------------------------------

_pool_lock = threading.Lock()
_pool_executor: ThreadPoolExecutor | None = None
_worker = threading.local()  # .active is True on the pool's own threads


def _mark_worker() -> None:
    """The pool's initializer, run once on each of its threads."""
    _worker.active = True


def _pool() -> ThreadPoolExecutor:
    """The pool, created once (under a lock: two first callers must not make two)."""
    global _pool_executor
    pool = _pool_executor
    if pool is None:
        with _pool_lock:
            if _pool_executor is None:
                _pool_executor = ThreadPoolExecutor(max_workers=max(1, core_count() - 1),
                                                    thread_name_prefix="gpuback-cpu",
                                                    initializer=_mark_worker)
            pool = _pool_executor
    return pool


# --- BLAS held to one thread ----------------------------------------------------------------

@functools.cache
def _blas_libraries() -> tuple[list[Any], list[Any]]:
    """BLAS's ``threadpoolctl`` library controllers: (those whose thread count is process-wide,
    those whose count is the calling thread's own)."""
    from threadpoolctl import ThreadpoolController

    libs = ThreadpoolController().select(user_api="blas").lib_controllers
    return [lib for lib in libs if not _per_thread(lib)], [lib for lib in libs if _per_thread(lib)]


def _per_thread(lib: Any) -> bool:
    # threadpoolctl >= 3.8 (the one with controlling threads) limits an OpenBLAS built on
    # OpenMP by omp_set_num_threads, which sets the calling thread's count only.
    return (getattr(lib, "internal_api", None) == "openblas"
            and getattr(lib, "threading_layer", None) == "openmp"
            and hasattr(lib, "clear_controlling_thread"))


def _set_process_wide(lib: Any, threads: int, release: bool) -> None:
    """Set a process-wide count from any thread. threadpoolctl >= 3.8 lets only one
    "controlling" thread set OpenBLAS's count (the others' calls silently do nothing): take
    control when another thread has it; with ``release``, give it up after (a later
    ``threadpool_limits``, in any thread, then takes it)."""
    lib.set_num_threads(threads)
    clear = getattr(lib, "clear_controlling_thread", None)
    if clear is None:
        return
    if lib.get_num_threads() != threads:
        clear(force=True)
        lib.set_num_threads(threads)
    if release:
        clear()  # only this thread's own control


_blas_lock = threading.Lock()
_blas_users = 0  # contexts now inside single_threaded_blas, over all threads
_blas_saved: list[tuple[Any, int]] = []  # process-wide counts from when the first one entered
_blas_local = threading.local()  # .depth and .saved: this thread's own, for per-thread counts


def _start_afresh_after_fork() -> None:
    """In a forked child: no pool thread and no other thread of the parent exists, so drop
    the pool (the first op makes a new one) and the locks and counts they may have held."""
    global _pool_executor, _pool_lock, _blas_lock, _blas_users, _blas_saved, _blas_local
    global _worker
    _pool_executor, _pool_lock, _blas_lock = None, threading.Lock(), threading.Lock()
    _blas_users, _blas_saved, _blas_local = 0, [], threading.local()
    _worker = threading.local()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_start_afresh_after_fork)


class _SingleThreadedBlas:
    """``single_threaded_blas``'s context (a class: cheaper to enter than a generator's)."""

    def __enter__(self) -> None:
        global _blas_users, _blas_saved
        with _blas_lock:
            process_wide, per_thread = _blas_libraries()
            if _blas_users == 0:
                _blas_saved = [(lib, lib.get_num_threads()) for lib in process_wide]
                for lib, _ in _blas_saved:
                    _set_process_wide(lib, 1, release=False)
            _blas_users += 1
        if per_thread:
            depth = getattr(_blas_local, "depth", 0)
            if depth == 0:
                _blas_local.saved = [(lib, lib.get_num_threads()) for lib in per_thread]
                for lib in per_thread:
                    lib.set_num_threads(1)
            _blas_local.depth = depth + 1

    def __exit__(self, *exc_info: object) -> None:
        global _blas_users, _blas_saved
        if _blas_libraries()[1]:
            _blas_local.depth -= 1
            if _blas_local.depth == 0:
                for lib, threads in _blas_local.saved:
                    lib.set_num_threads(threads)
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                saved, _blas_saved = _blas_saved, []
                for lib, threads in saved:
                    _set_process_wide(lib, threads, release=True)


_SINGLE_THREADED_BLAS = _SingleThreadedBlas()


def per_thread_blas() -> list[Any]:
    """The BLAS libraries whose thread count is the calling thread's own (OpenBLAS on
    OpenMP): a thread that only ever runs single-threaded products sets its own to 1."""
    return _blas_libraries()[1]


def on_pool_worker() -> bool:
    """Whether the calling thread is one of the pool's (where an op runs all its ranges)."""
    return bool(getattr(_worker, "active", False))


def single_threaded_blas() -> _SingleThreadedBlas:
    """A context in which BLAS uses one thread. Reference counted over the process: the
    first to enter saves each library's thread count and sets 1, the last to leave restores
    it, so overlapping contexts on different threads never leave BLAS on one thread (nor let
    it run on more while any is inside). A count that is per thread (OpenBLAS on OpenMP) is
    saved, set and restored by each thread's outermost context for that thread alone."""
    return _SINGLE_THREADED_BLAS


# --- running ranges -------------------------------------------------------------------------

def run_ranges(task: Callable[[int, int], None], bounds: Sequence[int]) -> None:
    """``task(bounds[i], bounds[i + 1])`` for every i: the first range here, the rest on the
    pool, all finished on return, also when one raises (the first error is re-raised once
    every range has finished). On a pool worker, every range runs here, in turn."""
    ranges = [(int(bounds[i]), int(bounds[i + 1])) for i in range(len(bounds) - 1)
              if bounds[i + 1] > bounds[i]]
    if len(ranges) <= 1 or on_pool_worker():  # on a pool worker: all here
        for lo, hi in ranges:
            task(lo, hi)
        return
    pool = _pool()
    futures: list[Future[None]] = []
    error: BaseException | None = None
    try:
        for lo, hi in ranges[1:]:
            try:
                futures.append(pool.submit(task, lo, hi))
            except RuntimeError:  # the pool is shut down (interpreter exit): the rest run here
                break
        for lo, hi in [ranges[0], *ranges[1 + len(futures):]]:
            task(lo, hi)
    except BaseException as raised:  # kept, and raised once the pool's ranges are done
        error = raised
    interrupted = _await_all(futures)
    if error is None:
        error = next((e for e in (f.exception() for f in futures) if e is not None), None)
    if error is None:
        error = interrupted
    if error is not None:
        raise error


def _await_all(futures: list[Future[None]]) -> BaseException | None:
    """Wait until every future is done, even through an interrupt (a KeyboardInterrupt while
    waiting); return the first such interrupt, for the caller to raise once all are done."""
    interrupted: BaseException | None = None
    for future in futures:
        while True:
            try:
                future.exception()  # waits; returns (not raises) the range's error
                break
            except BaseException as raised:  # returned: the caller raises it
                interrupted = interrupted or raised
    return interrupted


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
