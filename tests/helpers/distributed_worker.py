"""The program tests/distributed/test_data_parallel.py runs under ``mpiexec -n N`` (and
imports, for the single-process runs it compares with):
``python distributed_worker.py MODE OUT [JSON]``.

Options (JSON): ``backend``, ``runs``, ``step``, ``how``, and ``bucket_bytes`` (the world's:
0 starts an all-reduce per group during backward). Modes: ``train`` (two runs: SGD with
Nesterov momentum, then Adam with validation; rank 0 writes ``OUT/train.npz``, with
whether every rank ended with the same bits), ``resume``
(``start``: one epoch with a checkpoint; ``finish``: from it to epoch 3; rank 0 writes
``OUT/resume.npz``), ``die`` (rank 1 kills itself, or raises, in its second epoch), ``bad``
(rank 1's data bad in two ways; every rank writes the message it raised into
``OUT/bad-RANK.json``, with its world and CPU thread count).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

import gpuback
from gpuback import training
from gpuback.checkpoint import files as checkpoint
from gpuback.distributed import mpi as distributed
from gpuback.optim import optimizers as optim

# a residual MLP with layer norm and dropout: ranks that drew their own masks, or the wrong
# rows' masks, would not train as one process
SPEC = gpuback.resmlp_spec(5, 7, 2, 3, dropout=0.3, activation="tanh")


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small 3-class problem: n samples of 5 features and their labels."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    return X, (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(np.int64) + (X[:, 3] > 1)


def network(backend: str) -> gpuback.Network:
    return gpuback.Network(SPEC, backend=backend, dtype="float64", seed=3)


def train_runs(backend: str, comm: Any = None,
               runs: tuple[str, ...] = ("sgd", "adam")) -> dict[str, np.ndarray]:
    """The runs of mode ``train`` (of ``runs``): their parameters and histories, flattened."""
    out: dict[str, np.ndarray] = {}
    if "sgd" in runs:
        out.update(_sgd_run(backend, comm))
    if "adam" in runs:
        out.update(_adam_run(backend, comm))
    return out


def _sgd_run(backend: str, comm: Any) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    # 47 samples in batches of 10: shares 4/3/3 of 3 ranks, and a last batch of 7; clipped
    # at a global norm below the first steps' (about 0.9): every rank clips the summed one
    net = network(backend)
    X, y = data(47)
    h = net.fit(X, y, epochs=3, batch_size=10, seed=5, progress=False, comm=comm,
                optimizer=optim.SGD(lr=0.2, momentum=0.9, nesterov=True), clip_grad_norm=0.5)
    out.update({f"sgd/{k}": v for k, v in net.parameters().items()})
    out["sgd/loss"] = np.array(h["loss"])
    out["sgd/accuracy"] = np.array(h["accuracy"])
    return out


def _adam_run(backend: str, comm: Any) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    # 41 samples: the last global batch has 1 row, so with 2 or 3 ranks some get none;
    # sample weights: each rank's rows weighted by the global batch's sum of weights
    net = network(backend)
    X, y = data(41, seed=1)
    Xv, yv = data(13, seed=2)
    weights = np.random.default_rng(4).uniform(0.0, 2.0, size=41)
    h = net.fit(X, y, epochs=3, batch_size=10, seed=7, progress=False, comm=comm,
                optimizer=optim.Adam(lr=0.01), validation=(Xv, yv), sample_weight=weights)
    out.update({f"adam/{k}": v for k, v in net.parameters().items()})
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        out[f"adam/{key}"] = np.array(h[key])
    return out


def resume_start(backend: str, model: str, comm: Any = None) -> None:
    net = network(backend)
    X, y = data(47)
    net.fit(X, y, epochs=1, batch_size=10, seed=5, progress=False, checkpoint=model,
            optimizer=optim.Adam(lr=0.01), comm=comm)


def resume_finish(backend: str, model: str, comm: Any = None) -> dict[str, np.ndarray]:
    net = gpuback.Network.load(model, backend=backend)
    optimizer = checkpoint.load_optimizer(model, net)
    X, y = data(47)
    net.fit(X, y, epochs=3 - net.epochs_trained, batch_size=10, seed=5, progress=False,
            optimizer=optimizer, comm=comm)
    return {**net.parameters(), "epochs_trained": np.array(net.epochs_trained)}


def unbroken(backend: str) -> dict[str, np.ndarray]:
    """One process, three epochs without a break: what ``resume`` must equal."""
    net = network(backend)
    X, y = data(47)
    net.fit(X, y, epochs=3, batch_size=10, seed=5, progress=False,
            optimizer=optim.Adam(lr=0.01), comm=distributed.SingleProcess())
    return {**net.parameters(), "epochs_trained": np.array(net.epochs_trained)}


def die(how: str) -> None:
    world = distributed.world()
    net = network("numpy")
    X, y = data(2000)

    def end(epoch: int) -> None:
        if epoch == 1 and world.rank == 1:
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("rank 1 fails on purpose")

    training.fit(net, X, y, epochs=1000, batch_size=10, progress=False, on_epoch_end=end)


def bad(out: Path) -> None:
    """Rank 1's inputs hold a NaN, then rank 1's data has other rows: what each rank
    raised, written into OUT/bad-RANK.json; then a sample that overflows, on one rank's
    share (``overflow``)."""
    import threadpoolctl

    from gpuback.backends.cpu import threads as cpu_threads

    world = distributed.world()
    record: dict[str, Any] = {"rank": world.rank, "size": world.size,
                              "local_rank": world.local_rank,
                              "ranks_per_node": world.ranks_per_node,
                              "cpu_threads": cpu_threads.core_count(),
                              "blas_threads": [lib["num_threads"] for lib in
                                               threadpoolctl.threadpool_info()
                                               if lib["user_api"] == "blas"],
                              "affinity": len(os.sched_getaffinity(0))}
    X, y = data(20)
    for case in ("nan", "rows"):
        Xr, yr = X.copy(), y
        if world.rank == 1 and case == "nan":
            Xr[3, 2] = np.nan
        if world.rank == 1 and case == "rows":
            Xr, yr = X[:19], y[:19]
        try:
            network("numpy").fit(Xr, yr, epochs=1, batch_size=4, progress=False)
            record[case] = None
        except ValueError as exc:
            record[case] = str(exc)
            record[case + "_on_every_rank"] = distributed.on_every_rank(exc)
    record["overflow"] = overflow()
    (out / f"bad-{world.rank}.json").write_text(json.dumps(record))


def overflow(comm: Any = None) -> str | None:
    """A data set whose 14th sample overflows the first layer's sum (a NaN loss on the rank
    whose share holds it): the divergence message raised, or None."""
    X, y = data(20)
    X[13] = 1e308
    net = gpuback.Network(gpuback.mlp_spec([5, 3]), backend="numpy", dtype="float64", seed=1)
    net.set_parameters({"x->y": np.full((3, 5), 0.5)})  # its pre-activations: all infinite
    try:
        with np.errstate(all="ignore"):  # (the overflow is the point)
            net.fit(X, y, epochs=2, batch_size=4, seed=2, progress=False, comm=comm)
    except gpuback.TrainingDivergedError as exc:
        return str(exc)
    return None


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    world = distributed.world()
    world.bucket_bytes = options.get("bucket_bytes", world.bucket_bytes)
    if mode == "train":
        result = train_runs(options["backend"], runs=tuple(options.get("runs",
                                                                       ("sgd", "adam"))))
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(result[k]).tobytes()
                                         for k in sorted(result))).hexdigest()
        digests = world.comm.allgather(digest)  # every rank's parameters, bit for bit
        if world.is_root:
            np.savez(out / "train.npz", **result, size=world.size,
                     same_on_every_rank=len(set(digests)) == 1)
    elif mode == "resume":
        model = str(out / "model")
        if options["step"] == "start":
            resume_start(options["backend"], model)
        else:
            result = resume_finish(options["backend"], model)
            if world.is_root:
                np.savez(out / "resume.npz", **result)
    elif mode == "die":
        die(options["how"])
    elif mode == "bad":
        bad(out)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
