"""Reproducible initial weights: fan-in scaled normals, zero biases.

Blocks are drawn in spec order from ``numpy.random.default_rng(seed)`` in float64
and then cast, so the same seed gives the same network on every backend and, up to
rounding, in every dtype.

For a unit in group g, fan-in is the number of connections it receives from all
its incoming blocks (averaged over g's units); fan-out of a source group is the
number of connections its units send, averaged likewise. A block into a group with
a relu-family activation (relu, leaky_relu) is drawn with He's standard deviation
sqrt(2 / fan_in); every other block with Glorot's sqrt(2 / (fan_in + fan_out)).
"""

from __future__ import annotations

import numpy as np

from .plan import Plan

RELU_FAMILY = ("relu", "leaky_relu")


def initial_parameters(plan: Plan, seed: int) -> dict[str, np.ndarray]:
    """Float64 parameters for ``plan``: weights per block in spec order, then zero biases."""
    rng = np.random.default_rng(seed)
    received = {g: 0 for g in plan.order}
    sent = {g: 0 for g in plan.order}
    for b in plan.blocks:
        n = int(np.prod(b.shape))
        received[b.dst] += n
        sent[b.src] += n
    params: dict[str, np.ndarray] = {}
    for b in plan.blocks:
        fan_in = received[b.dst] / plan.groups[b.dst].size
        fan_out = sent[b.src] / plan.groups[b.src].size
        if plan.groups[b.dst].activation in RELU_FAMILY:
            std = np.sqrt(2.0 / fan_in)
        else:
            std = np.sqrt(2.0 / (fan_in + fan_out))
        params[b.name] = rng.normal(0.0, std, size=b.shape)
    for g in plan.computed:
        params[g] = np.zeros(plan.groups[g].size)
    return params
