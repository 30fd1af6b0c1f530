"""Forward and backward propagation, written once against the backend op set.

Nothing here knows which backend runs it: ``ops`` is a backend module, buffers live
in a ``Workspace``, parameters and gradients in dicts keyed by parameter name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..kernels.precision import FP32
from .dropout import DropoutDraw
from .plan import Plan
from .workspace import Workspace

if TYPE_CHECKING:
    from ..backends.protocol import Backend


def forward(ops: Backend, plan: Plan, params: dict[str, Any], indices: dict[str, Any],
            ws: Workspace, nudge: tuple[str, int, float] | None = None,
            precision: int = FP32, dropout: DropoutDraw | None = None) -> None:
    """Forward propagation (5.48, 5.49); ``ws.z[plan.input]`` must hold the inputs.

    Groups are visited in topological order; a group's pre-activations are the sum
    over all its incoming blocks, whichever earlier groups they come from (an identity
    block adds its source's z unweighted).
    ``nudge = (group, unit, amount)`` adds ``amount`` to that unit's pre-activation
    a_j in every sample, before its activation: how ``gpuback explain`` measures
    dE/da_j by perturbing a_j itself.
    ``precision`` (``gpuback.kernels.precision.CODES``): below FP32 the inputs and every
    hidden group's z are stored rounded to it, so each product reads rounded operands
    (``params`` are then the rounded copy); the output group's z stays as computed.
    ``dropout``: a training pass's masks (``gpuback.core.dropout``), or None (no dropout:
    evaluation); a group with dropout then keeps h(a) in ``ws.h`` and z = h(a) m / (1 - p).
    """
    if precision != FP32:
        ops.round_to_precision(ws.z[plan.input], precision)
    for g in plan.computed:
        group = plan.groups[g]
        for i, block in enumerate(group.incoming):
            if block.kind == "dense":
                ops.dense_forward(params[block.name], ws.z[block.src], ws.a[g], i > 0)
            elif block.kind == "identity":
                ops.add_into(ws.z[block.src], ws.a[g], i > 0)
            else:
                ops.sparse_forward(params[block.name], indices[block.name], ws.z[block.src],
                                   ws.a[g], i > 0)
        if nudge is not None and nudge[0] == g:
            ws.a[g][nudge[1]] += nudge[2]
        bias, pre_activation = params[g], ws.a[g]
        if group.norm is not None:  # a + b normalised, times the gain, plus the shift, then h
            _, gain, shift = group.parameters
            ops.layer_norm(bias, params[gain], ws.a[g], ws.xhat[g], ws.rstd[g], ws.u[g])
            bias, pre_activation = params[shift], ws.u[g]
        if dropout is not None and group.dropout > 0.0:  # h(a) kept, z masked
            ops.bias_activation_dropout(group.activation, bias, pre_activation, ws.h[g], ws.z[g],
                                        group.dropout, dropout.key(plan, g),
                                        dropout.first_sample)
        else:
            ops.bias_activation(group.activation, bias, pre_activation, ws.z[g])
        if precision != FP32 and g != plan.output:
            ops.round_to_precision(ws.z[g], precision)


def loss_and_output_delta(ops: Backend, plan: Plan, ws: Workspace, targets: Any) -> None:
    """After ``forward``: the per-sample losses and correct predictions into ``ws.losses``
    and ``ws.correct``, the output deltas (5.54) into ``ws.delta``. Nothing is read back."""
    out = plan.output
    ops.loss_and_output_delta(plan.loss, plan.groups[out].activation,
                              activation_input(plan, ws, out), ws.z[out], targets,
                              ws.delta[out], ws.losses, ws.correct)


def activation_input(plan: Plan, ws: Workspace, g: str) -> Any:
    """What group g's activation reads: its pre-activations a, or with layer norm u =
    gain * xhat + shift."""
    return ws.a[g] if plan.groups[g].norm is None else ws.u[g]


def mean_loss(ops: Backend, ws: Workspace) -> float:
    """The mean of the per-sample losses of the last loss op, summed in float64 on the host
    (one device-to-host copy, and so one wait, on the cuda backend)."""
    return float(np.sum(ops.to_host(ws.losses), dtype=np.float64)) / ws.batch


def backward(ops: Backend, plan: Plan, params: dict[str, Any], indices: dict[str, Any],
             ws: Workspace, targets: Any, grads: dict[str, Any],
             precision: int = FP32, loss_scale: Any = None,
             on_group_done: Callable[[str], None] | None = None,
             dropout: DropoutDraw | None = None, sample_weights: Any = None) -> None:
    """Error backpropagation after ``forward``; fills ``grads`` (and the per-sample losses).

    1. Output deltas from the loss (5.54).
    2. ``backpropagate`` from them (5.53-5.56).

    ``sample_weights``: a backend (batch,) buffer of each sample's weight r_n, or None.
    Given, each sample's output deltas and loss are multiplied by r_n right after the loss
    op (``weight_samples``), so the gradient is that of the weighted mean (1/B) sum_n r_n E_n;
    ``gpuback.training.data.SampleWeights`` makes r_n = B w_n / sum_m w_m over a batch, a
    mean weighted by the caller's w_n.
    ``loss_scale``: a backend scaler pair (``gpuback.loss_scale``) or None. Given, the output
    deltas are multiplied by its scale S right after the loss op, before anything reads or
    rounds them, so every delta and gradient is S times the true one (the loss scaled by S);
    the per-sample losses stay unscaled. ``precision``, ``on_group_done``, ``dropout``: as
    for ``backpropagate``.
    """
    loss_and_output_delta(ops, plan, ws, targets)
    if sample_weights is not None:
        ops.weight_samples(ws.delta[plan.output], ws.losses, sample_weights)
    if loss_scale is not None:
        ops.scale_by_loss_scale(ws.delta[plan.output], loss_scale)
    backpropagate(ops, plan, params, indices, ws, grads, precision, on_group_done, dropout)


def backpropagate(ops: Backend, plan: Plan, params: dict[str, Any], indices: dict[str, Any],
                  ws: Workspace, grads: dict[str, Any], precision: int = FP32,
                  on_group_done: Callable[[str], None] | None = None,
                  dropout: DropoutDraw | None = None, output_delta: str = "a",
                  input_delta: Any = None) -> None:
    """Backpropagation from the output group's deltas in ``ws.delta[plan.output]``; fills
    ``grads``.

    ``output_delta``: what the output group's buffer holds on entry: "a", dE/da of its
    activation's input (the loss op's 5.54); "z", dE/dz of its outputs (a caller's
    gradient, as PyTorch's autograd hands one in), which the output activation's derivative
    turns into dE/da first, as for a hidden group (an elementwise activation only).

    1. Groups in reverse topological order: by the time group j is reached, every
       group it feeds has added w_kj delta_k into j's accumulator, so
       delta_j = h'(a_j) * sum_k w_kj delta_k over every consumer k (5.55, 5.56); the
       same op writes the bias gradient dE/db_j = sum over the batch of delta_j. A
       layer-normalised group gets dE/du so (u = gain * xhat + shift, what its activation
       reads, and the shift's gradient), then dE/da through the normalisation, which sums
       over every unit of the group (5.55 inside it), with the gain and bias gradients.
    2. Each incoming block of a group then gets its weight gradient delta_k z_j
       (5.53) and adds its share into its source's accumulator (a sparse block both in
       one op, which a backend may run as one pass over the edges; an identity block has
       no weight and adds delta_k itself, w_kj being 1 for k = j and 0 otherwise).
       The input group's accumulator is ``input_delta`` (an (n_in, batch) buffer: dE/dx,
       the inputs' identity activation having h' = 1), or None: the inputs need no delta.

    ``precision`` below FP32: each group's delta is stored rounded to it once computed
    in float32 (after its bias gradient, which keeps the float32 sums), so the products
    of step 2 read rounded operands.

    ``on_group_done(g)``, given, is called once group g's step 2 is done: the gradients of
    g's bias and of every block into g are then final (``gpuback.distributed.buckets`` starts a
    data-parallel all-reduce on them while backward goes on).

    ``dropout``: the masks of the forward pass, or None; a group with dropout then scales its
    accumulator by the same mask m / (1 - p) before h'(a), read from ``ws.h``.
    """
    if output_delta not in ("a", "z"):
        raise ValueError(f"output_delta: expected 'a' or 'z', got {output_delta!r}")
    out = plan.output
    for g in reversed(plan.computed):
        group = plan.groups[g]
        # the gradient of what is added just before the activation: the bias, or with
        # layer norm the shift
        before_activation = group.parameters[-1]
        if g == out and output_delta == "a":
            ops.bias_grad(ws.delta[g], grads[before_activation])
        elif dropout is not None and group.dropout > 0.0:  # the mask and h'(a)
            ops.dropout_activation_delta(group.activation, activation_input(plan, ws, g),
                                         ws.h[g], ws.delta[g], grads[before_activation],
                                         group.dropout, dropout.key(plan, g),
                                         dropout.first_sample)
        else:
            ops.activation_delta(group.activation, activation_input(plan, ws, g), ws.z[g],
                                 ws.delta[g], grads[before_activation])
        if group.norm is not None:  # dE/du -> dE/da, over every unit of the group
            bias, gain, _ = group.parameters
            ops.layer_norm_backward(params[gain], ws.xhat[g], ws.rstd[g], ws.delta[g],
                                    grads[gain], grads[bias])
        if precision != FP32:
            ops.round_to_precision(ws.delta[g], precision)
        for block in group.incoming:
            acc = input_delta if block.src == plan.input else ws.delta[block.src]
            accumulate = not block.first_into_src_accumulator
            if block.kind == "identity":  # 5.56 with W = I; no weight, no gradient
                if acc is not None:
                    ops.add_into(ws.delta[g], acc, accumulate)
                continue
            w = params[block.name]
            if block.kind == "sparse":
                ops.sparse_block_backward(w, indices[block.name], ws.delta[g], ws.z[block.src],
                                          grads[block.name], acc, accumulate)
                continue
            ops.dense_weight_grad(ws.delta[g], ws.z[block.src], grads[block.name])
            if acc is not None:
                ops.dense_backward(w, ws.delta[g], acc, accumulate)
        if on_group_done is not None:
            on_group_done(g)
