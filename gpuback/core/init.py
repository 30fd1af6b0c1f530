"""Reproducible initial weights: fan-in scaled normals, zero biases, unit layer-norm gains.

Blocks are drawn in spec order from ``numpy.random.default_rng(seed)`` in float64
and then cast, so the same seed gives the same network on every backend and, up to
rounding, in every dtype.

For a unit in group g, fan-in is the number of connections it receives from all
its incoming blocks (averaged over g's units); fan-out of a source group is the
number of connections its units send, averaged likewise. A block into a group with
a relu-family activation (relu, leaky_relu) is drawn with He's standard deviation
sqrt(2 / fan_in); every other block with Glorot's sqrt(2 / (fan_in + fan_out)).

The draws come in chunks of at most ``CHUNK`` float64 values (``weight_chunks``), each
block's weights in C order, so that no float64 copy of a whole network is ever made:
``Network`` casts each chunk straight into its parameter buffer. ``Generator.normal``
drawn in consecutive chunks gives the values of one call of the total size (each value
takes the next draws of the bit generator; ``tests/core/test_memory.py`` holds it to
that), so the chunk size changes no weight.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .plan import Plan

RELU_FAMILY = ("relu", "leaky_relu")
CHUNK = 1 << 20  # float64 values drawn at once (8 MiB)


def staging_bytes(dtype: Any, weights: int) -> int:
    """Host bytes the initialisation of ``weights`` weights holds at once: one float64 chunk
    and its cast to ``dtype``."""
    return min(weights, CHUNK) * (8 + int(np.dtype(dtype).itemsize))


def weight_scales(plan: Plan) -> dict[str, float]:
    """The standard deviation of each block's initial weights (He or Glorot, see above)."""
    received = {g: 0 for g in plan.order}
    sent = {g: 0 for g in plan.order}
    for b in plan.blocks:
        n = int(np.prod(b.shape, dtype=np.int64))
        received[b.dst] += n
        sent[b.src] += n
    scales = {}
    for b in plan.blocks:
        fan_in = received[b.dst] / plan.groups[b.dst].size
        fan_out = sent[b.src] / plan.groups[b.src].size
        if plan.groups[b.dst].activation in RELU_FAMILY:
            scales[b.name] = float(np.sqrt(2.0 / fan_in))
        else:
            scales[b.name] = float(np.sqrt(2.0 / (fan_in + fan_out)))
    return scales


def weight_chunks(plan: Plan, seed: int,
                  chunk: int | None = None) -> Iterator[tuple[str, int, np.ndarray]]:
    """Every block's initial weights in spec order as ``(block name, start, values)``:
    float64 ``values`` (at most ``chunk`` of them, default ``CHUNK``) for the flat C-order
    positions ``start .. start + len(values)`` of the block's weight array."""
    chunk = CHUNK if chunk is None else chunk
    rng = np.random.default_rng(seed)
    scales = weight_scales(plan)
    for b in plan.blocks:
        std = scales[b.name]
        total = int(np.prod(b.shape, dtype=np.int64))
        for start in range(0, total, chunk):
            yield b.name, start, rng.normal(0.0, std, size=min(chunk, total - start))



def unit_gains(plan: Plan) -> dict[str, np.ndarray]:
    """The parameters that start at one: every layer-normalised group's gain (its shift, as
    every bias, starts at zero). Nothing is drawn: the weights do not change."""
    return {group.parameters[1]: np.ones(group.size) for group in plan.groups.values()
            if group.norm is not None}
