"""``torch.compile``, a contender of ``gpuback bench``'s dense cases (dense, small, resmlp).

The network is the ``torch.nn`` contender's (``bench_torch.dense_model``), wrapped in
``torch.compile`` with its defaults (TorchInductor, which fuses the elementwise passes
into generated C++ loops on the CPU and Triton kernels on a GPU), and trained as a PyTorch
user does: ``CrossEntropyLoss``, ``backward`` (compiled by AOTAutograd), and the eager
``torch.optim.SGD`` with momentum (``bench_torch.steps``). Compilation happens in the
first call, which ``gpuback bench`` times apart from the step (``first_call_s``).
Inductor on the CPU needs a C++ compiler; where it fails, the bench says so and goes on
without this contender. Needs PyTorch (``pip install 'gpuback[bench]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import torch_peers as bench_torch

LABEL = "torch.compile"


def model(spec: dict, device: str = "cpu", seed: int = 0) -> Any:
    """The ``torch.nn`` contender's network on ``device`` (``bench_torch.dense_model``, from
    PyTorch's seed ``seed``) wrapped in ``torch.compile``; None for a network with sparse
    blocks. Its ``parameters()`` are the wrapped network's."""
    import torch

    torch.manual_seed(seed)
    network = bench_torch.dense_model(spec)
    return None if network is None else torch.compile(network.to(device))


def contenders(spec: dict, batch: int, device: str, seed: int = 0
               ) -> dict[str, dict[str, Callable[[], Any]]]:
    """``{"torch.compile": {"fwd_bwd": fn, "step": fn}}`` for a network of dense blocks
    (``mlp_spec``, ``resmlp_spec``) on ``device``; empty for one with sparse blocks or
    without PyTorch. The weights and batch are the ``torch.nn`` contender's (same seed)."""
    if bench_torch.version() is None:
        return {}
    compiled = model(spec, device, seed)
    if compiled is None:
        return {}
    import torch

    X, y = bench_torch.batch_data(spec, batch, device, seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    return {LABEL: bench_torch.steps(lambda: loss_fn(compiled(X), y), compiled.parameters(),
                                     device)}
