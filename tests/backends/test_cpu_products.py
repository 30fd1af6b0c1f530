"""The cpu backend's dense products (``cpu_products``): gemm by address, helper threads, and
the pool's path, held to NumPy and to each other bitwise."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from gpuback.backends.cpu import gemm_kernels
from gpuback.backends.cpu import products as cpu_products
from gpuback.backends.cpu import threads as cpu_threads

needs_openblas = pytest.mark.skipif(cpu_products.blas() is None,
                                    reason="NumPy's BLAS here is not OpenBLAS")


def share_everything(monkeypatch: pytest.MonkeyPatch, cores: int = 2) -> None:
    monkeypatch.setattr(cpu_threads, "core_count", lambda: cores)
    for threshold in ("SPLIT_MIN_PRODUCT", "SHARE_MIN_PRODUCT", "BLAS_THREADED_MIN"):
        monkeypatch.setattr(cpu_products, threshold, 0)


def operands(kind: str, m: int, k: int, n: int, dtype: str, rng: np.random.Generator):
    """a (m x k) and b (k x n) as the backend passes them: plain, transposed views (the
    backward's W.T, the weight gradient's Z.T) and row slices of larger buffers."""
    def matrix(rows: int, cols: int, transposed: bool) -> np.ndarray:
        if transposed:
            return rng.normal(size=(cols, rows + 3)).astype(dtype)[:, 2:rows + 2].T
        return rng.normal(size=(rows + 4, cols)).astype(dtype)[1:rows + 1]
    return matrix(m, k, kind in ("a.T", "both.T")), matrix(k, n, kind in ("b.T", "both.T"))


SHAPES = [(1, 1, 1), (2, 3, 5), (37, 29, 41), (10, 300, 64), (300, 10, 64), (64, 40, 3)]


@pytest.mark.parametrize("cores", [1, 2, 3])
@pytest.mark.parametrize("kind", ["plain", "a.T", "b.T", "both.T"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("accumulate", [False, True])
def test_multiply_matches_numpy(cores: int, kind: str, dtype: str, accumulate: bool,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """c (+)= a @ b, shared over ``cores`` blocks of rows or columns however small, into a
    view of a larger buffer (nothing outside it written)."""
    share_everything(monkeypatch, cores)
    rng = np.random.default_rng(cores)
    for m, k, n in SHAPES:
        a, b = operands(kind, m, k, n, dtype, rng)
        buffer = rng.normal(size=(m + 2, n + 3)).astype(dtype)
        before = buffer.copy()
        c = buffer[1:m + 1, 2:n + 2]
        expected = (c + a @ b) if accumulate else a @ b
        cpu_products.multiply(a, b, c, accumulate)
        tol = 1e-4 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(c, expected, rtol=tol, atol=tol * np.sqrt(k),
                                   err_msg=f"{m}x{k}x{n}")
        outside = np.ones(buffer.shape, bool)
        outside[1:m + 1, 2:n + 2] = False
        assert np.array_equal(buffer[outside], before[outside])


def test_operands_blas_cannot_read_are_computed_by_numpy(monkeypatch) -> None:
    """A view with no unit stride (every other column) goes to NumPy, still correct."""
    share_everything(monkeypatch)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 60)).astype(np.float32)[:, ::2]
    b = rng.normal(size=(30, 50)).astype(np.float32)
    c = np.zeros((40, 50), np.float32)
    assert cpu_products.blas_layout(a) is None
    cpu_products.multiply(a, b, c, False)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "int64"])
def test_other_dtypes_are_computed_by_numpy(dtype: str, monkeypatch) -> None:
    """No gemm is called on memory of another type: NumPy computes the product."""
    share_everything(monkeypatch)
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(30, 20)) * 4).astype(dtype)
    b = (rng.normal(size=(20, 40)) * 4).astype(dtype)
    c = np.zeros((30, 40), dtype)
    cpu_products.multiply(a, b, c, False)
    np.testing.assert_array_equal(c, a @ b)


def test_a_product_into_its_own_operand_is_computed_by_numpy(monkeypatch) -> None:
    """c overlapping a (BLAS's result would be undefined): NumPy, which copies first."""
    share_everything(monkeypatch)
    rng = np.random.default_rng(2)
    buffer = rng.normal(size=(40, 40))
    a, b = buffer.copy(), rng.normal(size=(40, 40))
    cpu_products.multiply(buffer, b, buffer, False)
    np.testing.assert_allclose(buffer, a @ b, rtol=1e-12, atol=1e-12)


def spin_longer(monkeypatch: pytest.MonkeyPatch, shared: cpu_products.Helpers) -> None:
    """The helpers' next spins last 50 times longer (0.1 s): a test polling from a loaded
    machine, whose sleeps may overshoot 2 ms, still finds a woken helper spinning."""
    monkeypatch.setattr(shared, "turns", 50 * shared.turns)


def product_bits(monkeypatch: pytest.MonkeyPatch, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(256, 300)).astype(np.float32)
    b = rng.normal(size=(128, 300)).astype(np.float32).T
    c = rng.normal(size=(256, 128)).astype(np.float32)
    cpu_products.multiply(a, b, c, True)
    return c.tobytes()


@needs_openblas
def test_helpers_and_pool_give_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocks handed to a spinning helper, run on the pool (helper asleep) and run by
    NumPy-free gemm calls on the pool (no helpers at all) give bitwise the same product."""
    share_everything(monkeypatch)
    shared = cpu_products.helpers()
    assert shared is not None
    used: list[bool] = []
    run = shared.run

    def recording(tasks: np.ndarray) -> bool:
        used.append(run(tasks))
        return used[-1]

    monkeypatch.setattr(shared, "run", recording)
    spin_longer(monkeypatch, shared)
    deadline = time.monotonic() + 10
    with_helper = product_bits(monkeypatch, 0)
    while not used[-1] and time.monotonic() < deadline:  # the first may find it asleep
        time.sleep(1e-3)
        with_helper = product_bits(monkeypatch, 0)
    assert used[-1], "the helper never took a block"
    monkeypatch.setattr(cpu_products, "helpers", lambda: None)
    assert product_bits(monkeypatch, 0) == with_helper


@needs_openblas
def test_a_helper_asleep_is_woken_and_the_product_still_done(monkeypatch) -> None:
    """After a pause longer than its spin a helper sleeps: the next product runs on the pool
    (correct) and wakes it, so a later one is handed over again."""
    share_everything(monkeypatch)
    shared = cpu_products.helpers()
    assert shared is not None
    expected = product_bits(monkeypatch, 1)
    state = shared.mailboxes[0, gemm_kernels.STATE]
    deadline = time.monotonic() + 10
    while shared.mailboxes[0, gemm_kernels.STATE] != gemm_kernels.SLEEPING:
        assert time.monotonic() < deadline, f"the helper still spins (state {state})"
        time.sleep(cpu_products.SPIN_SECONDS)
    spin_longer(monkeypatch, shared)
    assert product_bits(monkeypatch, 1) == expected  # on the pool; wakes the helper
    while shared.mailboxes[0, gemm_kernels.STATE] != gemm_kernels.SPINNING:
        assert time.monotonic() < deadline, "the helper was not woken"
        time.sleep(1e-4)
    used: list[bool] = []
    run = shared.run
    monkeypatch.setattr(shared, "run", lambda tasks: used.append(run(tasks)) or used[-1])
    assert product_bits(monkeypatch, 1) == expected
    assert used == [True], "the woken helper did not take the block"


@needs_openblas
def test_threads_multiplying_at_once_get_their_own_products(monkeypatch) -> None:
    """Four threads, each many products: one at a time holds the helpers, the others use the
    pool; every product is bitwise what it is alone."""
    share_everything(monkeypatch)
    expected = [product_bits(monkeypatch, seed) for seed in range(4)]
    errors: list[str] = []

    def worker(seed: int) -> None:
        for _ in range(25):
            if product_bits(monkeypatch, seed) != expected[seed]:
                errors.append(f"thread {seed}")

    threads = [threading.Thread(target=worker, args=(seed,), daemon=True) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert not errors, errors


@needs_openblas
def test_blas_found_is_checked_against_numpy() -> None:
    """The entry points found give NumPy's product in float32 and float64, with transposed
    and plain operands (the check ``blas`` runs before using them)."""
    found = cpu_products.blas()
    assert found is not None
    assert cpu_products.agrees_with_numpy(found)
