"""When training stops early (``gpuback.training.stopping``): the one plateau rule, for a
figure that falls (a loss) and, negated, for one that rises (a score), and the divergence
factor, which ``divergence_factor=None`` switches off."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gpuback
from gpuback import training
from gpuback.optim import optimizers as optim


def _lower_is_better(losses, tol: float, patience: int) -> tuple[int, float]:
    """scikit-learn's rule for the training loss (``_update_no_improvement_count``), as
    its source writes it: the epochs run before the stop, and the best loss."""
    best, count = math.inf, 0
    for epoch, loss in enumerate(losses, start=1):
        count = count + 1 if loss > best - tol else 0
        if loss < best:
            best = loss
        if count > patience:
            return epoch, best
    return len(losses), best


def _higher_is_better(scores, tol: float, patience: int) -> tuple[int, float]:
    """scikit-learn's rule for the validation score (early stopping), as its source writes
    it: the epochs run before the stop, and the best score."""
    best, count = -math.inf, 0
    for epoch, score in enumerate(scores, start=1):
        count = count + 1 if score < best + tol else 0
        if score > best:
            best = score
        if count > patience:
            return epoch, best
    return len(scores), best


def _run(plateau: training.Plateau, figures) -> int:
    for epoch, figure in enumerate(figures, start=1):
        if plateau.stalled(figure):
            return epoch
    return len(figures)


# sequences with ties, exact edges (best - tol) and plateaus: values on a grid of 1/8, so the
# differences are exact in binary
SEQUENCES = [np.random.default_rng(seed).integers(0, 12, size=30) / 8 for seed in range(40)]


@pytest.mark.parametrize("tol", [0.0, 0.125, 0.25])
@pytest.mark.parametrize("patience", [1, 2, 4])
def test_the_plateau_rule_is_scikit_learns_for_a_loss(tol: float, patience: int) -> None:
    for losses in SEQUENCES:
        plateau = training.Plateau(tol, patience)
        stopped = _run(plateau, list(losses))
        assert (stopped, plateau.best) == _lower_is_better(list(losses), tol, patience)


@pytest.mark.parametrize("tol", [0.0, 0.125, 0.25])
@pytest.mark.parametrize("patience", [1, 2, 4])
def test_the_plateau_rule_negated_is_scikit_learns_for_a_score(tol: float,
                                                               patience: int) -> None:
    for scores in SEQUENCES:
        plateau = training.Plateau(tol, patience)
        stopped = _run(plateau, [-s for s in scores])
        assert (stopped, -plateau.best) == _higher_is_better(list(scores), tol, patience)


def test_the_plateau_rule_counts_epochs_in_a_row() -> None:
    plateau = training.Plateau(tol=0.1, n_iter_no_change=2)
    # 1.0 (best 1.0), 0.95 (above 0.9: 1; best 0.95), 0.5 (not above 0.85: reset; best
    # 0.5), 0.45 (1), 0.42 (2), 0.41 (3, more than 2: stop)
    assert [plateau.stalled(x) for x in (1.0, 0.95, 0.5, 0.45, 0.42, 0.41)] == \
        [False, False, False, False, False, True]
    # a figure exactly at best - tol is an improvement, as in scikit-learn
    at_the_edge = training.Plateau(tol=0.25, n_iter_no_change=1)
    assert [at_the_edge.stalled(x) for x in (1.0, 0.75, 0.5, 0.25)] == [False] * 4


def test_without_patience_the_rule_never_stops_but_keeps_the_best() -> None:
    plateau = training.Plateau(tol=1.0, n_iter_no_change=None)
    assert not any(plateau.stalled(x) for x in (3.0, 3.0, 2.5, 3.0, 3.0, 3.0, 3.0))
    assert plateau.best == 2.5 and plateau.count == 6


def test_the_rules_state_carries_over() -> None:
    """A warm start goes on from the state an earlier run left: the same decisions as one
    unbroken run."""
    figures = [1.0, 0.9, 0.95, 0.97, 0.99, 0.98]
    whole = training.Plateau(0.05, 2)
    unbroken = [whole.stalled(x) for x in figures]
    first = training.Plateau(0.05, 2)
    decisions = [first.stalled(x) for x in figures[:3]]
    second = training.Plateau(0.05, 2, best=first.best, count=first.count)
    decisions += [second.stalled(x) for x in figures[3:]]
    assert decisions == unbroken == [False] * 4 + [True, True]


# --- the divergence factor ------------------------------------------------------------------


def _exploding_problem() -> tuple[np.ndarray, np.ndarray, gpuback.Network]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 6))
    y = (X[:, 0] - 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    net = gpuback.Network(gpuback.mlp_spec([6, 12, 3], activation="tanh"), backend="numpy")
    return X, y, net


def _exploding_run(**kwargs) -> tuple[gpuback.Network, dict]:
    """Adam at lr 1e6: the loss explodes at once but stays finite (tanh saturates)."""
    X, y, net = _exploding_problem()
    history = net.fit(X, y, epochs=3, batch_size=16, optimizer=optim.Adam(lr=1e6), seed=5,
                      progress=False, **kwargs)
    return net, history


def test_divergence_factor_none_switches_the_factor_rule_off() -> None:
    with pytest.raises(gpuback.TrainingDivergedError, match=r"more than 10x"):
        _exploding_run()
    net, history = _exploding_run(divergence_factor=None)
    assert net.epochs_trained == 3 and len(history["loss"]) == 3
    assert all(math.isfinite(loss) for loss in history["loss"])
    # what the rule would have caught: the first epoch's loss against its first batch's
    X, y, fresh = _exploding_problem()
    first = np.random.default_rng([5, 0]).permutation(len(X))[:16]
    assert history["loss"][0] > 10 * fresh.loss_and_grads(X[first], y[first])[0]


def test_divergence_factor_sets_the_rules_factor() -> None:
    _, history = _exploding_run(divergence_factor=None)
    # the premise: every epoch's loss far below 1e12 times the first batch's (about 1)
    assert max(history["loss"]) < 1e9
    net, _ = _exploding_run(divergence_factor=1e12)  # a factor no epoch reaches
    assert net.epochs_trained == 3
    with pytest.raises(gpuback.TrainingDivergedError, match=r"more than 1\.5x"):
        _exploding_run(divergence_factor=1.5)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow on the way to inf
def test_a_non_finite_step_raises_without_the_factor_rule() -> None:
    X = np.random.default_rng(0).normal(size=(10, 4))
    net = gpuback.Network(gpuback.mlp_spec([4, 2], activation="identity",
                                           loss="sum_of_squares"), backend="numpy")
    with pytest.raises(gpuback.TrainingDivergedError,
                       match=r"^training diverged: loss is NaN or infinite at epoch 1, "
                             r"step 2;") as info:
        net.fit(X, np.ones((10, 2)), epochs=1, batch_size=4, optimizer=optim.SGD(lr=1e300),
                progress=False, divergence_factor=None)
    assert (info.value.epoch, info.value.step, info.value.what) == (1, 2, "loss")


@pytest.mark.parametrize(("factor", "error"), [(1.0, ValueError), (0.5, ValueError),
                                               (float("nan"), ValueError),
                                               (float("inf"), ValueError),
                                               ("10", TypeError), (True, TypeError)])
def test_bad_divergence_factors_are_refused(factor, error) -> None:
    X = np.random.default_rng(0).normal(size=(8, 4))
    net = gpuback.Network(gpuback.mlp_spec([4, 2], loss="sum_of_squares"), backend="numpy")
    with pytest.raises(error, match=r"^divergence_factor: "):
        net.fit(X, np.ones((8, 2)), epochs=1, progress=False, divergence_factor=factor)
    assert net.epochs_trained == 0


class _Optimizer:
    def current_lr(self) -> float:
        return 0.25


class _Metrics:
    def __init__(self, bad=None) -> None:
        self.bad = bad

    def first_bad_step(self):
        return self.bad


class _Scaler:
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def read(self) -> tuple[float, int]:
        return self.scale, 0


def _watch(scaler=None, factor=10.0) -> training.stopping.DivergenceWatch:
    return training.stopping.DivergenceWatch(_Optimizer(), untrained=True, scaler=scaler,
                                             factor=factor)


def _diverged(watch, epoch: int, loss: float, bad=None) -> gpuback.TrainingDivergedError:
    with pytest.raises(gpuback.TrainingDivergedError) as info:
        watch.check(epoch, loss, _Metrics(bad))
    assert info.value.epoch == epoch
    assert "lower the learning rate (0.25)" in str(info.value)
    return info.value


GRADIENT = training.stopping.STATUS_WHAT[training.stopping.GRADIENT_NOT_FINITE]


@pytest.mark.parametrize("what", ["loss", GRADIENT])
def test_a_bad_step_without_loss_scaling_names_what_went_bad(what: str) -> None:
    error = _diverged(_watch(), 3, 0.5, bad=(7, what))
    assert (error.step, error.what, error.loss, error.reference) == (7, what, None, None)
    assert str(error).startswith(f"training diverged: {what} is NaN or infinite at epoch 3, "
                                 "step 7; the parameters are those before that step")


def test_a_bad_gradient_under_loss_scaling_is_a_master_value() -> None:
    """Under fp16 loss scaling a scaled gradient's overflow is skipped, not a divergence: a
    non-finite gradient after unscaling means a float32 master value went bad."""
    error = _diverged(_watch(_Scaler(1024.0)), 2, 0.5, bad=(4, GRADIENT))
    assert (error.step, error.what) == (4, training.stopping.SCALED_GRADIENT_WHAT)
    assert "after the update of epoch 2, step 4" in str(error)
    loss_error = _diverged(_watch(_Scaler(1024.0)), 2, 0.5, bad=(4, "loss"))
    assert (loss_error.step, loss_error.what) == (4, "loss")


def test_a_loss_scale_below_the_floor_diverges_and_one_at_it_does_not() -> None:
    floor = gpuback.core.loss_scale.MIN_SCALE
    error = _diverged(_watch(_Scaler(floor / 2)), 5, 0.5)
    assert (error.step, error.loss, error.what) == (None, None, None)
    assert f"the loss scale fell to {floor / 2:g} by the end of epoch 5" in str(error)
    _diverged(_watch(_Scaler(float("nan"))), 5, 0.5)
    _watch(_Scaler(floor)).check(5, 0.5, _Metrics())


@pytest.mark.parametrize("loss", [math.inf, math.nan])
def test_a_non_finite_epoch_loss_diverges_even_without_the_factor(loss: float) -> None:
    watch = _watch(factor=None)
    watch.check(1, 2.0, _Metrics())
    error = _diverged(watch, 2, loss)
    assert (error.step, error.what, error.reference) == (None, "loss", 2.0)
    assert error.loss is loss or (math.isnan(error.loss) and math.isnan(loss))


def test_the_factor_rule_compares_with_the_first_batch_then_the_first_epoch() -> None:
    watch = _watch(factor=10.0)
    assert watch.wants_first_batch
    watch.first_batch = 1.0
    error = _diverged(watch, 1, 10.5)
    assert (error.loss, error.reference, error.what, error.step) == (10.5, 1.0, None, None)
    assert "its first batch" in str(error) and "(1)" in str(error)
    watch.check(1, 10.0, _Metrics())  # exactly the factor is not a divergence
    assert watch.first_epoch == 10.0
    watch.check(2, 100.0, _Metrics())  # now the first epoch is the reference
    error = _diverged(watch, 3, 100.5)
    assert (error.loss, error.reference) == (100.5, 10.0)
    assert "the first epoch's" in str(error)
    assert not _watch(factor=None).wants_first_batch
    assert not training.stopping.DivergenceWatch(_Optimizer(), untrained=False).wants_first_batch


def test_without_a_reference_the_factor_rule_waits() -> None:
    watch = _watch(factor=10.0)
    watch.check(1, 1e30, _Metrics())  # no first batch: nothing to compare with
    assert watch.first_epoch == 1e30
    watch.first_epoch = math.inf
    watch.check(2, 1e300, _Metrics())  # an infinite reference is no reference
