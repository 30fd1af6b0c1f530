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

Kinks. The expansion above needs E smooth between w - eps and w + eps. A relu (or
leaky relu) unit whose pre-activation a changes side of 0 inside that interval breaks
it: the difference then averages two slopes, and no eps is small enough for every
sample of every network. So with each of the loss evaluations the check records, for
every unit of every group whose activation is in ``KINKED_ACTIVATIONS``, the side of 0
its pre-activation (with layer norm: the normalised value the activation reads) is on
(exactly 0 counts as a side of its own: the kink touched), at the unperturbed point and at
t = -eps, -eps/2, +eps/2, +eps. An entry (or a direction) for which any unit's side differs
between those five points *crossed a kink*: it is
not judged. Each ``ParameterCheck`` counts them (``kinks``) apart from the entries that
were judged (``checked``), and the report says how many crossed. Only the five
evaluated points are looked at: a pre-activation that leaves its side and comes back
between two of them is not seen (it cannot happen where a moves linearly: in the group
a perturbed weight or bias feeds, when that group's inputs do not move). A backprop
error confined to an entry that crossed a kink goes unnoticed; one that shows anywhere
else does not. A check in which every entry crossed a kink judged nothing, and does
not pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import propagation
from ..core.checks import check_int, check_real
from ..core.dropout import DropoutDraw
from ..network import Network

MODES = ("full", "direction")

# The activations of gpuback.core.spec.ACTIVATIONS that are not differentiable everywhere: each
# has one kink, at a = 0 (relu: slopes 0 and 1; leaky relu: 0.01 and 1). Every other
# activation there is smooth. A new piecewise-linear activation belongs here (with its
# kink at 0; one elsewhere needs the side test below changed too).
KINKED_ACTIVATIONS = ("relu", "leaky_relu")


@dataclass(frozen=True)
class ParameterCheck:
    """One parameter (or, in direction mode, one direction): its worst judged entry.

    ``max_rel_error``, ``worst_index``, ``analytic`` (backprop) and ``numeric`` (central
    differences) describe the worst entry among those judged; ``checked`` entries were
    judged and ``kinks`` crossed a kink and were not. With nothing judged (every entry
    crossed, or the parameter has no entries) they are 0.0, (), 0.0, 0.0. In direction
    mode ``worst_index`` is ``(i,)`` for direction i, and ``checked`` + ``kinks`` is 1.
    """

    name: str
    max_rel_error: float
    worst_index: tuple[int, ...]
    analytic: float
    numeric: float
    kinks: int
    checked: int

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data: every field, ``worst_index`` as a list."""
        return {"name": self.name, "max_rel_error": float(self.max_rel_error),
                "worst_index": [int(i) for i in self.worst_index],
                "analytic": float(self.analytic), "numeric": float(self.numeric),
                "kinks": int(self.kinks), "checked": int(self.checked)}


@dataclass(frozen=True)
class GradcheckReport:
    """The settings of a check and its ``ParameterCheck`` per parameter (or direction);
    ``kinks`` and ``checked`` total theirs."""

    mode: str
    eps: float
    tol: float
    floor: float
    checks: list[ParameterCheck] = field(default_factory=list)

    @property
    def max_rel_error(self) -> float:
        """The largest relative error over every judged entry (0.0 when none was judged)."""
        return max((c.max_rel_error for c in self.checks), default=0.0)

    @property
    def kinks(self) -> int:
        """How many entries (directions) crossed a kink and were not judged."""
        return sum(c.kinks for c in self.checks)

    @property
    def checked(self) -> int:
        """How many entries (directions) were judged."""
        return sum(c.checked for c in self.checks)

    @property
    def passed(self) -> bool:
        """Something was judged and every judged error is within ``tol``: a check that judged
        nothing (every entry crossed a kink) confirmed nothing, and does not pass."""
        return self.checked > 0 and self.max_rel_error <= self.tol

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (``json.dumps`` takes it): the settings, the verdict,
        the totals and one dict per check (``ParameterCheck.as_dict``)."""
        return {"mode": self.mode, "eps": float(self.eps), "tol": float(self.tol),
                "floor": float(self.floor), "passed": bool(self.passed),
                "max_rel_error": float(self.max_rel_error), "kinks": int(self.kinks),
                "checked": int(self.checked), "checks": [c.as_dict() for c in self.checks]}

    def __str__(self) -> str:
        head = f"{'parameter':<24} {'max rel error':>14} {'worst index':>14} " \
               f"{'backprop':>14} {'central diff':>14} {'crossed a kink':>14}"
        rows = [head, "-" * len(head)]
        for c in self.checks:
            if c.checked:
                row = f"{c.max_rel_error:>14.3e} {c.worst_index!s:>14} " \
                      f"{c.analytic:>14.6e} {c.numeric:>14.6e}"
            else:
                row = " ".join([f"{'-':>14}"] * 4)
            rows.append(f"{c.name:<24} {row} {c.kinks:>14}")
        rows.append(self._verdict())
        return "\n".join(rows)

    def _verdict(self) -> str:
        settings = f"tolerance {self.tol:g}, mode {self.mode}, eps {self.eps:g}"
        total = self.kinks + self.checked
        if not self.checked:
            if not total:
                return f"FAILED: nothing was judged: nothing to check ({settings})"
            return f"FAILED: nothing was judged: all {self._count(total)} crossed a kink " \
                   f"({settings}); try a smaller eps"
        verdict = "PASSED" if self.passed else "FAILED"
        line = f"{verdict}: max relative error {self.max_rel_error:.3e} ({settings})"
        if self.kinks:
            was = "was" if self.kinks == 1 else "were"
            line += f"; {self.kinks} of {self._count(total)} crossed a kink and {was} not judged"
        return line

    def _count(self, n: int) -> str:
        """``n`` entries (full mode) or directions, in words: "1 entry", "9610 entries"."""
        one, many = ("entry", "entries") if self.mode == "full" else ("direction", "directions")
        return f"{n} {one if n == 1 else many}"


def relative_error(analytic: np.ndarray, numeric: np.ndarray, floor: float) -> np.ndarray:
    """Elementwise ``|g - n| / max(|g|, |n|, floor)``."""
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    error: np.ndarray = np.abs(analytic - numeric) / scale
    return error


def gradcheck(net: Network, X: Any, T: Any, eps: float = 2e-3, mode: str = "full",
              n_directions: int = 4, seed: int = 0, tol: float = 1e-7,
              floor: float = 1e-4, training: bool = False, step: int = 0) -> GradcheckReport:
    """Compare ``net.loss_and_grads(X, T)`` with central differences (5.69) in float64.

    Returns a ``GradcheckReport``: per parameter (or direction) the maximum relative
    error over the entries judged, the worst index and both values there, how many
    entries were judged (``checked``) and how many were not because a relu-family
    pre-activation crossed its kink within the step (``kinks``; see the module
    docstring). ``report.passed`` says whether something was judged and every judged
    error is within ``tol``. ``training=True``: with the dropout masks of training step
    ``step`` (``Network.loss_and_grads``), the same fixed masks at every perturbed point.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    for arg, value in (("eps", eps), ("tol", tol), ("floor", floor)):
        check_real(arg, value, 0, low_open=True)
    check_int("n_directions", n_directions, 1)

    _, grads = net.loss_and_grads(X, T, training=True, step=step) if training else \
        net.loss_and_grads(X, T)
    grads = {k: v.astype(np.float64) for k, v in grads.items()}
    ref = Network(net.spec, backend=net.backend, dtype="float64", seed=net.seed)
    params = {k: v.astype(np.float64) for k, v in net.parameters().items()}
    ref.set_parameters(params)
    probe = _Probe(ref, X, T, ref.dropout_draw(step) if training else None)

    if mode == "full":
        checks = [_check_entries(probe, name, params[name], grads[name], eps, floor)
                  for name in params]
    else:
        rng = np.random.default_rng(seed)
        checks = [_check_direction(probe, params, grads, rng, eps, floor, i)
                  for i in range(n_directions)]
    return GradcheckReport(mode, eps, tol, floor, checks)


def derivative_along(loss_at: Callable[[float], float], eps: float) -> float:
    """dE/dt at t = 0 for E(t) = ``loss_at(t)``: central differences (5.69) at steps eps and
    eps / 2, Richardson-extrapolated to cancel their eps^2 error term."""
    d_eps = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    d_half = (loss_at(eps / 2) - loss_at(-eps / 2)) / eps
    return (4 * d_half - d_eps) / 3


class _Probe:
    """The float64 copy's loss at its current parameters, and whether any kinked unit is on
    another side of 0 than at the unperturbed point: one forward pass and the loss op per
    point, on inputs and targets checked and loaded once (``Network.load_batch``), through
    the engine's public API (``run_forward``, ``run_loss``)."""

    def __init__(self, ref: Network, X: Any, T: Any, dropout: DropoutDraw | None) -> None:
        plan = ref.plan
        self.ws, self.targets = ref.load_batch(X, T)
        self.ref, self.dropout = ref, dropout
        self.kinked = [g for g in plan.computed
                       if plan.groups[g].activation in KINKED_ACTIVATIONS]
        self.base_sides = self._forward()

    def _forward(self) -> list[np.ndarray]:
        """A forward pass; per kinked group, the side of 0 of every pre-activation (-1, 0 or
        +1, feature-major)."""
        self.ref.run_forward(self.ws, dropout=self.dropout)
        plan = self.ref.plan
        return [np.sign(self.ref.ops.to_host(propagation.activation_input(plan, self.ws, g)))
                for g in self.kinked]

    def loss(self) -> tuple[float, bool]:
        """The mean loss here, and whether some kinked unit is on another side than at the
        unperturbed point."""
        sides = self._forward()
        self.ref.run_loss(self.ws, self.targets)
        moved = any(not np.array_equal(now, base)
                    for now, base in zip(sides, self.base_sides, strict=True))
        return propagation.mean_loss(self.ref.ops, self.ws), moved

    def derivative(self, move: Callable[[float], None], eps: float) -> tuple[float, bool]:
        """``derivative_along`` the path ``move(t)`` sets the parameters to, and whether a kink
        was crossed on it; ``move(0.0)`` restores the parameters afterwards."""
        crossed = False

        def loss_at(t: float) -> float:
            nonlocal crossed
            move(t)
            loss, moved = self.loss()
            crossed = crossed or moved
            return loss

        numeric = derivative_along(loss_at, eps)
        move(0.0)
        return numeric, crossed


def _check_entries(probe: _Probe, name: str, w: np.ndarray, g: np.ndarray, eps: float,
                   floor: float) -> ParameterCheck:
    ref = probe.ref
    # one entry at a time, written straight into the flat parameter buffer, taken afresh for
    # every write (Network.flat_parameters: so the next pass rounds the new value below fp32)
    start = ref.layout.offsets[name]
    numeric = np.zeros_like(w)
    crossed = np.zeros(w.shape, dtype=bool)
    for idx in np.ndindex(w.shape):
        at = start + int(np.ravel_multi_index(idx, w.shape))
        value = float(w[idx])

        def move(t: float, at: int = at, value: float = value) -> None:
            # (t = 0 restores the entry; of a -0.0 it writes 0.0, the same to every sum)
            ref.ops.copy_into(ref.flat_parameters[at:at + 1], np.array([value + t]))

        numeric[idx], crossed[idx] = probe.derivative(move, eps)
    judged = ~crossed
    n_checked, n_kinks = int(judged.sum()), int(crossed.sum())
    if not n_checked:
        return ParameterCheck(name, 0.0, (), 0.0, 0.0, n_kinks, 0)
    err = np.where(judged, relative_error(g, numeric, floor), -np.inf)
    worst = np.unravel_index(int(np.argmax(err)), w.shape)
    return ParameterCheck(name, float(err[worst]), tuple(int(i) for i in worst),
                          float(g[worst]), float(numeric[worst]), n_kinks, n_checked)


def _check_direction(probe: _Probe, params: dict[str, np.ndarray],
                     grads: dict[str, np.ndarray], rng: np.random.Generator, eps: float,
                     floor: float, i: int) -> ParameterCheck:
    v = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    norm = np.sqrt(sum(float(np.sum(d * d)) for d in v.values()))
    v = {k: d / norm for k, d in v.items()}

    def move(t: float) -> None:
        probe.ref.set_parameters({k: params[k] + t * v[k] for k in params})

    numeric, crossed = probe.derivative(move, eps)
    name = f"direction {i}"
    if crossed:
        return ParameterCheck(name, 0.0, (), 0.0, 0.0, 1, 0)
    analytic = sum(float(np.sum(grads[k] * v[k])) for k in params)
    err = float(relative_error(np.array(analytic), np.array(numeric), floor))
    return ParameterCheck(name, err, (i,), analytic, numeric, 0, 1)
