"""The same model as scikit-learn's: from the same arguments and ``random_state``, gpuback's
estimators draw the same initial weights, see the same batches and take the same steps as
``sklearn.neural_network``'s, so the fitted attributes agree with scikit-learn's own to
rounding: 1e-10 on the numpy backend in float64, and within float32's rounding on the cpu
backend in float32 (scikit-learn then computes in float32 too). Every expected value comes
from scikit-learn's estimator, fitted in the test."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers.backend_params import backend_param

pytest.importorskip("sklearn")

import sklearn.neural_network as sk
from sklearn.datasets import (
    load_digits,
    make_classification,
    make_multilabel_classification,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning

from gpuback.sklearn import MLPClassifier, MLPRegressor

OURS = {sk.MLPClassifier: MLPClassifier, sk.MLPRegressor: MLPRegressor}


def digits(n: int = 240) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def binary() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n_samples=150, n_features=6, random_state=3)


def multilabel() -> tuple[np.ndarray, np.ndarray]:
    return make_multilabel_classification(n_samples=120, n_features=7, n_classes=3,
                                          random_state=2)


def regression(n_targets: int = 1) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_regression(n_samples=160, n_features=8, n_targets=n_targets, noise=0.1,
                           random_state=0)
    return X, y / 100.0


def counts(n_targets: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts whose log-mean is linear in the features."""
    rng = np.random.RandomState(5)
    X = rng.normal(size=(140, 6))
    mean = np.exp(0.4 * X[:, :n_targets] + 0.5)
    y = rng.poisson(mean).astype(float)
    return X, y[:, 0] if n_targets == 1 else y


BASE = {"hidden_layer_sizes": (12, 7), "random_state": 0, "max_iter": 12}
SGD = {**BASE, "solver": "sgd"}

CASES = [
    ("sgd", sk.MLPClassifier, digits, SGD),
    ("sgd-no-shuffle", sk.MLPClassifier, digits, {**SGD, "shuffle": False}),
    ("sgd-momentum", sk.MLPClassifier, digits, {**SGD, "nesterovs_momentum": False,
                                                 "momentum": 0.5}),
    ("sgd-no-momentum", sk.MLPClassifier, digits, {**SGD, "momentum": 0.0}),
    ("sgd-invscaling", sk.MLPClassifier, digits, {**SGD, "learning_rate": "invscaling",
                                                   "learning_rate_init": 0.2,
                                                   "power_t": 0.3}),
    ("sgd-adaptive", sk.MLPClassifier, digits, {**SGD, "learning_rate": "adaptive",
                                                 "n_iter_no_change": 1, "tol": 0.05}),
    ("sgd-early-stopping", sk.MLPClassifier, digits, {**SGD, "early_stopping": True,
                                                       "learning_rate_init": 0.05,
                                                       "n_iter_no_change": 2}),
    ("sgd-binary-logistic", sk.MLPClassifier, binary, {**SGD, "activation": "logistic",
                                                        "alpha": 0.01, "batch_size": 32}),
    ("sgd-regression", sk.MLPRegressor, regression, {**SGD, "activation": "tanh",
                                                      "learning_rate_init": 0.01}),
    ("adam", sk.MLPClassifier, digits, {**BASE, "solver": "adam"}),
    ("adam-no-shuffle", sk.MLPClassifier, digits, {**BASE, "shuffle": False,
                                                    "beta_1": 0.8, "epsilon": 1e-6}),
    ("adam-early-stopping", sk.MLPClassifier, digits, {**BASE, "early_stopping": True,
                                                        "validation_fraction": 0.2,
                                                        "learning_rate_init": 0.01}),
    ("adam-multilabel", sk.MLPClassifier, multilabel, {**BASE, "batch_size": 50,
                                                        "alpha": 0.1}),
    ("adam-multi-output", sk.MLPRegressor, lambda: regression(3), {**BASE,
                                                                    "activation": "identity"}),
    ("adam-early-stopping-regression", sk.MLPRegressor, regression,
     {**BASE, "early_stopping": True, "learning_rate_init": 0.01}),
    ("sgd-poisson", sk.MLPRegressor, counts, {**SGD, "loss": "poisson",
                                               "learning_rate_init": 0.01}),
    ("adam-poisson-multi-output", sk.MLPRegressor, lambda: counts(2),
     {**BASE, "loss": "poisson", "activation": "tanh"}),
    ("adam-poisson-early-stopping", sk.MLPRegressor, counts,
     {**BASE, "loss": "poisson", "early_stopping": True, "learning_rate_init": 0.01}),
    ("lbfgs", sk.MLPClassifier, digits, {**BASE, "solver": "lbfgs"}),
    ("lbfgs-poisson", sk.MLPRegressor, lambda: counts(2), {**BASE, "solver": "lbfgs",
                                                             "loss": "poisson"}),
    ("lbfgs-multi-output", sk.MLPRegressor, lambda: regression(2),
     {**BASE, "solver": "lbfgs", "alpha": 0.5}),
]

FITTED = ["n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "loss_",
          "best_loss_", "best_validation_score_"]
CURVES = ["loss_curve_", "validation_scores_"]


def weights_for(n: int) -> np.ndarray:
    """Sample weights from 0 to 3, about one in ten of them zero."""
    rng = np.random.RandomState(7)
    weights = rng.uniform(0.0, 3.0, size=n)
    weights[rng.uniform(size=n) < 0.1] = 0.0
    return weights


def fit_both(theirs: type, data, params: dict, X_dtype=np.float64, weighted: bool = False,
             **ours_params):
    X, y = data()
    X = X.astype(X_dtype)
    sample_weight = weights_for(X.shape[0]) if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = theirs(**params).fit(X, y, sample_weight=sample_weight)
        ours = OURS[theirs](**params, **ours_params).fit(X, y, sample_weight=sample_weight)
    return reference, ours


def assert_same_model(reference, ours, atol: float, rtol: float = 0.0,
                      figures: bool = True) -> None:
    """The fitted weights agree to ``atol``/``rtol``; with ``figures``, so do the other
    fitted attributes and the loss and validation curves."""
    assert len(ours.coefs_) == len(reference.coefs_)
    for mine, expected in zip([*ours.coefs_, *ours.intercepts_],
                              [*reference.coefs_, *reference.intercepts_], strict=True):
        assert mine.shape == expected.shape
        np.testing.assert_allclose(mine, expected, rtol=rtol, atol=atol)
    if not figures:
        return
    for name in FITTED:
        if not hasattr(reference, name):
            assert not hasattr(ours, name), name
            continue
        expected = getattr(reference, name)
        if isinstance(expected, float) and np.isnan(expected):
            assert np.isnan(getattr(ours, name)), name
        elif isinstance(expected, float):
            assert getattr(ours, name) == pytest.approx(expected, rel=max(rtol, 1e-9)), name
        else:
            assert getattr(ours, name) == expected, name
    for name in CURVES:
        expected = getattr(reference, name, None)
        if expected is None:
            assert getattr(ours, name, None) is None, name
        else:
            np.testing.assert_allclose(getattr(ours, name), expected,
                                       rtol=max(rtol, 1e-9), err_msg=name)


@pytest.mark.parametrize(("theirs", "data", "params"),
                         [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_numpy_float64_fits_scikit_learns_model_to_1e10(theirs, data, params) -> None:
    reference, ours = fit_both(theirs, data, params, backend="numpy")
    assert ours.network_.dtype == "float64"
    assert_same_model(reference, ours, atol=1e-10)


# with sample weights: each batch's weighted mean loss, its penalty over the batch's sum of
# weights, the weighted validation score and the weighted L-BFGS objective
WEIGHTED = ["sgd", "sgd-adaptive", "sgd-early-stopping", "sgd-binary-logistic",
            "sgd-regression", "adam-multilabel", "adam-multi-output",
            "adam-early-stopping-regression", "lbfgs", "lbfgs-multi-output", "sgd-poisson",
            "lbfgs-poisson"]


@pytest.mark.parametrize(("theirs", "data", "params"),
                         [pytest.param(*case[1:], id=case[0]) for case in CASES
                          if case[0] in WEIGHTED])
def test_weighted_fits_are_scikit_learns_model_to_1e10(theirs, data, params) -> None:
    reference, ours = fit_both(theirs, data, params, weighted=True, backend="numpy")
    assert_same_model(reference, ours, atol=1e-10)
    unweighted = OURS[theirs](**params, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        unweighted.fit(*data())
    assert not np.allclose(unweighted.coefs_[0], ours.coefs_[0], atol=1e-6)  # they matter


@pytest.mark.parametrize(("loss", "data"), [("squared_error", regression),
                                            ("poisson", counts)])
@pytest.mark.parametrize("backend", [backend_param("cpu"), backend_param("cuda")])
def test_weighted_fits_on_every_backend_are_scikit_learns_model(backend, loss, data) -> None:
    params = {"hidden_layer_sizes": (5,), "random_state": 4, "max_iter": 3, "solver": "adam",
              "batch_size": 16, "alpha": 0.01, "loss": loss}
    reference, ours = fit_both(sk.MLPRegressor, data, params, weighted=True,
                               backend=backend)
    assert_same_model(reference, ours, atol=1e-10)


@pytest.mark.parametrize(("theirs", "data", "params"),
                         [pytest.param(*case[1:], id=case[0]) for case in CASES[:3] + CASES[9:11]])
def test_cpu_float32_fits_scikit_learns_float32_model(theirs, data, params) -> None:
    """scikit-learn computes in float32 for float32 X; so does gpuback's cpu backend, its
    products summed in another order: the two agree to float32's rounding, grown over the
    fit's steps."""
    reference, ours = fit_both(theirs, data, params, X_dtype=np.float32, backend="cpu")
    assert ours.network_.dtype == "float32" and reference.coefs_[0].dtype == np.float32
    assert_same_model(reference, ours, atol=2e-6, rtol=1e-4)


@pytest.mark.parametrize("backend", [backend_param("cpu"), backend_param("cuda")])
def test_every_backend_fits_scikit_learns_model_in_float64(backend) -> None:
    params = {"hidden_layer_sizes": (5,), "random_state": 4, "max_iter": 2, "solver": "sgd",
              "batch_size": 16}
    reference, ours = fit_both(sk.MLPClassifier, lambda: digits(48), params, backend=backend)
    assert_same_model(reference, ours, atol=1e-10)


def test_the_initial_weights_are_scikit_learns_draws() -> None:
    """A fit of one L-BFGS evaluation (``max_fun=1``: SciPy stops before its first step)
    keeps the initial weights: scikit-learn's uniform draws, for every activation's bound
    (logistic: sqrt(2 / (fan_in + fan_out)), else sqrt(6 / (fan_in + fan_out)))."""
    X, y = binary()
    for activation in ["logistic", "tanh", "relu", "identity"]:
        params = {"hidden_layer_sizes": (9, 4), "activation": activation, "solver": "lbfgs",
                  "max_fun": 1, "max_iter": 1, "random_state": 5}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            reference = sk.MLPClassifier(**params).fit(X, y)
            ours = MLPClassifier(**params, backend="numpy").fit(X, y)
        assert_same_model(reference, ours, atol=1e-12)


def test_partial_fit_and_warm_start_go_on_as_scikit_learns() -> None:
    X, y = digits()
    classes = np.unique(y)
    params = {"hidden_layer_sizes": (10,), "solver": "sgd", "random_state": 1,
              "learning_rate": "invscaling", "learning_rate_init": 0.1}
    weights = weights_for(240)
    for sample_weight in [None, weights]:
        reference, ours = sk.MLPClassifier(**params), MLPClassifier(**params, backend="numpy")
        for start in range(0, 240, 80):
            part = slice(start, start + 80)
            w = None if sample_weight is None else sample_weight[part]
            reference.partial_fit(X[part], y[part], sample_weight=w, classes=classes)
            ours.partial_fit(X[part], y[part], sample_weight=w, classes=classes)
        assert_same_model(reference, ours, atol=1e-10)
    warm = {"hidden_layer_sizes": (10,), "solver": "adam", "random_state": 2, "max_iter": 4,
            "warm_start": True}
    reference, ours = sk.MLPClassifier(**warm), MLPClassifier(**warm, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(2):
            reference.fit(X, y)
            ours.fit(X, y)
    assert_same_model(reference, ours, atol=1e-10)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow on the way to NaN
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("theirs", [sk.MLPClassifier, sk.MLPRegressor])
def test_a_diverging_run_ends_as_scikit_learns(theirs, early_stopping) -> None:
    """After a step gone NaN scikit-learn's epochs go on with NaN weights: the same warnings,
    the same error (without early stopping) or the same best epoch's weights (with it)."""
    if theirs is sk.MLPClassifier:
        X, y = load_digits(return_X_y=True)  # pixels 0-16, not scaled
        rate = 1e6
    else:
        X, y = make_regression(n_samples=200, n_features=5, random_state=0)  # y in the 100s
        rate = 0.1
    params = {"hidden_layer_sizes": (8,), "solver": "sgd", "max_iter": 15,
              "random_state": 0, "early_stopping": early_stopping,
              "learning_rate_init": rate, "momentum": 0.99}
    outcomes = []
    for model in [theirs(**params), OURS[theirs](**params, backend="numpy")]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model.fit(X, y)
                error = None
            except ValueError as exc:
                error = str(exc)
        outcomes.append((model, error, [str(w.message) for w in caught
                                        if w.category is ConvergenceWarning]))
    (reference, their_error, their_warnings), (ours, our_error, our_warnings) = outcomes
    assert our_error == their_error and our_warnings == their_warnings
    assert np.isnan(reference.loss_curve_[-1]) and np.isnan(ours.loss_curve_[-1])
    assert ours.n_iter_ == reference.n_iter_
    if early_stopping:
        assert their_error is None
        # the weights kept, up to 1e40; the losses on the way to NaN are not compared:
        # scikit-learn's log-loss clips probabilities to float eps, gpuback's does not
        assert_same_model(reference, ours, atol=1e-10, rtol=1e-10, figures=False)
