"""Every op of the cuda backend against the NumPy reference op, one call at a time: under the
Numba simulator (``sim``) and on a real GPU with CuPy (``gpu``, ``pytest -m gpu``).

The cases (``op_checks.cases``) are small: a simulated thread costs about 70 us.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.op_checks import DTYPES, NON_COMPUTING_OPS, STATUS_CLEAR, cases, check_case

from gpuback.backends import OP_SET, numpy_backend
from gpuback.backends.cuda import backend as cuda_backend
from gpuback.backends.numpy_backend import GRADIENT_NOT_FINITE, LOSS_NOT_FINITE

MODES = [pytest.param("sim", marks=pytest.mark.sim), pytest.param("gpu", marks=pytest.mark.gpu)]
CASES = [c for dtype in DTYPES for c in cases(dtype)]


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(mode: str, case) -> None:
    check_case(cuda_backend, case)


def test_cases_cover_every_computing_op() -> None:
    assert {c.op for c in CASES} == set(OP_SET) - NON_COMPUTING_OPS
    assert not hasattr(cuda_backend, "all_finite")


def test_status_keeps_the_first_bad_step_and_updates_skip(mode: str) -> None:
    """A sequence of steps: the first non-finite step is recorded; later ones, loss or
    gradient, leave it; every update after it changes nothing."""
    be = cuda_backend
    rng = np.random.default_rng(3)
    status = be.from_host(np.array(STATUS_CLEAR), np.int64)
    totals = be.from_host(np.zeros(2), np.float64)
    param_host = rng.normal(size=17).astype(np.float32)
    param, grad, velocity = (be.from_host(x, np.float32) for x in
                             (param_host, rng.normal(size=17), np.zeros(17)))
    good = be.from_host(rng.normal(size=17), np.float32)
    bad = be.from_host(np.r_[rng.normal(size=16), np.inf], np.float32)
    losses = be.from_host(np.ones(3), np.float32)
    correct = be.from_host(np.ones(3), np.float32)
    be.check_finite(good, status, 1)
    be.sgd_update(param, grad, velocity, 0.1, 0.9, False, 0.0, status, param, 0)  # applied
    stepped = be.to_host(param)
    assert not np.array_equal(stepped, param_host)
    be.check_finite(bad, status, 2)
    assert be.to_host(status).tolist() == [2, GRADIENT_NOT_FINITE]
    be.sgd_update(param, grad, velocity, 0.1, 0.9, False, 0.0, status, param, 0)  # skipped
    m, v = be.from_host(np.zeros(17), np.float32), be.from_host(np.zeros(17), np.float32)
    be.adam_update(param, grad, m, v, 0.1, 0.9, 0.999, 1e-8, 0.0, True, 3, status, param,
                   0)  # skipped
    np.testing.assert_array_equal(be.to_host(param), stepped)
    assert not be.to_host(m).any()
    nan_losses = be.from_host(np.array([1.0, np.nan, 1.0]), np.float32)
    be.accumulate_metrics(nan_losses, correct, totals, status, 4)
    be.check_finite(bad, status, 5)
    assert be.to_host(status).tolist() == [2, GRADIENT_NOT_FINITE]
    # a loss first: its code
    status = be.from_host(np.array(STATUS_CLEAR), np.int64)
    be.accumulate_metrics(losses, correct, totals, status, 6)
    assert be.to_host(status).tolist() == [0, 0]
    be.accumulate_metrics(nan_losses, correct, totals, status, 7)
    be.check_finite(bad, status, 8)
    assert be.to_host(status).tolist() == [7, LOSS_NOT_FINITE]


@pytest.mark.parametrize(("units", "tied"), [(4, (0, 1)), (17, (0, 8)), (17, (3, 12))])
def test_cross_entropy_ties_count_the_first_arg_max(mode: str, units: int, tied) -> None:
    """Two equal largest outputs: only the first one is the prediction, whether the tie is
    settled inside one thread's stride over the units or between threads."""
    a = np.zeros((units, 2), dtype=np.float32)
    a[list(tied), :] = 1.0
    y = np.empty_like(a)
    numpy_backend.bias_activation("softmax", np.zeros(units, np.float32), a.copy(), y)
    assert y[tied[0], 0] == y[tied[1], 0]
    labels = np.array(tied)  # sample 0: the first of the tie, sample 1: the second
    be = cuda_backend
    correct = be.from_host(np.full(2, -1.0), np.float32)
    args = [be.from_host(x, x.dtype) for x in (a, y, labels, np.empty_like(a), np.empty(2, "f4"))]
    be.loss_and_output_delta("cross_entropy", "softmax", *args, correct)
    assert be.to_host(correct).tolist() == [1.0, 0.0]
