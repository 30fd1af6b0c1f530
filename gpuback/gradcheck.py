"""Gradient checking by central differences (Bishop eq. 5.69), in float64.

    D(eps) = (E(w + eps) - E(w - eps)) / (2 eps)  =  dE/dw + c eps^2 + O(eps^4)

Plain central differences cannot confirm a gradient to 1e-7: with eps small enough
to make c eps^2 negligible, the rounding error of E divided by eps dominates. So the
estimate used here is D at two steps combined by one Richardson extrapolation step,
``(4 D(eps / 2) - D(eps)) / 3``, which cancels the eps^2 term: error O(eps^4) plus
rounding of order 1e-16 / eps. With the default eps = 2e-3 both are far below 1e-7.

The backprop gradient comes from the network under test (its backend and dtype);
the finite differences from a float64 copy of it on the same backend. Two modes:

* ``"full"``: every parameter entry is perturbed in turn (4 forward passes each).
* ``"direction"``: for networks too large for that, a few random unit directions v
  over all parameters at once; the directional derivative of E along v is compared
  with the dot product g . v.

The relative error of a pair (g, n) is ``|g - n| / max(|g|, |n|, floor)``. The
floor keeps entries whose true gradient is zero (a dead relu unit, say) from
dividing rounding noise by zero: below ``floor`` (default 1e-4) the error is
measured in absolute terms, scaled by 1 / floor.

A perturbation that moves a pre-activation across a kink (relu at 0) makes the
finite difference meaningless there; keep eps well below the distance of the
pre-activations from 0, or use smooth activations for a check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .network import Network

MODES = ("full", "direction")


@dataclass(frozen=True)
class ParameterCheck:
    """The worst entry of one parameter (or, in direction mode, of one direction)."""

    name: str
    max_rel_error: float
    worst_index: tuple[int, ...]
    analytic: float
    numeric: float


@dataclass(frozen=True)
class GradcheckReport:
    mode: str
    eps: float
    tol: float
    floor: float
    checks: list[ParameterCheck] = field(default_factory=list)

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel_error for c in self.checks), default=0.0)

    @property
    def passed(self) -> bool:
        return self.max_rel_error <= self.tol

    def __str__(self) -> str:
        head = f"{'parameter':<24} {'max rel error':>14} {'worst index':>14} " \
               f"{'backprop':>14} {'central diff':>14}"
        rows = [head, "-" * len(head)]
        for c in self.checks:
            rows.append(f"{c.name:<24} {c.max_rel_error:>14.3e} {c.worst_index!s:>14} "
                        f"{c.analytic:>14.6e} {c.numeric:>14.6e}")
        verdict = "PASSED" if self.passed else "FAILED"
        rows.append(f"{verdict}: max relative error {self.max_rel_error:.3e} "
                    f"(tolerance {self.tol:g}, mode {self.mode}, eps {self.eps:g})")
        return "\n".join(rows)


def relative_error(analytic: np.ndarray, numeric: np.ndarray, floor: float) -> np.ndarray:
    """Elementwise ``|g - n| / max(|g|, |n|, floor)``."""
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    return np.abs(analytic - numeric) / scale


def gradcheck(net: Network, X: Any, T: Any, eps: float = 2e-3, mode: str = "full",
              n_directions: int = 4, seed: int = 0, tol: float = 1e-7,
              floor: float = 1e-4) -> GradcheckReport:
    """Compare ``net.loss_and_grads(X, T)`` with central differences (5.69) in float64.

    Returns a ``GradcheckReport``: per parameter (or direction) the maximum relative
    error, the worst index and both values there; ``report.passed`` says whether every
    error is within ``tol``.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    for arg, value in (("eps", eps), ("tol", tol), ("floor", floor)):
        if not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{arg}: expected a positive finite number, got {value!r}")
    if isinstance(n_directions, bool) or not isinstance(n_directions, int) or n_directions < 1:
        raise ValueError(f"n_directions: expected a positive integer, got {n_directions!r}")

    _, grads = net.loss_and_grads(X, T)
    grads = {k: v.astype(np.float64) for k, v in grads.items()}
    ref = Network(net.spec, backend=net.backend, dtype="float64")
    params = {k: v.astype(np.float64) for k, v in net.parameters().items()}
    ref.set_parameters(params)

    if mode == "full":
        checks = [_check_entries(ref, X, T, name, params[name], grads[name], eps, floor)
                  for name in params]
    else:
        rng = np.random.default_rng(seed)
        checks = [_check_direction(ref, X, T, params, grads, rng, eps, floor, i)
                  for i in range(n_directions)]
    return GradcheckReport(mode, eps, tol, floor, checks)


def derivative_along(loss_at: Callable[[float], float], eps: float) -> float:
    """dE/dt at t = 0 for E(t) = ``loss_at(t)``: central differences (5.69) at steps eps and
    eps / 2, Richardson-extrapolated to cancel their eps^2 error term."""
    d_eps = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    d_half = (loss_at(eps / 2) - loss_at(-eps / 2)) / eps
    return (4 * d_half - d_eps) / 3


def _check_entries(ref: Network, X: Any, T: Any, name: str, w: np.ndarray, g: np.ndarray,
                   eps: float, floor: float) -> ParameterCheck:
    numeric = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        def loss_at(t: float, idx: tuple[int, ...] = idx) -> float:
            moved = w.copy()
            moved[idx] += t
            ref.set_parameters({name: moved})
            return ref.loss(X, T)

        numeric[idx] = derivative_along(loss_at, eps)
    ref.set_parameters({name: w})
    if w.size == 0:
        return ParameterCheck(name, 0.0, (), 0.0, 0.0)
    err = relative_error(g, numeric, floor)
    worst = np.unravel_index(int(np.argmax(err)), w.shape)
    return ParameterCheck(name, float(err[worst]), tuple(int(i) for i in worst),
                          float(g[worst]), float(numeric[worst]))


def _check_direction(ref: Network, X: Any, T: Any, params: dict[str, np.ndarray],
                     grads: dict[str, np.ndarray], rng: np.random.Generator, eps: float,
                     floor: float, i: int) -> ParameterCheck:
    v = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    norm = np.sqrt(sum(float(np.sum(d * d)) for d in v.values()))
    v = {k: d / norm for k, d in v.items()}

    def loss_at(t: float) -> float:
        ref.set_parameters({k: params[k] + t * v[k] for k in params})
        return ref.loss(X, T)

    numeric = derivative_along(loss_at, eps)
    ref.set_parameters(params)
    analytic = sum(float(np.sum(grads[k] * v[k])) for k in params)
    err = float(relative_error(np.array(analytic), np.array(numeric), floor))
    return ParameterCheck(f"direction {i}", err, (i,), analytic, numeric)
