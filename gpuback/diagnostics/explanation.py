"""``gpuback explain``: Bishop eq. 5.55/5.56 on one unit, term by term, checked numerically.

A hidden unit j that sends connections to units k in several later groups gets

    delta_j = dE/da_j = h'(a_j) * sum_k w_kj delta_k        (5.56)

with the sum over **every** k it feeds (5.55: E depends on a_j only through those a_k).
``explain`` lists each term w_kj delta_k, their sum per consumer group and in all, and
compares h'(a_j) times the sum with dE/da_j measured by central differences that
perturb a_j itself (not a weight). The full sum matches; the sum over any one group
alone does not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..core.checks import is_integer
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
    a_j, h_prime = float(trace.a[group][0, unit]), float(trace.h_prime[group][0, unit])
    terms, per_group = [], {}
    for block in plan.connections:
        if block.src != group:
            continue
        delta = trace.delta[block.dst][0]
        if block.kind == "identity":  # unit j feeds unit j of dst with weight 1
            pairs = [(unit, 1.0)]
        elif block.kind == "dense":
            pairs = [(k, params[block.name][k, unit]) for k in range(block.shape[0])]
        else:
            index = block.index
            assert index is not None  # every sparse block has one
            pairs = [(int(index.dst[e]), params[block.name][e])
                     for e in np.flatnonzero(index.src == unit)]
        for k, w in pairs:
            terms.append(Term(block.dst, k, float(w), float(delta[k])))
        per_group[block.dst] = sum(float(w) * float(delta[k]) for k, w in pairs)

    finite = (net.loss(x, t, nudge=(group, unit, eps))
              - net.loss(x, t, nudge=(group, unit, -eps))) / (2 * eps)
    return Explanation(group, unit, a_j, h_prime, terms, float(trace.delta[group][0, unit]),
                       finite, eps, per_group)


def random_targets(loss: str, n_out: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random targets that ``loss`` accepts: class labels for cross-entropy, values in
    [0, 1] for binary cross-entropy, normal values for sum of squares."""
    if loss == "cross_entropy":
        return rng.integers(0, n_out, size=n)
    if loss == "binary_cross_entropy":
        return rng.uniform(size=(n, n_out))
    return rng.normal(size=(n, n_out))
