"""Gradient buckets (gpuback.buckets): what a data-parallel step all-reduces while backward
goes on must be final when it starts, and every gradient must be in exactly one bucket."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.random_specs import chain_spec, random_dag_spec, random_residual_spec

import gpuback
from gpuback.core.plan import compile_plan
from gpuback.core.spec import validate_spec
from gpuback.distributed.buckets import cut_buckets
from gpuback.optim.param_options import owners

SPECS = [("chain", chain_spec([5, 7, 6, 3], "tanh", "cross_entropy")),
         ("sparse-chain", chain_spec([5, 5, 3, 3], "softplus", "cross_entropy", kind="sparse",
                                     seed=1))]
SPECS += [(f"dag-{seed}", random_dag_spec(seed, n_hidden=3, sizes=(1, 3, 5)))
          for seed in range(5)]
SPECS += [(f"residual-{seed}", random_residual_spec(seed, n_hidden=3)) for seed in range(2)]


def _plan_and_layout(spec: dict):
    plan = compile_plan(validate_spec(spec))
    return plan, gpuback.core.layout.FlatLayout.of(plan.parameter_shapes())


@pytest.mark.parametrize(("name", "spec"), SPECS, ids=[n for n, _ in SPECS])
@pytest.mark.parametrize("bucket_bytes", [0, 100, 2000, 1 << 40])
def test_buckets_cover_the_buffer_once_each_gradient_after_its_group(name: str, spec: dict,
                                                                    bucket_bytes: int) -> None:
    plan, layout = _plan_and_layout(spec)
    buckets = cut_buckets(plan, layout, 8, bucket_bytes)
    assert list(buckets) == list(reversed(plan.computed))
    covered = np.zeros(layout.size, dtype=int)
    position = {g: i for i, g in enumerate(plan.order)}
    owner = owners(plan)
    ends = [*sorted(layout.offsets.values())[1:], layout.size]
    extent = {p: (o, min(e for e in ends if e > o)) for p, o in layout.offsets.items()}
    for g, ranges in buckets.items():
        for lo, hi in ranges:
            assert 0 <= lo < hi <= layout.size
            covered[lo:hi] += 1
        for p, (lo, hi) in extent.items():  # a parameter sent at g belongs to g or later
            if any(a < hi and lo < b for a, b in ranges):
                assert position[owner[p]] >= position[g], (p, g)
    assert (covered == 1).all()
    started = [g for g, ranges in buckets.items() if ranges]
    sizes = [sum(hi - lo for lo, hi in buckets[g]) * 8 for g in started]
    assert all(size >= bucket_bytes for size in sizes[:-1])
    if bucket_bytes == 0:  # one bucket per group
        assert started == list(buckets)
    if bucket_bytes >= layout.size * 8:  # one all-reduce of the whole buffer, at the end
        assert buckets[plan.computed[0]] == ((0, layout.size),) and len(started) == 1


def test_a_bucket_is_cut_no_later_than_it_fills() -> None:
    """A bucket starts at the first group at which it holds ``bucket_bytes``: with a size
    just over the output group's gradients, the first bucket holds the output group's and
    the one before it, the second the rest."""
    spec = chain_spec([5, 7, 6, 3], "tanh", "cross_entropy")
    plan, layout = _plan_and_layout(spec)
    at = layout.offsets
    biases_from, end = at["h1"], layout.size
    output = (biases_from - at["h2->y"]) + (end - at["y"])
    buckets = cut_buckets(plan, layout, 8, 8 * output + 8)
    assert buckets == {"y": (), "h2": ((at["h1->h2"], biases_from), (at["h2"], end)),
                       "h1": ((0, at["h1->h2"]), (biases_from, at["h2"]))}


@pytest.mark.parametrize("bad", [-1, 1.5, True, "25MB"])
def test_bucket_bytes_must_be_a_whole_number_of_bytes(bad: object) -> None:
    plan, layout = _plan_and_layout(SPECS[0][1])
    with pytest.raises(ValueError, match="bucket_bytes"):
        cut_buckets(plan, layout, 8, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seed", "residual"), [(0, False), (3, False), (1, True)])
def test_backward_never_writes_a_gradient_after_its_group_is_done(backend: str, seed: int,
                                                                  residual: bool) -> None:
    """What ``on_group_done`` reports final stays as it was until backward ends, on every
    backend: a bucket's all-reduce may read it from then on."""
    spec = random_residual_spec(seed, n_hidden=3) if residual else \
        random_dag_spec(seed, n_hidden=3, sizes=(1, 3, 5))
    net = gpuback.Network(spec, backend=backend, dtype="float64", seed=seed)
    plan = net.plan
    buckets = cut_buckets(plan, net.layout, 8, 0)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(6, plan.n_in))
    T = rng.integers(0, plan.n_out, 6) if plan.loss == "cross_entropy" else \
        rng.uniform(0.1, 0.9, size=(6, plan.n_out))
    ws, targets = net.load_batch(X, T)
    net.run_forward(ws)
    net.run_backward(ws, targets)
    unhooked = net.ops.to_host(net.flat_gradients).copy()
    ops = net.ops
    ops.fill_zero(net.flat_gradients)
    seen: dict[tuple[int, int], np.ndarray] = {}
    done: list[str] = []

    def snapshot(group: str) -> None:
        done.append(group)
        for lo, hi in buckets[group]:
            seen[lo, hi] = ops.to_host(net.flat_gradients[lo:hi]).copy()

    net.run_forward(ws)
    net.run_backward(ws, targets, on_group_done=snapshot)
    final = ops.to_host(net.flat_gradients)
    assert done == list(reversed(plan.computed))
    assert len(seen) >= len(plan.computed)
    for (lo, hi), values in seen.items():
        np.testing.assert_array_equal(final[lo:hi], values, err_msg=f"[{lo}, {hi})")
    np.testing.assert_array_equal(final, unhooked)
    assert np.abs(final).max() > 0
