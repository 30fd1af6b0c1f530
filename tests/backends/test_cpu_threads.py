"""The cpu backend's thread pool (``cpu_threads``) under concurrent and nested callers."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers.random_specs import chain_spec, random_dag_spec, random_data
from threadpoolctl import ThreadpoolController, threadpool_info, threadpool_limits

import gpuback
from gpuback.backends.cpu import products as cpu_products
from gpuback.backends.cpu import threads as cpu_threads

TIMEOUT_S = 30  # a deadlock fails the test after this long instead of hanging the run


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def force_split(monkeypatch: pytest.MonkeyPatch, cores: int = 4) -> None:
    """Every op shared over ``cores`` ranges however small (more ranges than this machine may
    have cores), and every BLAS product run inside ``single_threaded_blas``."""
    monkeypatch.setattr(cpu_threads, "core_count", lambda: cores)
    monkeypatch.setattr(cpu_threads, "SPLIT_MIN_WORK", 0)
    for threshold in ("SPLIT_MIN_PRODUCT", "SHARE_MIN_PRODUCT", "BLAS_THREADED_MIN"):
        monkeypatch.setattr(cpu_products, threshold, 0)


def run_with_timeout(target, *args) -> None:
    """``target(*args)`` on a daemon thread: fail (rather than wait for ever) if it has not
    finished within TIMEOUT_S; re-raise what it raised."""
    raised: list[BaseException] = []

    def body() -> None:
        try:
            target(*args)
        except BaseException as error:  # re-raised on the test's thread
            raised.append(error)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(TIMEOUT_S)
    if thread.is_alive():
        pytest.fail(f"did not finish within {TIMEOUT_S} s (deadlock)")
    if raised:
        raise raised[0]


# --- two threads training two networks at once -----------------------------------------------

# both with dense blocks (BLAS products, in single_threaded_blas); the DAG with sparse ones too
SPECS = [chain_spec([24, 40, 32, 6], "relu", "cross_entropy", "dense", seed=1),
         random_dag_spec(5, sizes=(16, 24, 40))]


def train(spec: dict, seed: int) -> dict[str, np.ndarray]:
    X, T = random_data(spec, 96, np.random.default_rng(seed), labels=True)
    net = gpuback.Network(spec, backend="cpu", dtype="float32", seed=seed)
    net.fit(X, T, epochs=12, batch_size=16, progress=False, seed=seed)
    return net.parameters()


def test_two_threads_train_two_networks_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bitwise the parameters of training one after the other; every BLAS product ran with
    BLAS on one thread, on either thread; and BLAS's thread count is restored afterwards,
    however the two threads' single_threaded_blas contexts overlapped."""
    force_split(monkeypatch)
    # Numba's first kernel dispatch in a process loads its registries, which import SciPy's
    # own OpenBLAS where SciPy is installed: a second BLAS library, so load it first
    train(SPECS[0], 0)
    libs = ThreadpoolController().select(user_api="blas").lib_controllers
    seen: set[tuple[int, ...]] = set()  # BLAS's thread counts while products ran
    run_blocks = cpu_products.run_blocks

    def spying(blocks, accumulate) -> None:
        time.sleep(1e-4)  # lets the other thread run: more overlapping contexts
        seen.add(tuple(lib.get_num_threads() for lib in libs))
        run_blocks(blocks, accumulate)

    monkeypatch.setattr(cpu_products, "run_blocks", spying)
    # a known count above 1 (restored after the test), so one left stuck at 1 shows
    with threadpool_limits(limits=3, user_api="blas"):
        before = blas_threads()
        assert before and all(n == 3 for n in before), before
        alone = [train(spec, seed) for seed, spec in enumerate(SPECS)]
        assert blas_threads() == before
        results: list[dict[str, np.ndarray] | None] = [None, None]
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def one(i: int) -> None:
            try:
                start.wait()
                results[i] = train(SPECS[i], i)
            except BaseException as error:  # re-raised on the test's thread
                errors.append(error)

        def both() -> None:
            threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        run_with_timeout(both)
        if errors:
            raise errors[0]
        after = blas_threads()
    assert seen == {(1,) * len(libs)}
    assert after == before
    for expected, got in zip(alone, results, strict=True):
        assert got is not None
        assert expected.keys() == got.keys()
        for key in expected:
            assert got[key].tobytes() == expected[key].tobytes(), key


def test_blas_context_overlapping_across_threads_restores_the_count() -> None:
    """Thread A enters, B enters, A leaves, B leaves: BLAS is on one thread while either is
    inside (whichever thread threadpoolctl lets set it), and afterwards on A's saved count, not
    the 1 that B saw on entering."""
    with threadpool_limits(limits=3, user_api="blas"):
        before = blas_threads()
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
        inside: list[list[int]] = []

        def a() -> None:
            with cpu_threads.single_threaded_blas():
                a_in.set()
                b_in.wait(TIMEOUT_S)
                inside.append(blas_threads())
            a_out.set()

        def b() -> None:
            a_in.wait(TIMEOUT_S)
            with cpu_threads.single_threaded_blas():
                b_in.set()
                a_out.wait(TIMEOUT_S)
                inside.append(blas_threads())  # still one thread: B is inside

        threads = [threading.Thread(target=f, daemon=True) for f in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT_S)
        assert not any(thread.is_alive() for thread in threads)
        after = blas_threads()
    assert inside == [[1] * len(before)] * 2
    assert after == before


# --- a range that raises ----------------------------------------------------------------------

@pytest.mark.parametrize("failing", [(1,), (0, 1), (1, 2)])
def test_error_awaits_every_range(failing: tuple[int, ...]) -> None:
    """Every range that does not raise has finished when run_ranges re-raises, and the error
    raised is the first range's (this thread's own first, then the pool's in order)."""
    finished: list[int] = []

    def task(lo: int, hi: int) -> None:
        if lo in failing:
            raise ValueError(lo)
        if lo > 0:
            time.sleep(0.3)  # the pool's: still running when the failing ranges have raised
        finished.append(lo)

    with pytest.raises(ValueError) as raised:
        cpu_threads.run_ranges(task, [0, 1, 2, 3, 4])
    done_at_return = sorted(finished)
    assert raised.value.args == (failing[0],)
    assert done_at_return == [i for i in range(4) if i not in failing]


def test_error_leaves_no_range_writing_after_return() -> None:
    """Once run_ranges has raised, nothing it started writes to the buffers any more."""
    out = np.zeros(4)

    def task(lo: int, hi: int) -> None:
        if lo == 1:
            raise RuntimeError("range 1")
        if lo > 0:
            time.sleep(0.2)
        out[lo:hi] = 1

    with pytest.raises(RuntimeError, match="range 1"):
        cpu_threads.run_ranges(task, [0, 1, 2, 3, 4])
    snapshot = out.copy()
    time.sleep(0.5)
    assert np.array_equal(out, snapshot)
    assert snapshot.tolist() == [1, 0, 1, 1]


# --- ops started from a pool worker -----------------------------------------------------------
# Run in a fresh interpreter: a deadlock there is killed at the timeout and fails the test, where
# in this process it would leave the pool's workers waiting forever (and the run unable to exit).

NESTED = """
import os
import numpy as np
from gpuback.backends.cpu import products as cpu_products
from gpuback.backends.cpu import products as cpu_products
from gpuback.backends.cpu import threads as cpu_threads

cpu_threads.core_count = lambda: 4
cpu_threads.SPLIT_MIN_WORK = cpu_products.SPLIT_MIN_PRODUCT = 0
cpu_products.SHARE_MIN_PRODUCT = cpu_products.BLAS_THREADED_MIN = 0
inner = {inner!r}
# more outer ranges than the pool has workers: every worker (and this thread) runs one, and
# each shares its own work over the pool again
outer = 2 * (os.cpu_count() or 1) + 8
out = np.zeros((outer, 12))
rng = np.random.default_rng(0)
w, z = rng.normal(size=(outer, 12, 5)), rng.normal(size=(5, 12))


def fill(lo, hi, row, value):
    row[lo:hi] += value


def outer_task(lo, hi):
    for i in range(lo, hi):
        row = out[i]
        if inner == "run_ranges":
            cpu_threads.run_ranges(lambda a, b: fill(a, b, row, 1.0), [0, 3, 6, 9, 12])
        elif inner == "run_split":
            cpu_threads.run_split(fill, row.size, 1, row, 1.0)
        else:
            block = np.zeros((12, 12))
            cpu_products.multiply(w[i], z, block, False)
            row[:] = np.isclose(np.diag(block), np.diag(w[i] @ z))


cpu_threads.run_ranges(outer_task, list(range(outer + 1)))
assert np.array_equal(out, np.ones_like(out)), out
print("done")
"""


@pytest.mark.parametrize("inner", ["run_ranges", "run_split", "multiply"])
def test_op_from_pool_workers_completes(inner: str) -> None:
    """An op started on a pool worker (a range that itself shares work over the pool) while
    every worker is busy so: no deadlock, and every inner range ran exactly once."""
    try:
        done = subprocess.run([sys.executable, "-c", NESTED.format(inner=inner)],
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        done = None
    if done is None:
        pytest.fail(f"nested {inner} did not finish within {TIMEOUT_S} s (deadlock)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"


# --- a forked child process -------------------------------------------------------------------

def _train_in_child(spec: dict, seed: int, queue) -> None:
    queue.put(train(spec, seed))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_a_forked_child_trains_on_a_pool_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's pool has worked (its threads exist, idle); a child forked from it has
    none of them, and must still train, bitwise as the parent does (it hung)."""
    force_split(monkeypatch)
    spec = SPECS[1]
    expected = train(spec, 3)  # the parent's pool now has idle workers
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_train_in_child, args=(spec, 3, queue), daemon=True)
    child.start()
    try:
        got = queue.get(timeout=TIMEOUT_S)
    except Exception:
        pytest.fail(f"the forked child did not finish training within {TIMEOUT_S} s")
    finally:
        child.join(TIMEOUT_S)
        if child.is_alive():
            child.kill()
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
