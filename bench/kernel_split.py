"""Where a cpu training step spends its time: each backend op, in ms, against this machine.

Runs ``gpuback bench``'s step cases (``--cases``; default the two sparse ones) on the cpu
backend, with every op of the backend's op set wrapped in a timer, and prints per op
(summed over its calls in one step, median over ``--steps`` steps):

* ms per step and the share of the step;
* for the sparse ops, the rate in GB/s of activation rows read, counted as separate
  passes would read them (batch x 4 bytes per edge and row: forward 1, backward
  accumulation 1, edge gradients 2; the fused block backward the sum of the last two)
  and in GFLOP/s (2 per edge, row pass and sample);
* for the dense products, GFLOP/s.

Against the machine's measured limits, printed first: the float32 GEMM rate (NumPy's
BLAS, one thread per core, as the backend runs it), the bandwidth of a large copy
(memory), and of a copy that fits in the L2 cache of one core. Run::

    python bench/kernel_split.py [--cases sparse95 sparse99 dense small] [--steps 20]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from gpuback.backends.cpu import backend as cpu_backend
from gpuback.benchmark import suite as bench
from gpuback.network import Network
from gpuback.optim import optimizers as optim

DENSE_OPS = ("dense_forward", "dense_backward", "dense_weight_grad")
OPS = ("sparse_forward", "sparse_block_backward", "sparse_backward", "sparse_weight_grad",
       *DENSE_OPS,
       "bias_activation", "activation_delta", "loss_and_output_delta", "bias_grad",
       "check_finite", "sgd_update", "copy_into", "take_batch")


def copy_rate(n_bytes: int, repeats: int = 50) -> float:
    """GB/s of ``np.copyto`` between two buffers of ``n_bytes`` (read + write counted)."""
    a = np.ones(n_bytes // 4, np.float32)
    b = np.empty_like(a)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        times.append(time.perf_counter() - t0)
    return 2 * n_bytes / statistics.median(times) / 1e9


def machine_limits() -> dict[str, float]:
    gemm = bench.gemm_gflops(["cpu"], seconds=0.5)["cpu"]
    return {"gemm_gflops": gemm, "memory_copy_gbs": round(copy_rate(256 << 20, 10), 1),
            "l2_copy_gbs": round(copy_rate(256 << 10, 2000), 1)}


class OpTimer:
    """Wraps the cpu backend's ops; ``times[op]`` is a list of per-step totals."""

    def __init__(self) -> None:
        self.current: collections.Counter[str] = collections.Counter()
        self.work: collections.Counter[str] = collections.Counter()
        self.originals = {name: getattr(cpu_backend, name) for name in OPS}

    def __enter__(self) -> OpTimer:
        for name, fn in self.originals.items():
            setattr(cpu_backend, name, self._timed(name, fn))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, fn in self.originals.items():
            setattr(cpu_backend, name, fn)

    def _timed(self, name: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[name] += time.perf_counter() - t0
        return timed

    def take(self) -> dict[str, float]:
        step, self.current = dict(self.current), collections.Counter()
        return step


def split_case(name: str, steps: int) -> dict[str, Any]:
    case = bench.STEP_CASE_SHAPES[name]
    spec = case.spec()
    net = Network(spec, backend="cpu", dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(case.batch, case.sizes[0])).astype(np.float32)
    y = rng.integers(0, case.sizes[-1], size=case.batch)
    opt = optim.SGD(lr=0.01, momentum=0.9)
    plan = net.plan
    all_edges = sum(b.index.n_edges for b in plan.blocks if b.index is not None)
    inner_edges = sum(b.index.n_edges for b in plan.blocks
                      if b.index is not None and b.src != plan.input)
    row_passes = {"sparse_forward": all_edges, "sparse_backward": inner_edges,
                  "sparse_weight_grad": 2 * all_edges,
                  "sparse_block_backward": 2 * all_edges + inner_edges}
    dense_fma = {"dense_forward": sum(int(np.prod(b.shape)) for b in plan.blocks
                                      if b.kind == "dense")}
    dense_fma["dense_weight_grad"] = dense_fma["dense_forward"]
    dense_fma["dense_backward"] = sum(int(np.prod(b.shape)) for b in plan.blocks
                                      if b.kind == "dense" and b.src != plan.input)
    for _ in range(3):  # compile, allocate
        net.loss_and_grads(X, y)
        opt.step(net)
    per_step: dict[str, list[float]] = collections.defaultdict(list)
    totals = []
    with OpTimer() as timer:
        for _ in range(steps):
            t0 = time.perf_counter()
            net.loss_and_grads(X, y, as_device=True)
            opt.step(net)
            totals.append(time.perf_counter() - t0)
            for op, seconds in timer.take().items():
                per_step[op].append(seconds)
    total_ms = statistics.median(totals) * 1e3
    rows = []
    for op in OPS:
        if op not in per_step:
            continue
        ms = statistics.median(per_step[op]) * 1e3
        row: dict[str, Any] = {"op": op, "ms": round(ms, 3), "share": round(ms / total_ms, 3)}
        if row_passes.get(op):
            row["gb_s"] = round(row_passes[op] * case.batch * 4 / ms / 1e6, 1)
            row["gflop_s"] = round(row_passes[op] * case.batch / ms / 1e6, 1)
        if dense_fma.get(op):
            row["gflop_s"] = round(2 * dense_fma[op] * case.batch / ms / 1e6, 1)
        rows.append(row)
    return {"case": name, "batch": case.batch, "edges": all_edges,
            "step_ms": round(total_ms, 3), "ops": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["sparse95", "sparse99"],
                        choices=bench.STEP_CASES)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    info = bench.machine()
    limits = machine_limits()
    print(f"machine: {info['cpu']}, {info['cores']} cores; GEMM {limits['gemm_gflops']} "
          f"GFLOP/s; copy {limits['memory_copy_gbs']} GB/s (256 MB), "
          f"{limits['l2_copy_gbs']} GB/s (256 KB, one core)")
    results = []
    for name in args.cases:
        result = split_case(name, args.steps)
        results.append(result)
        print(f"\n{name}: batch {result['batch']}, {result['edges']:,} sparse edges, "
              f"step with SGD {result['step_ms']:.2f} ms")
        for row in result["ops"]:
            rate = "".join(f"  {row[k]:>7.1f} {unit}" for k, unit in
                           (("gb_s", "GB/s"), ("gflop_s", "GFLOP/s")) if k in row)
            print(f"  {row['op']:<24} {row['ms']:>8.3f} ms {row['share']:>6.1%}{rate}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "limits": limits, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
