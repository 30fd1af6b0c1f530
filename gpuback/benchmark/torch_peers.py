"""The PyTorch contenders of ``gpuback bench``: the same networks, written as a PyTorch user
would write them.

* dense: ``torch.nn.Linear`` layers, ReLU, ``CrossEntropyLoss``;
* sparse, ``torch.sparse.mm``: each sparse block a coalesced sparse COO weight (a leaf
  tensor that PyTorch gives a sparse gradient), applied feature-major as ``W @ h``;
* sparse, masked dense: each sparse block a dense weight multiplied by its 0/1 mask in
  every forward pass (so its gradient is masked too).

Every contender offers ``fwd_bwd`` (zero the gradients, forward, loss, backward) and
``step`` (that, then ``torch.optim.SGD`` with momentum), synchronised on a GPU.
Needs PyTorch (``pip install 'gpuback[bench]'``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

SGD_LR = 0.01
SGD_MOMENTUM = 0.9


def version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def devices() -> list[str]:
    """"cpu", and "cuda" when PyTorch sees a GPU."""
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def threads() -> int:
    import torch

    return torch.get_num_threads()


def gemm(device: str, m: int, k: int, n: int) -> Callable[[], Any]:
    """A float32 (m x k) @ (k x n) product on ``device``, to time."""
    import torch

    a = torch.randn(m, k, device=device)
    b = torch.randn(k, n, device=device)
    return lambda: _sync(device, torch.mm(a, b))


def labels(dense: bool) -> list[str]:
    """The contenders ``contenders`` builds for a dense or a sparse network."""
    return ["torch.nn"] if dense else ["torch.sparse.mm", "torch masked dense"]


def contenders(spec: dict, batch: int, device: str, seed: int = 0
               ) -> dict[str, dict[str, Callable[[], Any]]]:
    """``{name: {"fwd_bwd": fn, "step": fn}}`` for a chain spec (``mlp_spec`` or
    ``sparse_mlp_spec``): "torch.nn" when every block is dense, else "torch.sparse.mm" and
    "torch masked dense"; for a ``resmlp_spec``, "torch.nn" of ``_residual_mlp``."""
    import torch

    torch.manual_seed(seed)
    sizes = [g["size"] for g in spec["groups"]]
    X, y = batch_data(spec, batch, device, seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    blocks = spec["connections"]
    model = dense_model(spec)
    if model is not None:
        model = model.to(device)
        nn = steps(lambda: loss_fn(model(X), y), model.parameters(), device)
        return dict(zip(labels(dense=True), [nn], strict=True))
    sparse = _SparseMM(blocks, sizes, device)
    masked = MaskedDense(blocks, sizes, device)
    return dict(zip(labels(dense=False),
                    [steps(lambda: loss_fn(sparse(X), y), sparse.params, device),
                     steps(lambda: loss_fn(masked(X), y), masked.params, device)], strict=True))


def has_sparse_chain(spec: dict) -> bool:
    """Whether ``spec`` is a chain (no identity connection: not a residual network) with at
    least one sparse block: a network the sparse contenders can write."""
    kinds = {b["kind"] for b in spec["connections"]}
    return "sparse" in kinds and "identity" not in kinds


def dense_model(spec: dict) -> Any:
    """The network of a chain of dense blocks (``mlp_spec``: ``torch.nn.Linear`` layers, ReLU
    between) or of a ``resmlp_spec`` (``_residual_mlp``) as a ``torch.nn.Module`` on the CPU,
    initialised from PyTorch's current seed; None for a network with sparse blocks."""
    import torch

    blocks = spec["connections"]
    if any(b["kind"] == "identity" for b in blocks):  # a resmlp_spec
        return _residual_mlp(spec)
    if any(b["kind"] != "dense" for b in blocks):
        return None
    sizes = [g["size"] for g in spec["groups"]]
    layers: list[Any] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def batch_arrays(spec: dict, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The batch every peer trains on (the same for each, from ``seed``), as NumPy arrays:
    inputs ``(batch, n_in)`` float32 standard normal, class labels ``(batch,)`` int64."""
    sizes = [g["size"] for g in spec["groups"]]
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, sizes[0])).astype(np.float32),
            rng.integers(0, sizes[-1], size=batch).astype(np.int64))


def batch_data(spec: dict, batch: int, device: str = "cpu", seed: int = 0) -> tuple[Any, Any]:
    """``batch_arrays`` as PyTorch tensors on ``device``."""
    import torch

    X, y = batch_arrays(spec, batch, seed)
    return torch.tensor(X, device=device), torch.tensor(y, device=device)


def digits_trainer(data: Any, device: str, seed: int = 0
                   ) -> tuple[Callable[[], None], Callable[[], float]]:
    """``(train_epoch, test_accuracy)`` for a 64-128-10 ReLU MLP on the digits: Adam, lr 3e-3,
    batch 32, a fresh shuffle every epoch (as ``gpuback train`` by default)."""
    import torch

    torch.manual_seed(seed)
    n_in, n_out = data.n_features, data.n_outputs
    model = torch.nn.Sequential(torch.nn.Linear(n_in, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, n_out)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    X = torch.tensor(data.X_train, dtype=torch.float32, device=device)
    y = torch.tensor(data.y_train, device=device)
    X_test = torch.tensor(data.X_test, dtype=torch.float32, device=device)
    y_test = torch.tensor(data.y_test, device=device)

    def train_epoch() -> None:
        order = torch.randperm(len(y), device=device)
        for i in range(0, len(y), 32):
            batch = order[i:i + 32]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(X[batch]), y[batch]).backward()
            opt.step()

    def accuracy() -> float:
        with torch.no_grad():
            return float((model(X_test).argmax(dim=1) == y_test).float().mean())

    return train_epoch, accuracy


def residual_shape(spec: dict) -> tuple[int, int, int, int, float]:
    """``(n_in, width, depth, n_out, dropout)`` of a ``resmlp_spec``, read from its groups."""
    groups = {g["name"]: g for g in spec["groups"]}
    depth = sum(name.startswith("b") for name in groups)
    p = groups["b1"].get("dropout", 0.0) if depth else 0.0
    return groups["x"]["size"], groups["r0"]["size"], depth, groups["y"]["size"], p


def _residual_mlp(spec: dict) -> Any:
    """The network of ``gpuback.resmlp_spec`` as PyTorch users write it: a Linear stem,
    blocks ``x + Dropout(GELU(LayerNorm(Linear(x))))`` (the stream's own bias left out), a
    Linear head."""
    import torch

    n_in, width, depth, n_out, p = residual_shape(spec)

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = torch.nn.Sequential(torch.nn.Linear(width, width),
                                             torch.nn.LayerNorm(width),
                                             torch.nn.GELU(approximate="tanh"),
                                             torch.nn.Dropout(p))

        def forward(self, x: Any) -> Any:
            return x + self.inner(x)

    return torch.nn.Sequential(torch.nn.Linear(n_in, width), *[Block() for _ in range(depth)],
                               torch.nn.Linear(width, n_out))


def steps(loss: Callable[[], Any], params: Any, device: str) -> dict[str, Callable[[], Any]]:
    import torch

    params = list(params)
    opt = torch.optim.SGD(params, lr=SGD_LR, momentum=SGD_MOMENTUM)

    def call(update: bool) -> Callable[[], None]:
        def run() -> None:
            opt.zero_grad(set_to_none=True)
            out = loss()
            out.backward()
            if update:
                opt.step()
            _sync(device, out)

        return run

    return {"fwd_bwd": call(update=False), "step": call(update=True)}


def _sync(device: str, value: Any) -> Any:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    return value


def _edges(block: dict) -> tuple[np.ndarray, np.ndarray]:
    src, dst = (np.asarray(e, dtype=np.int64) for e in block["edges"])
    return src, dst


class _SparseMM:
    """Sparse blocks as coalesced sparse COO (dst, src) weights; activations feature-major."""

    def __init__(self, blocks: list[dict], sizes: list[int], device: str) -> None:
        import torch

        self.layers = []
        for i, block in enumerate(blocks):
            n_in, n_out = sizes[i], sizes[i + 1]
            bias = torch.zeros(n_out, 1, device=device, requires_grad=True)
            if block["kind"] == "dense":
                w = torch.empty(n_out, n_in, device=device)
                torch.nn.init.kaiming_uniform_(w, a=5**0.5)
                w.requires_grad_(True)
            else:
                src, dst = _edges(block)
                values = torch.randn(len(src)) * (2.0 / max(1, len(src) / n_out)) ** 0.5
                w = torch.sparse_coo_tensor(torch.tensor(np.stack([dst, src])), values,
                                            (n_out, n_in), check_invariants=True)
                w = w.coalesce().to(device)
                w.requires_grad_(True)
            self.layers.append((w, bias, block["kind"] == "sparse"))
        self.params = [p for w, b, _ in self.layers for p in (w, b)]

    def __call__(self, X: Any) -> Any:
        import torch

        h = X.T
        for i, (w, bias, is_sparse) in enumerate(self.layers):
            h = (torch.sparse.mm(w, h) if is_sparse else w @ h) + bias
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h.T


class MaskedDense:
    """Sparse blocks as dense weights times a fixed 0/1 mask; activations batch-major. Its
    ``layers`` are ``(weight, bias, mask or None)`` per block, its ``params`` the weights and
    biases in that order."""

    def __init__(self, blocks: list[dict], sizes: list[int], device: str) -> None:
        import torch

        self.layers = []
        for i, block in enumerate(blocks):
            n_in, n_out = sizes[i], sizes[i + 1]
            w = torch.empty(n_out, n_in, device=device)
            torch.nn.init.kaiming_uniform_(w, a=5**0.5)
            mask = None
            if block["kind"] == "sparse":
                src, dst = _edges(block)
                mask = torch.zeros(n_out, n_in, device=device)
                mask[torch.tensor(dst, device=device), torch.tensor(src, device=device)] = 1.0
            self.layers.append((w.requires_grad_(True),
                                torch.zeros(n_out, device=device, requires_grad=True), mask))
        self.params = [p for w, b, _ in self.layers for p in (w, b)]

    def __call__(self, X: Any) -> Any:
        import torch

        h = X
        for i, (w, bias, mask) in enumerate(self.layers):
            h = torch.nn.functional.linear(h, w if mask is None else w * mask, bias)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h
