"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` trained by gpuback.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``: the
same constructor parameters with the same meaning, the same fitted attributes (``coefs_``
as ``(n_in, n_out)`` arrays, ``intercepts_``, ``loss_``, ``loss_curve_``, ``best_loss_``,
``validation_scores_``, ``best_validation_score_``, ``n_iter_``, ``t_``, ``classes_``,
``n_features_in_``, ``feature_names_in_``, ``n_layers_``, ``n_outputs_``,
``out_activation_``), ``fit``, ``partial_fit``, ``predict``, ``predict_proba``,
``predict_log_proba`` and ``score``; they pass scikit-learn's estimator checks
(``tests/sklearn/test_estimators.py``) and work in ``Pipeline``, ``GridSearchCV`` and ``clone``.
The forward and backward passes (Bishop 5.48-5.56) and the optimiser steps run on a
gpuback backend; ``network_`` is the trained ``gpuback.Network`` (``network_.save(path)``
writes a checkpoint).

gpuback's own parameters: ``backend`` ("auto": cuda on a usable GPU, else cpu, else numpy),
``dtype`` (None: the dtype scikit-learn would compute in, float32 for float32 ``X`` and
float64 for anything else; or "float32" / "float64" to force one) and ``density`` (None:
dense hidden blocks; a number in (0, 1]: every block into a hidden layer is sparse, keeping
that fraction of its connections, drawn from ``random_state``, ``gpuback.sparse_mlp_spec``;
``coefs_`` then holds zeros where there is no connection) and ``precision`` ("fp32", or
"tf32", "bf16", "fp16": mixed precision over a float32 master copy, ``gpuback.precision``;
``dtype`` None then means float32).

What is scikit-learn's, exactly as its ``_multilayer_perceptron.py`` does it (1.9):

* the losses: half squared error (``0.5 * mean over samples and outputs``) for regression,
  or with ``loss="poisson"`` half the Poisson deviance (``mean over samples of the sum over
  outputs of t ln(t / y) - t + y``) through an exp output (the log link; ``y`` must be
  non-negative); log-loss for classification: a softmax output over the classes for
  multiclass targets, one logistic output for two classes (``predict_proba`` gives both
  columns) and one logistic output per label for multilabel (indicator-matrix) targets;
* ``alpha``: an L2 penalty on the weights only, ``0.5 * alpha * sum W^2 / batch`` added to
  each batch's mean loss (Bishop 5.112), so ``alpha * W / batch`` added to the weights'
  gradient: gpuback's coupled (L2, not decoupled) ``weight_decay`` set to
  ``alpha / batch`` for each batch (the last, smaller batch included);
* ``loss_curve_``: each epoch's mean of the batch losses, penalty included; the plateau
  stop (``tol``, ``n_iter_no_change``, ``best_loss_``), a ``ConvergenceWarning`` when
  ``max_iter`` epochs run out; ``early_stopping``: ``validation_fraction`` of the data held
  out by ``train_test_split`` (stratified for binary targets, as scikit-learn does), scored
  by accuracy / R^2 after every epoch, the best epoch's weights restored at the end;
  ``learning_rate`` "invscaling" and "adaptive" for sgd; ``solver="lbfgs"``: full-batch
  L-BFGS through SciPy (``gpuback.lbfgs``) with ``max_iter``, ``tol`` (SciPy's ``gtol``)
  and ``max_fun``;
* ``sample_weight`` in ``fit`` and ``partial_fit``: each batch's weighted mean loss
  (``Network.fit(sample_weight=)``), its penalty over the batch's sum of weights, the
  weights held out with their samples and the validation score weighted; L-BFGS on the
  weighted mean.

The stochastic solvers train through gpuback's one epoch loop (``Network.fit``; the
rules above are its callback, ``gpuback.sklearn.stochastic``, and the plateau rule is
``gpuback.training.Plateau``), on one process; ``network_.epochs_trained`` counts the
epochs trained. gpuback's rule that stops a run whose loss grows tenfold does not apply
(nor does it in scikit-learn); after a step gone NaN or infinite the fit ends as
scikit-learn's does (its epochs go on with NaN weights: its ``ValueError``, or with early
stopping the best epoch's weights).

The same model: from the same arguments and ``random_state`` the initial weights are
scikit-learn's Glorot-uniform draws (``gpuback.sklearn.weights``), the held-out samples and
each epoch's batches are the ones it draws, sgd's velocity keeps its steps when the rate
changes and adam adds ``epsilon`` where it does, so on the numpy backend in float64
``coefs_`` and ``intercepts_`` equal scikit-learn's to rounding (1e-10 in the tests), and
the other backends to their dtype's rounding. With ``density`` the weights are those draws
at the kept connections.

Where it differs: sparse ``X`` is not supported (pass ``X.toarray()``). Sample weights must
be non-negative; a batch whose weights are all zero adds a zero gradient (scikit-learn's
weights go non-finite there). ``MLPRegressor(loss="poisson")`` refuses negative targets.
``momentum`` must be below 1. The reported log-loss does not clip probabilities to float epsilon as
scikit-learn's does (the gradient is the same).

scikit-learn is an optional dependency: ``pip install 'gpuback[sklearn]'``. ``import
gpuback`` never imports it; ``import gpuback.sklearn`` does. (Inside this module ``import
sklearn`` is the absolute import of scikit-learn, not this module.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    import sklearn
    from sklearn.base import ClassifierMixin, RegressorMixin
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import column_or_1d
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import type_of_target, unique_labels
    from sklearn.utils.validation import validate_data
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("gpuback.sklearn needs scikit-learn (>= 1.6): "
                      "pip install 'gpuback[sklearn]'") from error

from ..backends import AUTO
from .base import BaseMLP
from .params import STOCHASTIC, check_choice

SKLEARN = sklearn  # the scikit-learn this module imported (tests check it is not itself)
INSTALL_HINT = "pip install 'gpuback[sklearn]'"


def _is_stochastic(estimator: Any) -> bool:
    if estimator.solver not in STOCHASTIC:
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                             f"{estimator.solver} is not stochastic.")
    return True


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier: ``sklearn.neural_network.MLPClassifier`` trained by
    gpuback (see the module docstring for the parameters and where it differs).

    Minimises the log-loss (Bishop 4.108 for softmax outputs, 5.21 for logistic ones) plus
    ``alpha``'s L2 penalty. ``classes_`` may be any labels (strings, integers with gaps);
    multilabel indicator matrices are supported (one logistic output per label).
    """

    def _validate_input(self, X: Any, y: Any, incremental: bool,
                        reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(f"warm_start can only be used where `y` has the same "
                                     f"classes as in the previous call to fit. Previously "
                                     f"got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _output(self, Y: np.ndarray) -> tuple[str, str]:
        if self._label_binarizer.y_type_ == "multiclass":
            return "cross_entropy", "softmax"
        return "binary_cross_entropy", "logistic"  # two classes, or multilabel

    def _engine_targets(self, Y: np.ndarray) -> np.ndarray:
        if self.out_activation_ == "softmax":  # one-hot rows -> class indices
            return np.argmax(Y, axis=1).astype(np.int64)
        return Y.astype(self.network_.dtype)

    def _score_targets(self, Y: np.ndarray) -> np.ndarray:
        return self._label_binarizer.inverse_transform(Y)

    def _metric(self, y: np.ndarray, predictions: np.ndarray,
                sample_weight: np.ndarray | None) -> float:
        return float(accuracy_score(y, predictions, sample_weight=sample_weight))

    @available_if(_is_stochastic)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None,
                    classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``, each sample's loss weighted by ``sample_weight`` (or
        not). ``classes``: every class of all the calls, needed by the first
        (``np.unique(y_all)``); later calls may see a subset."""
        first_call = not hasattr(self, "classes_")
        if first_call and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None and not first_call \
                and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                             f"partial_fit, was: {self.classes_!r}")
        if first_call:
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _predictions(self, outputs: np.ndarray) -> np.ndarray:
        """The classes the network's ``outputs`` predict (scikit-learn's ``_predict``)."""
        if self.n_outputs_ == 1:
            outputs = outputs.ravel()
        return self._label_binarizer.inverse_transform(outputs)

    def predict(self, X: Any) -> np.ndarray:
        """The predicted classes (an indicator matrix for multilabel targets)."""
        return self._predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of each class, columns in the order of ``classes_`` (n_samples,
        n_classes); for multilabel targets, of each label."""
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        assert tags.classifier_tags is not None
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor: ``sklearn.neural_network.MLPRegressor`` trained by
    gpuback (see the module docstring for the parameters and where it differs).

    Minimises half the squared error (Bishop 5.11) plus ``alpha``'s L2 penalty, through an
    identity output per target column (multi-output ``y`` of shape (n_samples, n_outputs)
    is supported); or with ``loss="poisson"`` half the Poisson deviance through an exp
    output per column (gpuback's ``poisson`` loss: non-negative ``y``, counts or rates).
    """

    def __init__(self, loss: str = "squared_error", hidden_layer_sizes: Any = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Any = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5,
                 max_iter: int = 200, shuffle: bool = True, random_state: Any = None,
                 tol: float = 1e-4, verbose: Any = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: Any = 10, max_fun: int = 15000, backend: str = AUTO,
                 dtype: str | None = None, density: float | None = None,
                 precision: str = "fp32") -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, backend=backend, dtype=dtype, density=density,
            precision=precision)
        self.loss = loss

    def _check_hyperparameters(self) -> list[int]:
        check_choice("loss", self.loss, ("squared_error", "poisson"))
        return super()._check_hyperparameters()

    def _validate_input(self, X: Any, y: Any, incremental: bool,
                        reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")
        return X, y

    def _output(self, Y: np.ndarray) -> tuple[str, str]:
        if self.loss == "poisson":
            return "poisson", "exp"
        return "sum_of_squares", "identity"

    def _loss_scale(self) -> int:
        # the Poisson deviance is summed over the outputs, the squared error averaged
        return 1 if self.loss == "poisson" else int(self.n_outputs_)

    def _score_targets(self, Y: np.ndarray) -> np.ndarray:
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _metric(self, y: np.ndarray, predictions: np.ndarray,
                sample_weight: np.ndarray | None) -> float:
        return float(r2_score(y, predictions, sample_weight=sample_weight))

    @available_if(_is_stochastic)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over ``(X, y)``, each sample's loss weighted by ``sample_weight`` (or
        not)."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _predictions(self, outputs: np.ndarray) -> np.ndarray:
        return outputs.ravel() if outputs.shape[1] == 1 else outputs

    def predict(self, X: Any) -> np.ndarray:
        """The predicted values, (n_samples,) for one output, else (n_samples, n_outputs)."""
        return self._predict(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.target_tags.multi_output = True
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags


__all__ = ["INSTALL_HINT", "MLPClassifier", "MLPRegressor"]
