"""``Module(net)``: a whole gpuback network inside a PyTorch model, run by its own passes.

The module's parameters are the network's parameter buffers (each ``nn.Parameter`` over the
same memory, no copy), so a PyTorch optimiser's in-place step is a step of the network. Its
forward is the network's forward pass (5.48, 5.49) on the network's backend, and its
backward the network's backpropagation (5.53-5.56) started from the gradient PyTorch hands
in (``Engine.run_backpropagate``), with the gradient of the inputs (the input group's
accumulator) for whatever feeds the module.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.dropout import DropoutDraw
from ..core.engine import Engine
from ..core.workspace import Arena, Workspace
from .tensors import LOW_PRECISION, backend_array, on_stream


class Module(nn.Module):
    """``net`` (a ``gpuback.Network`` of any wiring) as a ``torch.nn.Module``.

    ``module(x)`` equals ``net.forward(x)`` (the output activation included) for ``x`` of
    shape ``(..., n_in)``, and its backward is the network's backpropagation: every
    parameter gets its gradient, and so does ``x``. Lower-precision inputs (bfloat16,
    float16, as ``torch.autocast`` hands them on) are cast to the network's dtype first; the
    network's own ``precision`` says how its products round (``gpuback.precision``).

    Parameters: ``weights`` (one per weighted block, in the spec's order), ``biases`` (one per
    computed group) and ``norms`` (each layer-normalised group's gain and shift), the names
    ``gpuback.interop.to_torch``'s ``GroupNetwork`` gives them (so state dicts move between
    the two); ``gpuback_parameters()`` maps gpuback's names to them. Each is a view of the
    network's flat parameter buffer: PyTorch optimisers, schedulers, ``clip_grad_norm_`` and
    ``load_state_dict`` write the network's parameters in place. The module lives where the
    network's backend keeps its arrays (CPU tensors for the numpy and cpu backends and the
    simulated cuda backend, CUDA tensors for the cuda backend on a GPU): moving it (``.to``,
    ``.cuda()``, ``.double()``) is refused; build the network on the backend and dtype
    wanted instead.

    Dropout: in training mode (``module.train()``, the default) the groups with dropout
    draw gpuback's masks, a new draw at each forward pass (counted by ``steps``); in
    evaluation mode (``module.eval()``) none.

    A forward pass keeps its values for its backward in buffers of the module's own, reused
    by the next forward once the backward has run; a forward pass made while another's
    backward is still to come gets buffers of its own (an allocation).
    """

    def __init__(self, net: Engine) -> None:
        super().__init__()
        if not isinstance(net, Engine):
            raise TypeError(f"net: expected a gpuback.Network, got {type(net).__name__}")
        self.net = net
        plan = net.plan
        flat = tensor_over(net.flat_parameters)
        views = net.layout.views(flat)
        self._block_names = [b.name for b in plan.blocks]
        self._group_names = list(plan.computed)
        self._norm_names = [name for g in plan.computed
                            for name in plan.groups[g].parameters[1:]]
        self.weights = nn.ParameterList([nn.Parameter(views[n]) for n in self._block_names])
        self.biases = nn.ParameterList([nn.Parameter(views[n]) for n in self._group_names])
        self.norms = nn.ParameterList([nn.Parameter(views[n]) for n in self._norm_names])
        self.steps = 0  # training forward passes so far: the dropout draw of the next one
        self._arena = self._new_arena()
        self._generation = 0  # forward passes on the module's own buffers so far
        self._pending: Callable[[], _Lease | None] = _nothing

    def gpuback_parameters(self) -> dict[str, nn.Parameter]:
        """gpuback's parameter names (``Network.parameters()``'s keys) -> this module's
        parameters (the same objects)."""
        named = dict(zip(self._block_names, self.weights, strict=True))
        named.update(zip(self._group_names, self.biases, strict=True))
        named.update(zip(self._norm_names, self.norms, strict=True))
        return named

    def _ordered(self) -> Iterator[nn.Parameter]:
        """The parameters in the order of the network's flat buffer (``layout``)."""
        named = self.gpuback_parameters()
        return (named[name] for name in self.net.layout.offsets)

    def extra_repr(self) -> str:
        return repr(self.net)

    def _apply(self, fn: Any, recurse: bool = True) -> Module:
        """Refuse a move or a cast: the parameters must stay the network's buffers."""
        for param in self.parameters():
            moved = fn(param)
            if moved.device != param.device or moved.dtype != param.dtype:
                raise TypeError(f"gpuback.torch.Module: its parameters are the network's own "
                                f"buffers ({param.dtype} on {param.device}); build the "
                                f"network on the backend and dtype wanted instead of "
                                f"moving the module (to {moved.dtype} on {moved.device})")
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net, n_in = self.net, self.net.plan.n_in
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != n_in:
            raise ValueError(f"x: expected shape (..., {n_in}), got {tuple(x.shape)}: the "
                             f"input group has {n_in} units")
        if not x.is_floating_point():
            raise TypeError(f"x: expected floating-point values, got {x.dtype}")
        first = self.biases[0]
        if x.device != first.device:
            raise ValueError(f"x is on {x.device}, the network's parameters on "
                             f"{first.device} (its backend is {net.backend!r})")
        if x.dtype != first.dtype and x.dtype not in LOW_PRECISION:
            raise TypeError(f"x: expected {first.dtype} (the network's dtype), bfloat16 or "
                            f"float16, got {x.dtype}")
        lead = x.shape[:-1]
        rows = x.reshape(-1, n_in).to(first.dtype)
        if rows.shape[0] == 0:
            raise ValueError(f"x: expected at least one sample, got shape {tuple(x.shape)}")
        draw = net.dropout_draw(self.steps) if self.training else None
        if draw is not None:
            self.steps += 1
        y = _network_pass(rows, self, draw, *self._ordered())
        return y.reshape(*lead, net.plan.n_out)

    def _new_arena(self) -> Arena:
        return Arena(self.net.plan, self.net.ops, np.dtype(self.net.dtype))

    def _workspace(self, batch: int) -> tuple[Workspace, _Lease]:
        """Buffers for a forward pass and the lease that says whether its backward may
        still read them: the module's own, unless a backward on them is still to come."""
        pending = self._pending()
        if pending is not None and pending.active:
            return self._new_arena().workspace(batch), _Lease(None, 0)
        self._generation += 1
        lease = _Lease(self, self._generation)
        self._pending = weakref.ref(lease)
        return self._arena.workspace(batch), lease


class _Lease:
    """A forward pass's claim on the buffers its backward reads: active until the backward
    has run (or its graph is dropped); on the module's own buffers, valid while no later
    forward pass has reused them."""

    def __init__(self, owner: Module | None, generation: int) -> None:
        self.active = True
        self._owner = None if owner is None else weakref.ref(owner)
        self._generation = generation

    def check(self) -> None:
        owner = None if self._owner is None else self._owner()
        if owner is not None and owner._generation != self._generation:  # noqa: SLF001
            raise RuntimeError("gpuback.torch.Module: a later forward pass has reused the "
                               "values this backward needs (a second backward through a "
                               "retained graph after another forward); run the forward "
                               "pass again")


def _nothing() -> None:
    return None


def tensor_over(array: Any) -> torch.Tensor:
    """A tensor over a backend array's memory (no copy): ``torch.from_numpy`` for a host
    array (the simulator's device arrays included), DLPack for a CuPy array."""
    if isinstance(array, np.ndarray):
        return torch.from_numpy(array.view(np.ndarray))
    return torch.from_dlpack(array)


@torch.compiler.disable  # a graph break: Dynamo cannot trace the backend's kernels
def _network_pass(x: torch.Tensor, module: Module, draw: DropoutDraw | None,
                  *params: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = NetworkFunction.apply(x, module, draw, *params)
    return out


class NetworkFunction(torch.autograd.Function):
    """The autograd function of ``Module``: the network's forward pass, and its
    backpropagation from the gradient of its outputs."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, module: Module, draw: DropoutDraw | None,
                *params: torch.Tensor) -> torch.Tensor:
        net = module.net
        plan, ops = net.plan, net.ops
        ws, lease = module._workspace(x.shape[0])  # noqa: SLF001
        y = torch.empty((x.shape[0], plan.n_out), dtype=x.dtype, device=x.device)
        with on_stream(x.device):
            _ = net.flat_parameters  # written by PyTorch: below fp32 the rounded copy is remade
            ops.copy_into(ws.z[plan.input], backend_array(x).T)
            net.run_forward(ws, dropout=draw)
            ops.copy_into(backend_array(y), ws.z[plan.output].T)
        ctx.module, ctx.ws, ctx.lease, ctx.draw = module, ws, lease, draw
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        lease: _Lease = ctx.lease
        lease.check()
        (y,) = ctx.saved_tensors
        module: Module = ctx.module
        net, ws = module.net, ctx.ws
        plan, ops = net.plan, net.ops
        grad = grad.to(y.dtype)
        output_delta = "z"
        if plan.groups[plan.output].activation == "softmax":  # its Jacobian, per sample
            grad = y * (grad - (grad * y).sum(dim=1, keepdim=True))
            output_delta = "a"
        dx = torch.empty((plan.n_in, y.shape[0]), dtype=y.dtype, device=y.device) \
            if ctx.needs_input_grad[0] else None
        flat = torch.empty(net.layout.size, dtype=y.dtype, device=y.device)
        with on_stream(y.device):
            ops.copy_into(ws.delta[plan.output], backend_array(grad).T)
            net.run_backpropagate(ws, output_delta,
                                  None if dx is None else backend_array(dx), ctx.draw)
            ops.copy_into(backend_array(flat), net.flat_gradients)
        lease.active = False
        return (None if dx is None else dx.t(), None, None, *net.layout.views(flat).values())
