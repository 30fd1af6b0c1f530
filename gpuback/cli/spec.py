"""``gpuback spec``: write a network spec file for ``gpuback train --spec`` (or
``gpuback gradcheck``) from a list of layer sizes.

Four shapes, the groups named ``x, h1, ..., y`` (input, hidden, output) in the first three:

* ``mlp``: the chain ``x -> h1 -> ... -> y`` of dense blocks (``gpuback.mlp_spec``);
* ``sparse-mlp``: that chain with the blocks into hidden groups sparse, ``--density`` of
  their edges kept at random from ``--seed`` (``gpuback.sparse_mlp_spec``);
* ``skip``: the chain, plus a dense skip connection into the output from every earlier
  group that the chain does not already connect to it: from ``x`` and from every hidden
  group but the last (``skip_spec``). So every group feeds ``y`` directly, and a hidden
  group's delta sums over two consumers, the next group and the output (Bishop 5.56);
* ``resmlp``: the residual MLP of ``gpuback.resmlp_spec``, ``--sizes IN WIDTH OUT`` and
  ``--depth`` blocks, layer-normalised unless ``--norm none``, with ``--dropout`` (groups
  ``x, r0, b1, r1, ..., y``).

The file is checked with ``gpuback.core.spec.validate_spec`` before it is written, written
whole (a temporary file moved over it) and never over an existing file without
``--overwrite``; without ``--out`` the spec goes to stdout.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.spec import (
    ELEMENTWISE_ACTIVATIONS,
    LOSSES,
    NORMS,
    mlp_spec,
    resmlp_spec,
    sparse_mlp_spec,
    validate_spec,
)
from .failures import UsageError
from .files import check_new_file, write_text
from .options import (
    DENSITY,
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    PROBABILITY,
    add_option,
    add_out_file,
)

SHAPES = {
    "mlp": "a fully connected MLP: x -> h1 -> ... -> y, dense blocks",
    "sparse-mlp": "an MLP whose blocks into hidden groups are sparse (random edges)",
    "skip": "an MLP with skip connections: every group before the output (x, h1, ...) "
            "also feeds the output y directly, through a dense block",
    "resmlp": "a residual MLP: a dense stem x -> r0, --depth blocks r_i = r_(i-1) + "
              "dropout(act(norm(W r_(i-1)))), a dense head -> y",
}


def skip_spec(sizes: Sequence[int], activation: str = "relu",
              loss: str = "cross_entropy") -> dict[str, Any]:
    """``mlp_spec(sizes, ...)`` plus a dense block into the output group ``y`` from the
    input ``x`` and from every hidden group but the last (which the chain connects):
    every group before the output feeds it directly. Validated."""
    chain = mlp_spec(sizes, activation=activation, loss=loss)
    names = [g["name"] for g in chain["groups"]]
    skips = [{"src": name, "dst": "y", "kind": "dense"} for name in names[:-2]]
    return validate_spec({**chain, "connections": [*chain["connections"], *skips]})


def add_spec_parser(spec: argparse.ArgumentParser) -> None:
    shapes = spec.add_subparsers(dest="shape", required=True, metavar="SHAPE",
                                 help=f"the network's shape, one of {', '.join(SHAPES)}; "
                                 f"SHAPE --help for its options (default: none, required)")
    for shape, text in SHAPES.items():
        residual = shape == "resmlp"
        names = "x, r0, b1, r1, ..., y" if residual else "x, h1, ..., y"
        parser = shapes.add_parser(shape, help=text, description=f"Write a spec file for {text}"
                                   f" (groups {names}).")
        sizes = "three sizes: input, the blocks' width, output, e.g. 64 128 10" if residual \
            else "layer sizes, input first and output last, e.g. 64 128 10"
        add_option(parser, "--sizes", f"{sizes} (the embedded digits have 64 features and 10 "
                   "classes)", nargs="+", type=POSITIVE_INT, metavar="UNITS", required=True,
                   shown="none, required")
        add_option(parser, "--activation", "hidden activation", "gelu" if residual else "relu",
                   choices=ELEMENTWISE_ACTIVATIONS)
        add_option(parser, "--loss", "the loss, which sets the output activation (softmax for "
                   "cross_entropy, sigmoid for binary_cross_entropy, exp for poisson, "
                   "identity for sum_of_squares)", "cross_entropy",
                   choices=sorted(LOSSES, key=lambda loss: loss != "cross_entropy"))
        if residual:
            add_option(parser, "--depth", "the number of residual blocks", 4,
                       type=NON_NEGATIVE_INT, metavar="N")
            add_option(parser, "--norm", "the normalisation of each block's group", "layer",
                       choices=[*NORMS, "none"])
            add_option(parser, "--dropout", "each block's dropout probability in training "
                       "(0 for none)", 0.1, type=PROBABILITY, metavar="P")
        if shape == "sparse-mlp":
            add_option(parser, "--density", "fraction of the edges kept in each block into a "
                       "hidden group (the block into the output stays dense)", 0.05,
                       type=DENSITY, metavar="F")
            add_option(parser, "--seed", "seed of the random edges", 0, type=NON_NEGATIVE_INT,
                       metavar="N")
        add_out_file(parser, "the spec .json file to write")
        parser.set_defaults(run=run_spec)


def run_spec(args: argparse.Namespace) -> int:
    sizes = args.sizes
    if args.shape == "resmlp" and len(sizes) != 3:
        raise UsageError(f"--sizes: expected 3 sizes for resmlp (input, width, output), got "
                         f"{len(sizes)}")
    if len(sizes) < (3 if args.shape == "skip" else 2):
        least = "3 (input, a hidden group, output)" if args.shape == "skip" else \
            "2 (input, output)"
        raise UsageError(f"--sizes: expected at least {least} sizes, got {len(sizes)}")
    out = None if args.out is None else Path(args.out)
    if out is not None:
        check_new_file("--out", out, args.overwrite)
    if args.shape == "resmlp":
        spec = resmlp_spec(sizes[0], sizes[1], args.depth, sizes[2],
                           norm=None if args.norm == "none" else args.norm,
                           dropout=args.dropout, activation=args.activation, loss=args.loss)
    else:
        spec = build(args.shape, sizes, args.activation, args.loss,
                     getattr(args, "density", None), getattr(args, "seed", 0))
    text = spec_text(spec)
    if out is None:
        args.emit(spec)
        return 0
    write_text(out, text)
    groups = ", ".join(f"{g['name']} {g['size']}" for g in spec["groups"])
    print(f"spec written to {out}: {args.shape}, groups {groups}; "
          f"{len(spec['connections'])} blocks")
    return 0


def build(shape: str, sizes: list[int], activation: str, loss: str, density: float | None,
          seed: int) -> dict[str, Any]:
    """The validated spec of ``shape`` (one of ``SHAPES``)."""
    if shape == "mlp":
        return mlp_spec(sizes, activation=activation, loss=loss)
    if shape == "sparse-mlp":
        assert density is not None  # the parser's default
        return sparse_mlp_spec(sizes, density=density, seed=seed, activation=activation,
                               loss=loss)
    return skip_spec(sizes, activation=activation, loss=loss)


def spec_text(spec: dict[str, Any]) -> str:
    """``spec`` as JSON, a line per group and per connection (an edge list stays on its
    connection's line)."""
    def items(key: str) -> str:
        return ",\n".join(f"  {json.dumps(item)}" for item in spec[key])

    rest = ", ".join(f"{json.dumps(k)}: {json.dumps(spec[k])}" for k in ("input", "output",
                                                                         "loss"))
    return (f'{{\n "groups": [\n{items("groups")}\n ],\n "connections": [\n'
            f'{items("connections")}\n ],\n {rest}\n}}\n')


__all__ = ["SHAPES", "add_spec_parser", "build", "run_spec", "skip_spec", "spec_text"]
