"""pytest-benchmark: one training step (forward + backward) on the NumPy reference backend.

Run with ``pytest bench/bench_reference_step.py``. The reference is for reading and
checking, not for speed; the fast backends and the PyTorch comparison (ratios in the
same run) arrive with their own suites here.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuback

CASES = {
    "small-mlp-64-64-64-10-b32": (gpuback.mlp_spec([64, 64, 64, 10]), 32),
    "sparse-mlp-784-1024-1024-10-d5-b64": (
        gpuback.sparse_mlp_spec([784, 1024, 1024, 10], density=0.05, seed=0), 64),
}


@pytest.mark.parametrize("case", list(CASES))
def test_reference_step(benchmark, case: str) -> None:
    spec, batch = CASES[case]
    net = gpuback.Network(spec, dtype="float32")
    rng = np.random.default_rng(0)
    n_in = spec["groups"][0]["size"]
    X = rng.normal(size=(batch, n_in)).astype(np.float32)
    labels = rng.integers(0, 10, size=batch)
    net.loss_and_grads(X, labels)  # warm-up: allocates the workspace
    loss, _ = benchmark(net.loss_and_grads, X, labels)
    assert np.isfinite(loss)
