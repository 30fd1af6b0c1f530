"""pytest-benchmark: the training-step cases of ``gpuback bench``, for every contender here.

One benchmark per (case, contender, mode), grouped by case, so each group's table puts
gpuback's backends beside PyTorch's versions of the same network (when PyTorch is
installed: ``pip install '.[bench]'``). Cases, contenders and timing rules are those
of ``gpuback.benchmark``; ``gpuback bench`` prints the same measurements as ratios, with the
distance to the GEMM floor. Run::

    pytest bench/bench_steps.py --benchmark-group-by=group
"""

from __future__ import annotations

import functools

import pytest

from gpuback.backends import available_backends
from gpuback.benchmark import suite as bench
from gpuback.benchmark import torch_peers as bench_torch


@functools.cache
def contenders(case: str) -> dict[str, dict]:
    """``{name: {"fwd_bwd": fn, "step": fn}}`` for one case, built once."""
    shape = bench.STEP_CASE_SHAPES[case]
    spec = shape.spec()
    found = {f"gpuback {b}": bench.gpuback_steps(spec, shape.batch, b)
             for b in available_backends(include_simulated=False)}
    if bench_torch.version() is not None:
        for device in bench_torch.devices():
            for label, steps in bench_torch.contenders(spec, shape.batch, device).items():
                found[f"{label} ({device})"] = steps
    return found


def _ids() -> list[tuple[str, str]]:
    """(case, contender name) pairs: every gpuback backend here, and PyTorch's versions."""
    ids = []
    for case in bench.STEP_CASES:
        ids += [(case, f"gpuback {b}") for b in available_backends(include_simulated=False)]
        if bench_torch.version() is not None:
            dense = bench.STEP_CASE_SHAPES[case].density is None
            ids += [(case, f"{label} ({device})") for device in bench_torch.devices()
                    for label in bench_torch.labels(dense)]
    return ids


@pytest.mark.parametrize("mode", ["fwd_bwd", "step"])
@pytest.mark.parametrize(("case", "contender"), _ids(), ids=[f"{c}-{n}" for c, n in _ids()])
def test_step(benchmark, case: str, contender: str, mode: str) -> None:
    benchmark.group = f"{case} {mode}"
    fn = contenders(case)[contender][mode]
    bench.settle()
    benchmark.pedantic(fn, rounds=5, warmup_rounds=2)
