"""Numba code for the cpu backend's dense products: BLAS's gemm called by its address, and the
mailboxes through which the calling thread hands shares of a product to helper threads, all
without the GIL.

A *task* is one ``C (+)= op(A) @ op(B)`` in row-major CBLAS terms (``TASK_FIELDS`` int64:
the gemm's address, its float and int widths, the transpositions, the sizes, the operands'
addresses and leading dimensions, beta). A *mailbox* is one row of ``MAILBOX`` int64 owned by
one helper thread: its state, the number of tasks posted to it and done by it, and the task.

The protocol (``products`` runs it): a helper that has just worked spins for a while
(``serve``), yielding its core to any other runnable thread on each turn, with its state
``SPINNING``; the caller claims it (``SPINNING`` -> ``CLAIMED``, a compare-exchange, so one
caller at a time), writes the task and bumps ``POSTED`` (a release store, so the helper sees
the task), runs its own share, and waits until ``DONE`` reaches ``POSTED`` (the helper's
release store after its gemm, so the caller sees C). A helper that spun ``limit`` turns
without work goes to sleep (``SPINNING`` -> ``SLEEPING``, unless a caller claimed it first).
The handover costs microseconds where waking a sleeping thread costs tens of them (and, in a
virtual machine, up to a hundred).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .kernel_cache import cached, inlined

Array = Any

# a mailbox's fields
STATE, POSTED, DONE = 0, 1, 2
TASK = 8  # the task starts on its own cache line
TASK_FIELDS = 16
MAILBOX = TASK + TASK_FIELDS + 8
SLEEPING, SPINNING, CLAIMED = 0, 1, 2
# a task's fields
(GEMM, DOUBLE, INT32, TRANS_A, TRANS_B, M, N, K, A, LDA, B, LDB, BETA, C, LDC) = range(15)
ROW_MAJOR = 101  # CBLAS's enum value (its transpositions: ``products``)


def _element(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
    data = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, data, [index])


def _atomic_load(typingctx: Any, array: Any, index: Any) -> Any:
    """array[index] read with acquire ordering (never hoisted out of a loop)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        pointer = _element(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(pointer, "acquire", 8)
    return types.int64(array, index), codegen


atomic_load: Any = intrinsic(_atomic_load)


def _atomic_store(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
    """array[index] = value with release ordering (what was written before is seen first)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        pointer = _element(context, builder, sig.args[0], args[0], args[1])
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, pointer, "release", 8)
        return context.get_dummy_value()
    return types.void(array, index, value), codegen


atomic_store: Any = intrinsic(_atomic_store)


def _compare_exchange(typingctx: Any, array: Any, index: Any, expected: Any, new: Any) -> Any:
    """If array[index] == expected, set it to new and return True (one atomic step)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        pointer = _element(context, builder, sig.args[0], args[0], args[1])
        old = context.cast(builder, args[2], sig.args[2], types.int64)
        value = context.cast(builder, args[3], sig.args[3], types.int64)
        return builder.extract_value(builder.cmpxchg(pointer, old, value, "acq_rel",
                                                     "acquire"), 1)
    return types.boolean(array, index, expected, new), codegen


compare_exchange: Any = intrinsic(_compare_exchange)


def _call_yield(typingctx: Any, address: Any) -> Any:
    """Call ``int f(void)`` at ``address`` (the C library's sched_yield)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        function_type = ir.FunctionType(ir.IntType(32), [])
        builder.call(builder.inttoptr(args[0], function_type.as_pointer()), [])
        return context.get_dummy_value()
    return types.void(address), codegen


call_yield: Any = intrinsic(_call_yield)


def _call_gemm(typingctx: Any, address: Any, trans_a: Any, trans_b: Any, m: Any, n: Any, k: Any,
              alpha: Any, a: Any, lda: Any, b: Any, ldb: Any, beta: Any, c: Any,
              ldc: Any) -> Any:
    """Call ``cblas_?gemm(RowMajor, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
    ldc)`` at ``address``: its sizes in the integer type of ``m``, alpha and beta in the float
    type of ``alpha``, the operands' addresses as int64."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        enum, pointer = ir.IntType(32), ir.IntType(8).as_pointer()
        size, real = context.get_value_type(sig.args[3]), context.get_value_type(sig.args[6])
        function_type = ir.FunctionType(ir.VoidType(), [
            enum, enum, enum, size, size, size, real, pointer, size, pointer, size, real,
            pointer, size])
        (address_, trans_a_, trans_b_, m_, n_, k_, alpha_, a_, lda_, b_, ldb_, beta_, c_,
         ldc_) = args
        values = [ir.Constant(enum, ROW_MAJOR), builder.trunc(trans_a_, enum),
                  builder.trunc(trans_b_, enum), m_, n_, k_, alpha_,
                  builder.inttoptr(a_, pointer), lda_, builder.inttoptr(b_, pointer), ldb_,
                  beta_, builder.inttoptr(c_, pointer), ldc_]
        builder.call(builder.inttoptr(address_, function_type.as_pointer()), values)
        return context.get_dummy_value()
    return types.void(address, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                      ldc), codegen


call_gemm: Any = intrinsic(_call_gemm)


@inlined
def _gemm_in(task: Array, m: Any, n: Any, k: Any, lda: Any, ldb: Any, ldc: Any) -> None:
    """The task's gemm with its sizes in the integer type given, alpha = 1 and beta (0 or 1)
    in the task's float type."""
    g, ta, tb, a, b, c = task[GEMM], task[TRANS_A], task[TRANS_B], task[A], task[B], task[C]
    if task[DOUBLE]:
        call_gemm(g, ta, tb, m, n, k, 1.0, a, lda, b, ldb, np.float64(task[BETA]), c, ldc)
    else:
        call_gemm(g, ta, tb, m, n, k, np.float32(1.0), a, lda, b, ldb, np.float32(task[BETA]),
                  c, ldc)


@cached(__file__, nogil=True)
def run_task(task: Array) -> None:
    """The task's gemm, with the integer width of the library's interface."""
    if task[INT32]:
        _gemm_in(task, np.int32(task[M]), np.int32(task[N]), np.int32(task[K]),
                 np.int32(task[LDA]), np.int32(task[LDB]), np.int32(task[LDC]))
    else:
        _gemm_in(task, task[M], task[N], task[K], task[LDA], task[LDB], task[LDC])


@cached(__file__, nogil=True)
def serve(mailbox: Array, yield_address: int, limit: int) -> None:
    """A helper's loop: run each task posted to ``mailbox``; return once ``limit`` turns in a
    row found none (each turn yields the core to any other runnable thread)."""
    atomic_store(mailbox, STATE, SPINNING)
    idle = 0
    while True:
        posted = atomic_load(mailbox, POSTED)
        if posted != mailbox[DONE]:  # DONE: written by this thread only
            run_task(mailbox[TASK:TASK + TASK_FIELDS])
            atomic_store(mailbox, STATE, SPINNING)
            atomic_store(mailbox, DONE, posted)
            idle = 0
            continue
        idle += 1
        if idle > limit and compare_exchange(mailbox, STATE, SPINNING, SLEEPING):
            return
        call_yield(yield_address)


@cached(__file__, nogil=True)
def run_shared(mailboxes: Array, tasks: Array, yield_address: int) -> bool:
    """tasks[0] on this thread and tasks[1 + h] on helper h, when every helper needed is
    spinning (claimed here); False, with nothing run, when one is not."""
    helpers = tasks.shape[0] - 1
    claimed = 0
    while claimed < helpers and compare_exchange(mailboxes[claimed], STATE, SPINNING, CLAIMED):
        claimed += 1
    if claimed < helpers:
        for h in range(claimed):
            atomic_store(mailboxes[h], STATE, SPINNING)
        return False
    posted = np.empty(helpers, np.int64)
    for h in range(helpers):
        mailboxes[h, TASK:TASK + TASK_FIELDS] = tasks[h + 1]
        posted[h] = mailboxes[h, POSTED] + 1
        atomic_store(mailboxes[h], POSTED, posted[h])
    run_task(tasks[0])
    for h in range(helpers):
        while atomic_load(mailboxes[h], DONE) < posted[h]:  # counts only grow
            call_yield(yield_address)
    return True
