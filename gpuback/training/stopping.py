"""When training stops early: the one plateau rule (``Plateau``), the divergence rule
(``DivergenceWatch``, raising ``TrainingDivergedError``) and early stopping on the
validation loss (``EarlyStopping``, which goes back to the best epoch).

``Plateau`` is scikit-learn's MLP rule, used by ``fit`` (``n_iter_no_change``, ``tol``,
on the mean training loss) and by the ``gpuback.sklearn`` estimators (on their loss with
the L2 penalty, or on their validation score, negated: the rule watches a figure for which
lower is better).
"""

from __future__ import annotations

import math
from typing import Any

from ..core import loss_scale as scaling
from ..core.checks import check_int, is_real
from ..core.engine import Engine
from ..kernels.scalar import GRADIENT_NOT_FINITE
from ..optim.optimizers import Optimizer
from .metrics import STATUS_WHAT, Metrics

# An epoch whose mean training loss is more than this many times the run's reference loss
# (see ``fit``) has diverged.
DIVERGENCE_FACTOR = 10
# with loss scaling a gradient's overflow skips its step; code 2 then comes from the check
# of the float32 master values after the update
SCALED_GRADIENT_WHAT = "a float32 master value (parameter)"


class TrainingDivergedError(RuntimeError):
    """Training diverged: the loss or a gradient became NaN or infinite, or an epoch's mean
    training loss exceeded ``DIVERGENCE_FACTOR`` times the run's reference (see ``fit``).

    ``epoch``: the epoch that diverged, counted as ``Network.epochs_trained`` counts (the
    network holds ``epoch - 1`` trained epochs, all of them checkpointed). ``step``: the
    first non-finite step within it, or None. ``loss``: the epoch's mean training loss, or
    None when a step went non-finite. ``reference``: the loss it was compared with, or None.
    ``what``: what went NaN or infinite at ``step`` ("loss", "a gradient", ...), or None.
    """

    def __init__(self, message: str, epoch: int | None = None, step: int | None = None,
                 loss: float | None = None, reference: float | None = None,
                 what: str | None = None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.loss, self.reference = epoch, step, loss, reference
        self.what = what


class Plateau:
    """The plateau rule, scikit-learn's MLP one: an epoch whose figure (lower is better) is
    above ``best - tol``, ``best`` being the lowest figure so far, counts as no improvement;
    any other resets the count. Once more than ``n_iter_no_change`` such epochs come in a
    row the run has stalled (None: never). On a flat figure it stalls after
    ``n_iter_no_change + 2`` epochs. A figure exactly at ``best - tol`` is an improvement.

    ``best`` and ``count`` are the rule's state, given to carry it over from an earlier run
    (a scikit-learn ``warm_start`` or ``partial_fit``); ``count`` may be set back to 0 by a
    caller that goes on after a stall (scikit-learn's adaptive learning rate).
    """

    def __init__(self, tol: Any, n_iter_no_change: Any, *, best: float = math.inf,
                 count: int = 0) -> None:
        if not (is_real(tol) and tol >= 0):
            raise ValueError(f"tol: expected a finite number >= 0, got {tol!r}")
        if n_iter_no_change is not None:
            n_iter_no_change = check_int("n_iter_no_change", n_iter_no_change, 1)
        self.tol, self.patience = float(tol), n_iter_no_change
        self.best, self.count = best, count

    def stalled(self, figure: float) -> bool:
        """Count the epoch whose figure is ``figure``; whether training stops."""
        self.count = self.count + 1 if figure > self.best - self.tol else 0
        if figure < self.best:
            self.best = figure
        return self.patience is not None and self.count > self.patience


class DivergenceWatch:
    """The divergence rule of ``fit``: a step whose loss or gradient went NaN or infinite,
    an epoch's mean training loss NaN or infinite, an fp16 loss scale fallen below
    ``loss_scale.MIN_SCALE``, or (unless ``factor`` is None) an epoch's mean training loss
    more than ``factor`` times the run's reference: the mean loss of the run's first batch,
    before any update (an untrained network's first epoch), else the mean training loss of
    the run's first epoch."""

    def __init__(self, optimizer: Optimizer, untrained: bool,
                 scaler: scaling.LossScaler | None = None,
                 factor: float | None = DIVERGENCE_FACTOR) -> None:
        self.optimizer, self.scaler, self.factor = optimizer, scaler, factor
        # only an untrained network's first batch is a reference: a trained one's batches
        # can differ tenfold in loss without anything going wrong
        self.wants_first_batch = untrained and factor is not None
        self.first_batch: float | None = None
        self.first_epoch: float | None = None

    def check(self, epoch: int, loss: float, metrics: Metrics) -> None:
        """Raise ``TrainingDivergedError`` if epoch ``epoch``, whose mean training loss is
        ``loss``, diverged; else remember its loss when it is the run's first."""
        lr = f"lower the learning rate ({self.optimizer.current_lr():g})"
        bad = metrics.first_bad_step()
        if bad is not None:
            step, what = bad
            if self.scaler is not None and what == STATUS_WHAT[GRADIENT_NOT_FINITE]:
                raise TrainingDivergedError(
                    f"training diverged: {SCALED_GRADIENT_WHAT} is NaN or infinite after "
                    f"the update of epoch {epoch}, step {step}; {lr}", epoch, step,
                    what=SCALED_GRADIENT_WHAT)
            raise TrainingDivergedError(
                f"training diverged: {what} is NaN or infinite at epoch {epoch}, step "
                f"{step}; the parameters are those before that step; {lr}", epoch, step,
                what=what)
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
                f"epoch was not saved; {lr}", epoch, None, loss, reference, what="loss")
        if self.factor is not None and reference is not None and math.isfinite(reference) \
                and loss > self.factor * reference:
            raise TrainingDivergedError(
                f"training diverged: the mean training loss of epoch {epoch}, {loss:.4g}, is "
                f"more than {self.factor:g}x {against} in this run ({reference:.4g}); "
                f"the epoch was not saved; {lr}", epoch, None, loss, reference)
        if self.first_epoch is None:
            self.first_epoch = loss


class EarlyStopping:
    """``fit``'s early stopping: after ``patience`` epochs in a row without a strictly lower
    validation loss than the best so far, training stops and the network goes back to the
    best epoch, whole: its weights, ``epochs_trained``, the optimiser's state and the loss
    scale (so the checkpoint rewritten from it, the model in memory and a resumed run agree).
    """

    def __init__(self, patience: int, net: Engine, optimizer: Optimizer,
                 scaler: scaling.LossScaler | None) -> None:
        self.patience, self.net, self.optimizer, self.scaler = patience, net, optimizer, scaler
        self.best, self.waited = math.inf, 0
        self.best_epoch: tuple[dict[str, Any], int, dict[str, Any], Any] | None = None

    def stalled(self, val_loss: float) -> bool:
        """Count the epoch whose validation loss is ``val_loss`` (keeping the network's
        state when it is the best yet); whether training stops."""
        net = self.net
        if self.best_epoch is None or val_loss < self.best:
            self.best, self.waited = val_loss, 0
            self.best_epoch = (net.parameters(), net.epochs_trained,
                               self.optimizer.state_dict(),
                               None if self.scaler is None else self.scaler.state_dict())
        else:
            self.waited += 1
        return self.waited >= self.patience

    def restore(self) -> None:
        """The network, the optimiser and the loss scale back to the best epoch."""
        assert self.best_epoch is not None  # set by the first epoch
        params, self.net.epochs_trained, state, scale_state = self.best_epoch
        self.net.set_parameters(params)
        self.optimizer.load_state_dict(state, self.net)
        if self.scaler is not None and scale_state is not None:
            self.scaler.load_state_dict(scale_state)
