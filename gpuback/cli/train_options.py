"""The options of ``gpuback train``: what each one does, what it accepts and its default
(``gpuback.cli.run_settings.TRAIN_DEFAULTS``), as ``gpuback train --help`` and the
command-line reference of the docs (written from this parser) show them."""

from __future__ import annotations

import argparse
from typing import Any

from ..backends import AUTO, backend_names
from ..backends.precision import PRECISIONS
from ..core.checks import FLOAT_DTYPES
from ..core.spec import ELEMENTWISE_ACTIVATIONS, LOSSES
from .options import (
    DENSITY,
    FRACTION,
    MOMENTUM,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    SCALE,
    add_json_flag,
    add_option,
)
from .run_settings import OPTIMIZER_NAMES, TRAIN_DEFAULTS


def add_train_options(train: argparse.ArgumentParser) -> None:
    """Every option of ``gpuback train``, its help saying what it accepts and its default
    (``TRAIN_DEFAULTS``; the parser's own default is None, to tell given from defaulted)."""
    d = TRAIN_DEFAULTS

    def add(flag: str, text: str, **kwargs: Any) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        add_option(train, flag, text, d[dest], sentinel=True, **kwargs)

    add("--data", "a .npz (X, y), .npy or .csv (the target last) or MNIST IDX images file",
        metavar="FILE", shown="the embedded 8x8 digits")
    add("--loss", "what the network learns: cross_entropy, classes (softmax outputs, "
        "labels 0..K-1); sum_of_squares, regression (identity outputs, real targets); "
        "binary_cross_entropy, multi-label (sigmoid outputs, targets in [0, 1]); poisson, "
        "counts or rates (exp outputs, targets >= 0)",
        choices=sorted(LOSSES, key=lambda loss: loss != "cross_entropy"))
    add("--target-columns", "how many last columns of a .csv or .npy file are targets "
        "(sum_of_squares, binary_cross_entropy and poisson; an .npz file's y gives them "
        "itself)",
        type=POSITIVE_INT, metavar="K")
    add("--scale", "divide every feature by this; auto: 255 for MNIST IDX files (pixels "
        "0..255 to [0, 1]), else 1 (the values as stored; the embedded digits come scaled)",
        type=SCALE, metavar="S")
    add("--test-fraction", "fraction of the samples held out for testing", type=FRACTION,
        metavar="F")
    add("--spec", "train the network this spec .json file describes (any acyclic wiring; "
        "gpuback spec writes one) instead of an MLP: its input group must have the data's "
        "features, its output group one unit per class (or target), and it gives the loss; "
        "excludes --hidden, --activation and --density", metavar="FILE",
        shown="none: an MLP from --hidden, --activation and --density")
    add("--hidden", "hidden layer sizes", type=POSITIVE_INT, nargs="+", metavar="UNITS")
    add("--activation", "hidden activation", choices=ELEMENTWISE_ACTIVATIONS)
    add("--density", "fraction of edges kept in hidden blocks; < 1 makes them sparse",
        type=DENSITY, metavar="F")
    add("--optimizer", "optimiser", choices=list(OPTIMIZER_NAMES))
    add("--lr", "learning rate", type=POSITIVE, metavar="LR")
    add("--momentum", "momentum (sgd only; Nesterov when > 0)", type=MOMENTUM, metavar="M")
    add("--weight-decay", "weight decay on the weights (biases are not decayed)",
        type=NON_NEGATIVE, metavar="WD")
    add("--schedule", "learning-rate schedule over the run (cosine: 5%% warm-up)",
        choices=["constant", "cosine"])
    add("--epochs", "total epochs: with --resume, training continues up to this many",
        type=POSITIVE_INT, metavar="N")
    add("--batch-size", "samples per step", type=POSITIVE_INT, metavar="N")
    add("--early-stopping", "stop after N epochs without a lower validation loss and keep "
        "the best epoch; the validation part is held out of the training data", type=POSITIVE_INT,
        metavar="N", shown="off")
    add("--validation-fraction", "fraction of the training data held out for "
        "--early-stopping", type=FRACTION, metavar="F")
    add("--clip-grad-norm", "clip each step's gradients to this global norm before the "
        "update (torch.nn.utils.clip_grad_norm_'s rule)", type=POSITIVE, metavar="C",
        shown="off")
    add("--backend", "where to compute (auto: the fastest usable one)",
        choices=[AUTO, *backend_names()])
    add("--dtype", "floating-point type of the network", choices=list(FLOAT_DTYPES))
    add("--precision", "precision of the products and stored activations and deltas "
        "(tf32, bf16, fp16: mixed precision over a float32 master copy)",
        choices=list(PRECISIONS))
    add("--seed", "seed of the split, the initial weights, the sparse edges and the "
        "shuffling", type=NON_NEGATIVE_INT, metavar="N")
    add("--out", "output directory: the checkpoint in OUT/model (the run's options saved "
        "in it), the curve in OUT/curve.png, one JSON line per epoch in OUT/history.jsonl",
        metavar="OUT")
    train.add_argument("--resume", action="store_true",
                       help="continue the run whose checkpoint is in OUT/model, up to --epochs "
                       "epochs in all; the network, optimiser and (unless given) the other "
                       "options come from it (default: off)")
    train.add_argument("--overwrite", action="store_true",
                       help="start a new run even if OUT/model holds a checkpoint, replacing "
                       "it once the first epoch is saved (default: off)")
    train.add_argument("--no-progress", action="store_true",
                       help="no progress bar (there is none unless stderr is a terminal) "
                       "(default: off)")
    add_json_flag(train, "stdout is one JSON document, the run's summary; every other line "
                  "goes to stderr")


__all__ = ["add_train_options"]
