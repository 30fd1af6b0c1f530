"""The cpu backend's dense products, C (+)= A @ B, shared over the cores.

A product large enough to share is cut into one block of C's rows per core (of its columns,
when C has too few rows), each block one single-threaded BLAS gemm; a smaller one is one gemm
on the calling thread. Where NumPy's BLAS is OpenBLAS (NumPy's wheels ship it), the blocks
are gemm calls by address (``gemm_kernels``), handed to helper threads that spin for a while
after each product, yielding their core to any other runnable thread: the handover costs
microseconds, where the pool (``threads.run_ranges``) costs the time to wake a sleeping
thread, twice, on every product of a step (60-90 us measured on a 2-core virtual machine,
against 1.3 ms for half of a 1024 x 784 x 256 product). A helper that has gone to sleep
(the first product after a pause, or while another thread holds it) is woken for the next
product and this one runs on the pool: the same blocks and the same gemm calls, so a result
never depends on which thread computed a block. Elsewhere the blocks are NumPy products on
the pool.

Concurrency: one thread at a time holds the helpers (a compare-exchange claims them); any
other thread's products meanwhile run on the pool. A forked child starts helpers of its own.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import threads as cpu_threads

# Products below BLAS_THREADED_MIN multiply-adds (m * n * k) run as they are (OpenBLAS does
# not wake its threads for them). Above it BLAS is held to one thread, and the product is
# shared over the cores from SHARE_MIN_PRODUCT (about 20 us of one core's work) where the
# helpers hand blocks over, from SPLIT_MIN_PRODUCT where only the pool does.
BLAS_THREADED_MIN = 1 << 18
SHARE_MIN_PRODUCT = 1 << 21
SPLIT_MIN_PRODUCT = 1 << 23
SPIN_SECONDS = 2e-3  # a helper's spin after its last block: the gaps between a step's products
NO_TRANS, TRANS = 111, 112  # CBLAS's enum values


@dataclass(frozen=True)
class Blas:
    """OpenBLAS's ``cblas_sgemm`` and ``cblas_dgemm`` addresses, whether its integers are
    32-bit, and the C library's ``sched_yield``."""

    sgemm: int
    dgemm: int
    int32: bool
    sched_yield: int


def _address(library: Any, name: str) -> int | None:
    try:
        return ctypes.cast(getattr(library, name), ctypes.c_void_p).value
    except AttributeError:
        return None


@functools.cache
def blas() -> Blas | None:
    """NumPy's OpenBLAS's gemm entry points, checked on a small product, or None (another
    BLAS, or none of its names found): then the blocks are NumPy products on the pool."""
    if os.name != "posix":
        return None
    from threadpoolctl import ThreadpoolController

    sched_yield = _address(ctypes.CDLL(None), "sched_yield")
    for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers:
        for prefix in ("scipy_", ""):
            for suffix in ("64_", ""):
                names = [f"{prefix}cblas_{t}gemm{suffix}" for t in "sd"]
                sgemm, dgemm = (_address(lib.dynlib, name) for name in names)
                config = getattr(lib.dynlib, f"{prefix}openblas_get_config{suffix}", None)
                if sgemm and dgemm and config is not None and sched_yield:
                    config.restype = ctypes.c_char_p
                    found = Blas(sgemm, dgemm, b"USE64BITINT" not in config(), sched_yield)
                    return found if agrees_with_numpy(found) else None
    return None


def agrees_with_numpy(found: Blas) -> bool:
    """The gemm called by address gives NumPy's product (a wrong guess of its integer width
    or names would not)."""
    from . import gemm_kernels

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a, b = rng.normal(size=(5, 7)).astype(dtype), rng.normal(size=(3, 7)).astype(dtype)
        c = np.ones((5, 3), dtype)
        task = _task(found, a, b.T, c, 1)
        if task is None:
            return False
        gemm_kernels.run_task(task)
        if not np.allclose(c, 1 + a @ b.T, rtol=1e-4, atol=1e-4):
            return False
    return True


def blas_layout(x: np.ndarray) -> tuple[int, int] | None:
    """(CBLAS transposition, leading dimension) of a 2-D operand, if BLAS can read it."""
    item, (rows, cols) = x.itemsize, x.shape
    row_stride, col_stride = x.strides
    if col_stride == item and row_stride % item == 0 and row_stride // item >= max(1, cols):
        return NO_TRANS, row_stride // item
    if row_stride == item and col_stride % item == 0 and col_stride // item >= max(1, rows):
        return TRANS, col_stride // item
    return None


def _task(found: Blas, a: np.ndarray, b: np.ndarray, c: np.ndarray,
          beta: int) -> np.ndarray | None:
    """The task (``gemm_kernels``) c = a @ b + beta * c, or None when BLAS cannot compute it
    in place (then NumPy does): a dtype other than float32 or float64, or not the same for
    all three, an operand in a layout BLAS does not read, or c overlapping a or b."""
    from . import gemm_kernels as g

    if not (a.dtype == b.dtype == c.dtype and c.dtype in (np.float32, np.float64)):
        return None
    op_a, op_b, op_c = blas_layout(a), blas_layout(b), blas_layout(c)
    if op_a is None or op_b is None or op_c is None or op_c[0] != NO_TRANS:
        return None
    if np.may_share_memory(c, a) or np.may_share_memory(c, b):
        return None
    task = np.zeros(g.TASK_FIELDS, np.int64)
    double = c.dtype == np.float64
    task[[g.GEMM, g.DOUBLE, g.INT32, g.TRANS_A, g.TRANS_B, g.M, g.N, g.K, g.A, g.LDA, g.B,
          g.LDB, g.BETA, g.C, g.LDC]] = [
        found.dgemm if double else found.sgemm, double, found.int32, op_a[0], op_b[0],
        c.shape[0], c.shape[1], a.shape[1], a.ctypes.data, op_a[1], b.ctypes.data, op_b[1],
        beta, c.ctypes.data, op_c[1]]
    return task


# --- the helpers ----------------------------------------------------------------------------

class Helpers:
    """One helper thread per core beyond the caller's, each serving its mailbox (a row of
    ``mailboxes``) from ``gemm_kernels.serve``, and woken by its event when asleep."""

    def __init__(self, count: int, found: Blas) -> None:
        from . import gemm_kernels

        self.kernels, self.found = gemm_kernels, found
        self.mailboxes = np.zeros((count, gemm_kernels.MAILBOX), np.int64)
        self.wake = [threading.Event() for _ in range(count)]
        self.turns = _spin_turns(gemm_kernels, found)
        for index in range(count):
            threading.Thread(target=self._serve, args=(index,), daemon=True,
                             name=f"gpuback-gemm-{index}").start()

    def _serve(self, index: int) -> None:
        for lib in cpu_threads.per_thread_blas():  # this thread's own count, where it has one
            lib.set_num_threads(1)
        while True:
            self.wake[index].wait()
            self.wake[index].clear()
            self.kernels.serve(self.mailboxes[index], self.found.sched_yield, self.turns)

    def run(self, tasks: np.ndarray) -> bool:
        """tasks[0] here and tasks[1 + h] on helper h; False (and none run) when there are
        too few helpers or one needed is not spinning: the asleep ones are woken for the
        next product."""
        needed = len(tasks) - 1
        if needed > len(self.wake):
            return False
        if self.kernels.run_shared(self.mailboxes, tasks, self.found.sched_yield):
            return True
        for index, state in enumerate(self.mailboxes[:needed, self.kernels.STATE]):
            if state == self.kernels.SLEEPING:
                self.wake[index].set()
        return False


def _spin_turns(kernels: Any, found: Blas) -> int:
    """How many of ``serve``'s idle turns (each a load and a yield) last SPIN_SECONDS here."""
    mailbox = np.zeros(kernels.MAILBOX, np.int64)
    kernels.serve(mailbox, found.sched_yield, 10)  # compiled or loaded
    turns = 1000
    start = time.perf_counter()
    kernels.serve(mailbox, found.sched_yield, turns)
    per_turn = max(time.perf_counter() - start, 1e-7) / turns
    return max(100, int(SPIN_SECONDS / per_turn))


_helpers_lock = threading.Lock()
_helpers: Helpers | None = None


def helpers() -> Helpers | None:
    """This process's helpers (started on first use), or None: one core, or no OpenBLAS."""
    global _helpers
    found = blas()
    if found is None or cpu_threads.core_count() == 1:
        return None
    with _helpers_lock:
        if _helpers is None:
            _helpers = Helpers(cpu_threads.core_count() - 1, found)
        return _helpers


def _forget_helpers() -> None:
    """In a forked child: the parent's helper threads do not exist here."""
    global _helpers, _helpers_lock
    _helpers, _helpers_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_helpers)


# --- the product ----------------------------------------------------------------------------

def multiply(a: np.ndarray, b: np.ndarray, c: np.ndarray, accumulate: bool) -> None:
    """c (+)= a @ b, with BLAS: a, b and c 2-D views (a transposed view is read as such, with
    no copy), c with unit column stride."""
    rows, cols = c.shape
    size = rows * cols * a.shape[1]
    if size < BLAS_THREADED_MIN:
        _numpy_product(a, b, c, accumulate)
        return
    share_min = SHARE_MIN_PRODUCT if blas() is not None else SPLIT_MIN_PRODUCT
    parts = 1 if size < share_min else cpu_threads.core_count()
    along_rows = rows >= min(cols, 8 * parts)
    n = rows if along_rows else cols
    parts = min(parts, n)
    blocks = [(a[lo:hi], b, c[lo:hi]) if along_rows else (a, b[:, lo:hi], c[:, lo:hi])
              for lo, hi in ((n * i // parts, n * (i + 1) // parts) for i in range(parts))]
    with cpu_threads.single_threaded_blas():
        run_blocks(blocks, accumulate)


def run_blocks(blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
               accumulate: bool) -> None:
    """c (+)= a @ b for each block (a, b, c), one block per core: on the helpers where they
    spin, else on the pool; NumPy's products where BLAS cannot compute a block in place."""
    found = blas()
    tasks = [] if found is None else [_task(found, *block, int(accumulate))
                                      for block in blocks]
    ready = [task for task in tasks if task is not None]
    if len(ready) < len(blocks):
        cpu_threads.run_ranges(lambda lo, hi: _numpy_product(*blocks[lo], accumulate),
                               range(len(blocks) + 1))
        return
    from . import gemm_kernels

    stacked = np.stack(ready)
    if len(blocks) == 1:
        gemm_kernels.run_task(stacked[0])
        return
    shared = None if cpu_threads.on_pool_worker() else helpers()
    if shared is not None and shared.run(stacked):
        return
    cpu_threads.run_ranges(lambda lo, hi: gemm_kernels.run_task(stacked[lo]),
                           range(len(blocks) + 1))


def _numpy_product(a: np.ndarray, b: np.ndarray, c: np.ndarray, accumulate: bool) -> None:
    if accumulate:
        c += a @ b
    else:
        np.matmul(a, b, out=c)
