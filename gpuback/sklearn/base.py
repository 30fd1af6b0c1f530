"""What ``MLPClassifier`` and ``MLPRegressor`` share (``BaseMLP``): the constructor
parameters, ``fit`` through gpuback's one epoch loop (``sgd``, ``adam``: ``Network.fit``
with scikit-learn's rules as a callback, ``gpuback.sklearn.stochastic``) or through
full-batch L-BFGS (``gpuback.lbfgs``), the fitted attributes and pickling. See
``gpuback.sklearn.estimators`` for what is scikit-learn's and where it differs."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ..backends import AUTO
from ..core.spec import mlp_spec, sparse_mlp_spec
from ..distributed.mpi import SingleProcess
from ..network import Network
from ..optim.optimizers import SGD, Adam, Optimizer, from_config
from ..training.lbfgs import fit_lbfgs
from ..training.stopping import Plateau, TrainingDivergedError
from .params import ACTIVATIONS, STOCHASTIC, check_hyperparameters, patience
from .stochastic import ScikitLearnEpochs
from .weights import fitted_attributes, glorot_uniform, network_parameters

NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain "
              "large values and need to be preprocessed.")  # scikit-learn's, word for word


class BaseMLP(BaseEstimator):
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
        """What ``_score_outputs`` compares predictions with, from the 2-D held-out
        ``Y``."""
        raise NotImplementedError

    def _predictions(self, outputs: np.ndarray) -> np.ndarray:
        """What ``predict`` returns for the network's ``outputs``."""
        raise NotImplementedError

    def _metric(self, y: np.ndarray, predictions: np.ndarray,
                sample_weight: np.ndarray | None) -> float:
        """The score of ``predictions`` against ``y``, weighted by ``sample_weight`` (or
        not): accuracy or R^2."""
        raise NotImplementedError

    def _score_outputs(self, outputs: np.ndarray, y: np.ndarray,
                       sample_weight: np.ndarray | None = None) -> float:
        """The validation score of early stopping of the network's ``outputs`` against the
        held-out ``y`` (weighted by their ``sample_weight``, or not), as scikit-learn's
        ``_score_with_function``: NaN when the predictions are floats and not all finite."""
        predictions = self._predictions(outputs)
        if np.issubdtype(predictions.dtype, np.floating) and not np.isfinite(predictions).all():
            return float("nan")
        return self._metric(y, predictions, sample_weight)

    # --- checks ----------------------------------------------------------------------------

    def _check_hyperparameters(self) -> list[int]:
        """Every constructor parameter checked (``gpuback.sklearn.params``); the hidden
        layer sizes as a list."""
        return check_hyperparameters(self)

    # --- fit -------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> BaseMLP:
        """Fit the model to ``X`` (n_samples, n_features) and targets ``y`` (class labels
        for the classifier, real numbers, one column per output, for the regressor).
        ``sample_weight``: each sample's weight in the loss (n_samples,), non-negative;
        None weighs them alike."""
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def _fit(self, X: Any, y: Any, incremental: bool, sample_weight: Any = None) -> BaseMLP:
        hidden = self._check_hyperparameters()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
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
            self._fit_stochastic(X, Y, rs, incremental, sample_weight)
        else:
            self._fit_lbfgs(X, Y, sample_weight)
        self._export_parameters()
        if not all(np.isfinite(w).all() for w in [*self.coefs_, *self.intercepts_]):
            raise ValueError(NON_FINITE)
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
        coefs, intercepts = glorot_uniform(units, self.activation, rs)
        if self.density is None:
            spec = mlp_spec(units, activation=activation, loss=loss)
        else:  # the mask drawn after the dense weights: those are scikit-learn's draws
            spec = sparse_mlp_spec(units, density=float(self.density),
                                   seed=int(rs.randint(np.iinfo(np.int32).max)),
                                   activation=activation, loss=loss)
        # deterministic: the sparse backward gathers (bitwise reproducible from random_state)
        self.network_ = Network(spec, backend=self.backend, dtype=dtype,
                                deterministic=True, precision=self.precision)
        self.network_.set_parameters(network_parameters(self.network_, coefs, intercepts))
        self._optimizer: Optimizer | None = None
        self._best_parameters = self.network_.parameters()
        if self.solver in STOCHASTIC:
            self.loss_curve_: list[float] = []
            self._plateau: Plateau | None = None  # the plateau rule's state, once trained
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
                        incremental: bool, sample_weight: np.ndarray | None) -> None:
        """scikit-learn's ``_fit_stochastic``: its epochs run by gpuback's one loop
        (``Network.fit``, on one process, in the order ``rs`` draws) with scikit-learn's
        rules as a callback (``ScikitLearnEpochs``); ``max_iter`` epochs, or one for
        ``partial_fit``. gpuback's divergence rule (10x the loss) does not apply, as in
        scikit-learn. After a step gone NaN or infinite scikit-learn's epochs go on with NaN
        weights (``ScikitLearnEpochs.go_on_diverged``) and the fit ends as its does: its
        ``ValueError``, or with early stopping the best epoch's weights. ``sample_weight``
        weighs each batch's loss (``Network.fit``), its penalty and the validation score."""
        net = self.network_
        if not incremental or self._optimizer is None:
            self._optimizer = self._new_optimizer()
        optimizer = self._optimizer
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        validation = None
        if self.early_stopping:
            X, Y, sample_weight, validation = self._held_out(X, Y, sample_weight, rs)
        batch_size = self._batch_size(X.shape[0])
        # the plateau rule's state goes on from the last call (warm_start, partial_fit)
        best, count = (math.inf, 0) if self._plateau is None else \
            (self._plateau.best, self._plateau.count)
        self._plateau = Plateau(float(self.tol), patience(self.n_iter_no_change), best=best,
                                count=count)
        rules = ScikitLearnEpochs(self, optimizer, self._plateau, validation, incremental,
                                  self._loss_scale(), self._score_outputs, sample_weight,
                                  batch_size)
        self.n_iter_ = 0
        epochs = 1 if incremental else int(self.max_iter)
        try:
            net.fit(X, self._engine_targets(Y), epochs=epochs, batch_size=batch_size,
                    optimizer=optimizer, shuffle=bool(self.shuffle), seed=rs, progress=False,
                    comm=SingleProcess(), callbacks=[rules], divergence_factor=None,
                    sample_weight=sample_weight)
        except TrainingDivergedError:
            rules.go_on_diverged(epochs - self.n_iter_, X.shape[0])
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        if rules.ran_out:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          f"reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=4)
        if rules.best_parameters is not None:
            self._best_parameters = rules.best_parameters
        if rules.diverged and (not self.early_stopping or rules.best_diverged):
            raise ValueError(NON_FINITE)  # scikit-learn's end: the weights it kept are NaN
        if self.early_stopping:
            net.set_parameters(self._best_parameters)

    def _held_out(self, X: np.ndarray, Y: np.ndarray, sample_weight: np.ndarray | None,
                  rs: np.random.RandomState) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                      tuple[np.ndarray, np.ndarray, Any]]:
        """Early stopping's split, scikit-learn's: ``validation_fraction`` of the data held
        out by ``train_test_split`` on ``rs`` (stratified for one output of a classifier;
        the sample weights split alike, if any); the training part (X, Y, its weights) and
        ``(X_val, y_val, their weights)``."""
        stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
        arrays = [X, Y] if sample_weight is None else [X, Y, sample_weight]
        parts = train_test_split(*arrays, random_state=rs, test_size=self.validation_fraction,
                                 stratify=stratify)
        X, X_val, Y, Y_val = parts[:4]
        weight, weight_val = (None, None) if sample_weight is None else parts[4:]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        return X, Y, weight, (X_val, self._score_targets(Y_val), weight_val)

    def _batch_size(self, n: int) -> int:
        """scikit-learn's batch size for ``n`` samples: "auto" is min(200, n); a larger one
        is clipped to ``n``, with a warning."""
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It "
                          "is going to be clipped", stacklevel=5)
        return int(np.clip(self.batch_size, 1, n))

    def _fit_lbfgs(self, X: np.ndarray, Y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        """Full-batch L-BFGS (``gpuback.lbfgs``), as scikit-learn's ``_fit_lbfgs``: the
        same objective and gradient (its value's data part divided by ``_loss_scale``;
        weighted by ``sample_weight``, if given), the same SciPy options, its
        ``ConvergenceWarning`` word for word."""
        result = fit_lbfgs(self.network_, X, self._engine_targets(Y),
                           max_iter=int(self.max_iter), tol=float(self.tol),
                           l2=float(self.alpha), max_fun=int(self.max_fun),
                           verbose=bool(self.verbose), value_scale=self._loss_scale(),
                           sample_weight=sample_weight)
        self.n_iter_ = min(result["n_iter"], int(self.max_iter))
        if result["status"] != 0:
            message = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                       f"(status={result['status']}):\n{result['message']}\n")
            if self.n_iter_ == self.max_iter:
                message += (f"\nIncrease the number of iterations to improve the "
                            f"convergence (max_iter={self.max_iter}).")
            message += ("\nYou might also want to scale the data as shown in:\n"
                        "    https://scikit-learn.org/stable/modules/preprocessing.html")
            warnings.warn(message, ConvergenceWarning, stacklevel=4)
        self.loss_ = result["loss"]

    # --- parameters --------------------------------------------------------------------------

    def _export_parameters(self) -> None:
        """``coefs_`` and ``intercepts_`` from the network (``weights.fitted_attributes``)."""
        self.coefs_, self.intercepts_ = fitted_attributes(self.network_)

    # --- prediction ------------------------------------------------------------------------

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        """What ``predict`` returns for ``X`` (validated unless ``check_input`` is False)."""
        return self._predictions(self._forward(X, check_input))

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
