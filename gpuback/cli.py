"""The ``gpuback`` command: train, gradcheck, explain, bench, info.

Errors (bad arguments, missing or malformed files, an unavailable backend, a diverging
run) print one line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import bench, datasets, optim
from .backends import get_backend, resolve_backend_name
from .checkpoint import CheckpointError
from .gradcheck import gradcheck
from .network import Network
from .spec import mlp_spec, sparse_mlp_spec
from .training import TrainingDivergedError

EXIT_FAILED = 1  # the check or the run itself failed
EXIT_USAGE = 2  # bad arguments or input files


class UsageError(Exception):
    """Bad input the user can fix; printed as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (no usage block), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, ValueError, TypeError, RuntimeError, OSError, CheckpointError) as exc:
        if isinstance(exc, TrainingDivergedError):
            print(f"gpuback {args.command}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"gpuback {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpuback", description="Backpropagation for "
                                     "feed-forward networks (Bishop PRML 5.3).")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an MLP (default: the embedded digits)")
    train.add_argument("--data", help="a .npz (X, y), .npy or .csv (label last) or MNIST IDX "
                       "images file; default: the embedded 8x8 digits")
    train.add_argument("--test-fraction", type=float, default=0.2)
    train.add_argument("--hidden", type=int, nargs="+", default=[128], metavar="UNITS",
                       help="hidden layer sizes (default: 128)")
    train.add_argument("--activation", default="relu")
    train.add_argument("--density", type=float, default=1.0,
                       help="fraction of edges kept in hidden blocks; < 1 makes them sparse")
    train.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default="adam")
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--momentum", type=float, default=0.9, help="for sgd")
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--backend", default="auto")
    train.add_argument("--dtype", default="float32")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="gpuback-run", help="output directory")
    train.add_argument("--no-progress", action="store_true")
    train.add_argument("--json", action="store_true",
                       help="print a one-line JSON summary as the last line")
    train.set_defaults(run=_train)

    check = sub.add_parser("gradcheck", help="backprop vs central differences for a spec")
    check.add_argument("spec", nargs="?", help="a spec .json file (default: a small DAG)")
    check.add_argument("--batch", type=int, default=3)
    check.add_argument("--mode", choices=["full", "direction"], default="full")
    check.add_argument("--tol", type=float, default=1e-7)
    check.add_argument("--backend", default="numpy")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(run=_gradcheck)

    explain = sub.add_parser("explain", help="eq. 5.56 for one hidden unit, term by term")
    explain.add_argument("--unit", type=int, default=0)
    explain.add_argument("--group", default="h", help="the hidden group (default: h)")
    explain.add_argument("--model", help="a saved checkpoint directory (default: a demo network "
                         "where h feeds three later groups)")
    explain.add_argument("--seed", type=int, default=0)
    explain.set_defaults(run=_explain)

    bench_cmd = sub.add_parser("bench", help="training-step speed of every backend here against "
                           "PyTorch (if installed), in one run")
    bench_cmd.add_argument("--cases", nargs="+", default=None, metavar="CASE",
                       help=f"some of {', '.join(bench.CASES)} (default: all)")
    bench_cmd.add_argument("--backends", nargs="+", default=None, metavar="BACKEND",
                       help="gpuback backends to time (default: every one usable here)")
    bench_cmd.add_argument("--seconds", type=float, default=1.0,
                       help="timing per contender and mode, after warming up (default: 1)")
    bench_cmd.add_argument("--quick", action="store_true",
                       help="a short run (0.05 s a contender): checks it runs, not how fast")
    bench_cmd.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    bench_cmd.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    bench_cmd.set_defaults(run=_bench)

    info = sub.add_parser("info", help="backends available here, GPU and versions")
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=_info)
    return parser


# --- train ----------------------------------------------------------------------------------

def _train(args: argparse.Namespace) -> int:
    if args.data is None:
        data = datasets.load_digits(test_fraction=args.test_fraction, seed=args.seed)
        source = "embedded UCI digits (8x8)"
    else:
        X, y = datasets.load_file(args.data)
        data = datasets.split(X, y, test_fraction=args.test_fraction, seed=args.seed)
        source = args.data
    sizes = [data.n_features, *args.hidden, data.n_classes]
    if not 0 < args.density <= 1:
        raise UsageError(f"--density: expected a number in (0, 1], got {args.density}")
    spec = (mlp_spec(sizes, activation=args.activation) if args.density == 1 else
            sparse_mlp_spec(sizes, density=args.density, seed=args.seed,
                            activation=args.activation))
    net = Network(spec, backend=args.backend, dtype=args.dtype, seed=args.seed)
    optimizer = _optimizer(args, steps=args.epochs * -(-len(data.y_train) // args.batch_size))
    print(f"gpuback train: {source}, {len(data.y_train)} train / {len(data.y_test)} test "
          f"samples; network {'-'.join(map(str, sizes))} ({args.activation}"
          f"{'' if args.density == 1 else f', density {args.density}'}); backend "
          f"{net.backend}, {net.dtype}; {args.optimizer} lr {args.lr}")
    out = Path(args.out)
    start = time.perf_counter()
    history = net.fit(data.X_train, data.y_train, epochs=args.epochs,
                      batch_size=args.batch_size, optimizer=optimizer,
                      validation=(data.X_test, data.y_test), seed=args.seed,
                      checkpoint=str(out / "model"), progress=not args.no_progress)
    seconds = time.perf_counter() - start
    result = net.evaluate(data.X_test, data.y_test)
    print(f"epochs {len(history['loss'])}: train loss {history['loss'][-1]:.4f}, test loss "
          f"{result['loss']:.4f}, test accuracy {result['accuracy']:.4f} ({seconds:.1f} s, "
          f"{np.mean(history['samples_per_second']):.0f} samples/s)")
    print(f"model saved to {out / 'model'}")
    curve = _plot(history, out / "curve.png")
    print(f"curve saved to {curve}" if curve else
          "curve not drawn: matplotlib is not installed (pip install 'gpuback[plot]')")
    if args.json:
        print(json.dumps({"test_accuracy": result["accuracy"], "test_loss": result["loss"],
                          "epochs": len(history["loss"]), "seconds": round(seconds, 3),
                          "backend": net.backend, "dtype": net.dtype,
                          "train_loss": history["loss"][-1], "model": str(out / "model")}))
    return 0


def _optimizer(args: argparse.Namespace, steps: int) -> optim.Optimizer:
    schedule = (optim.Cosine(total_steps=max(steps, 2), warmup_steps=min(steps // 20, steps - 1))
                if args.schedule == "cosine" else None)
    if args.optimizer == "sgd":
        return optim.SGD(lr=args.lr, momentum=args.momentum, nesterov=args.momentum > 0,
                         weight_decay=args.weight_decay, schedule=schedule)
    cls = optim.AdamW if args.optimizer == "adamw" else optim.Adam
    return cls(lr=args.lr, weight_decay=args.weight_decay, schedule=schedule)


def _plot(history: dict[str, list], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = range(1, len(history["loss"]) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, history["loss"], label="train")
    left.plot(epochs, history["val_loss"], label="test")
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    right.plot(epochs, history["accuracy"], label="train")
    right.plot(epochs, history["val_accuracy"], label="test")
    right.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (left, right):
        ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


# --- gradcheck, explain, info ------------------------------------------------------------

def _gradcheck(args: argparse.Namespace) -> int:
    from .explain import DEMO_SPEC, random_targets

    if args.spec is None:
        spec = DEMO_SPEC
    else:
        try:
            spec = json.loads(Path(args.spec).read_text())
        except json.JSONDecodeError as exc:
            raise UsageError(f"{args.spec}: not valid JSON ({exc})") from None
    if args.batch < 1:
        raise UsageError(f"--batch: expected a positive integer, got {args.batch}")
    net = Network(spec, backend=args.backend, dtype="float64", seed=args.seed)
    rng = np.random.default_rng(args.seed)
    X = rng.normal(size=(args.batch, net.plan.n_in))
    T = random_targets(net.plan.loss, net.plan.n_out, args.batch, rng)
    report = gradcheck(net, X, T, mode=args.mode, tol=args.tol, seed=args.seed)
    print(report)
    return 0 if report.passed else EXIT_FAILED


def _explain(args: argparse.Namespace) -> int:
    from .explain import explain

    net = None if args.model is None else Network.load(args.model)
    print(explain(net, group=args.group, unit=args.unit, seed=args.seed))
    return 0


def _bench(args: argparse.Namespace) -> int:
    cases = args.cases or list(bench.CASES)
    unknown = [c for c in cases if c not in bench.CASES]
    if unknown:
        raise UsageError(f"--cases: unknown {unknown}, expected some of {list(bench.CASES)}")
    backends = None
    if args.backends is not None:
        backends = [resolve_backend_name(b) for b in args.backends]
        for name in backends:
            if get_backend(name).status().simulated:  # get_backend: a clear error if unusable
                raise UsageError(f"--backends: {name!r} runs on the Numba CUDA simulator here; "
                                 f"its timings would mean nothing")
    seconds = 0.05 if args.quick else args.seconds
    if not seconds > 0:
        raise UsageError(f"--seconds: expected a positive number, got {args.seconds}")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise UsageError(f"--json: no directory {str(Path(args.json).parent)!r} to write into")
    results = bench.run(cases, backends, seconds=seconds, use_torch=not args.no_torch)
    if args.json:
        _write_json(Path(args.json), results)
        print(f"results written to {args.json}")
    return 0


def _write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to a temporary name beside ``path``, then move it over."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def _info(args: argparse.Namespace) -> int:
    from .info import info

    report = info()
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"gpuback on Python {report['python']}, NumPy {report['numpy']}")
    for name, state in report["backends"].items():
        mark = "yes" if state["usable"] else "no "
        print(f"  {name:<6} {mark}  {state['reason']}")
        for key, value in state["details"].items():
            print(f"         {key}: {value}")
    return 0
