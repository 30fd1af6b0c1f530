"""Data-parallel training speed under MPI: samples per second and the all-reduce's share of
the step (gpuback.distributed).

Run it alone and under mpiexec, and compare the lines it prints::

    python bench/distributed.py --backend cpu
    mpiexec -n 2 python bench/distributed.py --backend cpu

Each run trains ``--epochs`` epochs of random data (the first a warm-up: kernel compilation
and first-touch allocation) and reports the last epoch: samples per second over the job,
the seconds spent in the gradient all-reduce (rank 0's) and their share of the epoch,
and the all-reduce's effective bandwidth, 2 (N-1)/N x gradient bytes per step / its time
(the ring all-reduce's traffic per rank), beside the threads each rank's cpu backend runs.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

import gpuback
from gpuback import distributed, optim, training
from gpuback.backends import cpu_threads


class TimedWorld:
    """A world whose gradient all-reduces are timed (``seconds``, ``calls``); everything
    else is the wrapped world's."""

    def __init__(self, world: Any) -> None:
        self.world, self.seconds, self.calls = world, 0.0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.world, name)

    def allreduce_sum(self, ops: Any, buffer: Any) -> None:
        start = time.perf_counter()
        self.world.allreduce_sum(ops, buffer)
        self.seconds += time.perf_counter() - start
        self.calls += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--sizes", default="784,1024,1024,10")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=256, help="the global batch")
    parser.add_argument("--samples", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    world = TimedWorld(distributed.world())
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.samples, sizes[0])).astype(args.dtype)
    y = rng.integers(0, sizes[-1], size=args.samples)
    net = gpuback.Network(gpuback.mlp_spec(sizes), backend=args.backend, dtype=args.dtype)
    marks: list[tuple[float, float, int]] = []

    def mark(_: int) -> None:
        marks.append((time.perf_counter(), world.seconds, world.calls))

    mark(0)
    training.fit(net, X, y, epochs=args.epochs, batch_size=args.batch_size, progress=False,
                 optimizer=optim.SGD(lr=0.01, momentum=0.9), on_epoch_end=mark, comm=world)
    (t0, r0, c0), (t1, r1, c1) = marks[-2], marks[-1]
    epoch, reduce, calls = t1 - t0, r1 - r0, c1 - c0
    grad_bytes = net.flat_gradients.size * np.dtype(args.dtype).itemsize
    traffic = 2 * (world.size - 1) / world.size * grad_bytes
    if world.is_root:
        print(json.dumps({
            "ranks": world.size, "backend": args.backend, "sizes": sizes, "dtype": args.dtype,
            "cpu_threads_per_rank": cpu_threads.core_count(),
            "global_batch": args.batch_size, "samples_per_second": round(args.samples / epoch),
            "epoch_seconds": round(epoch, 3), "allreduce_seconds": round(reduce, 4),
            "allreduce_share": round(reduce / epoch, 4), "steps": calls,
            "gradient_megabytes": round(grad_bytes / 1e6, 2),
            "allreduce_gb_per_second": round(traffic * calls / reduce / 1e9, 2)
            if reduce > 0 else None}))


if __name__ == "__main__":
    main()
