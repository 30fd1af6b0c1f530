"""What ``fit`` tells code of the caller's during a run: ``Callback`` and ``EpochFigures``.

A callback is any object with the three methods of ``Callback`` (subclass it and override
what you need; the defaults do nothing). ``fit(..., callbacks=[...])`` calls them, in the
order given, on every rank of a data-parallel run:

* ``on_epoch_begin(epoch, order)``: before each epoch's first step; ``epoch`` is the number
  it will have in ``net.epochs_trained``, ``order`` the host array of sample positions (rows
  of ``X``) in the order the epoch's steps take them, ``batch_size`` at a time (the same
  on every rank). The ``gpuback.sklearn`` estimators sum each batch's sample weights here.

* ``before_update(step, batch)``: in every step, after its forward and backward passes
  (Bishop 5.48-5.56; the gradients are in ``net.flat_gradients``, the parameters are still
  those the passes used) and before the optimiser's update; ``step`` counts the epoch's
  steps from 1, ``batch`` is the step's (global) batch size. Nothing is read back from the
  backend unless the callback does it: what it computes can stay there. The
  ``gpuback.sklearn`` estimators set ``optimizer.weight_decay = alpha / batch`` here and
  sum their L2 penalty on the device.
* ``on_epoch_end(epoch, figures)``: after every epoch that did not diverge, once it is
  counted in ``net.epochs_trained`` (``epoch``) and its figures (``EpochFigures``) are in
  the history, before early stopping's decision, the epoch's checkpoint and ``fit``'s
  ``on_epoch_end`` function (so what the callback changes, a learning rate, is saved with
  the epoch). Returning True stops training after this epoch (its checkpoint is written);
  every callback is called even when an earlier one returned True.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EpochFigures:
    """What an epoch of ``fit`` measured (the job's figures in a data-parallel run).

    ``loss_sum``: the sum over the epoch's samples of each sample's loss E_n at the
    parameters of its step (E = sum_n E_n, Bishop 5.44); ``loss``: its mean, ``loss_sum /
    samples``; ``correct`` and ``accuracy``: the count of correct predictions and the
    fraction correct (None for sum of squares and Poisson); ``samples``: the epoch's samples;
    ``seconds``: its wall time; ``val_loss``, ``val_accuracy``: the validation figures
    after the epoch (None without validation data).
    """

    loss_sum: float
    loss: float
    correct: float
    accuracy: float | None
    samples: int
    seconds: float
    val_loss: float | None = None
    val_accuracy: float | None = None


class Callback:
    """The callback protocol of ``fit`` (module docstring): every method does nothing here."""

    def on_epoch_begin(self, epoch: int, order: np.ndarray) -> None:
        """Epoch ``epoch`` is about to take the samples in ``order``."""

    def before_update(self, step: int, batch: int) -> None:
        """A step's passes are done and its update comes next."""

    def on_epoch_end(self, epoch: int, figures: EpochFigures) -> bool:
        """Epoch ``epoch`` ended with ``figures``; True stops training after it."""
        return False
