"""The weights as scikit-learn holds them: its initial draws (``glorot_uniform``), and the
conversion between its ``coefs_`` / ``intercepts_`` lists and a gpuback network's named
parameters (``network_parameters``, ``fitted_attributes``).

scikit-learn keeps layer ``i``'s weights as an ``(n_in, n_out)`` array ``coefs_[i]`` and
its biases as ``intercepts_[i]``; gpuback keeps a dense block's weights as ``(n_dst,
n_src)`` under the name ``"src->dst"``, a sparse block's as one value per edge, and a
group's biases under the group's name."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

from ..core.engine import Engine


def glorot_uniform(units: list[int], activation: str, rs: np.random.RandomState
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """scikit-learn's initial ``coefs_`` and ``intercepts_`` for the layer sizes ``units``,
    drawn exactly as its ``_init_coef`` draws them (float64): for each layer in turn, the
    weights then the biases, uniform in ``+-sqrt(f / (fan_in + fan_out))`` from ``rs``, with
    ``f = 2`` for the logistic activation and 6 otherwise (Glorot and Bengio, 2010)."""
    factor = 2.0 if activation == "logistic" else 6.0
    coefs, intercepts = [], []
    for fan_in, fan_out in pairwise(units):
        bound = np.sqrt(factor / (fan_in + fan_out))
        coefs.append(rs.uniform(-bound, bound, (fan_in, fan_out)))
        intercepts.append(rs.uniform(-bound, bound, fan_out))
    return coefs, intercepts


def network_parameters(net: Engine, coefs: list[np.ndarray],
                       intercepts: list[np.ndarray]) -> dict[str, np.ndarray]:
    """``coefs`` and ``intercepts`` (one per block of ``net``, in order) as ``net``'s named
    parameters: a dense block's weights transposed, a sparse block's taken at its edges."""
    params: dict[str, np.ndarray] = {}
    for block, coef, intercept in zip(net.plan.blocks, coefs, intercepts, strict=True):
        if block.index is None:
            params[block.name] = np.ascontiguousarray(coef.T)
        else:
            params[block.name] = coef[block.index.src, block.index.dst]
        params[block.dst] = intercept
    return params


def fitted_attributes(net: Engine) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``coefs_`` (``(n_in, n_out)`` arrays) and ``intercepts_`` of ``net``: a dense block's
    weights transposed, a sparse block's edge values scattered into a dense array (zeros
    where there is no edge)."""
    params = net.parameters()
    coefs, intercepts = [], []
    for block in net.plan.blocks:
        w = params[block.name]
        if block.index is None:
            coefs.append(np.ascontiguousarray(w.T))
        else:
            dense: Any = np.zeros((net.plan.groups[block.src].size,
                                   net.plan.groups[block.dst].size), dtype=w.dtype)
            dense[block.index.src, block.index.dst] = w
            coefs.append(dense)
        intercepts.append(params[block.dst])
    return coefs, intercepts
