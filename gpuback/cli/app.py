"""The ``gpuback`` command: its parser, the dispatch to a command, and the one line on
stderr that reports a failure. The commands, one module per family beside this one:

* ``train``: train an MLP, or any network a spec file describes (``--spec``); the
  checkpoint in ``OUT/model``, the curve and ``history.jsonl`` beside it
  (``gpuback.cli.train``);
* ``predict``: a saved model's outputs on a data file, as CSV (``gpuback.cli.predict``);
* ``evaluate``: a saved model's loss and accuracy on a data file (``gpuback.cli.predict``);
* ``spec``: write a spec file, ``mlp``, ``sparse-mlp`` or ``skip`` (``gpuback.cli.spec``);
* ``gradcheck``: backprop against central differences (``gpuback.cli.diagnose``);
* ``explain``: Bishop 5.56 for one hidden unit, term by term (``gpuback.cli.diagnose``);
* ``bench``: training-step speed of every backend here against PyTorch
  (``gpuback.cli.bench``);
* ``info``: backends usable here, GPU and versions (``gpuback.cli.diagnose``).

Every failure is one line on stderr, never a traceback, and an exit code
(``gpuback.cli.exit_codes``; ``gpuback.cli.failures.describe`` decides which):

* 2 (``EXIT_USAGE``): bad arguments (every option is checked by the parser, the message
  names it) and bad input: a missing or malformed data file, spec or checkpoint, an
  unusable backend, an output path that cannot be written, sizes that the memory
  pre-flight refuses (a ``MemoryError`` that is also a ``ValueError``). Every
  ``ValueError``, ``TypeError``, ``OSError`` or ``RuntimeError`` that reaches ``main`` is
  reported so: in ``predict``, ``evaluate``, ``gradcheck``, ``explain``, ``bench`` and
  ``info``, and in ``train`` before its first step, a backend or a file system that fails
  exits 2 too;
* 1 (``EXIT_FAILED``): the run failed: in ``train``, a diverging run, a checkpoint that
  could not be written, the backend or the system failing (a ``RuntimeError`` or
  ``OSError``) while it trains; a failed gradient check; out of memory in any command;
  and any unexpected error, reported as "internal error" (please report it);
* 130 (``EXIT_INTERRUPTED``): Ctrl-C, and 143 for SIGTERM, 129 for SIGHUP (each stops a
  run as cleanly as Ctrl-C; ``gpuback.cli.signals``); ``train`` says which epoch its
  checkpoint holds.

With the environment variable ``GPUBACK_TRACEBACK=1`` the traceback is printed too.

Under ``mpiexec -n N`` (``gpuback.distributed``) every rank runs the command and rank 0
alone prints (the others' stdout goes nowhere); ``train`` trains data-parallel. A failure
raised alike on every rank is printed once, by rank 0, and every rank exits with its
code; one raised on some ranks only is printed by each of them with its rank and ends
the whole job (``MPI_Abort``), so that no rank waits for ever in a collective.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from ..distributed import mpi as distributed
from .bench import add_bench_parser
from .diagnose import add_explain_parser, add_gradcheck_parser, add_info_parser
from .exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from .failures import TRACEBACK_ENV, ParseError, describe
from .output import quiet_unless_root, stdout_for_json, wants_json
from .predict import add_evaluate_parser, add_predict_parser
from .signals import signals_stop_the_run
from .spec import add_spec_parser
from .train import add_train_parser


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage block) that ``main`` prints."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ParseError(f"{self.prog}: error: {message} (see {self.prog} --help)")


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
        with signals_stop_the_run(), quiet_unless_root(world):
            args = build_parser().parse_args(argv)
            command = f"gpuback {args.command}"
            run: Callable[[argparse.Namespace], int] = args.run  # the command's run_...
            with stdout_for_json(wants_json(args) and world.is_root) as args.emit:
                return run(args)
    except SystemExit:  # --help
        raise
    except BaseException as exc:  # every failure becomes one line
        if isinstance(exc, ParseError):  # every rank parsed the same command line
            distributed.mark_on_every_rank(exc)
        return _report(command, exc, world)


def _report(command: str, exc: BaseException,
            world: distributed.SingleProcess | None = None) -> int:
    """Print ``exc`` as one line on stderr (and its traceback with GPUBACK_TRACEBACK=1);
    the exit code for it. In an MPI job (``world`` of several ranks) a failure raised alike
    on every rank is printed by rank 0 alone; any other is printed with the rank and aborts
    the job with its code (the function then does not return)."""
    several = world is not None and world.size > 1
    alike = several and distributed.on_every_rank(exc)
    if alike and world is not None and not world.is_root:
        return describe(command, exc)[0]
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0") and not isinstance(exc, ParseError):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    code, line = describe(command, exc)
    if several and not alike and world is not None:
        print(f"[rank {world.rank}] " + " ".join(line.split()), file=sys.stderr)
        if isinstance(world, distributed.MPIWorld):
            world.abort(code)
        return code
    print(" ".join(line.split()), file=sys.stderr)  # one line, whatever the message holds
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpuback", description="Backpropagation for feed-forward networks "
                     f"(Bishop PRML 5.3). Failures: one line on stderr, exit {EXIT_USAGE} for "
                     f"bad input, {EXIT_FAILED} for a failed run, {EXIT_INTERRUPTED} for "
                     f"Ctrl-C; {TRACEBACK_ENV}=1 also prints the traceback.")
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
        description="A saved model's mean loss and accuracy (none for sum_of_squares and "
        "poisson) on "
        "samples with targets: a table's columns are the model's inputs, then the targets "
        "as train reads them (one label column, or one per output)."))
    add_spec_parser(sub.add_parser("spec", help="write a spec file: mlp, sparse-mlp or skip "
                                   "(an MLP whose every group also feeds the output)",
                                   description="Write a network spec file for gpuback train "
                                   "--spec (groups x, h1, ..., y)."))
    add_gradcheck_parser(sub.add_parser("gradcheck", help="backprop vs central differences "
                                        "for a spec"))
    add_explain_parser(sub.add_parser("explain", help="eq. 5.56 for one hidden unit, term "
                                      "by term"))
    add_bench_parser(sub.add_parser("bench", help="training-step speed of every backend "
                                    "here against PyTorch (if installed), in one run"))
    add_info_parser(sub.add_parser("info", help="backends available here, GPU and versions"))
    return parser


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "TRACEBACK_ENV", "build_parser",
           "main"]
