"""Forward passes over a whole data set, batch by batch on the backend: ``predict`` (the
outputs, Bishop 5.48-5.49) and ``evaluate`` (the mean loss and the accuracy), and the
validation sweep of ``fit`` (``evaluate_data``), shared over the ranks of a data-parallel
run."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.checks import check_int
from ..core.engine import Engine
from ..distributed.mpi import SingleProcess
from .data import TrainingData, dataset
from .metrics import Metrics, accuracy_from_count


def predict(net: Engine, X: Any, batch_size: int = 1024) -> np.ndarray:
    """Outputs for every sample of ``X``, computed ``batch_size`` samples at a time on the
    backend and read back once."""
    batch_size = check_int("batch_size", batch_size, 1)
    data = dataset(net, X, None, batch_size)
    ops = net.ops
    out = ops.zeros((data.n, net.plan.n_out), net.dtype)
    data.set_order(np.arange(data.n))
    for start in range(0, data.n, batch_size):
        ws, _ = data.load(start, min(batch_size, data.n - start))
        net.run_forward(ws)
        ops.copy_into(out[start:start + ws.batch], ws.z[net.plan.output].T)
    return ops.to_host(out)


def evaluate(net: Engine, X: Any, T: Any, batch_size: int = 1024) -> dict[str, float | None]:
    """Mean loss and accuracy (None for sum of squares and Poisson) over the whole of ``X``,
    ``T``."""
    batch_size = check_int("batch_size", batch_size, 1)
    loss, accuracy = evaluate_data(net, dataset(net, X, T, batch_size), batch_size,
                                   Metrics(net.ops))
    return {"loss": loss, "accuracy": accuracy}


def evaluate_data(net: Engine, data: TrainingData, batch_size: int, metrics: Metrics,
                  comm: SingleProcess | None = None) -> tuple[float, float | None]:
    """The mean loss and the accuracy (None for sum of squares and Poisson) over ``data``;
    with a ``comm`` of several ranks (``gpuback.distributed``), each sweeps its share of the
    rows and the sums are reduced, so every rank gets the same figures."""
    if comm is None or comm.size == 1:
        _sweep(net, data, batch_size, metrics)
    else:
        _sweep(net, data, batch_size, metrics, comm.share(data.n, 0, data.n))
        comm.allreduce_sum(net.ops, metrics.totals)
    loss, correct = metrics.read()
    return loss / data.n, accuracy_from_count(net.plan.loss, correct, data.n, net.plan.n_out)


def _sweep(net: Engine, data: TrainingData, batch_size: int, metrics: Metrics,
           rows: tuple[int, int] | None = None) -> None:
    """Forward and loss over every batch of ``data`` in order (of its ``rows`` [lo, hi)
    alone, if given), into ``metrics``."""
    ops = net.ops
    lo, hi = (0, data.n) if rows is None else rows
    data.set_order(np.arange(data.n))
    metrics.reset()
    for step, start in enumerate(range(lo, hi, batch_size), start=1):
        ws, targets = data.load(start, min(batch_size, hi - start))
        net.run_forward(ws)
        net.run_loss(ws, targets)
        ops.accumulate_metrics(ws.losses, ws.correct, metrics.totals, metrics.status, step)
