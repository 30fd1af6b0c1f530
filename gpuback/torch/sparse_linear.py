"""``SparseLinear``: a sparse linear layer for PyTorch models, run by gpuback's sparse kernels.

The layer holds one weight per edge, ``weight`` (E,), on the edges ``edges`` (2, E): edge e
joins input feature ``edges[0, e]`` to output feature ``edges[1, e]``, so output k is
``a_k = sum over edges e into k of w_e x_(src_e) + b_k`` (Bishop 5.48). Its forward and
backward are the cpu or cuda backend's sparse ops (``gpuback.torch.sparse_passes``) on
the tensors' own memory, through a ``torch.autograd.Function``: the gradient of every edge
weight (5.53), of the bias, and of the input (5.56: each input feature receives
w_e delta_k from every output it feeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backends.protocol import SparseIndex
from ..core.checks import check_bool, check_int, check_real
from ..core.spec import random_edges
from ..kernels.precision import FP32
from . import sparse_passes
from .tensors import (
    LOW_PRECISION,
    MASTER_DTYPES,
    PRECISION_DTYPE,
    backend_array,
    backend_for,
    call_precision,
    on_stream,
    precision_code,
)


class SparseLinear(nn.Module):
    """A linear layer with a fixed set of edges: ``y = x W^T + b`` where W is nonzero only on
    ``edges``, computed at sparse cost by gpuback's kernels, forward and backward.

    ``SparseLinear(in_features, out_features, density=None, edges=None, bias=True, seed=0,
    deterministic=False, device=None, dtype=None)``. Give exactly one of

    * ``density`` in (0, 1]: ``max(1, round(density * in_features * out_features))``
      distinct edges drawn at random from ``numpy.random.default_rng(seed)`` (the same
      edges on every device), as ``gpuback.sparse_mlp_spec`` draws a block's;
    * ``edges``: a (2, E) integer array or tensor, or a pair of sequences: the input
      features (row 0) and the output features (row 1) of the E >= 1 edges, in range and
      with no edge twice.

    Initial values: as ``nn.Linear`` draws them, with the mean number of edges into an
    output unit, ``fan_in = E / out_features``, as the fan-in: weights and bias uniform in
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, drawn from the same generator after the edges.
    ``dtype``: torch.float32 (the default) or torch.float64. ``deterministic``: on a CUDA
    device the input gradient is then a gather over the edges by source, bitwise
    reproducible, instead of the atomic scatter-add (on the CPU it is always the gather).

    Inputs are ``(..., in_features)`` of the layer's dtype, or bfloat16/float16, which
    (like a float32 input under ``torch.autocast`` to those types) compute as gpuback's
    mixed precision does: operands rounded to that precision, sums in float32, the
    output in the low-precision type (``gpuback.torch.tensors``).

    ``weight``, ``bias`` (or None) and ``edges`` (a buffer) are in ``state_dict``; loading
    one with other edges (as many) moves the layer to those edges.
    """

    edges: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, in_features: int, out_features: int, density: float | None = None,
                 edges: Any = None, bias: bool = True, seed: int = 0,
                 deterministic: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, 1)
        self.out_features = check_int("out_features", out_features, 1)
        seed = check_int("seed", seed, 0)
        self.deterministic = check_bool("deterministic", deterministic)
        bias = check_bool("bias", bias)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in MASTER_DTYPES:
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        rng = np.random.default_rng(seed)
        if (density is None) == (edges is None):
            raise ValueError("SparseLinear: give exactly one of density (a fraction of the "
                             "in_features x out_features pairs) and edges (a (2, E) array)")
        if density is not None:
            pairs = random_edges(in_features, out_features, density, rng)
        else:
            pairs = check_edges(edges, in_features, out_features)
        n_edges = pairs.shape[1]
        bound = 1.0 / math.sqrt(n_edges / out_features)
        weight = rng.uniform(-bound, bound, size=n_edges)
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.as_tensor(rng.uniform(-bound, bound, out_features),
                                                 dtype=dtype, device=device)) if bias else None
        self.register_buffer("edges", torch.as_tensor(pairs, dtype=torch.int64, device=device))
        self._indices: dict[tuple[Any, ...], Any] = {}

    # --- conversion ----------------------------------------------------------------------

    @classmethod
    def from_dense(cls, linear: nn.Linear, density: float | None = None, mask: Any = None,
                   deterministic: bool = False) -> SparseLinear:
        """A ``SparseLinear`` keeping some of ``linear``'s weights (copied, with its bias):

        * ``density`` in (0, 1]: the ``max(1, round(density * out * in))`` weights of
          largest magnitude (magnitude pruning; ties to the first in row-major order);
        * ``mask``: a boolean (or 0/1) array of ``linear.weight``'s shape, the weights kept;
        * neither: the nonzero weights.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear: expected a torch.nn.Linear, got {type(linear).__name__}")
        if density is not None and mask is not None:
            raise ValueError("from_dense: give density or mask, not both")
        weight = linear.weight.detach()
        n_out, n_in = weight.shape
        values = weight.detach().cpu().double().numpy()
        if density is not None:
            density = check_real("density", density, 0, 1, low_open=True, high_open=False)
            keep = max(1, round(density * values.size))
            order = np.argsort(-np.abs(values).reshape(-1), kind="stable")[:keep]
            chosen = np.zeros(values.size, dtype=bool)
            chosen[order] = True
            kept = chosen.reshape(values.shape)
        elif mask is not None:
            kept = _check_mask(mask, (n_out, n_in))
        else:
            kept = values != 0
        dst, src = np.nonzero(kept)  # row-major: by output unit, then input
        if dst.size == 0:
            raise ValueError("from_dense: no weight is kept (an all-zero mask or weight)")
        layer = cls(n_in, n_out, edges=np.stack([src, dst]), bias=linear.bias is not None,
                    deterministic=deterministic, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(weight[torch.as_tensor(dst), torch.as_tensor(src)])
            if linear.bias is not None and layer.bias is not None:
                layer.bias.copy_(linear.bias.detach())
        return layer

    def to_dense(self) -> nn.Linear:
        """An ``nn.Linear`` with the same outputs: its weight zero off the edges."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            dense = torch.zeros_like(linear.weight)
            dense[self.edges[1], self.edges[0]] = self.weight.detach()
            linear.weight.copy_(dense)
            if self.bias is not None and linear.bias is not None:
                linear.bias.copy_(self.bias.detach())
        return linear

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[1])

    @property
    def density(self) -> float:
        """The fraction of the in_features x out_features pairs that are edges."""
        return self.n_edges / (self.in_features * self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"edges={self.n_edges} (density {self.density:.4g}), "
                f"bias={self.bias is not None}")

    # --- the pass ------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected shape (..., {self.in_features}), got "
                             f"{tuple(x.shape)}")
        if x.device != self.weight.device:
            raise ValueError(f"x is on {x.device}, the layer's parameters on "
                             f"{self.weight.device}")
        if self.weight.dtype not in MASTER_DTYPES:
            raise TypeError(f"SparseLinear's parameters must be float32 or float64 (mixed "
                            f"precision keeps float32 masters), got {self.weight.dtype}")
        precision = call_precision(x)
        if x.dtype not in LOW_PRECISION and x.dtype != self.weight.dtype:
            raise TypeError(f"x: expected {self.weight.dtype} (the layer's dtype), bfloat16 "
                            f"or float16, got {x.dtype}")
        if precision != "fp32" and self.weight.dtype != torch.float32:
            raise TypeError(f"x: {precision} needs a float32 layer (the master copy), this "
                            f"one is {self.weight.dtype}")
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] == 0:
            out = rows.new_zeros((0, self.out_features)) + (
                0 if self.bias is None else self.bias.to(rows.dtype))
            return out.reshape(*lead, self.out_features)
        out_dtype = self.weight.dtype if precision == "fp32" else PRECISION_DTYPE[precision]
        out = _sparse_pass(rows, self.weight, self.bias, self._index(x.device),
                           precision_code(precision), self.out_features, out_dtype)
        return out.reshape(*lead, self.out_features)

    def _index(self, device: torch.device) -> Any:
        """The edges as the backend of ``device`` walks them (built once per device and
        edge set: a change of ``edges``, by ``load_state_dict`` say, is seen here)."""
        # the version counter: bumped by every in-place write (PyTorch's own staleness check)
        key = (str(device), self.edges.data_ptr(), self.edges._version)  # noqa: SLF001
        index = self._indices.get(key)
        if index is None:
            pairs = self.edges.detach().cpu().numpy()
            check_edges(pairs, self.in_features, self.out_features)
            edge_index = SparseIndex.from_edges((pairs[0], pairs[1]), self.in_features,
                                                self.out_features)
            with on_stream(device):
                index = backend_for(device).prepare_index(edge_index, self.deterministic)
            self._indices = {key: index}
        return index


@torch.compiler.disable  # a graph break: Dynamo cannot trace the backend's kernels
def _sparse_pass(*args: Any) -> torch.Tensor:
    out: torch.Tensor = SparseLinearFunction.apply(*args)
    return out


class SparseLinearFunction(torch.autograd.Function):
    """The autograd function of ``SparseLinear`` on 2-D inputs (``gpuback.torch.sparse_passes``
    does the work). Feature-major inside: the input is transposed to (in, batch) once (no
    copy when it is the output of another ``SparseLinear``, which hands back a transposed
    view of its (out, batch) result)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                index: Any, code: int, out_features: int, out_dtype: torch.dtype
                ) -> torch.Tensor:
        device = x.device
        ops = backend_for(device)
        z = x.t().to(weight.dtype).contiguous()
        w = weight
        out = torch.empty((out_features, x.shape[0]), dtype=weight.dtype, device=device)
        with on_stream(device):
            if code != FP32:  # products read rounded operands (the input, a rounded copy of W)
                if z.data_ptr() == x.data_ptr():  # a view of the caller's input: not in place
                    z = z.clone()
                w = weight.detach().clone()
                ops.round_to_precision(backend_array(w), code)
                ops.round_to_precision(backend_array(z), code)
            sparse_passes.forward(ops, backend_array(w), index,
                                  None if bias is None else backend_array(bias),
                                  backend_array(z), backend_array(out))
        ctx.save_for_backward(z, w, bias)
        ctx.index, ctx.code, ctx.in_dtype = index, code, x.dtype
        return out.t().to(out_dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        z, w, bias = ctx.saved_tensors
        device = grad.device
        ops = backend_for(device)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        delta = grad.t().to(w.dtype).contiguous()
        db = torch.empty_like(bias) if need_b and bias is not None else None
        dw = torch.empty_like(w) if need_w else None
        dx = torch.empty_like(z) if need_x else None
        with on_stream(device):
            if db is not None:  # from the float32 deltas, before they are rounded
                ops.bias_grad(backend_array(delta), backend_array(db))
            if ctx.code != FP32:
                ops.round_to_precision(backend_array(delta), ctx.code)
            sparse_passes.backward(ops, backend_array(w), ctx.index, backend_array(delta),
                                   backend_array(z),
                                   None if dw is None else backend_array(dw),
                                   None if dx is None else backend_array(dx))
        dx_rows = None if dx is None else dx.t().to(ctx.in_dtype)
        return dx_rows, dw, db, None, None, None, None


def check_edges(edges: Any, n_in: int, n_out: int) -> np.ndarray:
    """``edges`` as a (2, E) int64 array of in-range, distinct (input, output) pairs, E >= 1;
    else a ``ValueError`` / ``TypeError`` saying what is wrong."""
    if isinstance(edges, torch.Tensor):
        edges = edges.detach().cpu().numpy()
    if isinstance(edges, Sequence) and len(edges) == 2:
        edges = [np.asarray(row) for row in edges]
        if edges[0].shape != edges[1].shape:
            raise ValueError(f"edges: the two rows differ in length ({edges[0].shape} and "
                             f"{edges[1].shape})")
    pairs = np.asarray(edges)
    if pairs.ndim != 2 or pairs.shape[0] != 2:
        raise ValueError(f"edges: expected shape (2, E), got {pairs.shape}")
    if pairs.dtype.kind not in "iu":
        raise TypeError(f"edges: expected integers, got dtype {pairs.dtype}")
    if pairs.shape[1] == 0:
        raise ValueError("edges: expected at least one edge, got none")
    for row, name, size in ((0, "input", n_in), (1, "output", n_out)):
        bad = (pairs[row] < 0) | (pairs[row] >= size)
        if bad.any():
            e = int(np.argmax(bad))
            raise ValueError(f"edges: edge {e} has {name} feature {int(pairs[row, e])}, "
                             f"expected 0..{size - 1}")
    flat = pairs[1].astype(np.int64) * n_in + pairs[0].astype(np.int64)
    unique, counts = np.unique(flat, return_counts=True)
    if (counts > 1).any():
        twice = int(unique[np.argmax(counts > 1)])
        raise ValueError(f"edges: the edge from input {twice % n_in} to output "
                         f"{twice // n_in} appears {int(counts.max())} times")
    return pairs.astype(np.int64)


def _check_mask(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    kept = np.asarray(mask)
    if kept.shape != shape:
        raise ValueError(f"mask: expected the weight's shape {shape}, got {kept.shape}")
    if kept.dtype != bool:
        if not np.isin(kept, (0, 1)).all():
            raise ValueError("mask: expected booleans or 0/1 values")
        kept = kept.astype(bool)
    return kept
