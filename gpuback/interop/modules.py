"""The PyTorch modules of ``gpuback.interop``: gpuback's activations and ``GroupNetwork``.

This module imports ``torch`` at import time; ``gpuback.interop`` imports it only on call.
Tensors are batch-major, ``(batch, units)``, as PyTorch users pass them (gpuback's engine
works feature-major inside; the weights are the same arrays either way).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..core.plan import compile_plan
from ..core.spec import ACTIVATIONS, NORM_EPS, validate_spec

LEAKY_SLOPE = 0.01  # gpuback's leaky_relu slope (numpy backend's LEAKY_SLOPE; kernels/scalar.py)


class Softplus(nn.Module):
    """gpuback's softplus, h(a) = log(1 + e^a) = max(a, 0) + log1p(e^-|a|), for every a.

    ``nn.Softplus`` returns a itself above its threshold (20 by default), a difference of
    up to e^-20 from this; ``torch.logaddexp(a, 0)`` is this formula, with the derivative
    h'(a) = sigmoid(a) (0.5 at a = 0).
    """

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.logaddexp(a, torch.zeros_like(a))


class Exp(nn.Module):
    """gpuback's exp, h(a) = e^a (h'(a) = e^a): the output activation of the Poisson loss, the
    log link (PyTorch has no module for it; ``torch.exp``, with ``poisson_nll_loss(...,
    log_input=True)`` on a, is the same model)."""

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.exp(a)


def activation_module(activation: str) -> nn.Module:
    """A module computing gpuback's ``activation`` (5.49) on batch-major ``(batch, units)``."""
    if activation == "identity":
        return nn.Identity()
    if activation == "tanh":
        return nn.Tanh()
    if activation == "sigmoid":
        return nn.Sigmoid()
    if activation == "relu":
        return nn.ReLU()
    if activation == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    if activation == "softplus":
        return Softplus()
    if activation == "gelu":  # gpuback's gelu is the tanh approximation
        return nn.GELU(approximate="tanh")
    if activation == "silu":
        return nn.SiLU()
    if activation == "exp":
        return Exp()
    if activation == "softmax":  # over each sample's units
        return nn.Softmax(dim=-1)
    raise ValueError(f"activation: expected one of {list(ACTIVATIONS)}, got {activation!r}")


def activation_name(module: nn.Module, where: str) -> str:
    """The gpuback activation ``module`` computes exactly, or ``TypeError`` naming ``where``.

    Types are matched exactly (a subclass may compute something else).
    """
    kind = type(module)
    settings: Any = module  # read the settings of the types matched below
    simple = {nn.Identity: "identity", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
              nn.ReLU: "relu", Softplus: "softplus", nn.SiLU: "silu", Exp: "exp"}
    if kind in simple:
        return simple[kind]
    if kind is nn.LeakyReLU:
        slope = float(settings.negative_slope)
        if slope != LEAKY_SLOPE:
            raise TypeError(f"{where}: nn.LeakyReLU(negative_slope={slope}) is not supported: "
                            f"gpuback's leaky_relu has slope {LEAKY_SLOPE}")
        return "leaky_relu"
    if kind is nn.Softplus:
        beta, threshold = float(settings.beta), float(settings.threshold)
        if beta != 1.0 or threshold < 20.0:
            raise TypeError(f"{where}: nn.Softplus(beta={beta}, threshold={threshold}) is not "
                            "supported: gpuback's softplus is log(1 + e^a) (beta 1, "
                            "threshold at least 20)")
        return "softplus"
    if kind is nn.GELU:
        if settings.approximate != "tanh":
            raise TypeError(f"{where}: nn.GELU(approximate={settings.approximate!r}) is not "
                            "supported: gpuback's gelu is the tanh approximation, "
                            "nn.GELU(approximate='tanh')")
        return "gelu"
    if kind is nn.Softmax:
        if settings.dim not in (1, -1):
            raise TypeError(f"{where}: nn.Softmax(dim={settings.dim!r}) is not supported: "
                            "gpuback's softmax runs over each sample's units, dim=-1 (or 1)")
        return "softmax"
    raise TypeError(f"{where}: {kind.__name__} is not supported: expected nn.Linear, "
                    "nn.LayerNorm (eps 1e-5, after an nn.Linear), nn.Dropout or one of the "
                    "activations "
                    "nn.Identity, nn.Tanh, nn.Sigmoid, nn.ReLU, nn.LeakyReLU(0.01), "
                    "nn.Softplus(), nn.GELU(approximate='tanh'), nn.SiLU, "
                    "gpuback.interop.modules.Exp, nn.Softmax(dim=-1)")


class GroupNetwork(nn.Module):
    """A gpuback network of any acyclic wiring, as a ``torch.nn.Module``.

    ``GroupNetwork(spec, parameters)``: ``spec`` a gpuback spec, ``parameters`` a tensor for
    every parameter name of ``gpuback.Network.parameters()`` (``"src->dst"`` weights: dense
    ``(n_dst, n_src)``, sparse ``(n_edges,)`` in the spec's edge order; group names:
    biases). Each tensor becomes an ``nn.Parameter`` as it is (no copy).

    ``forward(x)`` visits the groups in topological order: a group's pre-activation is the
    sum over its incoming blocks, then plus its bias (5.48): a dense block adds
    ``z_src @ W.T``, a sparse block adds ``w_e * z_src[:, src_e]`` into column ``dst_e`` for
    every edge e (``index_add``: autograd gives each edge weight its own gradient, 5.53), an
    identity block (a residual connection) adds ``z_src`` itself; a layer-normalised group
    then goes through ``nn.functional.layer_norm`` with its gain and shift; a group with
    dropout goes through ``nn.functional.dropout`` after its activation, in training mode
    (PyTorch's masks, not gpuback's);
    then the group's activation (5.49). It returns the output group's z, as
    ``Network.forward`` does.

    ``spec`` (a copy) and ``gpuback_loss`` are attributes; ``gpuback_parameters()`` maps
    gpuback's parameter names to the module's parameters (held in the ``weights`` and
    ``biases`` ``nn.ParameterList``s, and the layer norms' gains and shifts in ``norms``,
    since group names need not be valid attribute names).
    """

    def __init__(self, spec: Mapping[str, Any], parameters: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        plan = compile_plan(validate_spec(spec))
        self.spec = plan.spec
        self.gpuback_loss = plan.loss
        shapes = plan.parameter_shapes()
        missing = sorted(set(shapes) - set(parameters))
        if missing:
            raise ValueError(f"parameters: missing {missing}")
        for name, shape in shapes.items():
            if tuple(parameters[name].shape) != shape:
                raise ValueError(f"parameters[{name!r}]: expected shape {shape}, got "
                                 f"{tuple(parameters[name].shape)}")
        self._input, self._output = plan.input, plan.output
        self._block_names = [b.name for b in plan.blocks]
        self._group_names = list(plan.computed)
        self.weights = nn.ParameterList([nn.Parameter(parameters[b.name])
                                         for b in plan.blocks])
        self.biases = nn.ParameterList([nn.Parameter(parameters[g]) for g in plan.computed])
        # layer norm: each normalised group's gain and shift (nn.LayerNorm's weight and bias)
        self._norm_names = [name for g in plan.computed for name in plan.groups[g].parameters[1:]]
        self.norms = nn.ParameterList([nn.Parameter(parameters[name])
                                       for name in self._norm_names])
        self._normed = [plan.groups[g].norm is not None for g in plan.computed]
        self._dropout = [plan.groups[g].dropout for g in plan.computed]
        self.activations = nn.ModuleList([activation_module(plan.groups[g].activation)
                                          for g in plan.computed])
        device = self.weights[0].device
        position = {b.name: i for i, b in enumerate(plan.blocks)}
        # per computed group: (block number, source group, kind) of its incoming blocks (an
        # identity block, which has no weight, has number -1)
        self._incoming: list[list[tuple[int, str, str]]] = []
        for g in plan.computed:
            self._incoming.append([(position.get(b.name, -1), b.src, b.kind)
                                   for b in plan.groups[g].incoming])
        self._sizes = {g: plan.groups[g].size for g in plan.order}
        for b in plan.blocks:
            if b.index is not None:  # buffers: they follow the module's .to(device)
                i = position[b.name]
                self.register_buffer(f"src_{i}", torch.as_tensor(b.index.src, device=device))
                self.register_buffer(f"dst_{i}", torch.as_tensor(b.index.dst, device=device))

    def gpuback_parameters(self) -> dict[str, nn.Parameter]:
        """gpuback's parameter names (``Network.parameters()``'s keys) -> this module's
        parameters (the same objects, not copies)."""
        named = dict(zip(self._block_names, self.weights, strict=True))
        named.update(zip(self._group_names, self.biases, strict=True))
        named.update(zip(self._norm_names, self.norms, strict=True))
        return named

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = {self._input: x}
        norms = iter(self.norms)
        for g, incoming, bias, activation, normed, p in zip(
                self._group_names, self._incoming, self.biases, self.activations, self._normed,
                self._dropout, strict=True):
            a: torch.Tensor | None = None
            for i, src, kind in incoming:
                if kind == "identity":  # a residual connection: z_src itself, unweighted
                    part = z[src]
                elif kind == "dense":
                    part = nn.functional.linear(z[src], self.weights[i])
                else:
                    src_idx, dst_idx = getattr(self, f"src_{i}"), getattr(self, f"dst_{i}")
                    zeros = z[src].new_zeros((z[src].shape[0], self._sizes[g]))
                    part = zeros.index_add(1, dst_idx, z[src][:, src_idx] * self.weights[i])
                a = part if a is None else a + part
            assert a is not None  # every computed group has an incoming block (validate_spec)
            a = a + bias
            if normed:  # over the group's units, with its gain and shift
                gain, shift = next(norms), next(norms)
                a = nn.functional.layer_norm(a, (self._sizes[g],), gain, shift, NORM_EPS)
            z[g] = activation(a)
            if p > 0.0:  # in training mode only, as nn.Dropout
                z[g] = nn.functional.dropout(z[g], p, self.training)
        return z[self._output]

    def extra_repr(self) -> str:
        sizes = ", ".join(f"{g}={n}" for g, n in self._sizes.items())
        return f"groups {sizes}; weights {self._block_names}; biases {self._group_names}"
