"""One training step's passes on a loaded workspace, left on the backend: forward (Bishop
5.48, 5.49), backward (5.54, 5.56, 5.53), the step's loss and correct count counted into
``Metrics`` and the gradients checked for NaN or infinity into its status flag."""

from __future__ import annotations

from typing import Any

from ..core import loss_scale as scaling
from ..core.dropout import DropoutDraw
from ..core.engine import Engine
from ..core.workspace import Workspace
from .metrics import Metrics


def forward_backward(net: Engine, ws: Workspace, targets: Any, metrics: Metrics, step: int,
                     scaler: scaling.LossScaler | None = None,
                     dropout: DropoutDraw | None = None, sample_weights: Any = None) -> Any:
    """One training step's passes on a loaded workspace, left on the backend: forward,
    backward (on the loss scaled by ``scaler``, if given), the step's loss and correct
    count added into ``metrics``, and the gradients checked (unscaled first, with
    ``scaler``). Returns the status pair the optimiser's step is to read: ``metrics.status``
    (set from a non-finite loss or gradient on, skipping every later update), or with
    ``scaler`` the step's own pair (an overflow skips that step alone). ``dropout``: the
    step's masks (``Engine.dropout_draw``), or None. ``sample_weights``: the batch's
    factors of the loss (``SampleWeights.at``), or None."""
    net.run_forward(ws, dropout=dropout)
    net.run_backward(ws, targets, None if scaler is None else scaler.state, dropout=dropout,
                     sample_weights=sample_weights)
    net.ops.accumulate_metrics(ws.losses, ws.correct, metrics.totals, metrics.status, step)
    return checked_gradients(net, metrics, step, scaler)


def checked_gradients(net: Engine, metrics: Metrics, step: int,
                      scaler: scaling.LossScaler | None) -> Any:
    """The step's gradients checked (unscaled first, with ``scaler``); the status pair the
    optimiser's step is to read (see ``forward_backward``)."""
    if scaler is None:
        net.ops.check_finite(net.flat_gradients, metrics.status, step)
        return metrics.status
    return scaler.unscale(net.flat_gradients, metrics.status, step)
