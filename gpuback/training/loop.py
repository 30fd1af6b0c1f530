"""Training: the fit loop, evaluation and prediction, on any backend, device-resident.

``fit`` runs mini-batch gradient descent. The data set is put on the backend once
(``Dataset``: a user's CuPy arrays are used in place); each epoch uploads its sample
order (one small copy), and each step gathers its batch on the backend
(``take_batch``), runs forward and backprop (Bishop 5.3), counts the loss and the
correct predictions into backend accumulators (``accumulate_metrics``), checks the
gradients for NaN or infinity into a backend status flag (``check_finite``) and
applies one fused optimiser update (skipped once the flag is set). Nothing is read
back inside an epoch: the accumulators and the flag are read at its end (and, when a
progress bar is shown, at each of its redraws: at most one every ``REDRAW_SECONDS``). A
run whose loss or gradients went non-finite stops there with ``TrainingDivergedError``,
naming the epoch and the first bad step; the parameters keep the values of the last good
step (the failing update was skipped) and the last good checkpoint stays on disk. A run
whose loss explodes while staying finite (an epoch's mean training loss more than
``DIVERGENCE_FACTOR`` times the run's reference, see ``fit``) stops the same way, before
that epoch's checkpoint.

fp16 networks train with dynamic loss scaling by default (``gpuback.loss_scale``): the
output deltas are multiplied by a scale S kept on the backend, the gradients unscaled after
backward (``unscale_gradients``), and a step whose unscaled gradients are not finite is
skipped, on the backend, by the optimiser op reading that step's status (S halves; after
2,000 clean steps in a row it doubles). Such a step is not a divergence; a non-finite loss
or float32 master value still is, and so is a scale below ``loss_scale.MIN_SCALE``
(2^-14), read back once per epoch. Nothing of it waits for the host within an epoch.

Data sets larger than the backend's memory budget (``ops.memory_budget()``: half of
the free device memory on a GPU) stay on the host and are streamed batch by batch
through pinned buffers (``StreamedDataset``), the next batch gathered on the host
while the device computes.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..checkpoint.files import save as save_checkpoint
from ..core import loss_scale as scaling
from ..core.checks import check_inputs, check_int, check_targets
from ..distributed import buckets
from ..distributed import mpi as distributed
from ..optim.optimizers import Adam, Optimizer
from . import memory

CLASSIFICATION = ("cross_entropy", "binary_cross_entropy")
REDRAW_SECONDS = 0.1  # least time between progress-bar redraws (each reads the loss back)
progress_clock = time.perf_counter  # the progress bar's clock (a test replaces it)
STATUS_WHAT = {1: "loss", 2: "a gradient"}  # the codes of the status flag (kernels/scalar.py)
# with loss scaling a gradient's overflow skips its step; code 2 then comes from the check
# of the float32 master values after the update
SCALED_GRADIENT_WHAT = "a float32 master value (parameter)"
# An epoch whose mean training loss is more than this many times the run's reference loss
# (see ``fit``) has diverged.
DIVERGENCE_FACTOR = 10


class TrainingDivergedError(RuntimeError):
    """Training diverged: the loss or a gradient became NaN or infinite, or an epoch's mean
    training loss exceeded ``DIVERGENCE_FACTOR`` times the run's reference (see ``fit``).

    ``epoch``: the epoch that diverged, counted as ``Network.epochs_trained`` counts (the
    network holds ``epoch - 1`` trained epochs, all of them checkpointed). ``step``: the
    first non-finite step within it, or None. ``loss``: the epoch's mean training loss, or
    None when a step went non-finite. ``reference``: the loss it was compared with, or None.
    """

    def __init__(self, message: str, epoch: int | None = None, step: int | None = None,
                 loss: float | None = None, reference: float | None = None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.loss, self.reference = epoch, step, loss, reference


def accuracy_from_count(loss: str, correct: float, samples: int, n_out: int) -> float | None:
    """Fraction correct from the count the loss op accumulates (None for sum of squares).

    Cross-entropy: a sample is correct when the arg-max of the outputs is its label (or
    its target row's arg-max). Binary cross-entropy: each of the ``n_out`` outputs
    thresholded at 0.5 against the target at 0.5.
    """
    if loss == "cross_entropy":
        return correct / samples
    if loss == "binary_cross_entropy":
        return correct / (samples * n_out)
    return None


class Dataset:
    """A data set held on the network's backend, batch-major: ``X`` (n, n_in) in the
    network's dtype, and ``T`` (n, n_out) or int64 class labels (n,)."""

    def __init__(self, net: Any, X: Any, T: Any | None = None) -> None:
        self.net, ops = net, net.ops
        self.X = ops.asarray(X, net.dtype)
        self.T = None if T is None else ops.asarray(T, np.int64 if T.ndim == 1 else net.dtype)
        self.n = X.shape[0]
        self.order = ops.zeros((self.n,), np.int64)

    def set_order(self, order: np.ndarray) -> None:
        """The sample order of the next pass (one host-to-device copy)."""
        self.net.ops.copy_into(self.order, order)

    def load(self, start: int, batch: int) -> tuple[Any, Any]:
        """Samples ``order[start:start + batch]`` gathered into the workspace; the workspace
        and its target buffer (None without targets)."""
        net, ops = self.net, self.net.ops
        ws = net.workspace(batch)
        ops.take_batch(self.X, self.order, start, ws.z[net.plan.input])
        if self.T is None:
            return ws, None
        targets = ws.labels if self.T.ndim == 1 else ws.targets
        ops.take_batch(self.T, self.order, start, targets)
        return ws, targets


class StreamedDataset:
    """A data set too large for the backend's memory budget: it stays on the host.

    Each batch is gathered on the host into one of two pinned (page-locked) buffers and
    copied to a device staging buffer asynchronously on the network's stream, so the
    host gathers batch i + 1 while the device computes batch i. Before a pinned buffer
    is refilled the host waits for the copy made from it two batches earlier.
    """

    def __init__(self, net: Any, X: Any, T: Any | None, batch: int) -> None:
        ops = net.ops
        self.net, self.n = net, X.shape[0]
        self.host_X = _to_numpy(ops, X)
        self.host_T = None if T is None else _to_numpy(ops, T)
        dtypes = [net.dtype] + ([] if T is None else
                                [np.int64 if T.ndim == 1 else net.dtype])
        self._pinned = [[ops.pinned_empty((batch, *a.shape[1:]), d)
                         for a, d in zip(self._host_arrays(), dtypes, strict=True)]
                        for _ in range(2)]
        self._staged = [ops.zeros((batch, *a.shape[1:]), d)
                        for a, d in zip(self._host_arrays(), dtypes, strict=True)]
        self._copied: list[Any] = [None, None]
        self._turn = 0
        self._host_order = np.arange(self.n)
        self.order = ops.from_host(np.arange(batch), np.int64)  # staged rows in order
        self.X = self._staged[0]
        self.T = None if T is None else self._staged[1]

    def _host_arrays(self) -> list[np.ndarray]:
        return [self.host_X] + ([] if self.host_T is None else [self.host_T])

    def set_order(self, order: np.ndarray) -> None:
        self._host_order = order

    def load(self, start: int, batch: int) -> tuple[Any, Any]:
        net, ops = self.net, self.net.ops
        rows = self._host_order[start:start + batch]
        pinned = self._pinned[self._turn]
        if self._copied[self._turn] is not None:
            ops.wait_for(self._copied[self._turn])
        staged_views = []
        for host, buf, staged in zip(self._host_arrays(), pinned, self._staged, strict=True):
            np.take(host, rows, axis=0, out=buf[:batch])
            view = staged[:batch]
            ops.copy_into(view, buf[:batch])
            staged_views.append(view)
        self._copied[self._turn] = ops.record_event()
        self._turn = 1 - self._turn
        ws = net.workspace(batch)
        ops.take_batch(staged_views[0], self.order, 0, ws.z[net.plan.input])
        if self.host_T is None:
            return ws, None
        targets = ws.labels if self.host_T.ndim == 1 else ws.targets
        ops.take_batch(staged_views[1], self.order, 0, targets)
        return ws, targets


def dataset(net: Any, X: Any, T: Any | None, batch: int,
            names: tuple[str, str] = ("X", "T")) -> Dataset | StreamedDataset:
    """The data validated (in the network's dtype; ``names``: what messages call X and T),
    then on the backend (a ``Dataset``) when it fits the backend's memory budget, else a
    ``StreamedDataset``."""
    ops, plan = net.ops, net.plan
    X = check_inputs(ops, X, plan.n_in, net.dtype, names[0])
    if T is not None:
        T = check_targets(ops, T, plan.loss, plan.n_out, X.shape[0], net.dtype, names[1])
    itemsize = np.dtype(net.dtype).itemsize
    size = X.size * itemsize + (0 if T is None else T.size * (8 if T.ndim == 1 else itemsize))
    if size <= ops.memory_budget():
        return Dataset(net, X, T)
    return StreamedDataset(net, X, T, min(batch, X.shape[0]))


def _to_numpy(ops: Any, array: Any) -> np.ndarray:
    return ops.to_host(array) if ops.is_device_array(array) else np.asarray(array)


class Metrics:
    """The backend accumulators of a pass: loss sum and correct count (float64) and the
    int64 status pair (first non-finite step, what went non-finite)."""

    def __init__(self, ops: Any) -> None:
        self.ops = ops
        self.totals = ops.zeros((2,), np.float64)
        self.status = ops.zeros((2,), np.int64)

    def reset(self) -> None:
        self.ops.fill_zero(self.totals)

    def read(self) -> tuple[float, float]:
        """The loss sum and correct count so far (one device-to-host copy)."""
        loss, correct = self.ops.to_host(self.totals)
        return float(loss), float(correct)

    def first_bad_step(self) -> tuple[int, str] | None:
        """(step, what) of the first non-finite step, or None (one device-to-host copy)."""
        step, what = (int(v) for v in self.ops.to_host(self.status))
        return (step, STATUS_WHAT.get(what, "a value")) if step else None


def _sweep(net: Any, data: Dataset | StreamedDataset, batch_size: int, metrics: Metrics,
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


def _evaluate_data(net: Any, data: Dataset | StreamedDataset, batch_size: int,
                   metrics: Metrics, comm: Any = None) -> tuple[float, float | None]:
    """The mean loss and the accuracy (None for sum of squares) over ``data``; with a
    ``comm`` of several ranks (``gpuback.distributed``), each sweeps its share of the rows
    and the sums are reduced, so every rank gets the same figures."""
    if comm is None or comm.size == 1:
        _sweep(net, data, batch_size, metrics)
    else:
        _sweep(net, data, batch_size, metrics, comm.share(data.n, 0, data.n))
        comm.allreduce_sum(net.ops, metrics.totals)
    loss, correct = metrics.read()
    return loss / data.n, accuracy_from_count(net.plan.loss, correct, data.n, net.plan.n_out)


def predict(net: Any, X: Any, batch_size: int = 1024) -> np.ndarray:
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


def evaluate(net: Any, X: Any, T: Any, batch_size: int = 1024) -> dict[str, float | None]:
    """Mean loss and accuracy (None for sum of squares) over the whole of ``X``, ``T``."""
    batch_size = check_int("batch_size", batch_size, 1)
    loss, accuracy = _evaluate_data(net, dataset(net, X, T, batch_size), batch_size,
                                    Metrics(net.ops))
    return {"loss": loss, "accuracy": accuracy}


def fit(net: Any, X: Any, T: Any, epochs: int = 10, batch_size: int = 32,
        optimizer: Optimizer | None = None, validation: tuple[Any, Any] | None = None,
        shuffle: bool = True, seed: int = 0, early_stopping: int | None = None,
        checkpoint: str | None = None, progress: bool = True,
        on_epoch_end: Callable[[int], None] | None = None, tol: float = 1e-4,
        n_iter_no_change: int | None = None,
        history: dict[str, list] | None = None,
        loss_scale: Any = None, comm: Any = None) -> dict[str, list[float]]:
    """Train ``net`` in place; return the per-epoch history (see ``Network.fit``).

    Plateau stop (off unless ``n_iter_no_change`` is given), scikit-learn's MLP rule: an
    epoch whose mean training loss is above ``best - tol``, ``best`` being the lowest mean
    training loss of this call so far, counts as no improvement (any other resets the
    count); once more than ``n_iter_no_change`` such epochs come in a row, training stops,
    with the parameters of the last epoch (early stopping, by contrast, goes back to the
    best one). On a flat loss it stops after ``n_iter_no_change + 2`` epochs.

    Divergence raises ``TrainingDivergedError`` in two ways. A step whose loss or gradient
    is NaN or infinite: its update is skipped, the parameters are those before it. An
    epoch whose mean training loss is NaN or infinite, or more than ``DIVERGENCE_FACTOR``
    (10) times the run's reference: for the first epoch of an untrained network
    (``epochs_trained`` 0), the mean loss of its first batch, taken before any update (one
    read back); for every later epoch of this call, its first epoch's mean loss; the
    parameters are then those after that epoch. Either way the epoch is not
    counted in ``net.epochs_trained`` and its checkpoint is not written: the checkpoint on
    disk holds the last good epoch. ``on_epoch_end``: called with ``net.epochs_trained``
    after every epoch, once its checkpoint (if any) is written. ``history``: an empty dict
    that the per-epoch figures are written into as each epoch ends (and that is returned),
    so a caller keeps the figures of the epochs a run completed when it is interrupted
    (``gpuback train``'s ``history.jsonl``); a new dict by default.

    ``loss_scale`` (``gpuback.loss_scale``): None, the default, scales an fp16 network's
    loss dynamically (going on with the scale it has from an earlier ``fit`` or its
    checkpoint, else from 2^16) and no other; False turns scaling off, True on (from
    2^16), a positive number on from that initial scale, a ``LossScale`` sets the growth
    interval too; an explicit setting restarts the scale. With scaling, a step whose
    unscaled gradients overflow is skipped (its optimiser op changes nothing; the
    optimiser's host step count, and so Adam's bias correction and the schedule, still
    advances: unlike PyTorch's GradScaler, which does not call ``step``) and is not a
    divergence; the float32 master values are checked after every update instead, and an
    epoch that ends with the scale below ``MIN_SCALE`` (2^-14) raises
    ``TrainingDivergedError``.

    ``comm`` (``gpuback.distributed``): the world of a data-parallel run; None, the
    default, is ``distributed.world()``, so a script started by ``mpiexec -n N`` trains
    data-parallel as it is, and a plain run as it always has. With N ranks every rank
    passes the same arguments and data (checked at the start: a difference raises
    ``ValueError`` on every rank, as does a bad argument or bad data on any one of them),
    ``batch_size`` is the global batch, each rank steps on its contiguous share of it
    (``training.DataParallel``), the parameters start as rank 0's, every figure of the
    history and every decision (early stopping, plateau, divergence) is the job's, and
    rank 0 alone writes ``checkpoint`` and shows a progress bar; ``on_epoch_end`` is called
    on every rank.
    """
    comm = distributed.world() if comm is None else comm
    if comm.size > 1:
        comm.check_same(_run_fields(net, X, T, epochs, batch_size, optimizer, validation,
                                    shuffle, seed, early_stopping, tol, n_iter_no_change,
                                    loss_scale))
    history = {} if history is None else history

    def prepare() -> tuple[_Plateau, int, Optimizer, Dataset | StreamedDataset, int,
                           Dataset | StreamedDataset | None]:
        _check_fit_arguments(epochs, optimizer, validation, early_stopping)
        if not isinstance(history, dict):
            raise TypeError(f"history: expected an empty dict to record into, got "
                            f"{history!r}")
        if history:
            raise ValueError(f"history: expected an empty dict to record into, got "
                             f"{history!r}")
        plateau = _Plateau(tol, n_iter_no_change)
        scaling.resolve(loss_scale, net.precision)  # a bad setting is refused before anything
        batch = check_int("batch_size", batch_size, 1)
        chosen = Adam() if optimizer is None else optimizer
        chosen.check(net)  # its lr_multipliers and freeze name parameters of net
        data = dataset(net, X, T, batch)
        val_batch = max(batch, 256)
        val = None if validation is None else dataset(net, *validation, val_batch,
                                                      names=("X_val", "T_val"))
        largest = max(min(batch, data.n), 0 if val is None else min(val_batch, val.n))
        # refused in a line if the run cannot fit (gpuback.memory); then every buffer of
        # the run, allocated before the first step
        memory.check_training(net, largest, chosen)
        net.reserve(largest)
        return plateau, batch, chosen, data, val_batch, val

    # under MPI, a bad argument or bad data on any rank is raised on every rank
    plateau, batch_size, optimizer, data, val_batch, val = comm.agree(prepare)
    scaler = scaling.for_fit(net, loss_scale)
    parallel = None
    if comm.size > 1:
        comm.broadcast(net.ops, net.flat_parameters)  # every rank starts from rank 0's
        parallel = comm.agree(lambda: DataParallel(net, comm, scaler))  # bucket_bytes checked
    metrics = Metrics(net.ops)
    val_metrics = None if val is None else Metrics(net.ops)
    history.update(loss=[], accuracy=[], samples_per_second=[])
    if val is not None:
        history.update(val_loss=[], val_accuracy=[])
    watch = _DivergenceWatch(optimizer, untrained=net.epochs_trained == 0, scaler=scaler)
    best, waited = np.inf, 0
    best_epoch: tuple[dict[str, np.ndarray], int, dict[str, Any], Any] | None = None
    bar = ProgressBar.on_terminal(epochs * -(-data.n // batch_size), progress and comm.is_root)
    checkpoint = checkpoint if comm.is_root else None  # rank 0 alone writes it
    try:
        for _ in range(epochs):
            start_time = time.perf_counter()
            rng = np.random.default_rng([seed, net.epochs_trained]) if shuffle else None
            loss_sum, correct = _train_epoch(net, data, batch_size, optimizer, metrics, rng,
                                             bar, watch, scaler, parallel)
            watch.check(net.epochs_trained + 1, loss_sum / data.n, metrics)
            net.epochs_trained += 1
            _record(history, net, data.n, loss_sum, correct, time.perf_counter() - start_time)
            val_loss = np.inf
            if val is not None and val_metrics is not None:
                val_loss, val_accuracy = _evaluate_data(net, val, val_batch, val_metrics,
                                                        comm)
                history["val_loss"].append(val_loss)
                history["val_accuracy"].append(val_accuracy)
            if early_stopping is not None:  # (validation is required with it)
                if best_epoch is None or val_loss < best:
                    best, waited = val_loss, 0
                    best_epoch = (net.parameters(), net.epochs_trained, optimizer.state_dict(),
                                  None if scaler is None else scaler.state_dict())
                else:
                    waited += 1
                if waited >= early_stopping:
                    # back to the best epoch, whole: weights, epoch count, optimiser state
                    # and loss scale, and the checkpoint rewritten from them, so disk and
                    # memory agree
                    assert best_epoch is not None  # set by the first epoch
                    params, net.epochs_trained, state, scale_state = best_epoch
                    net.set_parameters(params)
                    optimizer.load_state_dict(state, net)
                    if scaler is not None and scale_state is not None:
                        scaler.load_state_dict(scale_state)
                    _end_of_epoch(net, optimizer, checkpoint, on_epoch_end)
                    break
            _end_of_epoch(net, optimizer, checkpoint, on_epoch_end)
            if plateau.stalled(history["loss"][-1]):
                break
    except TrainingDivergedError as exc:
        if parallel is not None:  # decided from reduced figures: alike on every rank
            distributed.mark_on_every_rank(exc)
        raise
    finally:
        if bar is not None:
            bar.close()
    return history


def _run_fields(net: Any, X: Any, T: Any, epochs: Any, batch_size: Any, optimizer: Any,
                validation: Any, shuffle: Any, seed: Any, early_stopping: Any, tol: Any,
                n_iter_no_change: Any, loss_scale: Any) -> dict[str, Any]:
    """What every rank of a data-parallel ``fit`` must pass alike (``check_same``)."""
    fields = {"spec": net.spec, "dtype": net.dtype, "precision": net.precision,
              "epochs_trained": net.epochs_trained, "X shape": np.shape(X),
              "T shape": np.shape(T), "batch_size": batch_size, "epochs": epochs,
              "seed": seed, "shuffle": shuffle, "early_stopping": early_stopping,
              "tol": tol, "n_iter_no_change": n_iter_no_change, "loss_scale": repr(loss_scale)}
    if validation is not None and isinstance(validation, (tuple, list)) and len(validation) == 2:
        fields.update({"X_val shape": np.shape(validation[0]),
                       "T_val shape": np.shape(validation[1])})
    if isinstance(optimizer, Optimizer):
        try:
            config: Any = optimizer.config()
        except TypeError:  # a schedule that cannot be saved: compared by its repr
            config = repr(optimizer.schedule)
        fields.update(optimizer=type(optimizer).__name__, optimizer_config=config,
                      optimizer_steps=optimizer.steps)
    return fields


def _check_fit_arguments(epochs: int, optimizer: Any, validation: Any,
                         early_stopping: Any) -> None:
    """The arguments of ``fit`` other than the data, checked before anything runs."""
    check_int("epochs", epochs, 1)
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected a gpuback.optim optimiser, got {optimizer!r}")
    if early_stopping is not None and (isinstance(early_stopping, bool) or
                                       not isinstance(early_stopping, int) or early_stopping < 1):
        raise ValueError(f"early_stopping: expected a positive integer (epochs of patience) "
                         f"or None, got {early_stopping!r}")
    if early_stopping is not None and validation is None:
        raise ValueError("early_stopping: needs validation data to watch")
    if validation is not None and (not isinstance(validation, (tuple, list))
                                   or len(validation) != 2):
        raise TypeError("validation: expected a pair (X_val, T_val)")


class _Plateau:
    """The plateau rule on the training loss (see ``fit``): counts the epochs in a row whose
    mean training loss is above the best so far less ``tol``."""

    def __init__(self, tol: Any, n_iter_no_change: Any) -> None:
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or \
                not math.isfinite(tol) or tol < 0:
            raise ValueError(f"tol: expected a finite number >= 0, got {tol!r}")
        if n_iter_no_change is not None:
            n_iter_no_change = check_int("n_iter_no_change", n_iter_no_change, 1)
        self.tol, self.patience = float(tol), n_iter_no_change
        self.best, self.count = math.inf, 0

    def stalled(self, loss: float) -> bool:
        """Count the epoch whose mean training loss is ``loss``; whether training stops."""
        if self.patience is None:
            return False
        self.count = self.count + 1 if loss > self.best - self.tol else 0
        self.best = min(self.best, loss)
        return self.count > self.patience


class _DivergenceWatch:
    """The references of the divergence rule (see ``fit``): the mean loss of the run's
    first batch, before any update, and the mean training loss of its first epoch."""

    def __init__(self, optimizer: Optimizer, untrained: bool,
                 scaler: scaling.LossScaler | None = None) -> None:
        self.optimizer, self.scaler = optimizer, scaler
        # only an untrained network's first batch is a reference: a trained one's batches
        # can differ tenfold in loss without anything going wrong
        self.wants_first_batch = untrained
        self.first_batch: float | None = None
        self.first_epoch: float | None = None

    def check(self, epoch: int, loss: float, metrics: Metrics) -> None:
        """Raise ``TrainingDivergedError`` if epoch ``epoch``, whose mean training loss is
        ``loss``, diverged; else remember its loss when it is the run's first."""
        lr = f"lower the learning rate ({self.optimizer.current_lr():g})"
        bad = metrics.first_bad_step()
        if bad is not None:
            step, what = bad
            if self.scaler is not None and what == STATUS_WHAT[2]:
                raise TrainingDivergedError(
                    f"training diverged: {SCALED_GRADIENT_WHAT} is NaN or infinite after "
                    f"the update of epoch {epoch}, step {step}; {lr}", epoch, step)
            raise TrainingDivergedError(
                f"training diverged: {what} is NaN or infinite at epoch {epoch}, step "
                f"{step}; the parameters are those before that step; {lr}", epoch, step)
        if self.scaler is not None:
            scale, _ = self.scaler.read()
            if not scale >= scaling.MIN_SCALE:
                raise TrainingDivergedError(
                    f"training diverged: the loss scale fell to {scale:g} by the end of "
                    f"epoch {epoch}, below {scaling.MIN_SCALE:g} (2^-14): the gradients "
                    f"overflow at every scale; the epoch was not saved; {lr}", epoch)
        if self.first_epoch is None:
            reference, against = self.first_batch, "the loss of its first batch"
        else:
            reference, against = self.first_epoch, "the first epoch's"
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"training diverged: the mean training loss of epoch {epoch} is {loss}; the "
                f"epoch was not saved; {lr}", epoch, None, loss, reference)
        if reference is not None and math.isfinite(reference) and \
                loss > DIVERGENCE_FACTOR * reference:
            raise TrainingDivergedError(
                f"training diverged: the mean training loss of epoch {epoch}, {loss:.4g}, is "
                f"more than {DIVERGENCE_FACTOR}x {against} in this run ({reference:.4g}); "
                f"the epoch was not saved; {lr}", epoch, None, loss, reference)
        if self.first_epoch is None:
            self.first_epoch = loss


def forward_backward(net: Any, ws: Any, targets: Any, metrics: Metrics, step: int,
                     scaler: scaling.LossScaler | None = None) -> Any:
    """One training step's passes on a loaded workspace, left on the backend: forward,
    backward (on the loss scaled by ``scaler``, if given), the step's loss and correct
    count added into ``metrics``, and the gradients checked (unscaled first, with
    ``scaler``). Returns the status pair the optimiser's step is to read: ``metrics.status``
    (set from a non-finite loss or gradient on, skipping every later update), or with
    ``scaler`` the step's own pair (an overflow skips that step alone)."""
    net.run_forward(ws)
    net.run_backward(ws, targets, None if scaler is None else scaler.state)
    net.ops.accumulate_metrics(ws.losses, ws.correct, metrics.totals, metrics.status, step)
    return _checked_gradients(net, metrics, step, scaler)


def _checked_gradients(net: Any, metrics: Metrics, step: int,
                       scaler: scaling.LossScaler | None) -> Any:
    """The step's gradients checked (unscaled first, with ``scaler``); the status pair the
    optimiser's step is to read (see ``forward_backward``)."""
    if scaler is None:
        net.ops.check_finite(net.flat_gradients, metrics.status, step)
        return metrics.status
    return scaler.unscale(net.flat_gradients, metrics.status, step)


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

    def __init__(self, net: Any, comm: Any, scaler: scaling.LossScaler | None) -> None:
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

    def step(self, data: Dataset | StreamedDataset, start: int, batch_size: int,
             metrics: Metrics, step: int) -> tuple[Any, int]:
        """The global batch at ``start``: this rank's passes, the all-reduce and the check;
        the status pair for the optimiser and the global batch's size."""
        net, ops, comm = self.net, self.net.ops, self.comm
        batch = min(batch_size, data.n - start)
        lo, hi = comm.share(data.n, start, batch_size)
        if hi > lo:
            ws, targets = data.load(lo, hi - lo)
            net.run_forward(ws)
            net.run_backward(ws, targets, self._scale(hi - lo, batch), self._group_done)
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
        return _checked_gradients(net, metrics, step, self.scaler), batch

    def _group_done(self, group: str) -> None:
        """Backward has finished ``group``: the buckets under way driven on, and the one
        that is now complete, if any, started."""
        for pending in self.pending:
            pending.test()
        self.pending.extend(self.comm.start_allreduce_sum(self.net.ops, view)
                            for view in self.buckets[group])


def _train_epoch(net: Any, data: Dataset | StreamedDataset, batch_size: int,
                 optimizer: Optimizer, metrics: Metrics, rng: np.random.Generator | None,
                 bar: Any, watch: _DivergenceWatch,
                 scaler: scaling.LossScaler | None = None,
                 parallel: DataParallel | None = None) -> tuple[float, float]:
    """One pass of mini-batch steps over ``data``, in the order ``rng`` shuffles (one
    generator per (seed, epoch number): a resumed run shuffles as an unbroken one); the
    epoch's loss sum and correct count. The first step of a run also reads its loss back
    (``watch.first_batch``). With ``scaler`` the backward pass runs on the scaled loss, the
    gradients are unscaled and checked into the step's own status pair, which the optimiser
    reads (an overflow skips only that step), and the master values are checked after.
    With ``parallel`` every rank walks the same order and steps on its share of each global
    batch (``DataParallel``); the loss sum and correct count returned are the job's."""
    data.set_order(rng.permutation(data.n) if rng is not None else np.arange(data.n))
    metrics.reset()
    if parallel is not None:
        parallel.seen = 0
    for step, start in enumerate(range(0, data.n, batch_size), start=1):
        if parallel is None:
            ws, targets = data.load(start, min(batch_size, data.n - start))
            step_status = forward_backward(net, ws, targets, metrics, step, scaler)
            batch = ws.batch
        else:
            step_status, batch = parallel.step(data, start, batch_size, metrics, step)
        if watch.wants_first_batch:  # an untrained network's first step, before its update
            first = metrics.read()[0]
            if parallel is not None:
                first = parallel.comm.sum_floats([first])[0]
            watch.first_batch = first / batch
            watch.wants_first_batch = False
        optimizer.step(net, step_status)
        if scaler is not None:  # overflow skipped the step; a non-finite master value is not
            net.check_parameters_finite(metrics.status, step)
        if bar is not None:
            bar.advance(lambda step=step: (net.epochs_trained + 1,
                                           metrics.read()[0] / _seen(parallel, step,
                                                                     batch_size, data.n)))
    if parallel is not None:
        parallel.comm.allreduce_sum(net.ops, metrics.totals)
    return metrics.read()


def _seen(parallel: DataParallel | None, step: int, batch_size: int, n: int) -> int:
    """The rows of the epoch this rank has stepped on after ``step`` steps (at least 1)."""
    return min(step * batch_size, n) if parallel is None else max(parallel.seen, 1)


def _record(history: dict[str, list], net: Any, n: int, loss_sum: float, correct: float,
            seconds: float) -> None:
    """An epoch's training loss, accuracy and speed into ``history``."""
    plan = net.plan
    history["loss"].append(loss_sum / n)
    history["accuracy"].append(accuracy_from_count(plan.loss, correct, n, plan.n_out))
    history["samples_per_second"].append(n / seconds)


def _end_of_epoch(net: Any, optimizer: Optimizer, checkpoint: str | None,
                  on_epoch_end: Callable[[int], None] | None) -> None:
    """The epoch's checkpoint (with the optimiser), then the user's callback."""
    if checkpoint is not None:
        save_checkpoint(net, checkpoint, optimizer)
    if on_epoch_end is not None:
        on_epoch_end(net.epochs_trained)


class ProgressBar:
    """A tqdm bar of the run's steps, redrawn at most once every ``REDRAW_SECONDS`` (a
    redraw per step costs a third of a small network's throughput on a terminal; so does
    one per epoch, when epochs take milliseconds). Each redraw shows the epoch and its
    running mean loss, read back from the backend then, and only then."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.pending = 0
        self.last = progress_clock()

    @classmethod
    def on_terminal(cls, total: int, wanted: bool) -> ProgressBar | None:
        """A bar on stderr; None when not wanted, stderr is not a terminal, or tqdm is
        missing."""
        if not wanted or not sys.stderr.isatty():
            return None
        try:
            from tqdm.std import tqdm  # (tqdm.auto: 20 ms more import, for notebooks)
        except ImportError:
            return None
        # mininterval 0: tqdm draws when told to; the redraws are timed here
        return cls(tqdm(total=total, unit="step", leave=False, mininterval=0, miniters=1))

    def advance(self, status: Callable[[], tuple[int, float]]) -> None:
        """One step done; redraw if ``REDRAW_SECONDS`` have passed since the last redraw
        (``status()``: the epoch and its running mean loss, called only then)."""
        self.pending += 1
        now = progress_clock()
        if now - self.last < REDRAW_SECONDS:
            return
        epoch, loss = status()
        self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", refresh=False)
        self.bar.update(self.pending)
        self.pending, self.last = 0, now

    def close(self) -> None:
        self.bar.close()
