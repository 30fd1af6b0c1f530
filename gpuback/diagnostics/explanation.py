"""``gpuback explain``: Bishop eq. 5.55/5.56 on one unit, term by term, checked numerically.

A hidden unit j that sends connections to units k in several later groups gets

    delta_j = dE/da_j = h'(a_j) * sum_k w_kj delta_k        (5.56)

with the sum over **every** k it feeds (5.55: E depends on a_j only through those a_k).
``explain`` lists each term w_kj delta_k, their sum per consumer group and in all, and
compares h'(a_j) times the sum with dE/da_j measured by central differences that
perturb a_j itself (not a weight). The full sum matches; the sum over any one group
alone does not.

A unit of a layer-normalised group reaches E through every unit i of its group (the mean
and the variance depend on every a_j), so there the terms are the group's own:

    delta_j = sum_i (du_i/da_j) dE/du_i,   dE/du_i = h'(u_i) sum_k w_ki delta_k

with u_i = gain_i xhat_i + shift_i what unit i's activation reads and du_i/da_j = gain_i
rstd (1[i = j] - 1/N - xhat_i xhat_j / N) over the N units (5.55 inside the group).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..core.checks import is_integer
from ..core.spec import NORM_EPS, gain_name
from ..network import Network

# x feeds h; h feeds g1 (dense), g2 (sparse) and, skipping a layer, the output y.
DEMO_SPEC: dict[str, Any] = {
    "groups": [{"name": "x", "size": 3}, {"name": "h", "size": 4, "activation": "tanh"},
               {"name": "g1", "size": 3, "activation": "sigmoid"},
               {"name": "g2", "size": 2, "activation": "softplus"},
               {"name": "y", "size": 2, "activation": "identity"}],
    "connections": [
        {"src": "x", "dst": "h", "kind": "dense"},
        {"src": "h", "dst": "g1", "kind": "dense"},
        {"src": "h", "dst": "g2", "kind": "sparse", "edges": [[0, 1, 3, 0], [0, 1, 0, 1]]},
        {"src": "g1", "dst": "y", "kind": "dense"},
        {"src": "g2", "dst": "y", "kind": "dense"},
        {"src": "h", "dst": "y", "kind": "dense"},
    ],
    "input": "x", "output": "y", "loss": "sum_of_squares",
}


@dataclass(frozen=True)
class Term:
    group: str  # the consumer's group
    unit: int  # k
    weight: float  # w_kj
    delta: float  # delta_k


@dataclass
class Explanation:
    group: str
    unit: int
    a: float
    h_prime: float
    terms: list[Term]
    backprop_delta: float  # delta_j from loss_and_grads
    finite_difference: float  # dE/da_j, central differences on a_j
    eps: float
    per_group: dict[str, float] = field(default_factory=dict)  # sum of w_kj delta_k by group
    # a layer-normalised unit: the terms are (du_i/da_j, dE/du_i) over its own group's units
    # i, h_prime is 1 (the derivatives are inside the terms) and per_group holds each
    # consumer group's share of the sum
    within_group: bool = False

    @property
    def total(self) -> float:
        return sum(t.weight * t.delta for t in self.terms)

    def relative_error(self, value: float) -> float:
        scale = max(abs(self.finite_difference), np.finfo(float).tiny)
        return abs(value - self.finite_difference) / scale

    def as_dict(self) -> dict[str, Any]:
        """The explanation as JSON-serialisable data, with the sums and their errors."""
        full = self.h_prime * self.total
        return {**asdict(self), "sum": self.total, "h_prime_times_sum": full,
                "relative_error": self.relative_error(full),
                "relative_error_per_group": {g: self.relative_error(self.h_prime * v)
                                             for g, v in self.per_group.items()}}

    def __str__(self) -> str:
        if self.within_group:
            return self._within_group_text()
        j = f"{self.group}[{self.unit}]"
        lines = [f"Unit j = {j}: a_j = {self.a:.6g}, h'(a_j) = {self.h_prime:.6g}",
                 f"It feeds {len(self.terms)} units in {len(self.per_group)} groups "
                 f"({', '.join(self.per_group)}). Bishop 5.56: delta_j = h'(a_j) * sum_k "
                 "w_kj delta_k, over every k.", "",
                 f"{'k':<10} {'w_kj':>13} {'delta_k':>13} {'w_kj*delta_k':>14}",
                 "-" * 53]
        lines += [f"{t.group + f'[{t.unit}]':<10} {t.weight:>13.6g} {t.delta:>13.6g} "
                  f"{t.weight * t.delta:>14.6g}" for t in self.terms]
        lines += ["-" * 53, f"{'sum over every k':<38} {self.total:>14.6g}", "",
                  f"h'(a_j) * sum           = {self.h_prime * self.total:.10g}",
                  f"delta_j from backprop   = {self.backprop_delta:.10g}",
                  f"dE/da_j, perturbing a_j = {self.finite_difference:.10g} "
                  f"(central differences, eps {self.eps:g})",
                  "relative error of the full sum: "
                  f"{self.relative_error(self.h_prime * self.total):.2e}",
                  "", "One path alone is not enough:"]
        for name, partial in self.per_group.items():
            value = self.h_prime * partial
            lines.append(f"  only via {name:<6}: h'(a_j) * {partial:>11.6g} = {value:>12.6g}  "
                         f"(relative error {self.relative_error(value):.2e})")
        return "\n".join(lines)


    def _within_group_text(self) -> str:
        j = f"{self.group}[{self.unit}]"
        lines = [f"Unit j = {j}: a_j = {self.a:.6g}, in a layer-normalised group of "
                 f"{len(self.terms)} units",
                 "Every u_i of the group depends on a_j through its mean and variance "
                 "(5.55 inside the group):",
                 "delta_j = sum_i du_i/da_j * dE/du_i, dE/du_i = h'(u_i) * sum_k w_ki "
                 "delta_k, over every unit i of the group.", "",
                 f"{'i':<10} {'du_i/da_j':>13} {'dE/du_i':>13} {'product':>14}", "-" * 53]
        lines += [f"{t.group + f'[{t.unit}]':<10} {t.weight:>13.6g} {t.delta:>13.6g} "
                  f"{t.weight * t.delta:>14.6g}" for t in self.terms]
        lines += ["-" * 53, f"{'sum over every i':<38} {self.total:>14.6g}", "",
                  f"delta_j from backprop   = {self.backprop_delta:.10g}",
                  f"dE/da_j, perturbing a_j = {self.finite_difference:.10g} "
                  f"(central differences, eps {self.eps:g})",
                  f"relative error of the full sum: {self.relative_error(self.total):.2e}"]
        if len(self.per_group) > 1:
            lines += ["", "One consumer group alone is not enough:"]
        for name, partial in self.per_group.items() if len(self.per_group) > 1 else ():
            lines.append(f"  only via {name:<6}: {partial:>12.6g}  (relative error "
                         f"{self.relative_error(partial):.2e})")
        return "\n".join(lines)


def default_group(net: Network) -> str:
    """The hidden group to explain when none is named: the one that feeds the most later
    groups (Bishop 5.55's sum then spans them all), the first in the network's order."""
    plan = net.plan
    hidden = [g for g in plan.computed if g != plan.output]
    if not hidden:
        raise ValueError("group: the network has no hidden group to explain (its input "
                         "feeds the output directly)")
    consumers = {g: len({b.dst for b in plan.connections if b.src == g}) for g in hidden}
    return max(hidden, key=lambda g: consumers[g])  # max keeps the first of equals


def explain(net: Network | None = None, group: str | None = None, unit: int = 0, x: Any = None,
            t: Any = None, eps: float = 1e-5, seed: int = 0,
            backend: str = "numpy") -> Explanation:
    """Explain delta_j for ``unit`` of ``group`` on one sample (a demo network by default).

    ``group``: a hidden group of the network; by default ``default_group(net)``.

    ``net``: any network, on any backend and in any dtype; the explanation is computed on
    a float64 copy of it on the same backend (central differences need float64). Without
    it, the demo network ``DEMO_SPEC`` on ``backend``. ``x`` is one input row and ``t``
    its target: a class label, a row of the outputs' targets, or either as a batch of one
    (random ones, reproducible from ``seed``, by default).
    """
    rng = np.random.default_rng(seed)
    if net is None:
        net = Network(DEMO_SPEC, backend=backend, seed=seed)
        net.set_parameters({g["name"]: rng.normal(scale=0.5, size=g["size"])
                            for g in DEMO_SPEC["groups"][1:]})
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a gpuback.Network or None, got {type(net).__name__}")
    plan = net.plan
    if group is None:
        group = default_group(net)
    if group not in plan.groups or group in (plan.input, plan.output):
        hidden = [g for g in plan.computed if g != plan.output]
        raise ValueError(f"group: expected a hidden group, one of {hidden}, got {group!r}")
    size = plan.groups[group].size
    if not is_integer(unit, 0, size - 1):
        raise ValueError(f"unit: expected an integer in [0, {size}) for group {group!r}, "
                         f"got {unit!r}")
    unit = int(unit)  # (a NumPy integer too: the explanation is plain data)
    if net.dtype != "float64":
        exact = Network(net.spec, backend=net.backend, dtype="float64")
        exact.set_parameters(net.parameters())
        net = exact
    x = rng.normal(size=(1, plan.n_in)) if x is None else np.asarray(x, float).reshape(1, -1)
    if t is None:
        t = random_targets(plan.loss, plan.n_out, 1, rng)
    else:  # one sample's target: a label, or a row of n_out values, as a batch of one
        t = np.asarray(t)
        if t.ndim == 0 or (t.ndim == 1 and t.size == plan.n_out and plan.n_out > 1):
            t = t.reshape(1) if t.ndim == 0 else t.reshape(1, -1)

    trace = net.trace(x, t)
    assert trace.delta is not None  # targets were given
    params = net.parameters()
    finite = (net.loss(x, t, nudge=(group, unit, eps))
              - net.loss(x, t, nudge=(group, unit, -eps))) / (2 * eps)
    a_j = float(trace.a[group][0, unit])
    backprop = float(trace.delta[group][0, unit])
    if plan.groups[group].norm is not None:
        terms, per_group = _within_group_terms(net, trace, params, group, unit)
        return Explanation(group, unit, a_j, 1.0, terms, backprop, finite, eps, per_group,
                           within_group=True)
    h_prime = float(trace.h_prime[group][0, unit])
    terms, per_group = [], {}
    for dst, pairs in _consumers(net, trace, params, group, unit).items():
        delta = trace.delta[dst][0]
        terms += [Term(dst, k, float(w), float(delta[k])) for k, w in pairs]
        per_group[dst] = sum(float(w) * float(delta[k]) for k, w in pairs)
    return Explanation(group, unit, a_j, h_prime, terms, backprop, finite, eps, per_group)


def _consumers(net: Network, trace: Any, params: dict[str, np.ndarray], group: str,
               unit: int) -> dict[str, list[tuple[int, float]]]:
    """Per consumer group, the (k, w_kj) of every unit k that ``unit`` of ``group`` feeds."""
    out: dict[str, list[tuple[int, float]]] = {}
    for block in net.plan.connections:
        if block.src != group:
            continue
        if block.kind == "identity":  # unit j feeds unit j of dst with weight 1
            pairs = [(unit, 1.0)]
        elif block.kind == "dense":
            pairs = [(k, float(params[block.name][k, unit])) for k in range(block.shape[0])]
        else:
            index = block.index
            assert index is not None  # every sparse block has one
            pairs = [(int(index.dst[e]), float(params[block.name][e]))
                     for e in np.flatnonzero(index.src == unit)]
        out.setdefault(block.dst, []).extend(pairs)
    return out


def _within_group_terms(net: Network, trace: Any, params: dict[str, np.ndarray], group: str,
                        unit: int) -> tuple[list[Term], dict[str, float]]:
    """A layer-normalised unit's terms (du_i/da_j, dE/du_i) over the units i of its group,
    and each consumer group's share of their sum."""
    assert trace.delta is not None
    a = trace.a[group][0]
    size = a.size
    centred = a - a.mean()
    rstd = 1.0 / np.sqrt((centred * centred).mean() + NORM_EPS)
    xhat = centred * rstd
    gain = params[gain_name(group)]
    du_da = gain * rstd * ((np.arange(size) == unit) - 1.0 / size - xhat * xhat[unit] / size)
    h_prime = trace.h_prime[group][0]
    shares: dict[str, np.ndarray] = {}  # per consumer group: sum_k w_ki delta_k, each i
    for i in range(size):
        for dst, pairs in _consumers(net, trace, params, group, i).items():
            acc = shares.setdefault(dst, np.zeros(size))
            acc[i] += sum(w * float(trace.delta[dst][0][k]) for k, w in pairs)
    de_du = h_prime * sum(shares.values(), np.zeros(size))
    terms = [Term(group, i, float(du_da[i]), float(de_du[i])) for i in range(size)]
    per_group = {dst: float(np.sum(du_da * h_prime * acc)) for dst, acc in shares.items()}
    return terms, per_group


def random_targets(loss: str, n_out: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random targets that ``loss`` accepts: class labels for cross-entropy, values in
    [0, 1] for binary cross-entropy, Poisson counts (mean 1, zeros among them) for Poisson,
    normal values for sum of squares."""
    if loss == "cross_entropy":
        return rng.integers(0, n_out, size=n)
    if loss == "binary_cross_entropy":
        return rng.uniform(size=(n, n_out))
    if loss == "poisson":
        return rng.poisson(1.0, size=(n, n_out)).astype(np.float64)
    return rng.normal(size=(n, n_out))
