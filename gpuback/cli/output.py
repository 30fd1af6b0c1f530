"""Where a command's stdout goes: with ``--json`` one JSON document and nothing else
(every other line to stderr); on a rank other than 0 of an MPI job, nowhere."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from ..distributed import mpi as distributed

STDOUT = "-"  # bench --json without a file name: the results to stdout

Emit = Callable[[Any], None]  # writes a command's JSON document to stdout


def wants_json(args: argparse.Namespace) -> bool:
    """Whether the command's stdout is to be one JSON document (``--json``; for ``bench``,
    ``--json`` without a file name)."""
    return getattr(args, "json", None) in (True, STDOUT)


@contextlib.contextmanager
def stdout_for_json(wanted: bool) -> Iterator[Emit]:
    """With ``--json`` stdout carries exactly one JSON document: while the block runs,
    everything the command prints goes to stderr instead, and the ``emit(document)``
    yielded writes the document to the real stdout. Without it ``emit`` prints the
    document as one line among the others."""
    out = sys.stdout

    def emit(document: Any) -> None:
        out.write(json.dumps(document) + "\n")
        out.flush()

    if not wanted:
        yield emit
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield emit


@contextlib.contextmanager
def quiet_unless_root(world: distributed.SingleProcess) -> Iterator[None]:
    """On a rank other than 0 of an MPI job, stdout goes nowhere while the block runs."""
    if world.is_root:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


__all__ = ["STDOUT", "Emit", "quiet_unless_root", "stdout_for_json", "wants_json"]
