"""The data a ``gpuback train`` run's settings (``gpuback.cli.run_settings``) name: the
embedded digits or ``--data FILE``, scaled by ``--scale`` and split by ``--test-fraction``
and ``--seed``, so that the same settings always give the same parts. ``train`` trains
on them (``load_data``); ``predict`` and ``evaluate`` without ``--data`` use the test part
of the data a checkpoint was trained on (``run_test_part``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import loaders as datasets
from .failures import UsageError
from .files import reading
from .run_settings import run_options

# what a data file's targets are for each loss (gpuback.datasets.TARGET_KINDS)
LOSS_TARGETS = {"cross_entropy": "labels", "sum_of_squares": "values",
                "binary_cross_entropy": "binary", "poisson": "counts"}


@dataclasses.dataclass(frozen=True)
class RunData:
    """A run's data: ``split`` (its training part what the steps see), ``validation``, the
    pair ``fit`` evaluates after each epoch, named ``watched`` ("test", or "validation"
    with --early-stopping: a part held out of the training data), and ``source``, where
    the data came from."""

    split: datasets.Split
    validation: tuple[np.ndarray, np.ndarray]
    watched: str
    source: str


def load_data(opts: dict[str, Any]) -> RunData:
    """The run's data, as the options say."""
    split, source = read_data(opts)
    if opts["early_stopping"] is None:
        return RunData(split, (split.X_test, split.y_test), "test", source)
    inner = datasets.split(split.X_train, split.y_train, opts["validation_fraction"],
                           seed=opts["seed"], targets=split.targets)
    train = dataclasses.replace(split, X_train=inner.X_train, y_train=inner.y_train)
    return RunData(train, (inner.X_test, inner.y_test), "validation", source)


def run_test_part(settings: dict[str, Any], loss: str,
                  scale: str | float | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The test part of the data that the ``gpuback train`` run whose options are
    ``settings`` (its checkpoint's metadata) held out: features, targets and where they
    came from. ``scale``: instead of the run's ``--scale``."""
    opts = {**run_options(settings), "loss": loss}
    if scale is not None:
        opts["scale"] = scale
    split, source = read_data(opts)
    return split.X_test, split.y_test, f"the test part of {source}"


def read_data(opts: dict[str, Any]) -> tuple[datasets.Split, str]:
    """The train/test split and a description of where it came from."""
    targets = LOSS_TARGETS[opts["loss"]]
    if targets == "labels" and opts["target_columns"] != 1:
        raise UsageError(f"--target-columns {opts['target_columns']}: class labels are one "
                         f"column; several target columns need --loss sum_of_squares, "
                         f"binary_cross_entropy or poisson")
    if opts["data"] is None:
        if targets != "labels":
            raise UsageError(f"--loss {opts['loss']}: the embedded digits hold class labels; "
                             f"pass --data FILE with {targets} targets (or leave --loss out)")
        split = datasets.load_digits(test_fraction=opts["test_fraction"], seed=opts["seed"])
        scale = 1.0 if opts["scale"] == "auto" else opts["scale"]
        if scale != 1:
            split = dataclasses.replace(split, X_train=split.X_train / scale,
                                        X_test=split.X_test / scale)
        return split, "embedded UCI digits (8x8)"
    path = opts["data"]
    with reading(path, "data file"):
        X, y = datasets.load_file(path, targets=targets, target_columns=opts["target_columns"])
    auto = 255.0 if datasets.is_idx_images(path) else 1.0
    scale = auto if opts["scale"] == "auto" else opts["scale"]
    opts["data"] = str(Path(path).resolve())  # what the checkpoint's metadata records
    split = datasets.split(X / scale if scale != 1 else X, y,
                           test_fraction=opts["test_fraction"], seed=opts["seed"],
                           targets=targets)
    return split, path + (f" (divided by {scale:g})" if scale != 1 else "")


__all__ = ["LOSS_TARGETS", "RunData", "load_data", "read_data", "run_test_part"]
