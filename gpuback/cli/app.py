"""The ``gpuback`` command:

* ``train``: train an MLP, or any network a spec file describes (``--spec``); the
  checkpoint in ``OUT/model``, the curve and ``history.jsonl`` beside it;
* ``predict``: a saved model's outputs on a data file, as CSV (``gpuback.cli.predict``);
* ``evaluate``: a saved model's loss and accuracy on a data file;
* ``spec``: write a spec file, ``mlp``, ``sparse-mlp`` or ``skip`` (``gpuback.cli.spec``);
* ``gradcheck``: backprop against central differences;
* ``explain``: Bishop 5.56 for one hidden unit, term by term;
* ``bench``: training-step speed of every backend here against PyTorch;
* ``info``: backends usable here, GPU and versions.

Every failure is one line on stderr, never a traceback, and an exit code:

* 2 (``EXIT_USAGE``): bad arguments (every option is checked by the parser, the message
  names it) and bad input: a missing or malformed data file, spec or checkpoint, an
  unusable backend, an output path that cannot be written, sizes that the memory
  pre-flight refuses (a ``MemoryError`` that is also a ``ValueError``);
* 1 (``EXIT_FAILED``): the run failed: a diverging run, a failed gradient check, a
  checkpoint that could not be written, the backend failing, out of memory; and any
  unexpected error, reported as "internal error" (please report it);
* 130 (``EXIT_INTERRUPTED``): Ctrl-C, and 143 for SIGTERM, 129 for SIGHUP (each stops a
  run as cleanly as Ctrl-C); ``train`` says which epoch its checkpoint holds.

With the environment variable ``GPUBACK_TRACEBACK=1`` the traceback is printed too.

Under ``mpiexec -n N`` (``gpuback.distributed``) every rank runs the command and rank 0
alone prints (the others' stdout goes nowhere); ``train`` trains data-parallel. A failure
raised alike on every rank is printed once, by rank 0, and every rank exits with its
code; one raised on some ranks only is printed by each of them with its rank and ends
the whole job (``MPI_Abort``), so that no rank waits for ever in a collective.

``train`` lives in ``gpuback.cli.train``, ``predict`` and ``evaluate`` in
``gpuback.cli.predict``, ``spec`` in ``gpuback.cli.spec``; what the commands share
(option types, help lines with defaults, output-path checks) in ``gpuback.cli.common``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..backends import AUTO, backend_names, get_backend, resolve_backend_name
from ..backends.precision import PRECISIONS
from ..benchmark import suite as bench
from ..checkpoint import files as checkpoint
from ..diagnostics.gradient_check import gradcheck
from ..distributed import mpi as distributed
from ..network import Network
from ..training.loop import TrainingDivergedError
from .common import (
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    InterruptedRunError,
    RunFailedError,
    UsageError,
    add_option,
    check_writable_file,
    reading,
    signals_stop_the_run,
    stdout_for_json,
    stop_reason,
    write_json,
)
from .predict import add_evaluate_parser, add_predict_parser
from .spec import add_spec_parser
from .train import add_train_parser

EXIT_FAILED = 1  # the check or the run itself failed
EXIT_USAGE = 2  # bad arguments or input files
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
STDOUT = "-"  # bench --json without a file name: the results to stdout
JSON_HELP = "stdout is one JSON document, the report; every other line goes to stderr"
TRACEBACK_ENV = "GPUBACK_TRACEBACK"  # set to 1: print the traceback of a failure too


class _ParseError(Exception):
    """A bad command line; the message is the whole line to print."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage block) that ``main`` prints."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ParseError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def _version() -> str:
    """gpuback's version, as installed (pyproject.toml is the one place it is written)."""
    try:
        return importlib.metadata.version("gpuback")
    except importlib.metadata.PackageNotFoundError:  # a source checkout never installed
        return "0+unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); the exit code. Only
    ``--help`` raises ``SystemExit`` (0); every failure is returned as its code."""
    command = "gpuback"
    world = distributed.world()
    try:
        with signals_stop_the_run(), _quiet_unless_root(world):
            args = build_parser().parse_args(argv)
            command = f"gpuback {args.command}"
            with stdout_for_json(wants_json(args) and world.is_root) as args.emit:
                return args.run(args)
    except SystemExit:  # --help
        raise
    except BaseException as exc:  # every failure becomes one line
        if isinstance(exc, _ParseError):  # every rank parsed the same command line
            distributed.mark_on_every_rank(exc)
        return _report(command, exc, world)


@contextlib.contextmanager
def _quiet_unless_root(world: distributed.SingleProcess) -> Iterator[None]:
    """On a rank other than 0 of an MPI job, stdout goes nowhere while the block runs."""
    if world.is_root:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def wants_json(args: argparse.Namespace) -> bool:
    """Whether the command's stdout is to be one JSON document (``--json``; for ``bench``,
    ``--json`` without a file name)."""
    return getattr(args, "json", None) in (True, STDOUT)


def _report(command: str, exc: BaseException,
            world: distributed.SingleProcess | None = None) -> int:
    """Print ``exc`` as one line on stderr (and its traceback with GPUBACK_TRACEBACK=1);
    the exit code for it. In an MPI job (``world`` of several ranks) a failure raised alike
    on every rank is printed by rank 0 alone; any other is printed with the rank and aborts
    the job with its code (the function then does not return)."""
    several = world is not None and world.size > 1
    alike = several and distributed.on_every_rank(exc)
    if alike and world is not None and not world.is_root:
        return _describe(command, exc)[0]
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0") and not isinstance(exc, _ParseError):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    code, line = _describe(command, exc)
    if several and not alike and world is not None:
        print(f"[rank {world.rank}] " + " ".join(line.split()), file=sys.stderr)
        if isinstance(world, distributed.MPIWorld):
            world.abort(code)
        return code
    print(" ".join(line.split()), file=sys.stderr)  # one line, whatever the message holds
    return code


def _describe(command: str, exc: BaseException) -> tuple[int, str]:
    """The exit code and the message for ``exc``."""
    text = str(exc).strip()
    if isinstance(exc, _ParseError):
        return EXIT_USAGE, text
    if isinstance(exc, InterruptedRunError):
        return exc.code, f"{command}: {text}"
    if isinstance(exc, KeyboardInterrupt):
        how, code = stop_reason(exc)
        return code, f"{command}: {how}"
    if isinstance(exc, TrainingDivergedError):
        return EXIT_FAILED, f"{command}: {text}"
    if isinstance(exc, RunFailedError):
        return EXIT_FAILED, f"{command}: error: {text}"
    if isinstance(exc, MemoryError) and isinstance(exc, ValueError):
        return EXIT_USAGE, f"{command}: error: {text}"  # a pre-flight refusal: sizes too big
    if isinstance(exc, MemoryError):
        return EXIT_FAILED, f"{command}: error: out of memory{f': {text}' if text else ''}"
    if isinstance(exc, (UsageError, ValueError, TypeError, OSError, RuntimeError)):
        return EXIT_USAGE, f"{command}: error: {text or type(exc).__name__}"
    return EXIT_FAILED, (f"{command}: internal error: {type(exc).__name__}: {text}; please "
                         f"report it, with the traceback that {TRACEBACK_ENV}=1 prints")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpuback", description="Backpropagation for feed-forward networks "
                     f"(Bishop PRML 5.3). Failures: one line on stderr, exit 2 for bad "
                     f"input, 1 for a failed run, 130 for Ctrl-C; {TRACEBACK_ENV}=1 also "
                     f"prints the traceback.")
    parser.add_argument("--version", action="version", version=f"gpuback {_version()}",
                        help="print gpuback's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(sub.add_parser("train", help="train an MLP, or any network a spec file "
                                    "describes (--spec), on the embedded digits or --data"))
    add_predict_parser(sub.add_parser(
        "predict", help="a saved model's predictions on a data file, as CSV",
        description="A saved model's predictions, as CSV with a header row: a classifier's "
        "label (the most probable class) and p0..p{K-1}; a multi-label model's label0.. "
        "(1 where the output is >= 0.5) and p0..; a regression's y0... A table's columns "
        "are the model's inputs, then, optionally, the targets as train reads them (one "
        "label column, or one per output): they are ignored."))
    add_evaluate_parser(sub.add_parser(
        "evaluate", help="a saved model's loss and accuracy on a data file",
        description="A saved model's mean loss and accuracy (none for sum_of_squares) on "
        "samples with targets: a table's columns are the model's inputs, then the targets "
        "as train reads them (one label column, or one per output)."))
    add_spec_parser(sub.add_parser("spec", help="write a spec file: mlp, sparse-mlp or skip "
                                   "(an MLP whose every group also feeds the output)",
                                   description="Write a network spec file for gpuback train "
                                   "--spec (groups x, h1, ..., y)."))
    _gradcheck_parser(sub.add_parser("gradcheck", help="backprop vs central differences for "
                                     "a spec"))
    _explain_parser(sub.add_parser("explain", help="eq. 5.56 for one hidden unit, term by "
                                   "term"))
    _bench_parser(sub.add_parser("bench", help="training-step speed of every backend here "
                                 "against PyTorch (if installed), in one run"))
    info = sub.add_parser("info", help="backends available here, GPU and versions")
    info.add_argument("--json", action="store_true", help=f"{JSON_HELP} (default: off)")
    info.set_defaults(run=_info)
    return parser


def _gradcheck_parser(check: argparse.ArgumentParser) -> None:
    check.add_argument("spec", nargs="?", help="a spec .json file, e.g. the network.json of a "
                       "checkpoint's version folder (default: a small DAG where a hidden "
                       "group feeds three later groups)")
    add_option(check, "--model", "a checkpoint directory (gpuback train's OUT/model): its "
               "network and trained weights, instead of SPEC", metavar="DIR", shown="none")
    add_option(check, "--batch", "samples in the check", 3, type=POSITIVE_INT, metavar="N")
    add_option(check, "--mode", "full: every parameter; direction: random directional derivatives",
         "full", choices=["full", "direction"])
    add_option(check, "--tol", "largest relative error that passes", 1e-7, type=POSITIVE,
         metavar="TOL")
    add_option(check, "--backend", "backend to check", "numpy", choices=[AUTO, *backend_names()])
    add_option(check, "--seed", "seed of the weights, inputs and targets", 0, type=NON_NEGATIVE_INT,
         metavar="N")
    check.add_argument("--json", action="store_true", help=f"{JSON_HELP} (default: off)")
    check.set_defaults(run=_gradcheck)


def _explain_parser(explain: argparse.ArgumentParser) -> None:
    add_option(explain, "--unit", "the unit j of the group", 0, type=NON_NEGATIVE_INT, metavar="J")
    add_option(explain, "--group", "the hidden group", metavar="G",
               shown="the hidden group that feeds the most later groups (the first of them)")
    add_option(explain, "--model", "a saved checkpoint directory", metavar="DIR",
         shown="a demo network where h feeds three later groups")
    add_option(explain, "--seed", "seed of the demo weights and the sample", 0,
         type=NON_NEGATIVE_INT, metavar="N")
    explain.add_argument("--json", action="store_true", help=f"{JSON_HELP} (default: off)")
    explain.set_defaults(run=_explain)


def _bench_parser(bench_cmd: argparse.ArgumentParser) -> None:
    add_option(bench_cmd, "--cases", f"cases to run, some of {', '.join(bench.CASES)}", nargs="+",
         metavar="CASE", shown="all")
    add_option(bench_cmd, "--backends", "gpuback backends to time", nargs="+", metavar="BACKEND",
         choices=[AUTO, *backend_names()], shown="every one usable here, not simulated")
    add_option(bench_cmd, "--seconds", "timing per contender and mode, after warming up", 1.0,
         type=POSITIVE, metavar="S")
    bench_cmd.add_argument("--quick", action="store_true", help="a smoke check, seconds long "
                           "(smaller cases, three timed calls each): checks it runs, not how "
                           "fast (default: off)")
    bench_cmd.add_argument("--no-torch", action="store_true",
                           help="leave PyTorch out (default: off)")
    add_option(bench_cmd, "--precision", "precisions to time each gpuback backend in on the "
               "step cases (the peers compute in float32)", ["fp32"], nargs="+",
               metavar="P", choices=list(PRECISIONS), shown="fp32")
    add_option(bench_cmd, "--json", "without PATH: stdout is one JSON document, the "
               "results, and the table goes to stderr; with PATH: also write the results to "
               "PATH", metavar="PATH", nargs="?", const=STDOUT, shown="off")
    bench_cmd.set_defaults(run=_bench)


# --- gradcheck, explain, bench, info --------------------------------------------------------

def _gradcheck(args: argparse.Namespace) -> int:
    from ..diagnostics.explanation import DEMO_SPEC, random_targets

    net = _gradcheck_network(args, DEMO_SPEC)
    rng = np.random.default_rng(args.seed)
    X = rng.normal(size=(args.batch, net.plan.n_in))
    T = random_targets(net.plan.loss, net.plan.n_out, args.batch, rng)
    report = gradcheck(net, X, T, mode=args.mode, tol=args.tol, seed=args.seed)
    if args.json:
        args.emit({"network": describe(net), **report.as_dict()})
    else:
        print(report)
    return 0 if report.passed else EXIT_FAILED


def _gradcheck_network(args: argparse.Namespace, demo: dict) -> Network:
    """The network to check: a checkpoint's (``--model``: its trained weights, in float64),
    a spec file's or the demo DAG (weights drawn from ``--seed``)."""
    if args.model is not None and args.spec is not None:
        raise UsageError("give a SPEC file or --model DIR, not both")
    model = args.model
    if model is None and args.spec is not None and Path(args.spec).is_dir():
        if not checkpoint.exists(args.spec):
            raise UsageError(f"{args.spec}: a directory that holds no gpuback checkpoint; "
                             f"expected a spec .json file or a checkpoint directory")
        model = args.spec  # a checkpoint directory given as SPEC
    if model is not None:
        with reading(model, "gpuback checkpoint"):
            saved = Network.load(model, backend=args.backend)
        net = Network(saved.spec, backend=args.backend, dtype="float64")
        net.set_parameters(saved.parameters())
        return net
    if args.spec is None:
        return Network(demo, backend=args.backend, dtype="float64", seed=args.seed)
    with reading(args.spec, "spec file"):
        try:
            spec = json.loads(Path(args.spec).read_text())
        except json.JSONDecodeError as exc:
            raise UsageError(f"{args.spec}: not valid JSON ({exc})") from None
        if isinstance(spec, dict) and "spec" in spec and "groups" not in spec:
            spec = spec["spec"]  # a checkpoint's network.json: the spec inside it
        return Network(spec, backend=args.backend, dtype="float64", seed=args.seed)


def describe(net: Network) -> dict:
    """The network a JSON report is about."""
    plan = net.plan
    return {"groups": {g: plan.groups[g].size for g in plan.order}, "loss": plan.loss,
            "backend": net.backend, "dtype": net.dtype}


def _explain(args: argparse.Namespace) -> int:
    from ..diagnostics.explanation import explain

    net = None
    if args.model is not None:
        with reading(args.model, "gpuback checkpoint"):
            net = Network.load(args.model)
    explanation = explain(net, group=args.group, unit=args.unit, seed=args.seed)
    if args.json:
        args.emit(explanation.as_dict())
    else:
        print(explanation)
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
    to_file = args.json not in (None, STDOUT)
    if to_file:
        check_writable_file("--json", Path(args.json))
    results = bench.run(cases, backends, seconds=args.seconds, quick=args.quick,
                        use_torch=not args.no_torch,
                        precisions=list(dict.fromkeys(args.precision)))
    if to_file:
        write_json(Path(args.json), results)
        print(f"results written to {args.json}")
    elif args.json == STDOUT:
        args.emit(results)
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..diagnostics.report import info

    report = info()
    if args.json:
        args.emit(report)
        return 0
    print(f"gpuback on Python {report['python']}, NumPy {report['numpy']}")
    for name, state in report["backends"].items():
        mark = "yes" if state["usable"] else "no "
        print(f"  {name:<6} {mark}  {state['reason']}")
        for key, value in state["details"].items():
            print(f"         {key}: {value}")
    print(f"precisions (Network(..., precision=P), train --precision): "
          f"{', '.join(report['precisions'])}")
    return 0
