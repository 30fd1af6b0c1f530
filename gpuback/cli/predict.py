"""``gpuback predict`` and ``gpuback evaluate``: a saved model (``gpuback train``'s
``OUT/model``, or any checkpoint ``Network.save`` wrote) on a data file.

The file is read in the formats ``train --data`` accepts (``gpuback.datasets``), its
features scaled as the model's training run scaled them (its ``--scale``, from the
checkpoint; ``--scale`` says otherwise). Targets may be there or not:

* a table (``.csv``, ``.npy``) has either exactly the model's inputs as columns (no
  targets), or those columns followed by the targets as ``train`` reads them: one label
  column for a classifier (cross_entropy), one column per output otherwise; any other
  column count is an error naming both;
* an ``.npz`` file's ``X`` is the features, its ``y`` (optional) the targets;
* an MNIST IDX images file needs its labels file beside it, as for ``train``.

``predict`` ignores the targets; ``evaluate`` needs them (labels in 0..outputs-1, values
in [0, 1] for binary cross-entropy, >= 0 for Poisson). Without ``--data`` both use the
test part of the data the model was trained on (from the run's options in its checkpoint).

``predict`` writes CSV with a header row: for a classifier ``label`` (the class with the
largest probability) then ``p0 .. p{K-1}``, the softmax outputs; for binary
cross-entropy ``label0 ..`` (1 where the output is >= 0.5) then ``p0 ..``; for sum of
squares and Poisson ``y0 ..``, the outputs (Poisson's: the predicted means e^a). Values are
written with enough digits to read back the network's own numbers (9 for float32, 17 for
float64).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import AUTO, backend_names
from ..datasets import loaders as datasets
from ..network import Network
from .failures import UsageError
from .files import check_new_file, reading, write_text
from .options import POSITIVE_INT, SCALE, add_json_flag, add_option, add_out_file
from .run_data import run_test_part
from .run_settings import saved_settings

DIGITS = {"float32": 9, "float64": 17}  # significant digits that read back the same value
# what a loss's target values must be (evaluate's message); other losses: finite
TARGET_RULES = {"binary_cross_entropy": "within [0, 1]", "poisson": ">= 0 and finite"}


def _add_common(parser: argparse.ArgumentParser, what: str) -> None:
    add_option(parser, "--model", "a checkpoint directory (gpuback train's OUT/model)",
               metavar="DIR", required=True, shown="none, required")
    add_option(parser, "--data", f"the samples to {what}: a .npz (X, and y if it has "
               "targets), .npy or .csv (the model's inputs as columns, then the targets "
               "as train reads them, if any) or MNIST IDX images file", metavar="FILE",
               shown="the test part of the data the model was trained on")
    add_option(parser, "--scale", "divide every feature by this; auto: 255 for MNIST IDX "
               "files, else 1", type=SCALE, metavar="S",
               shown="the training run's --scale, from the checkpoint; else auto")
    add_option(parser, "--backend", "where to compute (auto: the fastest usable one)", AUTO,
               choices=[AUTO, *backend_names()])
    add_option(parser, "--batch-size", "samples per forward pass", 1024, type=POSITIVE_INT,
               metavar="N")


def add_predict_parser(predict: argparse.ArgumentParser) -> None:
    _add_common(predict, "predict")
    add_out_file(predict, "the CSV file of predictions")
    predict.set_defaults(run=run_predict)


def add_evaluate_parser(evaluate: argparse.ArgumentParser) -> None:
    _add_common(evaluate, "evaluate on (with their targets)")
    add_json_flag(evaluate)
    evaluate.set_defaults(run=run_evaluate)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Samples for a model: features ``X`` (scaled), targets ``T`` (None when the file
    has none) and ``source``, where they came from."""

    X: np.ndarray
    T: np.ndarray | None
    source: str


def run_predict(args: argparse.Namespace) -> int:
    out = None if args.out is None else Path(args.out)
    if out is not None:
        check_new_file("--out", out, args.overwrite)
    net, settings = load_model(args.model, args.backend)
    inputs = read_inputs(args.data, net, settings, args.scale, args.model, need_targets=False)
    outputs = net.predict(inputs.X, batch_size=args.batch_size)
    text = predictions_csv(outputs, net.plan.loss, net.dtype)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    write_text(out, text)
    print(f"predictions for {len(outputs)} samples of {inputs.source} written to {out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    net, settings = load_model(args.model, args.backend)
    inputs = read_inputs(args.data, net, settings, args.scale, args.model, need_targets=True)
    assert inputs.T is not None  # need_targets
    result = net.evaluate(inputs.X, inputs.T, batch_size=args.batch_size)
    report = {"loss": result["loss"], "accuracy": result["accuracy"],
              "samples": len(inputs.X), "loss_function": net.plan.loss,
              "epochs_trained": net.epochs_trained, "model": str(args.model),
              "data": inputs.source, "backend": net.backend, "dtype": net.dtype,
              "precision": net.precision}
    if args.json:
        args.emit(report)
        return 0
    accuracy = "" if result["accuracy"] is None else f", accuracy {result['accuracy']:.4f}"
    print(f"gpuback evaluate: {args.model} ({net.epochs_trained} epochs) on {inputs.source}, "
          f"{len(inputs.X)} samples: loss {result['loss']:.4f} ({net.plan.loss}){accuracy}")
    return 0


def load_model(model: str, backend: str) -> tuple[Network, dict[str, Any]]:
    """The network in the checkpoint ``model`` and the options of the ``gpuback train``
    run that wrote it (empty for one the Python API saved)."""
    with reading(model, "gpuback checkpoint"):
        net = Network.load(model, backend=backend)
        settings = saved_settings(model)
    return net, settings if isinstance(settings, dict) else {}


def read_inputs(data: str | None, net: Network, settings: dict[str, Any],
                scale: str | float | None, model: str, need_targets: bool) -> Inputs:
    """The samples of ``data`` (the module docstring says how), checked against ``net``;
    without ``data``, the test part of the training run's data."""
    if data is None:
        if not settings:
            raise UsageError(f"--data: needed, as the checkpoint in {model} holds no "
                             f"gpuback train options (no training run to take the test "
                             f"part of)")
        X_test, T_test, source = run_test_part(settings, net.plan.loss, scale)
        return Inputs(X_test, T_test, source)
    if scale is None:
        scale = settings.get("scale", "auto")
    with reading(data, "data file"):
        X, T = _read_file(Path(data), net, model)
    auto = 255.0 if datasets.is_idx_images(data) else 1.0
    factor = auto if scale == "auto" else float(scale)
    if X.shape[1] != net.plan.n_in:
        raise UsageError(f"--data {data}: {X.shape[1]} features, but the model in {model} "
                         f"takes {net.plan.n_in} inputs")
    if T is None and need_targets:
        raise UsageError(f"--data {data}: holds no targets to evaluate against; expected "
                         f"{_target_text(net)} after the {net.plan.n_in} feature columns "
                         f"(or 'y' in an .npz file)")
    targets = _check_targets(T, net, data) if T is not None and need_targets else None
    source = data + (f" (divided by {factor:g})" if factor != 1 else "")
    return Inputs(X / factor if factor != 1 else X, targets, source)


def _read_file(path: Path, net: Network, model: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Features and targets (None: none) as the file holds them."""
    name = path.name.lower()
    if name.endswith(".npz"):
        return _read_npz(path)
    if datasets.is_idx_images(path) or not name.endswith((".npy", ".csv", ".csv.gz")):
        return datasets.load_file(path)  # IDX images and labels; an unknown type: its error
    # a table of numbers: read as features and one last "values" column (every cell
    # checked to be a finite number), then split by the model's input count
    X, last = datasets.load_file(path, targets="values", target_columns=1)
    table = np.column_stack([X, last])
    n_in, k = net.plan.n_in, _target_columns(net)
    if table.shape[1] == n_in:
        return table, None
    if table.shape[1] == n_in + k:
        return table[:, :n_in], table[:, n_in:]
    raise UsageError(f"--data {path}: {table.shape[1]} columns, but the model in {model} "
                     f"takes {n_in} inputs: expected {n_in} columns (no targets) or "
                     f"{n_in + k} ({n_in} features, then {_target_text(net)})")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = sorted(archive.files)
            if "X" not in names:
                raise UsageError(f"--data {path}: expected an array named 'X' (features); "
                                 f"found {names}")
            X = archive["X"]
            y = archive["y"] if "y" in names else None
    except (OSError, ValueError, zipfile.BadZipFile, AttributeError) as exc:
        raise UsageError(f"--data {path}: not a readable .npz archive ({exc})") from None
    if X.ndim < 2 or X.shape[0] == 0 or X.dtype.kind not in "biuf":
        raise UsageError(f"--data {path}: expected numeric 'X' with a row per sample, found "
                         f"shape {X.shape} of dtype {X.dtype}")
    X = X.reshape(X.shape[0], -1).astype(np.float64)
    if not np.isfinite(X).all():
        row, col = np.argwhere(~np.isfinite(X))[0]
        raise UsageError(f"--data {path}: features must be finite; found {X[row, col]} at "
                         f"sample {row}, feature {col}")
    if y is not None and (y.shape[:1] != X.shape[:1] or y.dtype.kind not in "biuf"):
        raise UsageError(f"--data {path}: 'y' of shape {y.shape} ({y.dtype}) is not numeric "
                         f"targets for the {X.shape[0]} samples of 'X'")
    return X, y


def _target_columns(net: Network) -> int:
    """How many last columns of a table are targets: a label, or one per output."""
    return 1 if net.plan.loss == "cross_entropy" else net.plan.n_out


def _target_text(net: Network) -> str:
    if net.plan.loss == "cross_entropy":
        return "one label column"
    return f"{net.plan.n_out} target column{'s' * (net.plan.n_out > 1)}"


def _check_targets(T: np.ndarray, net: Network, data: str) -> np.ndarray:
    """Targets fit for ``net``'s loss: class labels in 0..outputs-1 (one per sample), or
    one value per output (within [0, 1] for binary cross-entropy, >= 0 for Poisson)."""
    plan, n = net.plan, len(T)
    T = T.astype(np.float64)
    if plan.loss == "cross_entropy":
        labels = T.reshape(n, -1)
        if labels.shape[1] != 1:
            raise UsageError(f"--data {data}: expected one class label per sample, found "
                             f"targets of shape {T.shape}")
        labels = labels[:, 0]
        bad = ~np.isfinite(labels) | (labels != np.round(labels)) | (labels < 0) | \
            (labels >= plan.n_out)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UsageError(f"--data {data}: labels must be class indices 0..{plan.n_out - 1} "
                             f"(the model has {plan.n_out} outputs); found {labels[i]:g} at "
                             f"sample {i}")
        return labels.astype(np.int64)
    values = T.reshape(n, -1)
    if values.shape[1] != plan.n_out:
        raise UsageError(f"--data {data}: {values.shape[1]} targets per sample, but the model "
                         f"has {plan.n_out} outputs")
    bad = ~np.isfinite(values)
    if plan.loss == "binary_cross_entropy":
        bad |= (values < 0) | (values > 1)
    if plan.loss == "poisson":
        bad |= values < 0
    if bad.any():
        row, col = np.argwhere(bad)[0]
        rule = TARGET_RULES.get(plan.loss, "finite")
        raise UsageError(f"--data {data}: targets must be {rule}; found {values[row, col]} at "
                         f"sample {row}, column {col}")
    return values


def predictions_csv(outputs: np.ndarray, loss: str, dtype: str) -> str:
    """The CSV text of ``outputs`` (samples x outputs) for a model with ``loss``."""
    k = outputs.shape[1]
    digits = DIGITS.get(dtype, 17)
    value = f"%.{digits}g"
    if loss == "cross_entropy":
        header = ["label", *(f"p{i}" for i in range(k))]
        table = np.column_stack([np.argmax(outputs, axis=1), outputs])
        fmt = ["%d", *[value] * k]
    elif loss == "binary_cross_entropy":
        header = [*(f"label{i}" for i in range(k)), *(f"p{i}" for i in range(k))]
        table = np.column_stack([(outputs >= 0.5).astype(np.int64), outputs])
        fmt = ["%d"] * k + [value] * k
    else:
        header = [f"y{i}" for i in range(k)]
        table, fmt = outputs, [value] * k
    buffer = io.StringIO()
    np.savetxt(buffer, table, fmt=fmt, delimiter=",", header=",".join(header), comments="")
    return buffer.getvalue()


__all__ = ["Inputs", "add_evaluate_parser", "add_predict_parser", "load_model",
           "predictions_csv", "read_inputs", "run_evaluate", "run_predict"]
