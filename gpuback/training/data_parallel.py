"""One rank's part of a data-parallel training step (``gpuback.distributed``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import loss_scale as scaling
from ..core.engine import Engine
from ..distributed import buckets
from ..distributed.mpi import SingleProcess
from .data import SampleWeights, TrainingData
from .metrics import Metrics
from .step import checked_gradients


class DataParallel:
    """One rank's part of a data-parallel step (``gpuback.distributed``): its ``share`` of
    the global batch through forward and backward, its gradients weighted by its share of
    the batch, then summed over the ranks: the flat gradient buffer in buckets, each
    all-reduce started as soon as backward has finished its gradients
    (``gpuback.distributed.buckets``), all waited for before the gradients are checked.

    The loss op divides the output deltas (5.54) by the batch it sees, n_r rows here, so
    rank r's gradient is the mean over its rows; multiplied by n_r / B (B the global
    batch: the output deltas scaled by it, through the loss-scale op, before backward)
    the sum over the ranks is the gradient of the mean loss over the global batch, the
    single-process one (5.53 summed over the batch, whichever rank holds each sample).
    The status pair (a non-finite loss on any rank) is reduced with MAX before the
    gradients are checked, so every rank takes the same skip and divergence decisions.
    A rank whose share is empty (a global batch smaller than the ranks) adds zeros, in the
    same buckets (the collectives match on every rank)."""

    def __init__(self, net: Engine, comm: SingleProcess,
                 scaler: scaling.LossScaler | None) -> None:
        self.net, self.comm, self.scaler = net, comm, scaler
        cut = buckets.cut_buckets(net.plan, net.layout, np.dtype(net.dtype).itemsize,
                                  comm.bucket_bytes)
        grads = net.flat_gradients
        self.buckets = {g: [grads[lo:hi] for lo, hi in ranges] for g, ranges in cut.items()}
        self.pending: list[Any] = []  # the buckets' all-reduces under way
        self.weight = net.ops.zeros((2,), net.dtype)  # (n_r / B, 0): a loss-scale pair
        self.scaled = None if scaler is None else net.ops.zeros((2,), net.dtype)
        self.current: float | None = None
        self.seen = 0  # this rank's rows of the epoch so far

    def _scale(self, rows: int, batch: int) -> Any:
        """The pair whose first value the output deltas are multiplied by: n_r / B, times
        the loss scale S with ``scaler`` (its state copied, then scaled by n_r / B)."""
        ops, weight = self.net.ops, rows / batch
        if weight != self.current:
            ops.copy_into(self.weight, np.array([weight, 0.0], self.net.dtype))
            self.current = weight
        if self.scaler is None:
            return self.weight
        ops.copy_into(self.scaled, self.scaler.state)
        ops.scale_by_loss_scale(self.scaled, self.weight)
        return self.scaled

    def step(self, data: TrainingData, start: int, batch_size: int, metrics: Metrics,
             step: int, global_step: int = 0,
             weights: SampleWeights | None = None) -> tuple[Any, int]:
        """The global batch at ``start``: this rank's passes, the all-reduce and the check;
        the status pair for the optimiser and the global batch's size. With dropout, the
        rank's rows draw the masks of training step ``global_step`` at their place in the
        global batch: the masks a single process draws for them. ``weights``: the samples'
        weights in the loss (factors of the global batch), or None."""
        net, ops, comm = self.net, self.net.ops, self.comm
        batch = min(batch_size, data.n - start)
        lo, hi = comm.share(data.n, start, batch_size)
        if hi > lo:
            ws, targets = data.load(lo, hi - lo)
            draw = net.dropout_draw(global_step, lo - start)
            net.run_forward(ws, dropout=draw)
            net.run_backward(ws, targets, self._scale(hi - lo, batch), self._group_done, draw,
                             None if weights is None else weights.at(lo, hi - lo))
            ops.accumulate_metrics(ws.losses, ws.correct, metrics.totals, metrics.status, step)
        else:
            ops.fill_zero(net.flat_gradients)
            for group in reversed(net.plan.computed):
                self._group_done(group)
        self.seen += hi - lo
        for pending in self.pending:
            pending.wait()
        self.pending.clear()
        comm.allreduce_max(ops, metrics.status)
        return checked_gradients(net, metrics, step, self.scaler), batch

    def _group_done(self, group: str) -> None:
        """Backward has finished ``group``: the buckets under way driven on, and the one
        that is now complete, if any, started."""
        for pending in self.pending:
            pending.test()
        self.pending.extend(self.comm.start_allreduce_sum(self.net.ops, view)
                            for view in self.buckets[group])
