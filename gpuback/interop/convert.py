"""``to_torch`` and ``from_torch`` (documented in ``gpuback.interop``); imports ``torch``."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.plan import Plan
from ..core.spec import LOSS_OUTPUT_ACTIVATION, LOSSES, NORM_EPS, gain_name, shift_name, weight_name
from ..network import Network
from .modules import GroupNetwork, activation_module, activation_name

# The loss paired with an output activation when neither ``loss`` nor the module names one.
CANONICAL_LOSS = {activation: loss for loss, activation in LOSS_OUTPUT_ACTIVATION.items()
                  if activation is not None}
DEFAULT_LOSS = "sum_of_squares"
_TORCH_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


# --- gpuback -> torch -----------------------------------------------------------------------

def to_torch(net: Network) -> nn.Module:
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a gpuback.Network, got {type(net).__name__}")
    params = _torch_parameters(net)
    plan = net.plan
    if not _is_plain_mlp(plan):
        return GroupNetwork(net.spec, params)
    layers: list[nn.Module] = []
    for g in plan.computed:
        (block,) = plan.groups[g].incoming
        n_dst, n_src = block.shape
        # built on the meta device: no memory, no draw from torch's random generator; the
        # parameters are then replaced by gpuback's
        linear = nn.Linear(n_src, n_dst, device="meta")
        linear.weight = nn.Parameter(params[block.name])
        linear.bias = nn.Parameter(params[g])
        layers.append(linear)
        if plan.groups[g].norm is not None:
            norm = nn.LayerNorm(n_dst, eps=NORM_EPS, device="meta")
            norm.weight = nn.Parameter(params[gain_name(g)])
            norm.bias = nn.Parameter(params[shift_name(g)])
            layers.append(norm)
        layers.append(activation_module(plan.groups[g].activation))
        if plan.groups[g].dropout > 0.0:
            layers.append(nn.Dropout(plan.groups[g].dropout))
    model: Any = nn.Sequential(*layers)
    model.gpuback_loss = plan.loss  # from_torch's default loss for it
    return model


def _is_plain_mlp(plan: Plan) -> bool:
    """A chain of dense blocks: every computed group fed by the group before it, alone."""
    for previous, g in zip(plan.order, plan.computed, strict=False):
        incoming = plan.groups[g].incoming
        if len(incoming) != 1 or incoming[0].kind != "dense" or incoming[0].src != previous:
            return False
    return plan.order[-1] == plan.output and len(plan.blocks) == len(plan.computed)


def _torch_parameters(net: Network) -> dict[str, torch.Tensor]:
    """Every parameter as a torch tensor of the network's dtype: sharing the device buffers
    (no copy) when the parameters live in device memory, else copies."""
    flat = net.flat_parameters
    if not isinstance(flat, np.ndarray) and net.ops.is_device_array(flat):
        return _shared_device_tensors(net)
    return {name: torch.from_numpy(array) for name, array in net.parameters().items()}


def _shared_device_tensors(net: Network) -> dict[str, torch.Tensor]:
    """The cuda backend on a GPU: each parameter (a CuPy view of the one flat buffer,
    ``gpuback.core.layout``) as a torch CUDA tensor on the same memory, by DLPack, no copy."""
    return {name: torch.from_dlpack(view)
            for name, view in net.layout.views(net.flat_parameters).items()}


# --- torch -> gpuback -----------------------------------------------------------------------

def from_torch(module: nn.Module, backend: str = "auto", dtype: Any = None,
               loss: str | None = None) -> Network:
    if loss is not None and loss not in LOSSES:
        raise ValueError(f"loss: expected one of {list(LOSSES)} or None, got {loss!r}")
    if isinstance(module, GroupNetwork):
        spec = copy.deepcopy(module.spec)
        tensors: dict[str, torch.Tensor] = dict(module.gpuback_parameters())
    elif isinstance(module, (nn.Sequential, nn.Linear)):
        spec, tensors = _sequential_spec(module)
    else:
        raise TypeError(f"module: expected an nn.Sequential, an nn.Linear or a module "
                        f"returned by gpuback.interop.to_torch, got {type(module).__name__}")
    spec["loss"] = loss or getattr(module, "gpuback_loss", None) or _default_loss(spec)
    if dtype is None:
        dtype = _module_dtype(tensors)
    net = Network(spec, backend=backend, dtype=dtype)
    net.set_parameters({name: t.detach().cpu().numpy() for name, t in tensors.items()})
    return net


def _default_loss(spec: dict[str, Any]) -> str:
    out = next(g for g in spec["groups"] if g["name"] == spec["output"])
    return CANONICAL_LOSS.get(out["activation"], DEFAULT_LOSS)


def _module_dtype(tensors: dict[str, torch.Tensor]) -> str:
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in _TORCH_DTYPES:
        raise ValueError(f"module: expected parameters all float32 or all float64, got "
                         f"{sorted(str(d) for d in dtypes)}; pass dtype= to convert")
    return _TORCH_DTYPES[next(iter(dtypes))]


def _sequential_spec(module: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The chain spec (loss left out) and parameters of an nn.Sequential (or one Linear)."""
    items = list(module) if isinstance(module, nn.Sequential) else [module]
    if not items:
        raise ValueError("module: an empty nn.Sequential has no layers")
    # each Linear, its activation and the nn.LayerNorm between them, if any
    layers: list[tuple[nn.Linear, str, nn.LayerNorm | None]] = []
    dropout: dict[int, float] = {}  # layer number -> the p of the nn.Dropout after it
    pending: nn.Linear | None = None
    norm: nn.LayerNorm | None = None
    for position, item in enumerate(items):
        where = f"module[{position}]"
        if type(item) is nn.Dropout:
            if pending is not None:  # straight after a Linear: the identity activation
                layers.append((pending, "identity", norm))
                pending, norm = None, None
            if not layers or len(layers) - 1 in dropout:
                raise TypeError(f"{where}: nn.Dropout is supported only after a layer (its "
                                "nn.Linear or its activation), once")
            if position == len(items) - 1:
                raise TypeError(f"{where}: nn.Dropout after the last layer is not supported: "
                                "gpuback's dropout is on hidden groups")
            dropout[len(layers) - 1] = float(item.p)
            continue
        if type(item) is nn.LayerNorm:
            if pending is None or norm is not None:
                raise TypeError(f"{where}: nn.LayerNorm is supported only straight after an "
                                "nn.Linear (gpuback normalises a group's pre-activations)")
            _check_layer_norm(item, pending, where)
            norm = item
            continue
        if type(item) is nn.Linear:
            if pending is not None:  # a Linear straight after a Linear: identity
                layers.append((pending, "identity", norm))
                norm = None
            previous = layers[-1][0] if layers else None
            if previous is not None and item.in_features != previous.out_features:
                raise ValueError(f"{where}: nn.Linear takes {item.in_features} features, but "
                                 f"the layer before it gives {previous.out_features}")
            pending = item
            continue
        activation = activation_name(item, where)
        if pending is None:
            raise TypeError(f"{where}: {type(item).__name__} follows "
                            f"{'no nn.Linear' if not layers else 'another activation'}: "
                            "gpuback gives each layer one activation, after its nn.Linear")
        if activation == "softmax" and position != len(items) - 1:
            raise TypeError(f"{where}: nn.Softmax is supported only as the last module "
                            "(gpuback's softmax is an output activation)")
        layers.append((pending, activation, norm))
        pending, norm = None, None
    if pending is not None:
        layers.append((pending, "identity", norm))

    names = ["x"] + [f"h{i}" for i in range(1, len(layers))] + ["y"]
    groups: list[dict[str, Any]] = [{"name": "x", "size": layers[0][0].in_features}]
    connections = []
    tensors: dict[str, torch.Tensor] = {}
    for i, ((linear, activation, layer_norm), src, dst) in enumerate(
            zip(layers, names, names[1:], strict=False)):
        group = {"name": dst, "size": linear.out_features, "activation": activation}
        if i in dropout:
            group["dropout"] = dropout[i]
        connections.append({"src": src, "dst": dst, "kind": "dense"})
        tensors[weight_name(src, dst)] = linear.weight
        tensors[dst] = _zeros_if_none(linear.bias, linear)
        if layer_norm is not None:
            group["norm"] = "layer"
            tensors[gain_name(dst)] = layer_norm.weight if layer_norm.weight is not None else \
                torch.ones(linear.out_features, dtype=linear.weight.dtype)
            tensors[shift_name(dst)] = _zeros_if_none(layer_norm.bias, linear)
        groups.append(group)
    spec = {"groups": groups, "connections": connections, "input": "x", "output": "y",
            "loss": DEFAULT_LOSS}
    return spec, tensors


def _zeros_if_none(tensor: torch.Tensor | None, linear: nn.Linear) -> torch.Tensor:
    """``tensor``, or zeros of the Linear's output size for a parameter it does not have."""
    if tensor is not None:
        return tensor
    return torch.zeros(linear.out_features, dtype=linear.weight.dtype)


def _check_layer_norm(norm: nn.LayerNorm, linear: nn.Linear, where: str) -> None:
    """An nn.LayerNorm that gpuback's layer norm computes exactly, or ``TypeError``."""
    if tuple(norm.normalized_shape) != (linear.out_features,):
        raise TypeError(f"{where}: nn.LayerNorm{tuple(norm.normalized_shape)} must normalise "
                        f"the {linear.out_features} features of the nn.Linear before it")
    if norm.eps != NORM_EPS:
        raise TypeError(f"{where}: nn.LayerNorm(eps={norm.eps}) is not supported: gpuback's "
                        f"layer norm has eps {NORM_EPS}")
