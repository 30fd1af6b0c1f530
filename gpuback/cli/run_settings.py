"""The settings of a ``gpuback train`` run: its options' defaults, which of them define
the model and which the run, and the copy of them that each checkpoint of the run keeps
in its metadata (under ``RUN_METADATA``), which ``--resume``, ``predict`` and ``evaluate``
read back."""

from __future__ import annotations

import os
from typing import Any

from ..backends import AUTO
from ..checkpoint import files as checkpoint

RUN_METADATA = "train_options"  # the checkpoint's metadata key for the run's options

# train's options that have a default. The parser's default is None, so that ``--resume``
# knows what was given; these are the values used for what was not.
TRAIN_DEFAULTS: dict[str, Any] = {
    "data": None, "loss": "cross_entropy", "target_columns": 1, "scale": "auto",
    "test_fraction": 0.2, "hidden": [128], "activation": "relu", "density": 1.0,
    "optimizer": "adam", "lr": 3e-3, "momentum": 0.9, "weight_decay": 0.0,
    "schedule": "constant", "epochs": 30, "batch_size": 32, "early_stopping": None,
    "validation_fraction": 0.1, "backend": AUTO, "dtype": "float32", "precision": "fp32",
    "seed": 0, "out": "gpuback-run", "spec": None, "clip_grad_norm": None,
}
# what defines the network and its optimiser: with --resume they come from the checkpoint
MODEL_OPTIONS = ("loss", "hidden", "activation", "density", "dtype", "precision", "optimizer",
                 "lr", "momentum", "weight_decay", "schedule")
# what defines the run: with --resume, taken from the checkpoint's metadata unless given
RUN_OPTIONS = ("data", "target_columns", "scale", "test_fraction", "seed", "batch_size",
               "epochs", "early_stopping", "validation_fraction", "backend", "clip_grad_norm")
# the options that shape the MLP train builds, which a --spec replaces
MLP_SHAPE_OPTIONS = ("hidden", "activation", "density")
OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}  # --optimizer: its class


def saved_settings(model: str | os.PathLike[str]) -> Any:
    """What the checkpoint in ``model`` keeps of the run that wrote it: a dict of its
    options, ``{}`` for a checkpoint the Python API wrote (anything else: not ours)."""
    return checkpoint.read(model).metadata.get(RUN_METADATA, {})


def recorded_options(opts: dict[str, Any]) -> dict[str, Any]:
    """The options of the run ``opts`` that its checkpoints record: RUN_OPTIONS,
    MODEL_OPTIONS and, for a network from a spec file, ``spec``."""
    options = {k: opts[k] for k in (*RUN_OPTIONS, *MODEL_OPTIONS)}
    if opts.get("spec"):
        options["spec"] = opts["spec"]
    return options


def run_options(settings: dict[str, Any]) -> dict[str, Any]:
    """The run's options as ``settings`` (a checkpoint's) recorded them, the defaults for
    the rest."""
    return {**TRAIN_DEFAULTS, **{k: settings[k] for k in RUN_OPTIONS if k in settings}}


__all__ = ["MLP_SHAPE_OPTIONS", "MODEL_OPTIONS", "OPTIMIZER_NAMES", "RUN_METADATA",
           "RUN_OPTIONS", "TRAIN_DEFAULTS", "recorded_options", "run_options", "saved_settings"]
