"""Per-step buffers: one arena sized for the largest batch, and views of it for every batch size.

A training run uses several batch sizes (the training batch, the last partial batch of
an epoch, the evaluation batch and its remainder). Each buffer of the arena is a flat
region holding ``units x capacity`` elements; the workspace for batch b views the first
``units x b`` of each region as a C-contiguous ``(units, b)`` array. So switching batch
size allocates nothing; only a batch larger than every one before grows the arena.
The steps run one after another on one stream, so workspaces of different batch sizes
may share memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .layout import ALIGN
from .plan import Plan

if TYPE_CHECKING:
    from ..backends.protocol import Backend

KEPT = 16  # workspaces (sets of views, no memory of their own) kept per arena


@dataclass
class Workspace:
    """Feature-major ``(units, batch)`` buffers for one batch size.

    ``z[g]``: outputs z = h(a) of every group (the input group's holds X.T);
    ``a[g]``: pre-activations of every computed group;
    ``delta[g]``: first the accumulator sum_k w_kj delta_k, then delta_j itself (5.56);
    for a layer-normalised group g only: ``xhat[g]`` the normalised a, ``u[g]`` what its
    activation reads (gain * xhat + shift) and ``rstd[g]`` (batch,) 1 / sqrt(var + eps) per
    sample; for a group with dropout only: ``h[g]``, h(a) before the mask (z holds the
    masked outputs in training), which the derivative reads;
    ``targets`` (n_out, batch) or ``labels`` (batch,): the targets of the step;
    ``losses`` (batch,): the per-sample losses E_n; ``correct`` (batch,): the correct
    predictions per sample (see the loss op).
    """

    batch: int
    z: dict[str, Any]
    a: dict[str, Any]
    delta: dict[str, Any]
    targets: Any
    labels: Any
    losses: Any
    correct: Any
    xhat: dict[str, Any]
    u: dict[str, Any]
    rstd: dict[str, Any]
    h: dict[str, Any]


class Arena:
    """The memory behind every workspace of one network: grown, never shrunk."""

    def __init__(self, plan: Plan, backend: Backend, dtype: Any) -> None:
        self._plan, self._ops, self._dtype = plan, backend, dtype
        self.capacity = 0
        self._floats: Any = None
        self._labels: Any = None
        self._workspaces: dict[int, Workspace] = {}
        self._rows = _rows(plan)

    def reserve(self, batch: int) -> None:
        """Make room for batches of up to ``batch`` samples (allocates only to grow)."""
        if batch <= self.capacity:
            return
        total = _float_count(self._rows, batch)
        self._floats = self._ops.zeros((total,), self._dtype)
        self._labels = self._ops.zeros((batch,), np.int64)
        self.capacity = batch
        self._workspaces.clear()

    def workspace(self, batch: int) -> Workspace:
        """The workspace for ``batch`` samples (views of the arena; grows it if needed)."""
        ws = self._workspaces.get(batch)
        if ws is not None:
            return ws
        self.reserve(batch)
        views, start = {}, 0
        for key, rows in self._rows.items():
            views[key] = self._floats[start:start + rows * batch].reshape(rows, batch)
            start += _aligned(rows * self.capacity)
        plan = self._plan
        normed = _normed(plan)
        ws = Workspace(batch, {g: views["z", g] for g in plan.order},
                       {g: views["a", g] for g in plan.computed},
                       {g: views["delta", g] for g in plan.computed},
                       targets=views["targets", None], labels=self._labels[:batch],
                       losses=views["losses", None].reshape(batch),
                       correct=views["correct", None].reshape(batch),
                       xhat={g: views["xhat", g] for g in normed},
                       u={g: views["u", g] for g in normed},
                       rstd={g: views["rstd", g].reshape(batch) for g in normed},
                       h={g: views["h", g] for g in plan.dropped})
        if len(self._workspaces) >= KEPT:
            self._workspaces.pop(next(iter(self._workspaces)))
        self._workspaces[batch] = ws
        return ws


def workspace_bytes(plan: Plan, dtype: Any, batch: int) -> int:
    """Bytes ``Arena.reserve(batch)`` allocates for ``plan`` in ``dtype``, computed from the
    plan alone (nothing is allocated): its float buffer and its int64 labels."""
    return _float_count(_rows(plan), batch) * int(np.dtype(dtype).itemsize) + \
        batch * np.dtype(np.int64).itemsize


def _rows(plan: Plan) -> dict[tuple[str, str | None], int]:
    """(kind, group) -> rows of the arena's float buffer, in a fixed order; kind None:
    targets, losses, correct."""
    rows: list[tuple[tuple[str, str | None], int]] = [
        (("z", g), plan.groups[g].size) for g in plan.order]
    rows += [((kind, g), plan.groups[g].size) for kind in ("a", "delta")
             for g in plan.computed]
    rows += [((kind, g), plan.groups[g].size) for kind in ("xhat", "u") for g in _normed(plan)]
    rows += [(("rstd", g), 1) for g in _normed(plan)]
    rows += [(("h", g), plan.groups[g].size) for g in plan.dropped]
    rows += [(("targets", None), plan.n_out), (("losses", None), 1),
             (("correct", None), 1)]
    return dict(rows)


def _normed(plan: Plan) -> list[str]:
    """The layer-normalised groups, in topological order."""
    return [g for g in plan.computed if plan.groups[g].norm is not None]


def _float_count(rows: dict[tuple[str, str | None], int], batch: int) -> int:
    """Elements of the float buffer for batches of ``batch``: each region aligned."""
    return sum(_aligned(r * batch) for r in rows.values())


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN
