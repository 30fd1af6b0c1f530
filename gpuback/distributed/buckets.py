"""Gradient buckets: a data-parallel step's all-reduce, started while backward goes on.

Backward (``gpuback.core.propagation.backward``) visits the groups in reverse topological order.
Once it has finished group g, the gradients of g's bias and of every block into g are final:
nothing later in the step writes them. The flat layout (``Plan.parameter_shapes``) puts the
weights in the topological order of their destination group, then the biases in topological
order, so after g every final gradient lies in a suffix of the weights and a suffix of the
biases. A bucket is the gradients finished since the previous bucket started: at most two
ranges of the flat gradient buffer (one, where they meet). As PyTorch DDP does (its
``bucket_cap_mb``, 25 MB by default), a bucket's all-reduce starts as soon as it holds at
least ``bucket_bytes``, and the last one when backward has finished its last group; the rest
of backward then runs while the first buckets travel. Every rank cuts the same buckets from
the same plan, so the collectives agree in number, order and size on every rank.
"""

from __future__ import annotations

from ..core.checks import is_integer
from ..core.layout import FlatLayout
from ..core.plan import Plan

BUCKET_BYTES = 25 * 2**20  # PyTorch DDP's default bucket_cap_mb (25)

Ranges = tuple[tuple[int, int], ...]


def cut_buckets(plan: Plan, layout: FlatLayout, itemsize: int,
                bucket_bytes: int) -> dict[str, Ranges]:
    """For each computed group: the ranges ``[lo, hi)`` of the flat gradient buffer whose
    all-reduce starts once backward has finished that group (``()`` for none yet). Together
    they cover ``[0, layout.size)`` once, padding included; ``bucket_bytes`` of 0 starts one
    bucket per group, one larger than the network a single all-reduce at the end."""
    if not is_integer(bucket_bytes, 0):
        raise ValueError(f"bucket_bytes: expected a whole number of bytes >= 0, got "
                         f"{bucket_bytes!r}")
    groups = list(reversed(plan.computed))
    biases_from = layout.offsets[plan.computed[0]]  # the first bias: the weights end there
    weights_done, started_weights = biases_from, biases_from
    started_biases = layout.size
    buckets: dict[str, Ranges] = {}
    for i, g in enumerate(groups):
        weights_done = min([weights_done] + [layout.offsets[b.name]
                                             for b in plan.groups[g].incoming
                                             if b.kind != "identity"])  # (no weight)
        biases_done = layout.offsets[g]
        ranges = _merged(((weights_done, started_weights), (biases_done, started_biases)))
        pending = sum(hi - lo for lo, hi in ranges) * itemsize
        if ranges and (pending >= bucket_bytes or i == len(groups) - 1):
            buckets[g] = ranges
            started_weights, started_biases = weights_done, biases_done
        else:
            buckets[g] = ()
    return buckets


def _merged(ranges: tuple[tuple[int, int], ...]) -> Ranges:
    """The non-empty ``ranges``, the two joined into one where they meet."""
    kept = [(lo, hi) for lo, hi in ranges if hi > lo]
    if len(kept) == 2 and kept[0][1] == kept[1][0]:
        return ((kept[0][0], kept[1][1]),)
    return tuple(kept)
