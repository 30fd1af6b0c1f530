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

* the losses: half squared error (``0.5 * mean over samples and outputs``) for regression;
  log-loss for classification: a softmax output over the classes for multiclass targets,
  one logistic output for two classes (``predict_proba`` gives both columns) and one
  logistic output per label for multilabel (indicator-matrix) targets;
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
  and ``max_fun``.

Where it differs: the initial weights are gpuback's (``gpuback.core.init``: He or Glorot
normals, zero biases; not scikit-learn's uniform draws), so results match scikit-learn's
statistically, not bitwise. ``sample_weight`` is not supported (``fit(X, y)``), sparse
``X`` neither (pass ``X.toarray()``), and ``MLPRegressor(loss="poisson")`` neither. SGD
with a changing learning rate ("invscaling", "adaptive") scales the whole velocity, where
scikit-learn scales only the new gradient. ``momentum`` must be below 1.

scikit-learn is an optional dependency: ``pip install 'gpuback[sklearn]'``. ``import
gpuback`` never imports it; ``import gpuback.sklearn`` does. (Inside this module ``import
sklearn`` is the absolute import of scikit-learn, not this module.)
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

try:
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("gpuback.sklearn needs scikit-learn (>= 1.6): "
                      "pip install 'gpuback[sklearn]'") from error

from ..backends import AUTO
from ..backends.precision import check_precision
from ..core import loss_scale
from ..core.spec import mlp_spec, sparse_mlp_spec
from ..network import Network
from ..optim.optimizers import SGD, Adam, Optimizer, from_config
from ..training import loop as training
from ..training import memory
from ..training.lbfgs import fit_lbfgs

SKLEARN = sklearn  # the scikit-learn this module imported (tests check it is not itself)
INSTALL_HINT = "pip install 'gpuback[sklearn]'"

# scikit-learn's hidden activations -> gpuback's
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SOLVERS = ("lbfgs", "sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
STOCHASTIC = ("sgd", "adam")
DTYPES = ("float32", "float64")


# --- hyperparameter checks (each names the parameter; run by fit, never by __init__) -------


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_real(name: str, value: Any, low: float, high: float = math.inf,
                low_open: bool = False, high_open: bool = True) -> float:
    """``value`` as a float in the interval; TypeError if not a real number."""
    if not _is_real(value):
        raise TypeError(f"{name}: expected a real number, got {value!r} "
                        f"({type(value).__name__})")
    lo_ok = value > low if low_open else value >= low
    hi_ok = value < high if high_open else value <= high
    if not (lo_ok and hi_ok) or math.isnan(value):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


def _check_integer(name: str, value: Any, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def _hidden_sizes(value: Any) -> list[int]:
    """``hidden_layer_sizes`` (an int or a sequence of ints, each >= 1) as a list."""
    sizes = list(value) if hasattr(value, "__iter__") and not isinstance(value, str) \
        else [value]
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"hidden_layer_sizes: expected positive integers, got {value!r}")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
    return [int(s) for s in sizes]


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: checks, training loops, attributes."""

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: Any = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: Any = False,
                 warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: Any = 10, max_fun: int = 15000,
                 backend: str = AUTO, dtype: str | None = None,
                 density: float | None = None, precision: str = "fp32") -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.density = density
        self.precision = precision

    # --- what the subclasses say ------------------------------------------------------------

    def _validate_input(self, X: Any, y: Any, incremental: bool,
                        reset: bool) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _output(self, Y: np.ndarray) -> tuple[str, str]:
        """(gpuback loss, scikit-learn's out_activation_) for the 2-D targets ``Y``."""
        raise NotImplementedError

    def _engine_targets(self, Y: np.ndarray) -> np.ndarray:
        """The targets gpuback trains on, from the 2-D (binarised) ``Y``."""
        return Y.astype(self.network_.dtype)

    def _loss_scale(self) -> int:
        """What gpuback's mean data loss is divided by to give scikit-learn's (its half
        squared error is a mean over the outputs too: n_outputs_ for regression)."""
        return 1

    def _score_targets(self, Y: np.ndarray) -> np.ndarray:
        """What ``_score`` compares predictions with, from the 2-D held-out ``Y``."""
        raise NotImplementedError

    def _score(self, X: np.ndarray, y: np.ndarray) -> float:
        """The validation score of early stopping: accuracy or R^2."""
        raise NotImplementedError

    # --- checks ----------------------------------------------------------------------------

    def _check_hyperparameters(self) -> list[int]:
        """Every constructor parameter checked (scikit-learn's constraints, plus gpuback's);
        the hidden layer sizes as a list."""
        hidden = _hidden_sizes(self.hidden_layer_sizes)
        _check_choice("activation", self.activation, tuple(ACTIVATIONS))
        _check_choice("solver", self.solver, SOLVERS)
        _check_real("alpha", self.alpha, 0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            if isinstance(self.batch_size, str):
                raise ValueError(f"batch_size: expected 'auto' or a positive integer, got "
                                 f"{self.batch_size!r}")
            _check_integer("batch_size", self.batch_size, 1)
        _check_choice("learning_rate", self.learning_rate, LEARNING_RATES)
        _check_real("learning_rate_init", self.learning_rate_init, 0.0, low_open=True)
        _check_real("power_t", self.power_t, 0.0)
        _check_integer("max_iter", self.max_iter, 1)
        _check_bool("shuffle", self.shuffle)
        _check_real("tol", self.tol, 0.0)
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise TypeError(f"verbose: expected a bool or an integer, got {self.verbose!r}")
        _check_bool("warm_start", self.warm_start)
        _check_real("momentum", self.momentum, 0.0, 1.0)  # gpuback's SGD needs momentum < 1
        _check_bool("nesterovs_momentum", self.nesterovs_momentum)
        _check_bool("early_stopping", self.early_stopping)
        _check_real("validation_fraction", self.validation_fraction, 0.0, 1.0)
        _check_real("beta_1", self.beta_1, 0.0, 1.0)
        _check_real("beta_2", self.beta_2, 0.0, 1.0)
        _check_real("epsilon", self.epsilon, 0.0, low_open=True)
        if not (_is_real(self.n_iter_no_change) and self.n_iter_no_change == np.inf):
            _check_integer("n_iter_no_change", self.n_iter_no_change, 1)
        _check_integer("max_fun", self.max_fun, 1)
        if not isinstance(self.backend, str):
            raise TypeError(f"backend: expected a backend name, got {self.backend!r}")
        if self.dtype is not None:
            _check_choice("dtype", str(np.dtype(self.dtype)) if _dtype_like(self.dtype)
                          else self.dtype, DTYPES)
        if self.density is not None:
            _check_real("density", self.density, 0.0, 1.0, low_open=True, high_open=False)
        check_precision(self.precision, "float32" if self.dtype is None else self.dtype)
        return hidden

    # --- fit -------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> _BaseMLP:
        """Fit the model to ``X`` (n_samples, n_features) and targets ``y`` (class labels
        for the classifier, real numbers, one column per output, for the regressor)."""
        return self._fit(X, y, incremental=False)

    def _fit(self, X: Any, y: Any, incremental: bool) -> _BaseMLP:
        hidden = self._check_hyperparameters()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        units = [X.shape[1], *hidden, Y.shape[1]]
        rs = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, units, X.dtype, rs)
        elif self._layer_units != units:
            raise ValueError(f"warm_start / partial_fit: the layer sizes {units} differ from "
                             f"the fitted network's {self._layer_units}; refit with "
                             f"warm_start=False")
        if self.solver in STOCHASTIC:
            self._fit_stochastic(X, Y, rs, incremental)
        else:
            self._fit_lbfgs(X, Y)
        self._export_parameters()
        if not all(np.isfinite(w).all() for w in [*self.coefs_, *self.intercepts_]):
            raise ValueError("Solver produced non-finite parameter weights. The input data "
                             "may contain large values and need to be preprocessed.")
        return self

    def _initialize(self, Y: np.ndarray, units: list[int], x_dtype: Any,
                    rs: np.random.RandomState) -> None:
        """A new network for ``units`` and the attributes of a first fit."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(units)
        self._layer_units = list(units)
        loss, self.out_activation_ = self._output(Y)
        # mixed precision keeps a float32 master copy, whatever X's dtype
        default = x_dtype if self.precision == "fp32" else np.float32
        dtype = np.dtype(default).name if self.dtype is None else np.dtype(self.dtype).name
        activation = ACTIVATIONS[self.activation]
        seed = int(rs.randint(np.iinfo(np.int32).max))
        if self.density is None:
            spec = mlp_spec(units, activation=activation, loss=loss)
        else:
            spec = sparse_mlp_spec(units, density=float(self.density),
                                   seed=int(rs.randint(np.iinfo(np.int32).max)),
                                   activation=activation, loss=loss)
        # deterministic: the sparse backward gathers (bitwise reproducible from random_state)
        self.network_ = Network(spec, backend=self.backend, dtype=dtype, seed=seed,
                                deterministic=True, precision=self.precision)
        self._optimizer: Optimizer | None = None
        self._best_parameters = self.network_.parameters()
        if self.solver in STOCHASTIC:
            self.loss_curve_: list[float] = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_: list[float] | None = []
                self.best_validation_score_: float | None = -np.inf
                self.best_loss_: float | None = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _new_optimizer(self) -> Optimizer:
        if self.solver == "sgd":
            momentum = float(self.momentum)
            return SGD(lr=float(self.learning_rate_init), momentum=momentum,
                       nesterov=bool(self.nesterovs_momentum) and momentum > 0.0)
        return Adam(lr=float(self.learning_rate_init),
                    betas=(float(self.beta_1), float(self.beta_2)), eps=float(self.epsilon))

    def _fit_stochastic(self, X: np.ndarray, Y: np.ndarray, rs: np.random.RandomState,
                        incremental: bool) -> None:
        """scikit-learn's ``_fit_stochastic``, each epoch's steps run by gpuback."""
        net = self.network_
        if not incremental or self._optimizer is None:
            self._optimizer = self._new_optimizer()
        optimizer = self._optimizer
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        X_val = y_val = None
        if self.early_stopping:
            stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
            X, X_val, Y, Y_val = train_test_split(X, Y, random_state=rs,
                                                  test_size=self.validation_fraction,
                                                  stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            y_val = self._score_targets(Y_val)
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It "
                              "is going to be clipped", stacklevel=4)
            batch_size = int(np.clip(self.batch_size, 1, n))
        data = training.dataset(net, X, self._engine_targets(Y), batch_size)
        memory.check_training(net, batch_size, optimizer)
        net.reserve(batch_size)
        metrics = training.Metrics(net.ops)
        weights = self._weight_views()
        xp = net.ops.array_namespace(net.flat_parameters)
        alpha = float(self.alpha)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                order = rs.permutation(n) if self.shuffle else np.arange(n)
                penalty = self._epoch(data, batch_size, order, optimizer, metrics, weights,
                                      xp, alpha)
                loss_sum, _ = metrics.read()
                bad = metrics.first_bad_step()
                if bad is not None:
                    raise ValueError(
                        f"Solver produced non-finite parameter weights: {bad[1]} became NaN "
                        f"or infinite at epoch {self.n_iter_ + 1}, step {bad[0]}. The input "
                        "data may contain large values and need to be preprocessed, or "
                        "learning_rate_init lowered.")
                self.n_iter_ += 1
                # scikit-learn's loss_: the mean over the epoch of each batch's mean loss
                # plus its penalty 0.5 alpha |W|^2 / batch, weighted by the batch's size
                self.loss_ = (loss_sum / self._loss_scale() + 0.5 * alpha * penalty) / n
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(X_val, y_val)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    optimizer.lr = float(self.learning_rate_init) / (self.t_ + 1) ** \
                        float(self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    what = ("Validation score" if self.early_stopping else "Training loss")
                    msg = (f"{what} did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                    if self._trigger_stopping(optimizer, msg):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations "
                                  f"({self.max_iter}) reached and the optimization hasn't "
                                  f"converged yet.", ConvergenceWarning, stacklevel=4)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        if self.early_stopping:
            net.set_parameters(self._best_parameters)

    def _epoch(self, data: Any, batch_size: int, order: np.ndarray, optimizer: Optimizer,
               metrics: training.Metrics, weights: list[Any], xp: Any, alpha: float) -> float:
        """One pass of mini-batch steps in ``order``; the losses summed into ``metrics``.
        Returns the sum over the batches of |W|^2 at each batch's step (0 without alpha),
        for the penalty term of the loss."""
        net = self.network_
        scaler = loss_scale.for_fit(net, None)  # fp16: the dynamically scaled loss, as fit
        data.set_order(order)
        metrics.reset()
        penalty: Any = 0.0
        for step, start in enumerate(range(0, data.n, batch_size), start=1):
            batch = min(batch_size, data.n - start)
            ws, targets = data.load(start, batch)
            if alpha > 0.0:
                for w in weights:
                    penalty = penalty + xp.vdot(w, w)  # stays on the device (no wait)
            status = training.forward_backward(net, ws, targets, metrics, step, scaler)
            # scikit-learn's alpha W / batch on the weights' gradient: coupled L2 decay
            optimizer.weight_decay = alpha / batch
            optimizer.step(net, status)
        return float(penalty)

    def _trigger_stopping(self, optimizer: Optimizer, msg: str) -> bool:
        """scikit-learn's ``trigger_stopping``: stop, or for sgd with an adaptive learning
        rate divide it by 5 and go on until it is 1e-6 or less."""
        if self.solver == "adam" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if optimizer.lr <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        optimizer.lr /= 5.0
        if self.verbose:
            print(msg + f" Setting learning rate to {optimizer.lr:f}")
        return False

    def _update_no_improvement_count(self, X_val: Any, y_val: Any) -> None:
        """scikit-learn's rule: an epoch counts as no improvement when its validation score
        is below the best + tol (early stopping) or its training loss above the best - tol."""
        if self.early_stopping:
            score = self._score(X_val, y_val)
            assert self.validation_scores_ is not None
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            best = self.best_validation_score_
            assert best is not None
            self._no_improvement_count = self._no_improvement_count + 1 \
                if score < best + self.tol else 0
            if score > best:
                self.best_validation_score_ = score
                self._best_parameters = self.network_.parameters()
        else:
            loss = self.loss_curve_[-1]
            best_loss = self.best_loss_
            assert best_loss is not None
            self._no_improvement_count = self._no_improvement_count + 1 \
                if loss > best_loss - self.tol else 0
            if loss < best_loss:
                self.best_loss_ = loss

    def _fit_lbfgs(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Full-batch L-BFGS (``gpuback.lbfgs``), as scikit-learn's ``_fit_lbfgs``."""
        result = fit_lbfgs(self.network_, X, self._engine_targets(Y),
                           max_iter=int(self.max_iter), tol=float(self.tol),
                           l2=float(self.alpha), max_fun=int(self.max_fun),
                           verbose=bool(self.verbose))
        if result["status"] != 0:
            warnings.warn(
                f"lbfgs failed to converge after {result['n_iter']} iteration(s) (status="
                f"{result['status']}):\n{result['message']}.\n\nIncrease the number of "
                f"iterations to improve the convergence (max_iter={self.max_iter}).\nYou "
                "might also want to scale the data.", ConvergenceWarning, stacklevel=4)
        self.n_iter_ = min(result["n_iter"], int(self.max_iter))
        penalty = 0.5 * float(self.alpha) * sum(
            float(np.vdot(w, w)) for w in self._weight_arrays()) / X.shape[0]
        self.loss_ = (result["loss"] - penalty) / self._loss_scale() + penalty

    # --- parameters --------------------------------------------------------------------------

    def _weight_views(self) -> list[Any]:
        """Every weight block as a flat view of the network's parameter buffer (backend
        arrays: the penalty term is summed where the weights live)."""
        net = self.network_
        views = net.layout.views(net.flat_parameters)
        return [views[b.name].reshape(-1) for b in net.plan.blocks]

    def _weight_arrays(self) -> list[np.ndarray]:
        params = self.network_.parameters()
        return [params[b.name] for b in self.network_.plan.blocks]

    def _export_parameters(self) -> None:
        """``coefs_`` (n_in, n_out) and ``intercepts_`` from the network: gpuback's dense
        weights are (n_dst, n_src), transposed here; a sparse block's edge values are
        scattered into a dense array (zeros where there is no edge)."""
        net = self.network_
        params = net.parameters()
        coefs, intercepts = [], []
        for block in net.plan.blocks:
            w = params[block.name]
            if block.index is None:
                coefs.append(np.ascontiguousarray(w.T))
            else:
                dense = np.zeros((net.plan.groups[block.src].size,
                                  net.plan.groups[block.dst].size), dtype=w.dtype)
                dense[block.index.src, block.index.dst] = w
                coefs.append(dense)
            intercepts.append(params[block.dst])
        self.coefs_ = coefs
        self.intercepts_ = intercepts

    # --- prediction ------------------------------------------------------------------------

    def _forward(self, X: Any, check_input: bool = True) -> np.ndarray:
        """The network's outputs for ``X`` (validated unless ``check_input`` is False)."""
        check_is_fitted(self)
        if check_input:
            X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.network_.predict(X)

    # --- pickling: the network (its backend module, its buffers) travels as plain data ----

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state = dict(state)
        net = state.pop("network_", None)
        if net is not None:
            state["_network_state"] = {"spec": net.spec, "dtype": net.dtype,
                                       "precision": net.precision,
                                       "parameters": net.parameters(),
                                       "epochs_trained": net.epochs_trained}
        optimizer = state.pop("_optimizer", None)
        if optimizer is not None:
            state["_optimizer_state"] = (optimizer.config(), optimizer.state_dict())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        saved = state.pop("_network_state", None)
        saved_optimizer = state.pop("_optimizer_state", None)
        super().__setstate__(state)
        if saved is not None:
            net = Network(saved["spec"], backend=self.backend, dtype=saved["dtype"],
                          deterministic=True, precision=saved.get("precision", "fp32"))
            net.set_parameters(saved["parameters"])
            net.epochs_trained = saved["epochs_trained"]
            self.network_ = net
            self._optimizer = None
            if saved_optimizer is not None:
                config, optimizer_state = saved_optimizer
                self._optimizer = from_config(config)
                if optimizer_state["buffers"]:
                    self._optimizer.load_state_dict(optimizer_state, net)


def _dtype_like(value: Any) -> bool:
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True


def _is_stochastic(estimator: Any) -> bool:
    if estimator.solver not in STOCHASTIC:
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                             f"{estimator.solver} is not stochastic.")
    return True


class MLPClassifier(ClassifierMixin, _BaseMLP):
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

    def _score(self, X: np.ndarray, y: np.ndarray) -> float:
        y_pred = self._predict(X, check_input=False)
        return float(accuracy_score(y, y_pred))

    @available_if(_is_stochastic)
    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``. ``classes``: every class of all the calls, needed by
        the first (``np.unique(y_all)``); later calls may see a subset."""
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
        return self._fit(X, y, incremental=True)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        y_pred = self._forward(X, check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

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


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: ``sklearn.neural_network.MLPRegressor`` trained by
    gpuback (see the module docstring for the parameters and where it differs).

    Minimises half the squared error (Bishop 5.11) plus ``alpha``'s L2 penalty, through an
    identity output per target column (multi-output ``y`` of shape (n_samples, n_outputs)
    is supported). ``loss``: "squared_error" (scikit-learn's "poisson" is not supported).
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
        if self.loss == "poisson":
            raise ValueError("loss: 'poisson' is not supported by gpuback.sklearn."
                             "MLPRegressor; use 'squared_error' (or scikit-learn's own "
                             "MLPRegressor for the Poisson loss)")
        _check_choice("loss", self.loss, ("squared_error",))
        return super()._check_hyperparameters()

    def _validate_input(self, X: Any, y: Any, incremental: bool,
                        reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _output(self, Y: np.ndarray) -> tuple[str, str]:
        return "sum_of_squares", "identity"

    def _loss_scale(self) -> int:
        return int(self.n_outputs_)

    def _score_targets(self, Y: np.ndarray) -> np.ndarray:
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _score(self, X: np.ndarray, y: np.ndarray) -> float:
        y_pred = self._predict(X, check_input=False)
        if not np.isfinite(y_pred).all():
            return float("nan")
        return float(r2_score(y, y_pred))

    @available_if(_is_stochastic)
    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over ``(X, y)``."""
        return self._fit(X, y, incremental=True)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        y_pred = self._forward(X, check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def predict(self, X: Any) -> np.ndarray:
        """The predicted values, (n_samples,) for one output, else (n_samples, n_outputs)."""
        return self._predict(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.target_tags.multi_output = True
        return tags


__all__ = ["INSTALL_HINT", "MLPClassifier", "MLPRegressor"]
