"""``gpuback bench``: the training-step speed of every backend usable here against PyTorch
(``gpuback.benchmark.suite``), as a table, and as JSON on stdout or in a file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..backends import AUTO, backend_names, get_backend, resolve_backend_name
from ..backends.precision import PRECISIONS
from ..benchmark import suite as bench
from .failures import UsageError
from .files import check_writable_file, write_json
from .options import POSITIVE, add_option
from .output import STDOUT


def add_bench_parser(parser: argparse.ArgumentParser) -> None:
    add_option(parser, "--cases", f"cases to run, some of {', '.join(bench.CASES)}",
               nargs="+", metavar="CASE", shown="all")
    add_option(parser, "--backends", "gpuback backends to time", nargs="+",
               metavar="BACKEND", choices=[AUTO, *backend_names()],
               shown="every one usable here, not simulated")
    add_option(parser, "--seconds", "timing per contender and mode, after warming up", 1.0,
               type=POSITIVE, metavar="S")
    parser.add_argument("--quick", action="store_true", help="a smoke check, seconds long "
                        "(smaller cases, three timed calls each): checks it runs, not how "
                        "fast (default: off)")
    parser.add_argument("--no-torch", action="store_true",
                        help="leave PyTorch out (default: off)")
    add_option(parser, "--precision", "precisions to time each gpuback backend in on the "
               "step cases (the peers compute in float32)", ["fp32"], nargs="+",
               metavar="P", choices=list(PRECISIONS), shown="fp32")
    add_option(parser, "--json", "without PATH: stdout is one JSON document, the "
               "results, and the table goes to stderr; with PATH: also write the results to "
               "PATH", metavar="PATH", nargs="?", const=STDOUT, shown="off")
    parser.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
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


__all__ = ["add_bench_parser", "run_bench"]
