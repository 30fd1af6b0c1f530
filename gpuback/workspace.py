"""Per-batch-size buffers, allocated once and reused by every step of that batch size."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .plan import Plan


@dataclass
class Workspace:
    """Feature-major ``(units, batch)`` buffers for one batch size.

    ``z[g]``: outputs z = h(a) of every group (the input group's holds X.T);
    ``a[g]``: pre-activations of every computed group;
    ``delta[g]``: first the accumulator sum_k w_kj delta_k, then delta_j itself (5.56);
    ``targets`` (n_out, batch) or ``labels`` (batch,): the targets of the step;
    ``losses`` (batch,): the per-sample losses E_n.
    """

    batch: int
    z: dict[str, Any]
    a: dict[str, Any]
    delta: dict[str, Any]
    targets: Any
    labels: Any
    losses: Any

    @classmethod
    def allocate(cls, plan: Plan, backend: ModuleType, dtype: Any, batch: int) -> Workspace:
        def buffers(names):
            return {g: backend.zeros((plan.groups[g].size, batch), dtype) for g in names}

        return cls(batch, buffers(plan.order), buffers(plan.computed), buffers(plan.computed),
                   targets=backend.zeros((plan.n_out, batch), dtype),
                   labels=backend.zeros((batch,), np.int64),
                   losses=backend.zeros((batch,), dtype))
