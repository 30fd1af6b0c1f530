"""The one epoch loop: ``fit``, mini-batch gradient descent on any backend, device-resident.

The data set is put on the backend once (``training.data``); each epoch uploads its sample
order (one small copy), and each step gathers its batch on the backend (``take_batch``),
runs forward and backprop (Bishop 5.48-5.56), counts the loss and the correct predictions
into backend accumulators (``accumulate_metrics``), checks the gradients for NaN or
infinity into a backend status flag (``check_finite``), calls the callbacks'
``before_update`` (``training.callbacks``), clips the gradients by their global norm when
asked (``training.clipping``) and applies one fused optimiser update (skipped once the flag
is set). Nothing is read back inside an epoch: the accumulators and the flag
are read at its end (and, when a progress bar is shown, at each of its redraws: at most one
every ``REDRAW_SECONDS``, ``training.progress``). A run whose loss or gradients went
non-finite stops there with ``TrainingDivergedError``, naming the epoch and the first bad
step; the parameters keep the values of the last good step (the failing update was
skipped) and the last good checkpoint stays on disk. A run whose loss explodes while
staying finite (an epoch's mean training loss more than ``divergence_factor`` times the
run's reference, see ``fit``) stops the same way, before that epoch's checkpoint
(``training.stopping``).

fp16 networks train with dynamic loss scaling by default (``gpuback.loss_scale``): the
output deltas are multiplied by a scale S kept on the backend, the gradients unscaled after
backward (``unscale_gradients``), and a step whose unscaled gradients are not finite is
skipped, on the backend, by the optimiser op reading that step's status (S halves; after
2,000 clean steps in a row it doubles). Such a step is not a divergence; a non-finite loss
or float32 master value still is, and so is a scale below ``loss_scale.MIN_SCALE``
(2^-14), read back once per epoch. Nothing of it waits for the host within an epoch.

``Network.fit``, ``gpuback train`` and the ``gpuback.sklearn`` estimators all train
through this loop.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..checkpoint.files import save as save_checkpoint
from ..core import loss_scale as scaling
from ..core.checks import check_int
from ..core.engine import Engine
from ..distributed import mpi as distributed
from ..optim.optimizers import Adam, Optimizer
from . import memory
from .arguments import callback_list, check_fit_arguments, check_history, run_fields
from .callbacks import Callback, EpochFigures
from .clipping import GradientClip, check_clip_grad_norm
from .data import SampleWeights, TrainingData, dataset, sample_weights
from .data_parallel import DataParallel
from .evaluation import evaluate_data
from .metrics import Metrics, accuracy_from_count
from .progress import ProgressBar
from .step import forward_backward
from .stopping import (
    DIVERGENCE_FACTOR,
    DivergenceWatch,
    EarlyStopping,
    Plateau,
    TrainingDivergedError,
)

Seed = int | np.random.RandomState
VALIDATION_BATCH = 256  # the least batch of the validation sweeps (forward only)


def fit(net: Engine, X: Any, T: Any, epochs: int = 10, batch_size: int = 32,
        optimizer: Optimizer | None = None, validation: tuple[Any, Any] | None = None,
        shuffle: bool = True, seed: Seed = 0, early_stopping: int | None = None,
        checkpoint: str | None = None, progress: bool = True,
        on_epoch_end: Callable[[int], None] | None = None, tol: float = 1e-4,
        n_iter_no_change: int | None = None, history: dict[str, list[Any]] | None = None,
        loss_scale: Any = None, comm: distributed.SingleProcess | None = None, *,
        callbacks: Iterable[Callback] = (),
        divergence_factor: float | None = DIVERGENCE_FACTOR,
        clip_grad_norm: float | None = None, sample_weight: Any = None) -> dict[str, list[Any]]:
    """Train ``net`` in place; return the per-epoch history. ``Network.fit`` documents every
    argument; this is the loop behind it (and behind ``gpuback train`` and the
    ``gpuback.sklearn`` estimators)."""
    comm = distributed.world() if comm is None else comm
    if comm.size > 1:
        comm.check_same(run_fields(net, X, T, {
            "epochs": epochs, "batch_size": batch_size, "optimizer": optimizer,
            "validation": validation, "shuffle": shuffle, "seed": seed,
            "early_stopping": early_stopping, "tol": tol, "n_iter_no_change": n_iter_no_change,
            "loss_scale": loss_scale, "divergence_factor": divergence_factor,
            "clip_grad_norm": clip_grad_norm, "sample_weight": sample_weight}))
    history = {} if history is None else history

    def prepare() -> tuple[Plateau, int, Optimizer, TrainingData, TrainingData | None,
                           list[Callback], GradientClip | None, SampleWeights | None]:
        check_fit_arguments(epochs, optimizer, validation, early_stopping, seed,
                            divergence_factor)
        max_norm = check_clip_grad_norm(clip_grad_norm)
        listed = callback_list(callbacks)
        check_history(history)
        plateau = Plateau(tol, n_iter_no_change)
        scaling.resolve(loss_scale, net.precision)  # a bad setting is refused before anything
        batch = check_int("batch_size", batch_size, 1)
        chosen = Adam() if optimizer is None else optimizer
        chosen.check(net)  # its lr_multipliers and freeze name parameters of net
        data = dataset(net, X, T, batch)
        weights = sample_weights(net, sample_weight, data.n)
        val_batch = max(batch, VALIDATION_BATCH)
        val = None if validation is None else dataset(net, *validation, val_batch,
                                                      names=("X_val", "T_val"))
        largest = max(min(batch, data.n), 0 if val is None else min(val_batch, val.n))
        # refused in a line if the run cannot fit (gpuback.memory); then every buffer of
        # the run, allocated before the first step
        memory.check_training(net, largest, chosen)
        net.reserve(largest)
        clip = None if max_norm is None else GradientClip(net, max_norm)
        return plateau, batch, chosen, data, val, listed, clip, weights

    # under MPI, a bad argument or bad data on any rank is raised on every rank
    plateau, batch_size, optimizer, data, val, listed, clip, weights = comm.agree(prepare)
    run = _Run(net, data, batch_size, optimizer, comm, listed,
               scaling.for_fit(net, loss_scale), divergence_factor, val, clip, weights)
    history.update(loss=[], accuracy=[], samples_per_second=[])
    if val is not None:
        history.update(val_loss=[], val_accuracy=[])
    best = None if early_stopping is None else \
        EarlyStopping(early_stopping, net, optimizer, run.scaler)
    bar = ProgressBar.on_terminal(epochs * -(-data.n // batch_size), progress and comm.is_root)
    checkpoint = checkpoint if comm.is_root else None  # rank 0 alone writes it
    order = np.arange(data.n)
    try:
        for _ in range(epochs):
            order = _epoch_order(seed, shuffle, net.epochs_trained, order)
            for callback in listed:
                callback.on_epoch_begin(net.epochs_trained + 1, order)
            figures = run.epoch(order, bar)
            _record(history, figures)
            if val is not None:
                figures = run.validate(figures)
                history["val_loss"].append(figures.val_loss)
                history["val_accuracy"].append(figures.val_accuracy)
            stop = [callback.on_epoch_end(net.epochs_trained, figures)
                    for callback in listed]
            if best is not None and best.stalled(_validation_loss(figures)):
                best.restore()  # the checkpoint is rewritten from the best epoch
                _end_of_epoch(net, optimizer, checkpoint, on_epoch_end)
                break
            _end_of_epoch(net, optimizer, checkpoint, on_epoch_end)
            if plateau.stalled(figures.loss) or any(stop):
                break
    except TrainingDivergedError as exc:
        if run.parallel is not None:  # decided from reduced figures: alike on every rank
            distributed.mark_on_every_rank(exc)
        raise
    finally:
        if bar is not None:
            bar.close()
    return history


class _Run:
    """The training state of one ``fit`` call on ``net``: its data, batch size, optimiser,
    callbacks, accumulators, loss scaler, divergence watch, validation data (or None),
    gradient clipping (or None), the samples' weights in the loss (or None) and, with several
    ranks, its data-parallel step (the parameters first broadcast from rank 0)."""

    def __init__(self, net: Engine, data: TrainingData, batch_size: int, optimizer: Optimizer,
                 comm: distributed.SingleProcess, callbacks: list[Callback],
                 scaler: scaling.LossScaler | None, divergence_factor: float | None,
                 val: TrainingData | None, clip: GradientClip | None = None,
                 weights: SampleWeights | None = None) -> None:
        self.net, self.data, self.batch_size, self.optimizer = net, data, batch_size, optimizer
        self.comm, self.callbacks, self.scaler, self.clip = comm, callbacks, scaler, clip
        self.weights = weights
        self.parallel: DataParallel | None = None
        if comm.size > 1:
            comm.broadcast(net.ops, net.flat_parameters)  # every rank starts from rank 0's
            # bucket_bytes checked alike on every rank
            self.parallel = comm.agree(lambda: DataParallel(net, comm, scaler))
        self.metrics = Metrics(net.ops)
        self.val = val
        self.val_metrics = None if val is None else Metrics(net.ops)
        self.watch = DivergenceWatch(optimizer, untrained=net.epochs_trained == 0,
                                     scaler=scaler, factor=divergence_factor)

    def epoch(self, order: np.ndarray, bar: ProgressBar | None) -> EpochFigures:
        """One epoch of steps over the data in ``order``, checked for divergence and
        counted in ``net.epochs_trained``; its training figures."""
        net, n = self.net, self.data.n
        start = time.perf_counter()
        loss_sum, correct = self._steps(order, bar)
        self.watch.check(net.epochs_trained + 1, loss_sum / n, self.metrics)
        net.epochs_trained += 1
        seconds = time.perf_counter() - start
        plan = net.plan
        return EpochFigures(loss_sum=loss_sum, loss=loss_sum / n, correct=correct,
                            accuracy=accuracy_from_count(plan.loss, correct, n, plan.n_out),
                            samples=n, seconds=seconds)

    def validate(self, figures: EpochFigures) -> EpochFigures:
        """``figures`` with the validation loss and accuracy after the epoch (the job's)."""
        assert self.val is not None and self.val_metrics is not None
        val_loss, val_accuracy = evaluate_data(
            self.net, self.val, max(self.batch_size, VALIDATION_BATCH), self.val_metrics,
            self.comm)
        return dataclasses.replace(figures, val_loss=val_loss, val_accuracy=val_accuracy)

    def _steps(self, order: np.ndarray, bar: ProgressBar | None) -> tuple[float, float]:
        """One pass of mini-batch steps over the data in ``order``; the epoch's loss sum
        and correct count (the job's, with several ranks: every rank walks the same order
        and steps on its share of each global batch, ``DataParallel``). The first step of an
        untrained network also reads its loss back (``watch.first_batch``). With a loss
        scaler the backward pass runs on the scaled loss, the gradients are unscaled and
        checked into the step's own status pair, which the optimiser reads (an overflow
        skips only that step), and the master values are checked after the update. With
        clipping the gradients are clipped after the callbacks' ``before_update``, right
        before the update (after the ranks' sum and the unscaling). Every step trains with
        dropout (``Engine.dropout_draw`` of the step counted over the network's training).
        With sample weights each step's loss is their weighted mean over its batch."""
        net, data, metrics, parallel = self.net, self.data, self.metrics, self.parallel
        batch_size, scaler, weights = self.batch_size, self.scaler, self.weights
        data.set_order(order)
        if weights is not None:
            weights.set_order(order, batch_size)
        metrics.reset()
        if parallel is not None:
            parallel.seen = 0
        # the dropout masks' step: counted from 0 over the network's training, so a resumed
        # run draws the masks of the unbroken one
        steps_before = net.epochs_trained * -(-data.n // batch_size)
        for step, start in enumerate(range(0, data.n, batch_size), start=1):
            global_step = steps_before + step - 1
            if parallel is None:
                ws, targets = data.load(start, min(batch_size, data.n - start))
                step_status = forward_backward(
                    net, ws, targets, metrics, step, scaler, net.dropout_draw(global_step),
                    None if weights is None else weights.at(start, ws.batch))
                batch = ws.batch
            else:
                step_status, batch = parallel.step(data, start, batch_size, metrics, step,
                                                   global_step, weights)
            if self.watch.wants_first_batch:  # an untrained network's first step
                self._read_first_batch(batch)
            for callback in self.callbacks:
                callback.before_update(step, batch)
            if self.clip is not None:  # the update applies to the clipped gradients
                self.clip.apply()
            self.optimizer.step(net, step_status)
            if scaler is not None:  # overflow skipped the step; a non-finite master value is not
                net.check_parameters_finite(metrics.status, step)
            if bar is not None:
                bar.advance(functools.partial(self._running_loss, step))
        if parallel is not None:
            parallel.comm.allreduce_sum(net.ops, metrics.totals)
        return metrics.read()

    def _read_first_batch(self, batch: int) -> None:
        """The mean loss of the run's first batch, before its update: the divergence rule's
        first reference (one read back)."""
        first = self.metrics.read()[0]
        if self.parallel is not None:
            first = self.comm.sum_floats([first])[0]
        self.watch.first_batch = first / batch
        self.watch.wants_first_batch = False

    def _running_loss(self, step: int) -> tuple[int, float]:
        """The epoch under way and its mean loss so far, after ``step`` steps (one read
        back: the progress bar asks for it when it redraws, and only then)."""
        if self.parallel is None:
            seen = min(step * self.batch_size, self.data.n)
        else:  # this rank's rows of the epoch so far
            seen = max(self.parallel.seen, 1)
        return self.net.epochs_trained + 1, self.metrics.read()[0] / seen


def _epoch_order(seed: Seed, shuffle: bool, epochs_trained: int,
                 previous: np.ndarray) -> np.ndarray:
    """The sample order of the epoch after ``epochs_trained`` (``previous``: the last
    epoch's order in this call, the samples in order before the first): with ``shuffle``
    and the ``RandomState`` ``seed``, the last order shuffled by its next
    ``permutation(n)`` (as scikit-learn's MLP draws it, so its estimators see the same
    batches); with an integer seed, a permutation from a generator of its own per (seed,
    epoch number), so a resumed run shuffles as an unbroken one; without ``shuffle``, the
    samples in order."""
    n = previous.shape[0]
    if not shuffle:
        return np.arange(n)
    if isinstance(seed, np.random.RandomState):
        return previous[seed.permutation(n)]
    return np.random.default_rng([seed, epochs_trained]).permutation(n)


def _validation_loss(figures: EpochFigures) -> float:
    assert figures.val_loss is not None  # early stopping needs validation data
    return figures.val_loss


def _record(history: dict[str, list[Any]], figures: EpochFigures) -> None:
    """An epoch's training loss, accuracy and speed into ``history``."""
    history["loss"].append(figures.loss)
    history["accuracy"].append(figures.accuracy)
    history["samples_per_second"].append(figures.samples / figures.seconds)


def _end_of_epoch(net: Engine, optimizer: Optimizer, checkpoint: str | None,
                  on_epoch_end: Callable[[int], None] | None) -> None:
    """The epoch's checkpoint (with the optimiser), then the caller's function."""
    if checkpoint is not None:
        save_checkpoint(net, checkpoint, optimizer)
    if on_epoch_end is not None:
        on_epoch_end(net.epochs_trained)
