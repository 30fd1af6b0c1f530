"""scikit-learn's rules for its stochastic solvers (``sgd``, ``adam``), as a callback of
gpuback's one epoch loop (``gpuback.training.fit``): what scikit-learn's
``_fit_stochastic`` does around each step and each epoch, exactly as its
``_multilayer_perceptron.py`` does it (1.9)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..network import Network
from ..optim.optimizers import SGD, Adam, Optimizer
from ..training.callbacks import Callback, EpochFigures
from ..training.data import batch_sums
from ..training.stopping import Plateau


class StochasticEstimator(Protocol):
    """What the rules read and write on the estimator (``gpuback.sklearn.base.BaseMLP``):
    its parameters, its network and its fitted attributes."""

    alpha: float
    epsilon: float
    solver: str
    learning_rate: str
    learning_rate_init: float
    power_t: float
    tol: float
    n_iter_no_change: Any
    max_iter: int
    verbose: Any
    network_: Network
    n_iter_: int
    t_: int
    loss_: float
    loss_curve_: list[float]
    best_loss_: float | None
    validation_scores_: list[float] | None
    best_validation_score_: float | None


class ScikitLearnEpochs(Callback):
    """scikit-learn's training rules on gpuback's loop, for the estimator ``est``.

    Each step: ``alpha``'s L2 penalty ``0.5 * alpha * |W|^2 / batch`` (Bishop 5.112) enters
    the weights' gradient as ``alpha * W / batch``: the optimiser's coupled ``weight_decay``
    set to ``alpha / batch`` (the last, smaller batch included); ``|W|^2`` at the step's
    weights is summed on the device, for ``loss_``. With ``sample_weight`` (of the training
    samples; the loop weights each batch's loss, ``Network.fit``) the batch's sum of weights
    replaces ``batch`` (summed from the epoch's order, ``batch_size`` at a time). Each epoch:
    ``loss_`` (the mean of the batch losses, gpuback's divided by ``loss_scale``, with their
    penalties), ``t_``, ``loss_curve_``; the plateau rule (``gpuback.training.Plateau``, its
    state ``plateau`` carried over by warm starts and ``partial_fit``) on the training loss,
    or with ``validation`` ``(X_val, y_val, weights or None)`` on the validation score
    (``score_outputs``, weighted; higher is better: the rule watches its negation), keeping
    the best epoch's parameters
    (``best_parameters``); the invscaling and adaptive learning rates of ``sgd`` (set by
    ``SGD.set_lr_keeping_steps``: scikit-learn's velocity holds steps); for ``adam``, its
    ``epsilon`` added to sqrt(v) (the optimiser's ``eps`` set each step to the value that
    does this in gpuback's form); the verbose lines. ``on_epoch_end`` returns True when
    scikit-learn stops; ``ran_out`` tells whether the last epoch ran out ``max_iter``
    (scikit-learn's ``ConvergenceWarning``).
    """

    def __init__(self, est: StochasticEstimator, optimizer: Optimizer, plateau: Plateau,
                 validation: tuple[Any, Any, Any] | None, incremental: bool, loss_scale: int,
                 score_outputs: Callable[[Any, Any, Any], float],
                 sample_weight: np.ndarray | None = None, batch_size: int = 1) -> None:
        self.est, self.optimizer, self.plateau = est, optimizer, plateau
        self.validation, self.incremental = validation, incremental
        self.loss_scale, self.score_outputs = loss_scale, score_outputs
        self.sample_weight, self.batch_size = sample_weight, batch_size
        self.totals: np.ndarray | None = None  # each batch's sum of sample weights
        self.best_parameters: dict[str, Any] | None = None  # of the best validation score
        self.alpha = float(est.alpha)
        self.epsilon = float(est.epsilon)
        net = est.network_
        views = net.layout.views(net.flat_parameters)
        # every weight block as a flat view of the parameter buffer (backend arrays: the
        # penalty is summed where the weights live)
        self.weights = [views[block.name].reshape(-1) for block in net.plan.blocks]
        self.xp = net.ops.array_namespace(net.flat_parameters)
        self.n_outputs = net.plan.n_out
        self.penalty: Any = 0.0  # sum over the epoch's steps of |W|^2, on the device
        self.ran_out = False
        self.diverged = False  # a step went NaN or infinite: the weights are NaN from there
        self.best_diverged = False  # the best validation score was of NaN weights

    def on_epoch_begin(self, epoch: int, order: np.ndarray) -> None:
        if self.sample_weight is not None:
            self.totals = batch_sums(self.sample_weight[order], self.batch_size)

    def before_update(self, step: int, batch: int) -> None:
        # the batch's sum of sample weights: the penalty's and its gradient's divisor
        total = float(batch) if self.totals is None else float(self.totals[step - 1])
        if self.alpha > 0.0 and total > 0.0:
            squares: Any = 0.0
            for w in self.weights:
                # on the device; not a BLAS dot: a multithreaded one (OpenBLAS's ddot)
                # leaves BLAS threads spinning on the cores the cpu backend's products share
                squares = squares + (w * w).sum()
            # the batch's share of loss_: its size times its penalty over its weights' sum
            self.penalty = self.penalty + (squares if total == batch else
                                           squares * (batch / total))
        # scikit-learn's alpha W / batch on the weights' gradient: coupled L2 decay (a batch
        # of zero weights adds nothing)
        optimizer = self.optimizer
        optimizer.weight_decay = self.alpha / total if total > 0.0 else 0.0
        if isinstance(optimizer, Adam):
            # scikit-learn adds epsilon to sqrt(v), gpuback to sqrt(v_hat) = sqrt(v / c2),
            # c2 = 1 - beta_2^t: epsilon / sqrt(c2) in gpuback's is epsilon in its
            t = optimizer.steps + 1
            optimizer.eps = self.epsilon / math.sqrt(1.0 - optimizer.betas[1] ** t)

    def on_epoch_end(self, epoch: int, figures: EpochFigures) -> bool:
        est = self.est
        est.n_iter_ += 1
        # scikit-learn's loss_: the mean over the epoch of each batch's mean loss plus its
        # penalty 0.5 alpha |W|^2 / batch, weighted by the batch's size
        est.loss_ = (figures.loss_sum / self.loss_scale +
                     0.5 * self.alpha * float(self.penalty)) / figures.samples
        self.penalty = 0.0
        est.t_ += figures.samples
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        stalled = self._stalled()
        if isinstance(self.optimizer, SGD) and est.learning_rate == "invscaling":
            self.optimizer.set_lr_keeping_steps(
                float(est.learning_rate_init) / (est.t_ + 1) ** float(est.power_t))
        stop = False
        if stalled:
            what = "Validation score" if self.validation is not None else "Training loss"
            stop = self._trigger_stopping(
                f"{what} did not improve more than tol={est.tol:f} for "
                f"{est.n_iter_no_change} consecutive epochs.")
            if not stop:
                self.plateau.count = 0
        self.ran_out = not stop and not self.incremental and est.n_iter_ == est.max_iter
        return stop

    def _stalled(self) -> bool:
        """scikit-learn's rule: an epoch counts as no improvement when its validation score
        is below the best + tol (early stopping) or its training loss above the best - tol;
        whether more than ``n_iter_no_change`` epochs in a row did."""
        est, plateau = self.est, self.plateau
        if self.validation is None:
            stalled = plateau.stalled(est.loss_)
            est.best_loss_ = plateau.best
            return stalled
        X_val, y_val, weight_val = self.validation
        outputs = np.full((X_val.shape[0], self.n_outputs), np.nan) if self.diverged \
            else est.network_.predict(X_val)
        score = self.score_outputs(outputs, y_val, weight_val)
        assert est.validation_scores_ is not None
        est.validation_scores_.append(score)
        if est.verbose:
            print(f"Validation score: {score:f}")
        improved = -score < plateau.best
        stalled = plateau.stalled(-score)  # higher is better: the rule watches -score
        if improved:
            est.best_validation_score_ = score
            self.best_diverged = self.diverged
            self.best_parameters = None if self.diverged else est.network_.parameters()
        return stalled

    def _trigger_stopping(self, msg: str) -> bool:
        """scikit-learn's ``trigger_stopping``: stop, or for sgd with an adaptive learning
        rate divide it by 5 and go on until it is 1e-6 or less."""
        est, optimizer = self.est, self.optimizer
        if not isinstance(optimizer, SGD) or est.learning_rate != "adaptive":
            if est.verbose:
                print(msg + " Stopping.")
            return True
        if optimizer.lr <= 1e-6:
            if est.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        optimizer.set_lr_keeping_steps(optimizer.lr / 5.0)
        if est.verbose:
            print(msg + f" Setting learning rate to {optimizer.lr:f}")
        return False

    def go_on_diverged(self, epochs: int, samples: int) -> None:
        """What scikit-learn does once a step went NaN or infinite (gpuback's loop stops
        there with ``TrainingDivergedError``): its epochs go on with NaN weights, each with a
        NaN loss over ``samples`` and the validation score of NaN outputs, under the same
        rules, until they stop or ``epochs`` (those left, the diverging one included) ran."""
        self.diverged = True
        for _ in range(epochs):
            nan = float("nan")
            figures = EpochFigures(loss_sum=nan, loss=nan, correct=nan, accuracy=None,
                                   samples=samples, seconds=0.0)
            if self.on_epoch_end(self.est.n_iter_, figures):
                break
