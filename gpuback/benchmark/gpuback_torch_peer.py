"""``gpuback.torch``, the contender of ``gpuback bench``'s sparse cases that runs gpuback's own
sparse kernels inside a PyTorch model.

The network is written as a PyTorch user would write it with ``gpuback.torch``: a
``gpuback.torch.SparseLinear`` for each sparse block (built with ``edges=`` the spec's
edges), ``torch.nn.Linear`` for the dense ones, ReLU between, ``CrossEntropyLoss``,
``torch.optim.SGD`` with momentum; the same edges, batch and steps as the other PyTorch
contenders (``bench_torch.steps``). Set against gpuback's own step on the same kernels
(``Network.loss_and_grads`` and ``optim.SGD``), its time is the cost of going through
PyTorch: autograd, the layers' transposes to and from feature-major, PyTorch's optimiser.
Needs PyTorch; ``gpuback.torch`` is imported only when a model is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends import backend_for_device
from . import torch_peers as bench_torch

LABEL = "gpuback.torch"


def runs_on(device: str) -> bool:
    """Whether ``gpuback.torch`` can run on PyTorch's ``device`` here: PyTorch installed and
    the backend of the device's tensors usable, not simulated (for "cuda", CuPy on a real
    GPU)."""
    if bench_torch.version() is None:
        return False
    try:
        ops = backend_for_device(device)
    except (ValueError, RuntimeError):  # an unknown device, or its backend cannot run here
        return False
    return not ops.status().simulated


def model(spec: dict, device: str = "cpu", seed: int = 0) -> Any:
    """The chain spec's network (``sparse_mlp_spec``) as a ``torch.nn.Sequential``:
    ``gpuback.torch.SparseLinear(edges=...)`` for each sparse block, ``nn.Linear`` for each
    dense one, ReLU between."""
    import torch

    from ..torch import SparseLinear

    torch.manual_seed(seed)
    sizes = [g["size"] for g in spec["groups"]]
    layers: list[Any] = []
    for i, block in enumerate(spec["connections"]):
        n_in, n_out = sizes[i], sizes[i + 1]
        if block["kind"] == "sparse":
            edges = np.stack([np.asarray(e, dtype=np.int64) for e in block["edges"]])
            layers.append(SparseLinear(n_in, n_out, edges=edges, seed=seed + i, device=device,
                                       dtype=torch.float32))
        else:
            layers.append(torch.nn.Linear(n_in, n_out, device=device))
        layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers[:-1])


def contenders(spec: dict, batch: int, device: str, seed: int = 0
               ) -> dict[str, dict[str, Callable[[], Any]]]:
    """``{"gpuback.torch": {"fwd_bwd": fn, "step": fn}}`` for a chain spec with sparse blocks
    on ``device``; empty when no block is sparse, the spec is not a chain (a residual
    network), or ``gpuback.torch`` cannot run on ``device`` here (``runs_on``)."""
    if not runs_on(device) or not bench_torch.has_sparse_chain(spec):
        return {}
    import torch

    net = model(spec, device, seed)
    X, y = bench_torch.batch_data(spec, batch, device, seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    return {LABEL: bench_torch.steps(lambda: loss_fn(net(X), y), net.parameters(), device)}
