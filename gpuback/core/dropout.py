"""Which dropout masks a training pass draws (Bishop 5.55 with a mask): the network's seed,
the training step and, for each sample of the batch, its index in the step's global batch.

A group with dropout p computes z = h(a) m / (1 - p) in training, so its delta is
h'(a) m / (1 - p) sum_k w_kj delta_k: the same mask scales the forward output and the
backward accumulator. Nothing stores it: each backend draws m[k, n] from (seed, step,
group, unit k, sample n) by ``gpuback.kernels.mask_hash``, again in the backward pass.
So every backend draws the same masks bitwise, a resumed run draws what the unbroken one
would have, and in a data-parallel run each rank draws the masks of its own rows of the
global batch: those of the single-process run.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kernels.mask_hash import dropout_key
from .plan import Plan


@dataclass(frozen=True)
class DropoutDraw:
    """One training pass's masks: ``seed`` (the network's), ``step`` (the training step,
    counted from 0 over the network's whole training) and ``first_sample`` (the index of
    the pass's first row in the step's global batch)."""

    seed: int
    step: int
    first_sample: int = 0

    def key(self, plan: Plan, group: str) -> int:
        """The 32-bit key of this pass's masks in ``group`` (its place in the plan's order)."""
        return int(dropout_key(self.seed, self.step, plan.order.index(group)))
