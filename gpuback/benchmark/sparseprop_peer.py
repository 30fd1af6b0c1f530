"""SparseProp, the contender of ``gpuback bench``'s sparse cases on the CPU, when installed.

SparseProp (Nikdan et al., ICML 2023; ``pip install pybind11 && pip install
--no-build-isolation sparseprop``) is the strongest published CPU library for sparse
linear layers, forward and backward: CSR weights, activations transposed to (features,
batch), AVX2 over the batch, OpenMP over rows. The network is written as its README
says a user would: ``sparseprop.modules.SparseLinear`` for each sparse block (built from
a dense weight that is nonzero exactly on the spec's edges), ``torch.nn.Linear`` for the
dense ones, ReLU between, ``CrossEntropyLoss``, ``torch.optim.SGD`` with momentum; the
same edges, batch and steps as gpuback's (``bench_torch.steps``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from . import torch_peers as bench_torch

LABEL = "sparseprop"


@functools.cache
def version() -> str | None:
    """SparseProp's version when it (and PyTorch, which it runs on) can be imported."""
    try:
        from importlib.metadata import version as installed

        import sparseprop.modules  # noqa: F401
    except ImportError:
        return None
    return installed("sparseprop")


def absent_reason() -> str:
    return ("SparseProp is not installed (pip install pybind11 && pip install "
            "--no-build-isolation sparseprop): the sparse cases run without it")


def contenders(spec: dict, batch: int, seed: int = 0) -> dict[str, dict[str, Callable[[], Any]]]:
    """``{"sparseprop": {"fwd_bwd": fn, "step": fn}}`` for a chain spec with sparse blocks
    (``sparse_mlp_spec``) on the CPU; empty when SparseProp is absent, no block is sparse or
    the spec is not a chain (a residual network)."""
    if version() is None or not bench_torch.has_sparse_chain(spec):
        return {}
    import torch
    from sparseprop.modules import SparseLinear

    torch.manual_seed(seed)
    sizes = [g["size"] for g in spec["groups"]]
    X, y = bench_torch.batch_data(spec, batch, "cpu", seed)
    layers: list[Any] = []
    for i, block in enumerate(spec["connections"]):
        n_in, n_out = sizes[i], sizes[i + 1]
        linear = torch.nn.Linear(n_in, n_out)
        if block["kind"] == "sparse":
            src, dst = (np.asarray(e, dtype=np.int64) for e in block["edges"])
            weight = torch.zeros(n_out, n_in)
            values = torch.randn(len(src)) * (2.0 / max(1, len(src) / n_out)) ** 0.5
            weight[torch.tensor(dst), torch.tensor(src)] = values.abs() + 1e-3  # all nonzero
            with torch.no_grad():
                linear.weight.copy_(weight)
            linear = SparseLinear.from_dense(linear)
        layers += [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = bench_torch.steps(lambda: loss_fn(model(X), y), model.parameters(), "cpu")
    return {LABEL: steps}
