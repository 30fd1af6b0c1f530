"""Full-batch L-BFGS training through ``scipy.optimize.minimize(method="L-BFGS-B")``.

The objective is the network's mean loss over the whole data set (Bishop 5.11, 5.24: the
error E(w) = (1/N) sum_n E_n(w), the per-sample errors of ``gpuback.core.spec``'s losses) plus,
with ``l2 > 0``, scikit-learn's L2 penalty on the weights only (biases are not penalised):

    E(w) = (1/N) sum_n E_n(w) + (l2 / (2 N)) sum_W W^2          (cf. 5.112, lambda = l2 / N)

with gradient ``(1/N) sum_n dE_n/dw + (l2 / N) W`` (backprop, 5.53-5.56, plus the penalty's).
This is exactly what ``sklearn.neural_network.MLPRegressor/MLPClassifier(solver="lbfgs",
alpha=l2)`` minimise (``_backprop`` adds ``0.5 * alpha * sum W^2 / n_samples``).

SciPy drives the optimisation (the quasi-Newton updates and the line search, Bishop 5.2.4);
gpuback supplies E and its gradient in float64 on the host: the parameters of the network's
flat buffer (``gpuback.core.layout``; padding left out) form the vector SciPy sees. Each evaluation
runs forward and backprop on the network's backend over the data in chunks of
``chunk_size`` samples (the data set is put on the backend once), and sums the chunks'
losses and gradients weighted by their sizes. On a float32 network E is computed in float32
(its loss sums in float64): the line search may then stop early on rounding noise
("ABNORMAL_TERMINATION_IN_LNSRCH"); a float64 network is the better match for L-BFGS.

SciPy is an optional dependency: ``pip install 'gpuback[lbfgs]'``. It is imported when
``fit_lbfgs`` is called, never by ``import gpuback``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import propagation
from ..core.checks import check_bool, check_int, check_real
from ..core.engine import Engine
from .data import dataset, sample_weights

INSTALL_HINT = "pip install 'gpuback[lbfgs]'"
DEFAULT_CHUNK = 4096  # samples per forward/backward pass of one evaluation


def _scipy_minimize() -> Callable[..., Any]:
    """``scipy.optimize.minimize``, or an ImportError that says how to install SciPy."""
    try:
        from scipy.optimize import minimize
    except ImportError as error:
        raise ImportError(f"gpuback.lbfgs needs SciPy (scipy.optimize.minimize): "
                          f"{INSTALL_HINT}") from error
    found: Callable[..., Any] = minimize
    return found


class Objective:
    """E(w) and dE/dw (see the module docstring) of ``net`` over ``(X, T)``, as functions of
    the float64 vector of every parameter (the flat buffer without its padding).

    ``live``: the flat-buffer positions of the parameters, in layout order; ``weights``: a
    boolean mask over ``live`` of the weight entries (the penalised ones)."""

    def __init__(self, net: Engine, X: Any, T: Any, l2: float, chunk_size: int,
                 value_scale: float = 1.0, sample_weight: Any = None) -> None:
        self.net, self.l2, self.value_scale = net, l2, value_scale
        self.chunk = chunk_size
        self.data = dataset(net, X, T, chunk_size)
        self.n = self.data.n
        self.data.set_order(np.arange(self.n))
        # with sample weights, one batch of the whole data set: the weighted mean over it
        self.sample_weights = sample_weights(net, sample_weight, self.n)
        self.total = float(self.n)  # N: the sum of the weights (1 each without them)
        if self.sample_weights is not None:
            self.sample_weights.set_order(np.arange(self.n), self.n)
            self.total = float(self.sample_weights.totals[0])
        layout, plan = net.layout, net.plan
        weight_names = {b.name for b in plan.blocks}
        live, weights = [], []
        for name, offset in layout.offsets.items():
            count = int(np.prod(layout.shapes[name], dtype=np.int64))
            live.append(np.arange(offset, offset + count))
            weights.append(np.full(count, name in weight_names))
        self.live = np.concatenate(live)
        self.weights = np.concatenate(weights)
        self.host = np.zeros(layout.size, dtype=net.dtype)  # staging for the parameters
        self.evaluations = 0
        self.last: tuple[np.ndarray, float] | None = None  # the last point evaluated and E

    def read(self) -> np.ndarray:
        """The network's current parameters as the float64 vector."""
        return self.net.ops.to_host(self.net.flat_parameters)[self.live].astype(np.float64)

    def write(self, theta: np.ndarray) -> None:
        """Put the vector ``theta`` into the network's parameters (cast to its dtype)."""
        self.host[self.live] = theta
        self.net.ops.copy_into(self.net.flat_parameters, self.host)

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """E(theta) and its gradient, float64 (what ``minimize(jac=True)`` calls)."""
        net, ops, data = self.net, self.net.ops, self.data
        self.write(theta)
        loss = 0.0
        grad = np.zeros(self.live.size)
        for start in range(0, self.n, self.chunk):
            ws, targets = data.load(start, min(self.chunk, self.n - start))
            net.run_forward(ws)
            net.run_backward(ws, targets, sample_weights=None if self.sample_weights is None
                             else self.sample_weights.at(start, ws.batch))
            # each chunk's loss and gradient are means over its samples: weight by its size
            loss += propagation.mean_loss(ops, ws) * ws.batch
            grad += ops.to_host(net.flat_gradients)[self.live] * ws.batch
        loss /= self.n * self.value_scale
        grad /= self.n
        if self.l2 > 0.0:
            w = theta[self.weights]
            # not a BLAS dot: a multithreaded one leaves BLAS threads spinning on the cores
            # the cpu backend's products share
            loss += 0.5 * self.l2 * float((w * w).sum()) / self.total
            grad[self.weights] += self.l2 * w / self.total
        self.evaluations += 1
        self.last = (theta.copy(), loss)
        return loss, grad

    def value_at(self, theta: np.ndarray) -> float:
        """E(theta), reusing the last evaluation when it was at ``theta``."""
        if self.last is not None and np.array_equal(self.last[0], theta):
            return self.last[1]
        return self(theta)[0]


def fit_lbfgs(net: Engine, X: Any, T: Any, max_iter: int = 200, tol: float = 1e-4,
              l2: float = 0.0, max_fun: int = 15000, chunk_size: int = DEFAULT_CHUNK,
              ftol: float | None = None, verbose: bool = False,
              value_scale: float = 1.0, sample_weight: Any = None) -> dict[str, Any]:
    """Train every parameter of ``net`` in place by full-batch L-BFGS (SciPy's L-BFGS-B).

    Minimises the mean loss over ``(X, T)`` plus ``l2 / (2 N) * sum W^2`` over the weights
    (module docstring). ``max_iter``: most L-BFGS iterations (SciPy's ``maxiter``);
    ``tol``: stop when every component of the projected gradient is <= ``tol`` (SciPy's
    ``gtol``, as scikit-learn passes it); ``max_fun``: most evaluations of E (``maxfun``);
    ``chunk_size``: samples per forward/backward pass; ``ftol``: SciPy's other stop, on the
    relative decrease of E in an iteration (None: SciPy's default, 2.2e-9, which
    scikit-learn keeps; 0 to stop on ``tol`` alone); ``verbose``: print E after each
    iteration; ``value_scale``: the mean loss in the value SciPy sees is divided by it, its
    gradient is not (scikit-learn's ``MLPRegressor`` reports its squared error as a mean
    over its ``n_outputs`` outputs and takes the gradient of their sum: its L-BFGS, line
    search included, runs on that pair, and ``gpuback.sklearn`` passes ``n_outputs``).
    ``X``, ``T``, ``sample_weight``: as ``Network.fit`` takes them; with ``sample_weight``
    (w_n) E is the weighted mean sum_n w_n E_n / sum_n w_n plus ``l2 / (2 sum_n w_n) * sum
    W^2``, N replaced by the weights' sum as scikit-learn does.

    Returns ``{"loss": final E, "loss_curve": E after each iteration, "n_iter": iterations
    run, "n_fun": evaluations of E, "converged": bool (SciPy's success), "status": SciPy's
    status (0 converged, 1 an iteration or evaluation limit reached, 2 stopped otherwise),
    "message": SciPy's message}``. The network keeps SciPy's final parameters.
    """

    if not isinstance(net, Engine):
        raise TypeError(f"net: expected a gpuback.Network, got {type(net).__name__}")
    max_iter = check_int("max_iter", max_iter, 1)
    max_fun = check_int("max_fun", max_fun, 1)
    chunk_size = check_int("chunk_size", chunk_size, 1)
    tol = check_real("tol", tol, 0.0)
    l2 = check_real("l2", l2, 0.0)
    if ftol is not None:
        ftol = check_real("ftol", ftol, 0.0)
    value_scale = check_real("value_scale", value_scale, 0.0, low_open=True)
    check_bool("verbose", verbose)
    minimize = _scipy_minimize()
    objective = Objective(net, X, T, l2, chunk_size, value_scale, sample_weight)
    net.reserve(min(chunk_size, objective.n))
    curve: list[float] = []

    def record(xk: np.ndarray) -> None:
        curve.append(objective.value_at(xk))
        if verbose:
            print(f"Iteration {len(curve)}, loss = {curve[-1]:.8f}")

    options: dict[str, Any] = {"maxiter": max_iter, "maxfun": max_fun, "gtol": tol}
    if ftol is not None:
        options["ftol"] = ftol
    result = minimize(objective, objective.read(), method="L-BFGS-B", jac=True,
                      callback=record, options=options)
    objective.write(result.x)
    loss = float(result.fun)
    if not math.isfinite(loss):
        raise ValueError(f"L-BFGS ended on a non-finite loss ({loss}); scale the inputs or "
                         f"raise l2 (SciPy: {result.message})")
    return {"loss": loss, "loss_curve": curve, "n_iter": int(result.nit),
            "n_fun": int(result.nfev), "converged": bool(result.success),
            "status": int(result.status), "message": str(result.message)}


__all__ = ["INSTALL_HINT", "fit_lbfgs"]
