"""The estimators' stochastic solvers train through gpuback's one epoch loop
(``gpuback.training.fit``, with scikit-learn's rules as its callback): the loop's options
they use, the order they draw, the plateau rule they share with ``fit``, and what they keep
of scikit-learn where the loop's own rules differ (no tenfold-loss rule)."""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
from helpers.training_runs import record_orders

pytest.importorskip("sklearn", reason="gpuback.sklearn needs scikit-learn (the sklearn extra)")

import sklearn.neural_network as sk
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import shuffle as sklearn_shuffle

from gpuback.distributed import SingleProcess
from gpuback.sklearn import MLPClassifier, MLPRegressor
from gpuback.training import loop


def blobs(n: int = 120, seed: int = 0, std: float = 1.0):
    return make_blobs(n_samples=n, centers=3, n_features=4, cluster_std=std,
                      random_state=seed)


def regression(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ rng.normal(size=3) + 0.2 * rng.normal(size=n)


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def test_the_estimators_train_through_fit_on_one_process(monkeypatch, quiet) -> None:
    calls: list[dict] = []
    real = loop.fit

    def spy(*args, **kwargs):
        calls.append(inspect.signature(real).bind(*args, **kwargs).arguments)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "fit", spy)
    X, y = blobs()
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=4, batch_size=50, backend="numpy",
                        random_state=0).fit(X, y)
    assert len(calls) == 1
    call = calls[0]
    assert call["net"] is clf.network_ and call["epochs"] == 4 and call["batch_size"] == 50
    assert isinstance(call["seed"], np.random.RandomState)
    assert type(call["comm"]) is SingleProcess and call["progress"] is False
    assert call["divergence_factor"] is None
    clf.partial_fit(X, y)  # one epoch of the same loop
    assert len(calls) == 2 and calls[1]["epochs"] == 1
    # the network counts the epochs it was trained, the estimator's included
    assert clf.network_.epochs_trained == 5


def test_each_epoch_is_in_the_order_scikit_learn_draws(monkeypatch, quiet) -> None:
    """The estimator's random_state draws the initial weights (four uniform draws: 4x4 and
    4 values, 4x3 and 3), then each epoch's order exactly as scikit-learn's MLP does:
    ``sklearn.utils.shuffle`` of the last epoch's order."""
    orders = record_orders(monkeypatch)
    X, y = blobs(n=30)
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, batch_size=8, backend="numpy",
                  random_state=11).fit(X, y)
    theirs = np.random.RandomState(11)
    for size in [(4, 4), 4, (4, 3), 3]:
        theirs.uniform(-1.0, 1.0, size)
    expected, order = [], np.arange(30)
    for _ in range(3):
        order = sklearn_shuffle(order, random_state=theirs)
        expected.append(order)
    assert len(orders) == 3
    for ours, drawn in zip(orders, expected, strict=True):
        np.testing.assert_array_equal(ours, drawn)


def test_a_loss_growing_tenfold_does_not_stop_an_estimator(quiet) -> None:
    """gpuback's fit stops a run whose loss grows tenfold; scikit-learn has no such rule, and
    neither have its estimators here."""
    X, y = regression()
    reg = MLPRegressor(hidden_layer_sizes=(8,), activation="tanh", learning_rate_init=1e3,
                       max_iter=5, tol=0.0, n_iter_no_change=100, backend="numpy",
                       random_state=0).fit(X, y)
    assert reg.n_iter_ == 5 and all(math.isfinite(loss) for loss in reg.loss_curve_)
    assert max(reg.loss_curve_) > 10 * reg.loss_curve_[0]  # what fit's rule would catch


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow on the way to inf
def test_a_step_gone_infinite_is_scikit_learns_value_error() -> None:
    """scikit-learn's epochs go on with NaN weights to ``max_iter`` (its warning), then its
    ValueError, word for word."""
    X, y = regression(n=20)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(7\)"), \
            pytest.raises(ValueError, match=r"^Solver produced non-finite parameter weights\. "
                                            r"The input data may contain large values and "
                                            r"need to be preprocessed\.$"):
        MLPRegressor(hidden_layer_sizes=(4,), activation="identity", batch_size=10,
                     max_iter=7, backend="numpy", random_state=0).fit(X * 1e200, y)


def _stop_of(figures, tol: float, patience: int, higher_is_better: bool) -> int | None:
    """scikit-learn's rule, as its source writes it: the epoch training stops after (None:
    it goes on after the last of ``figures``)."""
    best, count = (-math.inf if higher_is_better else math.inf), 0
    for epoch, value in enumerate(figures, start=1):
        if higher_is_better:
            count = count + 1 if value < best + tol else 0
            best = max(best, value)
        else:
            count = count + 1 if value > best - tol else 0
            best = min(best, value)
        if count > patience:
            return epoch
    return None


@pytest.mark.parametrize("tol", [1e-4, 1e-2])
def test_the_plateau_on_the_loss_is_scikit_learns_rule(tol: float) -> None:
    X, y = blobs()
    clf = MLPClassifier(hidden_layer_sizes=(6,), learning_rate_init=0.05, tol=tol,
                        n_iter_no_change=3, max_iter=300, backend="numpy",
                        random_state=2).fit(X, y)
    assert clf.n_iter_ < 300  # it stopped on a plateau
    assert clf.n_iter_ == _stop_of(clf.loss_curve_, tol, 3, higher_is_better=False)
    assert clf.best_loss_ == min(clf.loss_curve_)


@pytest.mark.parametrize("tol", [1e-4, 2e-2])
def test_the_plateau_on_the_validation_score_is_scikit_learns_rule(tol: float) -> None:
    X, y = blobs(n=200, seed=3, std=3.0)  # overlapping: the scores wander
    clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.05, tol=tol,
                        early_stopping=True, n_iter_no_change=3, max_iter=300,
                        backend="numpy", random_state=7).fit(X, y)
    scores = clf.validation_scores_
    assert clf.n_iter_ < 300
    assert clf.n_iter_ == _stop_of(scores, tol, 3, higher_is_better=True)
    assert clf.best_validation_score_ == max(scores)


def test_partial_fit_carries_the_plateau_count_over_as_scikit_learn_does(capsys) -> None:
    """With tol huge every call after the first counts as no improvement: the call that
    stalls first is the same for scikit-learn's estimator and this one (each prints
    "Stopping." on it)."""
    X, y = blobs()
    kwargs = dict(hidden_layer_sizes=(4,), tol=1e9, n_iter_no_change=2, verbose=True,
                  random_state=0)

    def stalling_calls(estimator) -> list[int]:
        stalled = []
        for call in range(1, 7):
            estimator.partial_fit(X, y, classes=np.unique(y))
            if "Stopping." in capsys.readouterr().out:
                stalled.append(call)
        return stalled

    ours = stalling_calls(MLPClassifier(backend="numpy", **kwargs))
    theirs = stalling_calls(sk.MLPClassifier(**kwargs))
    assert ours == theirs == [4, 5, 6]
