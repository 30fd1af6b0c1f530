"""Kernel paths the op cases of ``op_checks`` leave unexercised, found by hand-seeded mutants
that survived them (``tests/mutants/seed_kernel_mutants.py``, ``tests/README.md``).

* A lane's own loop over the batch: the op cases have batches of 1 and 5, no more samples
  than a row reduction has lanes (8 in the simulator, 32 on a GPU), so each lane adds at
  most one sample and ``total = x`` passes for ``total += x``. Here the batch is longer than
  the lanes, at the simulator's block shape and at the GPU's.
* A grid-stride loop's step: the launches give every item its own thread, so no thread ever
  takes a second step of its loop and a wrong step goes unseen. Here every grid dimension is
  one block (legal for every kernel: they are all grid-stride), so the loops alone must
  cover the work.

Each case is an op of the cuda backend against the NumPy reference (``op_checks.check_case``),
in the simulator (``sim``) or on a real GPU (``gpu``).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.op_checks import STATUS_CLEAR, Case, Sparse, cases, check_case
from helpers.random_specs import random_edges

from gpuback.backends.cuda import backend as cuda_backend
from gpuback.backends.cuda import device as cuda_device
from gpuback.backends.cuda import launch as cuda_launch
from gpuback.core.plan import SparseIndex

MODES = [pytest.param("sim", marks=pytest.mark.sim), pytest.param("gpu", marks=pytest.mark.gpu)]
# batches beyond the lanes of a row (8 simulated, 32 at the GPU block shape), not multiples
BATCH_FOR_LANES = {8: 37, 32: 77}


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


def long_batch_cases(lanes: int) -> list[Case]:
    """The row reductions over the batch (bias gradients, alone and fused with h'(a); weight
    gradients per edge) with more samples than lanes."""
    out = []
    batch = BATCH_FOR_LANES[lanes]
    for dtype in ("float32", "float64"):
        rng = np.random.default_rng(lanes)

        def real(*shape: int, dtype=dtype, rng=rng) -> np.ndarray:
            return rng.normal(size=shape).astype(dtype)

        size = f"17x{batch}"
        for activation in ("tanh", "relu"):
            out.append(Case(f"activation_delta-{activation}-{size}-{dtype}", "activation_delta",
                            (activation, real(17, batch), real(17, batch), real(17, batch),
                             real(17)), dtype))
        out.append(Case(f"bias_grad-{size}-{dtype}", "bias_grad",
                        (real(17, batch), real(17)), dtype))
        index = SparseIndex.from_edges(random_edges(rng, 3, 17, 0.5), 3, 17)
        out.append(Case(f"sparse_weight_grad-3to17-b{batch}-{dtype}", "sparse_weight_grad",
                        (Sparse(index), real(17, batch), real(3, batch), real(index.n_edges)),
                        dtype))
    return out


@pytest.mark.parametrize(("lanes", "case"),
                         [(lanes, c) for lanes in BATCH_FOR_LANES for c in long_batch_cases(lanes)],
                         ids=lambda x: x.id if isinstance(x, Case) else f"lanes{x}")
def test_row_reductions_over_a_batch_longer_than_their_lanes(mode: str, lanes: int, case: Case,
                                                             monkeypatch) -> None:
    simulated = cuda_device.status().simulated
    if lanes == cuda_launch.WARP:  # the GPU block shape, also in the simulator
        monkeypatch.setattr(cuda_backend, "_simulated", lambda: False)
        simulated = False
    elif not simulated:
        pytest.skip("the simulator's block shape (8 lanes a row): only under the simulator")
    batch = case.args[-2].shape[1]
    assert cuda_launch.lanes(batch, simulated) == lanes and batch > 2 * lanes  # 2+ steps
    check_case(cuda_backend, case)


# Cases with more items than one block of the simulator (32 threads) covers, for every kernel
# family: 2-D (gather, scatter-add, bias + activation, mini-batch), row reductions, a block
# per sample (softmax, losses) and 1-D (fill, finiteness, optimisers).
ONE_BLOCK_CASES = ["sparse_forward-3to17-b5-acc1", "sparse_backward-3to17-b5-acc0-det0",
                   "sparse_backward-17to1-b5-acc1-det1", "sparse_weight_grad-3to17-b5",
                   "bias_activation-relu-17x5", "bias_activation-softmax-17x5",
                   "activation_delta-tanh-17x5", "bias_grad-17x5",
                   "loss_and_output_delta-sos-tanh-17x5", "loss_and_output_delta-bce-17x5",
                   "loss_and_output_delta-ce-targets-17x5", "loss_and_output_delta-ce-labels-17x5",
                   "take_batch-20x17-b13-at0", "fill_zero-3x17",
                   "sgd_update-300-status0-nesterov1-mu0.9",
                   "adam_update-300-status0-decoupled1-step5",
                   "adam_update-300-status0-decoupled0-step1"]


def _one_block_cases() -> list[Case]:
    by_id = {c.id: c for c in cases("float32")}
    chosen = [by_id[f"{name}-float32"] for name in ONE_BLOCK_CASES]
    x = np.random.default_rng(9).normal(size=300).astype(np.float32)
    x[-1] = np.inf  # in the last grid-stride step
    chosen.append(Case("check_finite-300-inf-last-float32", "check_finite",
                       (x, np.array(STATUS_CLEAR, dtype=np.int64), 4), "float32", exact=(0, 1)))
    return chosen


@pytest.mark.parametrize("case", _one_block_cases(), ids=lambda c: c.id)
def test_kernels_with_a_one_block_grid_match_the_reference(mode: str, case: Case,
                                                           monkeypatch) -> None:
    """Every grid dimension 1: each thread's grid-stride loops take several steps."""
    monkeypatch.setattr(cuda_launch, "_blocks", lambda items, per_block, limit: 1)
    assert cuda_launch.elementwise(10**6, cuda_device.status().simulated)[0] == (1,)
    check_case(cuda_backend, case)
