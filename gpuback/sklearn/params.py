"""The estimators' constructor parameters checked, each by name, as scikit-learn's MLP
constrains them (plus gpuback's own: ``backend``, ``dtype``, ``density``, ``precision``).
Run by ``fit``, never by ``__init__`` (scikit-learn's convention)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends.precision import check_precision
from ..core.checks import (
    FLOAT_DTYPES,
    check_bool,
    check_int,
    check_real,
    is_integer,
    is_number,
)

# scikit-learn's hidden activations -> gpuback's
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SOLVERS = ("lbfgs", "sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
STOCHASTIC = ("sgd", "adam")


def check_hyperparameters(est: Any) -> list[int]:
    """Every constructor parameter of the estimator ``est`` checked (scikit-learn's
    constraints, plus gpuback's); the hidden layer sizes as a list."""
    hidden = hidden_sizes(est.hidden_layer_sizes)
    check_choice("activation", est.activation, tuple(ACTIVATIONS))
    check_choice("solver", est.solver, SOLVERS)
    check_real("alpha", est.alpha, 0.0)
    if not (isinstance(est.batch_size, str) and est.batch_size == "auto"):
        if isinstance(est.batch_size, str):
            raise ValueError(f"batch_size: expected 'auto' or a positive integer, got "
                             f"{est.batch_size!r}")
        check_int("batch_size", est.batch_size, 1)
    check_choice("learning_rate", est.learning_rate, LEARNING_RATES)
    check_real("learning_rate_init", est.learning_rate_init, 0.0, low_open=True)
    check_real("power_t", est.power_t, 0.0)
    check_int("max_iter", est.max_iter, 1)
    check_bool("shuffle", est.shuffle)
    check_real("tol", est.tol, 0.0)
    if not (isinstance(est.verbose, (bool, np.bool_)) or is_integer(est.verbose)):
        raise TypeError(f"verbose: expected a bool or an integer, got {est.verbose!r}")
    check_bool("warm_start", est.warm_start)
    check_real("momentum", est.momentum, 0.0, 1.0)  # gpuback's SGD needs momentum < 1
    check_bool("nesterovs_momentum", est.nesterovs_momentum)
    check_bool("early_stopping", est.early_stopping)
    check_real("validation_fraction", est.validation_fraction, 0.0, 1.0)
    check_real("beta_1", est.beta_1, 0.0, 1.0)
    check_real("beta_2", est.beta_2, 0.0, 1.0)
    check_real("epsilon", est.epsilon, 0.0, low_open=True)
    if patience(est.n_iter_no_change) is not None:
        check_int("n_iter_no_change", est.n_iter_no_change, 1)
    check_int("max_fun", est.max_fun, 1)
    if not isinstance(est.backend, str):
        raise TypeError(f"backend: expected a backend name, got {est.backend!r}")
    if est.dtype is not None:
        check_choice("dtype", str(np.dtype(est.dtype)) if _dtype_like(est.dtype)
                     else est.dtype, FLOAT_DTYPES)
    if est.density is not None:
        check_real("density", est.density, 0.0, 1.0, low_open=True, high_open=False)
    check_precision(est.precision, "float32" if est.dtype is None else est.dtype)
    return hidden


def patience(n_iter_no_change: Any) -> Any:
    """``n_iter_no_change`` as the plateau rule takes it: None for ``numpy.inf`` (never
    stop; scikit-learn allows it), else as given."""
    return None if is_number(n_iter_no_change) and n_iter_no_change == np.inf \
        else n_iter_no_change


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def hidden_sizes(value: Any) -> list[int]:
    """``hidden_layer_sizes`` (an int or a sequence of ints, each >= 1) as a list."""
    sizes = list(value) if hasattr(value, "__iter__") and not isinstance(value, str) \
        else [value]
    for s in sizes:
        if not is_integer(s):
            raise TypeError(f"hidden_layer_sizes: expected positive integers, got {value!r}")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
    return [int(s) for s in sizes]


def _dtype_like(value: Any) -> bool:
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True
