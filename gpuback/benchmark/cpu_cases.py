"""The cpu backend's own cases of ``gpuback bench``: ``startup`` (a new process's import and
first training step, with an empty and with a filled Numba cache) and ``scaling`` (the time
per edge and sample of one sparse block's share of a step, over densities and batches)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

from ..backends import available_backends, get_backend
from ..backends.protocol import Backend, SparseIndex
from .timing import time_call

# ``scaling``: one sparse block of SCALING_UNITS x SCALING_UNITS at each density and batch
SCALING_UNITS = 16384
SCALING_DENSITIES = (0.001, 0.01, 0.04)
SCALING_BATCHES = (32, 256, 1024)
QUICK_SCALING_UNITS = 2048
QUICK_SCALING_BATCHES = (32, 256)

STARTUP_SCRIPT = """
import time
start = time.perf_counter()
import numpy as np
import gpuback
net = gpuback.Network(gpuback.sparse_mlp_spec([64, 32, 10], density=0.3), backend="cpu",
                      dtype="float32")
net.loss_and_grads(np.ones((8, 64)), np.zeros(8, dtype=int))
print(time.perf_counter() - start)
"""


def bench_startup() -> dict[str, Any]:
    """Seconds from a new process's ``import gpuback`` to the end of its first cpu training
    step (dense and sparse blocks): with an empty Numba cache, then with it filled."""
    if "cpu" not in available_backends():
        raise RuntimeError("the startup case times the cpu backend, which cannot run here "
                           "(gpuback info says why)")
    runs = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for name in ("empty cache (compiles)", "cached"):
            # cwd: outside any source checkout, whose gpuback/ would shadow the installed one
            done = subprocess.run([sys.executable, "-c", STARTUP_SCRIPT], env=env, cwd=cache,
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"startup case: the new process failed: "
                                   f"{done.stderr.strip().splitlines()[-1:]}")
            runs.append({"name": name, "seconds": round(float(done.stdout.split()[-1]), 3)})
    return {"case": "startup", "runs": runs}


def random_block(n_src: int, n_dst: int, density: float, seed: int = 0) -> SparseIndex:
    """A sparse block of ``round(density * n_src * n_dst)`` distinct random edges, sorted by
    destination (as ``sparse_mlp_spec`` draws them, without a permutation of every pair)."""
    rng = np.random.default_rng(seed)
    pairs = n_src * n_dst
    n_edges = max(1, round(density * pairs))
    flat = np.unique(rng.integers(0, pairs, size=n_edges + n_edges // 8 + 16))
    while flat.size < n_edges:  # a dense block: too many repeats
        flat = np.union1d(flat, rng.integers(0, pairs, size=n_edges))
    flat = np.sort(rng.choice(flat, size=n_edges, replace=False))
    return SparseIndex.from_edges([flat % n_src, flat // n_src], n_src, n_dst)


def _block_step(ops: Backend, w: np.ndarray, index: Any, x: np.ndarray, delta: np.ndarray,
                dw: np.ndarray, out: np.ndarray) -> None:
    """One sparse block's share of a step: the forward gather, then the fused backward (into
    the same ``out`` buffer: only the time is wanted)."""
    ops.sparse_forward(w, index, x, out, False)
    ops.sparse_block_backward(w, index, delta, x, dw, out, False)


def bench_scaling(seconds: float, quick: bool = False) -> dict[str, Any]:
    """The cpu backend's ns per edge and sample of one sparse block's share of a training
    step: ``sparse_forward`` then ``sparse_block_backward`` into the source's deltas, at each
    density (``SCALING_DENSITIES``) and batch (``SCALING_BATCHES``)."""
    if "cpu" not in available_backends():
        raise RuntimeError("the scaling case times the cpu backend, which cannot run here "
                           "(gpuback info says why)")
    ops = get_backend("cpu")
    units = QUICK_SCALING_UNITS if quick else SCALING_UNITS
    rng = np.random.default_rng(0)
    runs = []
    for density in SCALING_DENSITIES:
        index = random_block(units, units, density)
        prepared = ops.prepare_index(index, False)
        w = rng.normal(size=index.n_edges).astype(np.float32)
        dw = np.empty_like(w)
        for batch in QUICK_SCALING_BATCHES if quick else SCALING_BATCHES:
            x, delta = (rng.normal(size=(units, batch)).astype(np.float32) for _ in range(2))
            step = functools.partial(_block_step, ops, w, prepared, x, delta, dw, np.empty_like(x))
            ms = time_call(step, seconds, quick=quick)
            runs.append({"density": density, "edges": index.n_edges, "batch": batch,
                         "ms": round(ms, 4),
                         "ns_per_edge_sample": round(ms * 1e6 / (index.n_edges * batch), 5)})
    per_edge = [r["ns_per_edge_sample"] for r in runs]
    return {"case": "scaling", "units": units, "runs": runs,
            "spread": round(max(per_edge) / min(per_edge), 3)}
