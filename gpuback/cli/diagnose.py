"""``gpuback gradcheck``, ``gpuback explain`` and ``gpuback info``: the commands that look
into a network (``gpuback.diagnostics``) or into the machine.

* ``gradcheck``: backprop against central differences, for a spec file, a checkpoint or
  a demo DAG; exit 1 (``EXIT_FAILED``) when the check fails;
* ``explain``: Bishop 5.56 for one hidden unit, term by term;
* ``info``: the backends usable here, the GPU and the versions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import AUTO, backend_names
from ..checkpoint import files as checkpoint
from ..diagnostics.gradient_check import gradcheck
from ..network import Network
from .exit_codes import EXIT_FAILED
from .failures import UsageError
from .files import reading
from .options import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, add_json_flag, add_option


def add_gradcheck_parser(check: argparse.ArgumentParser) -> None:
    check.add_argument("spec", nargs="?", help="a spec .json file, e.g. the network.json of a "
                       "checkpoint's version folder (default: a small DAG where a hidden "
                       "group feeds three later groups)")
    add_option(check, "--model", "a checkpoint directory (gpuback train's OUT/model): its "
               "network and trained weights, instead of SPEC", metavar="DIR", shown="none")
    add_option(check, "--batch", "samples in the check", 3, type=POSITIVE_INT, metavar="N")
    add_option(check, "--mode", "full: every parameter; direction: random directional "
               "derivatives", "full", choices=["full", "direction"])
    add_option(check, "--tol", "largest relative error that passes", 1e-7, type=POSITIVE,
               metavar="TOL")
    add_option(check, "--backend", "backend to check", "numpy",
               choices=[AUTO, *backend_names()])
    add_option(check, "--seed", "seed of the weights, inputs and targets", 0,
               type=NON_NEGATIVE_INT, metavar="N")
    add_json_flag(check)
    check.set_defaults(run=run_gradcheck)


def add_explain_parser(explain: argparse.ArgumentParser) -> None:
    add_option(explain, "--unit", "the unit j of the group", 0, type=NON_NEGATIVE_INT,
               metavar="J")
    add_option(explain, "--group", "the hidden group", metavar="G",
               shown="the hidden group that feeds the most later groups (the first of them)")
    add_option(explain, "--model", "a saved checkpoint directory", metavar="DIR",
               shown="a demo network where h feeds three later groups")
    add_option(explain, "--seed", "seed of the demo weights and the sample", 0,
               type=NON_NEGATIVE_INT, metavar="N")
    add_json_flag(explain)
    explain.set_defaults(run=run_explain)


def add_info_parser(info: argparse.ArgumentParser) -> None:
    add_json_flag(info)
    info.set_defaults(run=run_info)


def run_gradcheck(args: argparse.Namespace) -> int:
    from ..diagnostics.explanation import DEMO_SPEC, random_targets

    net = _gradcheck_network(args, DEMO_SPEC)
    rng = np.random.default_rng(args.seed)
    X = rng.normal(size=(args.batch, net.plan.n_in))
    T = random_targets(net.plan.loss, net.plan.n_out, args.batch, rng)
    report = gradcheck(net, X, T, mode=args.mode, tol=args.tol, seed=args.seed)
    if args.json:
        args.emit({"network": network_report(net), **report.as_dict()})
    else:
        print(report)
    return 0 if report.passed else EXIT_FAILED


def _gradcheck_network(args: argparse.Namespace, demo: dict[str, Any]) -> Network:
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


def network_report(net: Network) -> dict[str, Any]:
    """The network a JSON report is about."""
    plan = net.plan
    return {"groups": {g: plan.groups[g].size for g in plan.order}, "loss": plan.loss,
            "backend": net.backend, "dtype": net.dtype}


def run_explain(args: argparse.Namespace) -> int:
    from ..diagnostics.explanation import explain

    net: Network | None = None
    if args.model is not None:
        with reading(args.model, "gpuback checkpoint"):
            net = Network.load(args.model)
    explanation = explain(net, group=args.group, unit=args.unit, seed=args.seed)
    if args.json:
        args.emit(explanation.as_dict())
    else:
        print(explanation)
    return 0


def run_info(args: argparse.Namespace) -> int:
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


__all__ = ["add_explain_parser", "add_gradcheck_parser", "add_info_parser", "network_report",
           "run_explain", "run_gradcheck", "run_info"]
