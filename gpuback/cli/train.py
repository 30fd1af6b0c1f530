"""``gpuback train``: train an MLP (or, with ``--spec FILE.json``, any network a spec
describes), keep its checkpoint in ``OUT/model``, the run's options saved in it (its
metadata, so they always go with those weights), its curve in ``OUT/curve.png`` and one
line per epoch in ``OUT/history.jsonl`` (``gpuback.cli.history``).

A checkpoint in ``OUT/model`` is never replaced without ``--overwrite``; ``--resume``
continues it (the network and optimiser from the checkpoint, the other options from
checkpoint's metadata unless given) up to ``--epochs`` epochs in all, bitwise as an
unbroken run.
A run that diverges (``gpuback.training.fit``) stops with the last good epoch on disk,
and Ctrl-C says which epoch the checkpoint holds.

This module is the command and the run that trains and saves; its options are declared
in ``gpuback.cli.train_options``, checked and turned into a network, an optimiser and
data in ``gpuback.cli.train_setup`` (with ``gpuback.cli.run_settings`` and
``gpuback.cli.run_data``, which ``predict`` and ``evaluate`` share).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..diagnostics.plots import describe_network, plot_history
from ..distributed import mpi as distributed
from ..network import Network
from ..optim import optimizers as optim
from ..training.stopping import TrainingDivergedError
from . import history as run_history
from .failures import InterruptedRunError, RunFailedError
from .run_data import RunData
from .run_settings import RUN_METADATA, recorded_options
from .signals import stop_reason
from .train_options import add_train_options
from .train_setup import prepare

_clock = time.perf_counter  # the train summary's clock (a test replaces it)


def add_train_parser(train: argparse.ArgumentParser) -> None:
    add_train_options(train)
    train.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    # under mpiexec every rank prepares the run; a failure on any is raised on every rank
    prepared = distributed.world().agree(lambda: prepare(args))
    if prepared is None:
        return 0
    model, replacing, (net, optimizer, data, opts) = prepared
    run = _TrainRun(model, opts, net, optimizer, resumed=args.resume, replacing=replacing)
    return run.train(data, progress=not args.no_progress,
                     summary=args.emit if args.json else None)


def _loss_scale(net: Network) -> float | None:
    """The fp16 dynamic loss scale the network ended with (``gpuback.loss_scale``), or
    None when it has none (every other precision)."""
    return None if net.loss_scaler is None else net.loss_scaler.read()[0]


def _precision(net: Network) -> str:
    """``", precision bf16"`` for a mixed-precision network, else nothing."""
    return "" if net.precision == "fp32" else f", precision {net.precision}"


class _TrainRun:
    """One ``gpuback train`` run, which saves its own checkpoints (fit's ``on_epoch_end``)
    and so knows what is on disk: ``saved``, the epoch count of the last checkpoint this
    run completed (at the start a resumed run's, None for a new run); ``saving`` while one
    is being written. Each checkpoint carries the run's options as its metadata."""

    def __init__(self, model: Path, opts: dict[str, Any], net: Network,
                 optimizer: optim.Optimizer, resumed: bool, replacing: bool) -> None:
        self.model, self.opts = model, opts
        self.net, self.optimizer = net, optimizer
        self.replacing = replacing
        self.saved: int | None = net.epochs_trained if resumed else None
        self.saving = self.training = False
        self.history: dict[str, list[Any]] = {}  # fit records each epoch into it as it ends
        self.world = distributed.world()

    def train(self, data: RunData, progress: bool,
              summary: Callable[[Any], None] | None) -> int:
        """Train up to ``--epochs``, print the summary (``summary``: given with --json, it
        receives the summary as a JSON document); the exit code."""
        net, opts, split = self.net, self.opts, data.split
        held = f" / {len(data.validation[1])} validation" if data.watched == "validation" else ""
        print(f"gpuback train: {data.source}, {len(split.y_train)} train{held} / "
              f"{len(split.y_test)} test samples; network {self._network()}; backend "
              f"{net.backend}, {net.dtype}{_precision(net)}; {opts['optimizer']} lr "
              f"{opts['lr']}")
        first_epoch = net.epochs_trained + 1
        try:
            start = _clock()
            self.training = True
            history = net.fit(split.X_train, split.y_train, epochs=opts["epochs"] -
                              net.epochs_trained, batch_size=opts["batch_size"],
                              optimizer=self.optimizer, validation=data.validation,
                              seed=opts["seed"], early_stopping=opts["early_stopping"],
                              progress=progress, on_epoch_end=self.save,
                              history=self.history, clip_grad_norm=opts["clip_grad_norm"])
            self.training = False
            if self.world.is_root:  # under MPI rank 0 alone evaluates, prints and writes
                self._summary(data, history, first_epoch, _clock() - start, summary)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (cli_common.Terminated)
            how, code = stop_reason(exc)
            message = self._interrupted(how)
            self._history_after_failure(first_epoch, len(split.y_train))
            raise InterruptedRunError(message, code) from None
        except TrainingDivergedError as exc:
            self._history_after_failure(first_epoch, len(split.y_train))
            raise _alike(TrainingDivergedError(f"{exc}; {self._kept()}"), exc) from None
        except (RuntimeError, OSError) as exc:  # the backend or the system failed the run
            self._history_after_failure(first_epoch, len(split.y_train))
            raise _alike(RunFailedError(f"{exc}; {self._kept()}"), exc) from None
        return 0

    def _network(self) -> str:
        """The network, for the run's first line: an MLP's sizes, activation and density;
        a spec's file name and wiring (``gpuback.diagnostics.plots.describe_network``)."""
        net, opts = self.net, self.opts
        if opts.get("spec"):
            wiring = describe_network(net).rsplit(", ", 1)[0]  # less its backend and dtype
            return f"{Path(opts['spec']).name}: {wiring}, {net.plan.loss}"
        sizes = [net.plan.n_in, *opts["hidden"], net.plan.n_out]
        density = "" if opts["density"] == 1 else f", density {opts['density']}"
        return (f"{'-'.join(map(str, sizes))} ({opts['activation']}{density}, "
                f"{opts['loss']})")

    @property
    def history_path(self) -> Path:
        """``OUT/history.jsonl``, beside the curve."""
        return self.model.parent / run_history.FILE_NAME

    def _history_after_failure(self, first_epoch: int, samples: int) -> None:
        """After a run stopped early (Ctrl-C, a signal, divergence, a failed save): the
        history file made to cover the epochs the checkpoint holds, with the figures
        ``fit`` recorded for this run's epochs up to the checkpoint's. Left alone when
        this run has not written the checkpoint on disk (a new run's earlier one stays,
        with its history). Best effort: the failure being reported is the one that
        matters."""
        if self.saved is None or not self.world.is_root:
            return
        done = [r for r in run_history.records(self.history, first_epoch, samples)
                if r["epoch"] <= self.saved] if self.history.get("loss") else []
        with contextlib.suppress(OSError):
            run_history.update(self.history_path, first_epoch, done, through=self.saved)

    def save(self, epochs_trained: int) -> None:
        """After each epoch: its checkpoint, with the run's options."""
        if not self.world.is_root:  # under MPI rank 0 alone writes
            self.saved = epochs_trained
            return
        self.saving = True
        try:
            self.net.save(str(self.model), self.optimizer,
                          {RUN_METADATA: recorded_options(self.opts)})
        except MemoryError:
            raise
        except Exception as exc:  # whatever the writer raises (a full disk)
            reason = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise RunFailedError(f"could not save epoch {epochs_trained} to {self.model}: "
                                 f"{reason}; {self._kept()}") from None
        self.saved, self.saving = epochs_trained, False

    def _summary(self, data: RunData, history: dict[str, list[Any]], first_epoch: int,
                 seconds: float, summary: Callable[[Any], None] | None) -> None:
        net, split = self.net, data.split
        result = net.evaluate(split.X_test, split.y_test)
        ran = len(history["loss"])
        samples = ran * len(split.y_train)  # per second: over the whole run
        last_run = first_epoch + ran - 1
        epochs = f"epochs {first_epoch}-{last_run}" if first_epoch > 1 else f"epochs {last_run}"
        stopped = net.epochs_trained < last_run  # early stopping went back to the best epoch
        best = f"; the best, epoch {net.epochs_trained}, kept" if stopped else ""
        accuracy = "" if result["accuracy"] is None else \
            f", test accuracy {result['accuracy']:.4f}"
        print(f"{epochs}{best}: train loss {history['loss'][-1]:.4f}, test loss "
              f"{result['loss']:.4f}{accuracy} ({seconds:.1f} s, "
              f"{samples / max(seconds, 1e-9):.0f} samples/s)")
        print(f"model saved to {self.model}")
        history_file = run_history.update(
            self.history_path, first_epoch,
            run_history.records(history, first_epoch, len(split.y_train)),
            through=net.epochs_trained)
        print(f"history saved to {history_file}")
        curve = _plot(history, self.model.parent / "curve.png",
                      describe_network(net, self.optimizer), first_epoch, data.watched)
        print(f"curve saved to {curve}" if curve else
              "curve not drawn: matplotlib is not installed (pip install 'gpuback[plot]')")
        if summary is not None:
            summary({"test_accuracy": result["accuracy"], "test_loss": result["loss"],
                     "train_loss": history["loss"][-1], "epochs": ran,
                     "epochs_trained": net.epochs_trained, "stopped_early": stopped,
                     "seconds": round(seconds, 3),
                     "samples_per_second": round(samples / max(seconds, 1e-9), 1),
                     "backend": net.backend, "dtype": net.dtype,
                     "precision": net.precision, "loss_scale": _loss_scale(net),
                     "loss": net.plan.loss,
                     "model": str(self.model), "history": str(history_file),
                     "curve": None if curve is None else str(curve)})

    def _kept(self) -> str:
        """What the checkpoint on disk holds."""
        if self.saved is not None:
            return f"the checkpoint in {self.model} holds epoch {self.saved}"
        if self.replacing:
            return f"no checkpoint was written yet by this run; {self.model} holds the earlier one"
        return "no checkpoint was written yet"

    def _interrupted(self, how: str) -> str:
        """The message for Ctrl-C: the epoch it stopped (the first one the disk does not
        hold: whatever was done after the last completed save belongs to it) and what the
        checkpoint holds."""
        if self.saving:  # a checkpoint was being written: did it get there?
            self.saving = False
            if self._on_disk_is_current():
                self.saved = self.net.epochs_trained
        if not self.training:
            return f"{how} after training; {self._kept()}"
        return f"{how} at epoch {(self.saved or 0) + 1}; {self._kept()}"

    def _on_disk_is_current(self) -> bool:
        """Whether the checkpoint on disk is the network in memory (its save completed)."""
        try:
            saved = Network.load(str(self.model), backend="numpy")  # values only
        except Exception:  # no checkpoint, or the earlier one unreadable
            return False
        ours = self.net.parameters()
        return saved.epochs_trained == self.net.epochs_trained and all(
            np.array_equal(v, ours[k]) for k, v in saved.parameters().items())


def _alike(new: BaseException, old: BaseException) -> BaseException:
    """``new``, raised for ``old``, marked as raised on every rank when ``old`` was
    (``gpuback.distributed``)."""
    return distributed.mark_on_every_rank(new) if distributed.on_every_rank(old) else new


def _plot(history: dict[str, list[Any]], path: Path, title: str, first_epoch: int,
          watched: str) -> Path | None:
    """The run's curve (``gpuback.diagnostics.plots``); None without matplotlib."""
    try:
        return plot_history(history, path, title, first_epoch=first_epoch,
                            validation_name=watched)
    except ImportError:
        return None
