"""Data-parallel training speed under MPI: samples per second and the all-reduce's share of
the step (gpuback.distributed).

Run it alone and under mpiexec, and compare the lines it prints::

    python bench/distributed.py --backend cpu
    mpiexec -n 2 python bench/distributed.py --backend cpu

Each run trains ``--epochs`` epochs of random data (the first a warm-up: kernel compilation
and first-touch allocation) and reports the last epoch: samples per second over the job,
the all-reduces per step (the gradient buckets, ``--bucket-mb``:
``gpuback.distributed.buckets``), the seconds rank 0's steps spent waiting on them
(starting, driving and waiting for them: the part not hidden behind backward) and their
share of the epoch, beside the threads each rank's cpu backend runs.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

import gpuback
from gpuback.backends.cpu import threads as cpu_threads
from gpuback.distributed import mpi as distributed
from gpuback.optim import optimizers as optim
from gpuback.training import loop as training


class TimedWorld:
    """A world that times what its gradient all-reduces keep a step waiting: the starts of
    the buckets (``start_allreduce_sum``) and the waits and progress calls on them
    (``seconds``; ``buckets``: how many were started). Everything else is the wrapped
    world's. What overlaps backward is not counted: the time is the all-reduce's exposed
    part."""

    def __init__(self, world: Any) -> None:
        self.world, self.seconds, self.buckets = world, 0.0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.world, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "bucket_bytes":
            setattr(self.world, name, value)
        else:
            super().__setattr__(name, value)

    def timed(self, call: Any, *args: Any) -> Any:
        start = time.perf_counter()
        result = call(*args)
        self.seconds += time.perf_counter() - start
        return result

    def start_allreduce_sum(self, ops: Any, buffer: Any) -> Any:
        self.buckets += 1
        return TimedPending(self, self.timed(self.world.start_allreduce_sum, ops, buffer))


class TimedPending:
    """A bucket's all-reduce whose ``test`` and ``wait`` are timed by ``owner``."""

    def __init__(self, owner: TimedWorld, pending: Any) -> None:
        self.owner, self.pending = owner, pending

    def test(self) -> bool:
        return self.owner.timed(self.pending.test)

    def wait(self) -> None:
        self.owner.timed(self.pending.wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--sizes", default="784,1024,1024,10")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=256, help="the global batch")
    parser.add_argument("--samples", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--bucket-mb", type=float, default=None,
                        help="the buckets' size (default: the world's, 25 MiB as DDP's; 0: a "
                             "bucket per group)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    world = TimedWorld(distributed.world())
    if args.bucket_mb is not None:
        world.bucket_bytes = int(args.bucket_mb * 2**20)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.samples, sizes[0])).astype(args.dtype)
    y = rng.integers(0, sizes[-1], size=args.samples)
    net = gpuback.Network(gpuback.mlp_spec(sizes), backend=args.backend, dtype=args.dtype)
    marks: list[tuple[float, float, int]] = []

    def mark(_: int) -> None:
        marks.append((time.perf_counter(), world.seconds, world.buckets))

    mark(0)
    training.fit(net, X, y, epochs=args.epochs, batch_size=args.batch_size, progress=False,
                 optimizer=optim.SGD(lr=0.01, momentum=0.9), on_epoch_end=mark, comm=world)
    (t0, r0, b0), (t1, r1, b1) = marks[-2], marks[-1]
    epoch, reduce, buckets = t1 - t0, r1 - r0, b1 - b0
    steps = -(-args.samples // args.batch_size)
    grad_bytes = net.flat_gradients.size * np.dtype(args.dtype).itemsize
    if world.is_root:
        print(json.dumps({
            "ranks": world.size, "backend": args.backend, "sizes": sizes, "dtype": args.dtype,
            "cpu_threads_per_rank": cpu_threads.core_count(),
            "global_batch": args.batch_size, "samples_per_second": round(args.samples / epoch),
            "epoch_seconds": round(epoch, 3), "steps": steps,
            "bucket_megabytes": round(world.bucket_bytes / 2**20, 2),
            "all_reduces_per_step": round(buckets / steps, 2),
            "exposed_allreduce_seconds": round(reduce, 4),
            "exposed_allreduce_share": round(reduce / epoch, 4),
            "gradient_megabytes": round(grad_bytes / 1e6, 2)}))

if __name__ == "__main__":
    main()
