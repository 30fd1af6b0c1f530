"""``gpuback train``: train an MLP (or, with ``--spec FILE.json``, any network a spec
describes), keep its checkpoint in ``OUT/model``, the run's options saved in it (its
metadata, so they always go with those weights), its curve in ``OUT/curve.png`` and one
line per epoch in ``OUT/history.jsonl`` (``gpuback.cli.history``).

A checkpoint in ``OUT/model`` is never replaced without ``--overwrite``; ``--resume``
continues it (the network and optimiser from the checkpoint, the other options from
checkpoint's metadata unless given) up to ``--epochs`` epochs in all, bitwise as an
unbroken run.
A run that diverges (``gpuback.training.fit``) stops with the last good epoch on disk,
and Ctrl-C says which epoch the checkpoint holds.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import AUTO, backend_names, get_backend
from ..backends.precision import PRECISIONS
from ..checkpoint import files as checkpoint
from ..core.checks import FLOAT_DTYPES
from ..core.plan import compile_plan
from ..core.spec import ELEMENTWISE_ACTIVATIONS, LOSSES, mlp_spec, sparse_mlp_spec, validate_spec
from ..datasets import loaders as datasets
from ..diagnostics.plots import describe_network, plot_history
from ..distributed import mpi as distributed
from ..network import Network
from ..optim import optimizers as optim
from ..training import memory
from ..training.loop import TrainingDivergedError, fit
from . import history as run_history
from .common import (
    DENSITY,
    FRACTION,
    MOMENTUM,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    SCALE,
    InterruptedRunError,
    RunFailedError,
    UsageError,
    add_option,
    check_writable_dir,
    read_spec_file,
    reading,
    show_value,
    stop_reason,
)

RUN_METADATA = "train_options"  # the checkpoint's metadata key for the run's options
_clock = time.perf_counter  # the train summary's clock (a test replaces it)

# train's options that have a default. The parser's default is None, so that ``--resume``
# knows what was given; these are the values used for what was not.
TRAIN_DEFAULTS: dict[str, Any] = {
    "data": None, "loss": "cross_entropy", "target_columns": 1, "scale": "auto",
    "test_fraction": 0.2, "hidden": [128], "activation": "relu", "density": 1.0,
    "optimizer": "adam", "lr": 3e-3, "momentum": 0.9, "weight_decay": 0.0,
    "schedule": "constant", "epochs": 30, "batch_size": 32, "early_stopping": None,
    "validation_fraction": 0.1, "backend": AUTO, "dtype": "float32", "precision": "fp32",
    "seed": 0, "out": "gpuback-run", "spec": None,
}
# what defines the network and its optimiser: with --resume they come from the checkpoint
MODEL_OPTIONS = ("loss", "hidden", "activation", "density", "dtype", "precision", "optimizer",
                 "lr", "momentum", "weight_decay", "schedule")
# what defines the run: with --resume, taken from the checkpoint's metadata unless given
RUN_OPTIONS = ("data", "target_columns", "scale", "test_fraction", "seed", "batch_size",
               "epochs", "early_stopping", "validation_fraction", "backend")
OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
# the options that shape the MLP train builds, which a --spec replaces
MLP_SHAPE_OPTIONS = ("hidden", "activation", "density")
# what a data file's targets are for each loss (gpuback.datasets.TARGET_KINDS)
LOSS_TARGETS = {"cross_entropy": "labels", "sum_of_squares": "values",
                "binary_cross_entropy": "binary"}


def add_train_parser(train: argparse.ArgumentParser) -> None:
    d = TRAIN_DEFAULTS

    def add(flag: str, text: str, **kwargs: Any) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        add_option(train, flag, text, d[dest], sentinel=True, **kwargs)

    add("--data", "a .npz (X, y), .npy or .csv (the target last) or MNIST IDX images file",
        metavar="FILE", shown="the embedded 8x8 digits")
    add("--loss", "what the network learns: cross_entropy, classes (softmax outputs, "
        "labels 0..K-1); sum_of_squares, regression (identity outputs, real targets); "
        "binary_cross_entropy, multi-label (sigmoid outputs, targets in [0, 1])",
        choices=sorted(LOSSES, key=lambda loss: loss != "cross_entropy"))
    add("--target-columns", "how many last columns of a .csv or .npy file are targets "
        "(sum_of_squares and binary_cross_entropy; an .npz file's y gives them itself)",
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
    add("--backend", "where to compute (auto: the fastest usable one)",
        choices=[AUTO, *backend_names()])
    add("--dtype", "floating-point type of the network", choices=list(FLOAT_DTYPES))
    add("--precision", "precision of the products and stored activations and deltas "
        "(tf32, bf16, fp16: mixed precision over a float32 master copy; see README)",
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
                       help="no progress bar (there is none unless stderr is a terminal; "
                       "default: off)")
    train.add_argument("--json", action="store_true",
                       help="stdout is one JSON document, the run's summary; every other "
                       "line goes to stderr (default: off)")
    train.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    # under mpiexec every rank prepares the run; a failure on any is raised on every rank
    prepared = distributed.world().agree(lambda: _prepare(args))
    if prepared is None:
        return 0
    model, replacing, (net, optimizer, data, opts) = prepared
    run = _TrainRun(model, opts, net, optimizer, resumed=args.resume, replacing=replacing)
    return run.train(data, progress=not args.no_progress,
                     summary=args.emit if args.json else None)


def _prepare(args: argparse.Namespace) -> tuple[Path, bool, Setup] | None:
    """The model directory, whether it replaces a checkpoint, and the run's setup; None
    when there is nothing to do."""
    given = {k: getattr(args, k) for k in TRAIN_DEFAULTS if getattr(args, k) is not None}
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other: --resume continues the "
                         "checkpoint in OUT/model, --overwrite replaces it")
    shaped = [name for name in MLP_SHAPE_OPTIONS if name in given]
    if "spec" in given and shaped:
        flags = " and ".join("--" + name for name in shaped)
        raise UsageError(f"--spec and {flags} exclude each other: the spec file describes "
                         f"the whole network")
    out = Path(given.get("out", TRAIN_DEFAULTS["out"]))
    check_writable_dir("--out", out)
    model = out / "model"
    replacing = _check_model_dir(model, args.resume, args.overwrite)
    setup = _resume_setup(given, out) if args.resume else _new_setup(given)
    return None if setup is None else (model, replacing, setup)


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


Setup = tuple[Network, optim.Optimizer, RunData, dict[str, Any]]


def _new_setup(given: dict[str, Any]) -> Setup:
    """A new run: the data, then a network and optimiser from the options."""
    opts = {**TRAIN_DEFAULTS, **given}
    _check_validation_fraction(given, opts)
    spec = None if opts["spec"] is None else _read_spec(given, opts)
    data = _load_data(opts)
    steps = opts["epochs"] * -(-len(data.split.y_train) // opts["batch_size"])
    optimizer = _optimizer(opts, steps)
    if spec is None:
        return _new_network(opts, data.split, optimizer), optimizer, data, opts
    return _spec_network(spec, opts, data, optimizer), optimizer, data, opts


def _read_spec(given: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """The validated spec of ``--spec``; the run's loss is the spec's (``--loss``, if
    given, must agree)."""
    spec = read_spec_file(opts["spec"], "--spec")
    if "loss" in given and given["loss"] != spec["loss"]:
        raise UsageError(f"--loss {opts['loss']}: the spec {opts['spec']} has loss "
                         f"{spec['loss']!r} (leave --loss out)")
    opts["loss"] = spec["loss"]
    opts["spec"] = str(Path(opts["spec"]).resolve())  # what the checkpoint's metadata records
    return spec


def _spec_network(spec: dict[str, Any], opts: dict[str, Any], data: RunData,
                  optimizer: optim.Optimizer) -> Network:
    """The network of ``--spec``, once its sizes match the data and the memory pre-flight
    has found room for training it; the MLP_SHAPE_OPTIONS of the run's metadata are set
    to what the network has (``None`` where it has no such thing)."""
    split = data.split
    plan = compile_plan(spec)
    if (plan.n_in, plan.n_out) != (split.n_features, split.n_outputs):
        outputs = "classes" if split.n_classes is not None else "targets"
        raise UsageError(f"--spec {opts['spec']}: input group {plan.input!r} has {plan.n_in} "
                         f"units and output group {plan.output!r} {plan.n_out}, but the data "
                         f"({data.source}) has {split.n_features} features and "
                         f"{split.n_outputs} {outputs}")
    memory.check_run(get_backend(opts["backend"]), plan, opts["dtype"],
                     min(opts["batch_size"], len(split.y_train)), optimizer)
    net = Network(spec, backend=opts["backend"], dtype=opts["dtype"], seed=opts["seed"],
                  precision=opts["precision"])
    found = _checkpoint_options(net, optimizer, {})
    opts.update(hidden=found["hidden"], activation=found["activation"],
                density=found.get("density"))
    return net


def _resume_setup(given: dict[str, Any], out: Path) -> Setup | None:
    """A resumed run: the network and optimiser from OUT/model, the run's other options
    from its metadata unless given; None when the checkpoint already holds --epochs."""
    model = out / "model"
    settings = _run_options(model)
    opts = {**TRAIN_DEFAULTS, **{k: settings[k] for k in RUN_OPTIONS if k in settings},
            **given}
    net, optimizer = _load_checkpoint(model, opts["backend"])
    opts.update(_check_same_model(given, net, optimizer, settings, model))
    _resumed_spec(given, opts, settings, net, model)
    _check_validation_fraction(given, opts)
    data = _load_data(opts)
    _check_resumable(net, optimizer, data.split, opts, model)
    if net.epochs_trained >= opts["epochs"]:
        print(f"nothing to do: {model} already holds {net.epochs_trained} epochs "
              f"(--epochs {opts['epochs']})")
        return None
    print(f"resuming {model} at epoch {net.epochs_trained + 1} of {opts['epochs']}")
    return net, optimizer, data, opts


def _resumed_spec(given: dict[str, Any], opts: dict[str, Any], settings: dict[str, Any],
                  net: Network, model: Path) -> None:
    """With --resume the network is the checkpoint's: a ``--spec`` given must describe
    it. A run that was trained from a spec keeps its spec's name in the metadata."""
    if "spec" in given:
        spec = read_spec_file(given["spec"], "--spec")
        if spec != net.spec:
            raise UsageError(f"--spec {given['spec']}: not the network of the checkpoint in "
                             f"{model}; with --resume the network comes from the checkpoint "
                             f"(leave --spec out, or start a new run with --overwrite)")
        opts["spec"] = str(Path(given["spec"]).resolve())
    else:
        opts["spec"] = settings.get("spec") if isinstance(settings.get("spec"), str) else None
    if opts["spec"] is not None:  # what the spec run recorded for the MLP-shape options
        opts.update({k: settings[k] for k in MLP_SHAPE_OPTIONS if k in settings})


def _check_validation_fraction(given: dict[str, Any], opts: dict[str, Any]) -> None:
    """``--validation-fraction`` says how much ``--early-stopping`` holds out: alone it
    would do nothing, so it is refused."""
    if "validation_fraction" in given and opts["early_stopping"] is None:
        raise UsageError("--validation-fraction: applies only with --early-stopping (without "
                         "it the test part is what each epoch is evaluated on)")


def _check_model_dir(model: Path, resume: bool, overwrite: bool) -> bool:
    """The rules for OUT/model: ``--resume`` needs a checkpoint there; without it a
    checkpoint is replaced only with ``--overwrite``. Whether one will be replaced."""
    found = checkpoint.exists(model)
    try:
        checkpoint.check_target(model)  # refused now, not after the first epoch
    except checkpoint.CheckpointError as exc:
        raise UsageError(f"--out: {exc}") from None
    if resume and not found:
        raise UsageError(f"--resume: no checkpoint in {model} to resume")
    if found and not resume and not overwrite:
        raise UsageError(f"{model} already holds a checkpoint: pass --resume to continue it "
                         f"or --overwrite to replace it")
    return found and overwrite


def _run_options(model: Path) -> dict[str, Any]:
    """The options of the run that wrote the checkpoint in ``model`` (none for one written
    by the Python API)."""
    with reading(model, "gpuback checkpoint"):
        settings = checkpoint.read(model).metadata.get(RUN_METADATA, {})
    if not isinstance(settings, dict):
        raise UsageError(f"--resume: the checkpoint in {model} holds {RUN_METADATA!r} "
                         f"metadata that is not a JSON object")
    return settings


def _load_checkpoint(model: Path, backend: str) -> tuple[Network, optim.Optimizer]:
    """The network and optimiser of the checkpoint to resume."""
    with reading(model, "gpuback checkpoint"):
        net = Network.load(str(model), backend=backend)
        optimizer = checkpoint.load_optimizer(model, net)
    if optimizer is None:
        raise UsageError(f"--resume: {model} holds no optimiser state, so it cannot be "
                         f"resumed; start a new run with --overwrite")
    return net, optimizer


def _loss_scale(net: Network) -> float | None:
    """The fp16 dynamic loss scale the network ended with (``gpuback.loss_scale``), or
    None when it has none (every other precision)."""
    return None if net.loss_scaler is None else net.loss_scaler.read()[0]


def _precision(net: Network) -> str:
    """``", precision bf16"`` for a mixed-precision network, else nothing."""
    return "" if net.precision == "fp32" else f", precision {net.precision}"


def _checkpoint_options(net: Network, optimizer: optim.Optimizer,
                        settings: dict[str, Any]) -> dict[str, Any]:
    """The values of MODEL_OPTIONS that the checkpoint was made with (``None``: the
    checkpoint has no such thing; absent: not known)."""
    plan, config = net.plan, optimizer.config()
    hidden = [g for g in plan.computed if g != plan.output]
    activations = {plan.groups[g].activation for g in hidden}
    dense = all(c["kind"] == "dense" for c in net.spec["connections"])
    found: dict[str, Any] = {
        "loss": plan.loss, "hidden": [plan.groups[g].size for g in hidden],
        "activation": activations.pop() if len(activations) == 1 else None,
        "dtype": net.dtype, "precision": net.precision,
        "optimizer": {v: k for k, v in OPTIMIZER_NAMES.items()}.get(config["type"]),
        "lr": config["lr"], "momentum": config.get("momentum"),
        "weight_decay": config["weight_decay"], "schedule": config["schedule"]["type"],
    }
    if dense or "density" in settings:
        found["density"] = 1.0 if dense else settings["density"]
    return found


def _check_same_model(given: dict[str, Any], net: Network, optimizer: optim.Optimizer,
                      settings: dict[str, Any], model: Path) -> dict[str, Any]:
    """The checkpoint's MODEL_OPTIONS; a UsageError for one given with another value."""
    found = _checkpoint_options(net, optimizer, settings)
    for name in MODEL_OPTIONS:
        if name not in given or name not in found or given[name] == found[name]:
            continue
        flag = "--" + name.replace("_", "-")
        has = show_value(found[name]) if found[name] is not None else \
            f"none (its optimiser is {found['optimizer']})" if name == "momentum" else "none"
        raise UsageError(f"{flag} {show_value(given[name])}: the checkpoint in {model} has "
                         f"{has}; with --resume the network and optimiser come from the "
                         f"checkpoint (leave {flag} out, or start a new run with --overwrite)")
    return {k: v for k, v in found.items() if v is not None}


def _check_resumable(net: Network, optimizer: optim.Optimizer, data: datasets.Split,
                     opts: dict[str, Any], model: Path) -> None:
    """The data fit the checkpoint's network, and --epochs its schedule."""
    plan = net.plan
    steps_per_epoch = -(-len(data.y_train) // opts["batch_size"])
    if (data.n_features, data.n_outputs) != (plan.n_in, plan.n_out):
        outputs = "classes" if data.n_classes is not None else "targets"
        raise UsageError(f"--data: {data.n_features} features and {data.n_outputs} {outputs}, "
                         f"but the checkpoint in {model} has {plan.n_in} inputs and "
                         f"{plan.n_out} outputs")
    schedule = optimizer.schedule
    if isinstance(schedule, optim.Cosine) and \
            opts["epochs"] * steps_per_epoch > schedule.total_steps:
        raise UsageError(f"--epochs {opts['epochs']}: the checkpoint's cosine schedule ends "
                         f"after {schedule.total_steps // steps_per_epoch} epochs "
                         f"({schedule.total_steps} steps), its learning rate 0 after that; "
                         f"start a new run with --overwrite to train longer")


def _load_data(opts: dict[str, Any]) -> RunData:
    """The run's data, as the options say."""
    split, source = _read_data(opts)
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
    opts = {**TRAIN_DEFAULTS, **{k: settings[k] for k in RUN_OPTIONS if k in settings},
            "loss": loss}
    if scale is not None:
        opts["scale"] = scale
    split, source = _read_data(opts)
    return split.X_test, split.y_test, f"the test part of {source}"


def _read_data(opts: dict[str, Any]) -> tuple[datasets.Split, str]:
    """The train/test split and a description of where it came from."""
    targets = LOSS_TARGETS[opts["loss"]]
    if targets == "labels" and opts["target_columns"] != 1:
        raise UsageError(f"--target-columns {opts['target_columns']}: class labels are one "
                         f"column; several target columns need --loss sum_of_squares or "
                         f"binary_cross_entropy")
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


def _new_network(opts: dict[str, Any], data: datasets.Split,
                 optimizer: optim.Optimizer) -> Network:
    """The network the options describe, once the memory pre-flight has found room for it
    and for training it (before any weight is drawn)."""
    sizes = [data.n_features, *opts["hidden"], data.n_outputs]
    spec = (mlp_spec(sizes, activation=opts["activation"], loss=opts["loss"])
            if opts["density"] == 1 else
            sparse_mlp_spec(sizes, density=opts["density"], seed=opts["seed"],
                            activation=opts["activation"], loss=opts["loss"]))
    memory.check_run(get_backend(opts["backend"]), compile_plan(validate_spec(spec)), opts["dtype"],
                     min(opts["batch_size"], len(data.y_train)), optimizer)
    return Network(spec, backend=opts["backend"], dtype=opts["dtype"], seed=opts["seed"],
                   precision=opts["precision"])


def _optimizer(opts: dict[str, Any], steps: int) -> optim.Optimizer:
    schedule = (optim.Cosine(total_steps=max(steps, 2), warmup_steps=min(steps // 20, steps - 1))
                if opts["schedule"] == "cosine" else None)
    if opts["optimizer"] == "sgd":
        return optim.SGD(lr=opts["lr"], momentum=opts["momentum"],
                         nesterov=opts["momentum"] > 0, weight_decay=opts["weight_decay"],
                         schedule=schedule)
    cls = optim.AdamW if opts["optimizer"] == "adamw" else optim.Adam
    return cls(lr=opts["lr"], weight_decay=opts["weight_decay"], schedule=schedule)


class _TrainRun:
    """One ``gpuback train`` run, which saves its own checkpoints (fit's ``on_epoch_end``)
    and so knows what is on disk: ``saved``, the epoch count of the last checkpoint this
    run completed (at the start a resumed run's, None for a new run); ``saving`` while one
    is being written. Each checkpoint carries the run's options as its metadata."""

    def __init__(self, model: Path, opts: dict[str, Any], net: Network,
                 optimizer: optim.Optimizer, resumed: bool, replacing: bool) -> None:
        self.model, self.opts = model, opts
        self.net, self.optimizer = net, optimizer
        self.replacing = replacing
        self.saved: int | None = net.epochs_trained if resumed else None
        self.saving = self.training = False
        self.history: dict[str, list] = {}  # fit records each epoch into it as it ends
        self.world = distributed.world()

    def train(self, data: RunData, progress: bool,
              summary: Callable[[Any], None] | None) -> int:
        """Train up to ``--epochs``, print the summary (``summary``: given with --json, it
        receives the summary as a JSON document); the exit code."""
        net, opts, split = self.net, self.opts, data.split
        held = f" / {len(data.validation[1])} validation" if data.watched == "validation" else ""
        print(f"gpuback train: {data.source}, {len(split.y_train)} train{held} / "
              f"{len(split.y_test)} test samples; network {self._network()}; backend "
              f"{net.backend}, {net.dtype}{_precision(net)}; {opts['optimizer']} lr "
              f"{opts['lr']}")
        first_epoch = net.epochs_trained + 1
        try:
            start = _clock()
            self.training = True
            history = fit(net, split.X_train, split.y_train, epochs=opts["epochs"] -
                          net.epochs_trained, batch_size=opts["batch_size"],
                          optimizer=self.optimizer, validation=data.validation,
                          seed=opts["seed"], early_stopping=opts["early_stopping"],
                          progress=progress, on_epoch_end=self.save, history=self.history)
            self.training = False
            if self.world.is_root:  # under MPI rank 0 alone evaluates, prints and writes
                self._summary(data, history, first_epoch, _clock() - start, summary)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (cli_common.Terminated)
            how, code = stop_reason(exc)
            message = self._interrupted(how)
            self._history_after_failure(first_epoch, len(split.y_train))
            raise InterruptedRunError(message, code) from None
        except TrainingDivergedError as exc:
            self._history_after_failure(first_epoch, len(split.y_train))
            raise _alike(TrainingDivergedError(f"{exc}; {self._kept()}"), exc) from None
        except (RuntimeError, OSError) as exc:  # the backend or the system failed the run
            self._history_after_failure(first_epoch, len(split.y_train))
            raise _alike(RunFailedError(f"{exc}; {self._kept()}"), exc) from None
        return 0

    def _network(self) -> str:
        """The network, for the run's first line: an MLP's sizes, activation and density;
        a spec's file name and wiring (``gpuback.diagnostics.plots.describe_network``)."""
        net, opts = self.net, self.opts
        if opts.get("spec"):
            wiring = describe_network(net).rsplit(", ", 1)[0]  # less its backend and dtype
            return f"{Path(opts['spec']).name}: {wiring}, {net.plan.loss}"
        sizes = [net.plan.n_in, *opts["hidden"], net.plan.n_out]
        density = "" if opts["density"] == 1 else f", density {opts['density']}"
        return (f"{'-'.join(map(str, sizes))} ({opts['activation']}{density}, "
                f"{opts['loss']})")

    @property
    def history_path(self) -> Path:
        """``OUT/history.jsonl``, beside the curve."""
        return self.model.parent / run_history.FILE_NAME

    def _history_after_failure(self, first_epoch: int, samples: int) -> None:
        """After a run stopped early (Ctrl-C, a signal, divergence, a failed save): the
        history file made to cover the epochs the checkpoint holds, with the figures
        ``fit`` recorded for this run's epochs up to the checkpoint's. Left alone when
        this run has not written the checkpoint on disk (a new run's earlier one stays,
        with its history). Best effort: the failure being reported is the one that
        matters."""
        if self.saved is None or not self.world.is_root:
            return
        done = [r for r in run_history.records(self.history, first_epoch, samples)
                if r["epoch"] <= self.saved] if self.history.get("loss") else []
        with contextlib.suppress(OSError):
            run_history.update(self.history_path, first_epoch, done, through=self.saved)

    def save(self, epochs_trained: int) -> None:
        """After each epoch: its checkpoint, with the run's options."""
        if not self.world.is_root:  # under MPI rank 0 alone writes
            self.saved = epochs_trained
            return
        self.saving = True
        options = {k: self.opts[k] for k in (*RUN_OPTIONS, *MODEL_OPTIONS)}
        if self.opts.get("spec"):
            options["spec"] = self.opts["spec"]
        try:
            self.net.save(str(self.model), self.optimizer, {RUN_METADATA: options})
        except MemoryError:
            raise
        except Exception as exc:  # whatever the writer raises (a full disk)
            reason = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise RunFailedError(f"could not save epoch {epochs_trained} to {self.model}: "
                                 f"{reason}; {self._kept()}") from None
        self.saved, self.saving = epochs_trained, False

    def _summary(self, data: RunData, history: dict[str, list], first_epoch: int,
                 seconds: float, summary: Callable[[Any], None] | None) -> None:
        net, split = self.net, data.split
        result = net.evaluate(split.X_test, split.y_test)
        ran = len(history["loss"])
        samples = ran * len(split.y_train)  # per second: over the whole run
        last_run = first_epoch + ran - 1
        epochs = f"epochs {first_epoch}-{last_run}" if first_epoch > 1 else f"epochs {last_run}"
        stopped = net.epochs_trained < last_run  # early stopping went back to the best epoch
        best = f"; the best, epoch {net.epochs_trained}, kept" if stopped else ""
        accuracy = "" if result["accuracy"] is None else \
            f", test accuracy {result['accuracy']:.4f}"
        print(f"{epochs}{best}: train loss {history['loss'][-1]:.4f}, test loss "
              f"{result['loss']:.4f}{accuracy} ({seconds:.1f} s, "
              f"{samples / max(seconds, 1e-9):.0f} samples/s)")
        print(f"model saved to {self.model}")
        history_file = run_history.update(
            self.history_path, first_epoch,
            run_history.records(history, first_epoch, len(split.y_train)),
            through=net.epochs_trained)
        print(f"history saved to {history_file}")
        curve = _plot(history, self.model.parent / "curve.png",
                      describe_network(net, self.optimizer), first_epoch, data.watched)
        print(f"curve saved to {curve}" if curve else
              "curve not drawn: matplotlib is not installed (pip install 'gpuback[plot]')")
        if summary is not None:
            summary({"test_accuracy": result["accuracy"], "test_loss": result["loss"],
                     "train_loss": history["loss"][-1], "epochs": ran,
                     "epochs_trained": net.epochs_trained, "stopped_early": stopped,
                     "seconds": round(seconds, 3),
                     "samples_per_second": round(samples / max(seconds, 1e-9), 1),
                     "backend": net.backend, "dtype": net.dtype,
                     "precision": net.precision, "loss_scale": _loss_scale(net),
                     "loss": net.plan.loss,
                     "model": str(self.model), "history": str(history_file),
                     "curve": None if curve is None else str(curve)})

    def _kept(self) -> str:
        """What the checkpoint on disk holds."""
        if self.saved is not None:
            return f"the checkpoint in {self.model} holds epoch {self.saved}"
        if self.replacing:
            return f"no checkpoint was written yet by this run; {self.model} holds the earlier one"
        return "no checkpoint was written yet"

    def _interrupted(self, how: str) -> str:
        """The message for Ctrl-C: the epoch it stopped (the first one the disk does not
        hold: whatever was done after the last completed save belongs to it) and what the
        checkpoint holds."""
        if self.saving:  # a checkpoint was being written: did it get there?
            self.saving = False
            if self._on_disk_is_current():
                self.saved = self.net.epochs_trained
        if not self.training:
            return f"{how} after training; {self._kept()}"
        return f"{how} at epoch {(self.saved or 0) + 1}; {self._kept()}"

    def _on_disk_is_current(self) -> bool:
        """Whether the checkpoint on disk is the network in memory (its save completed)."""
        try:
            saved = Network.load(str(self.model), backend="numpy")  # values only
        except Exception:  # no checkpoint, or the earlier one unreadable
            return False
        ours = self.net.parameters()
        return saved.epochs_trained == self.net.epochs_trained and all(
            np.array_equal(v, ours[k]) for k, v in saved.parameters().items())


def _alike(new: BaseException, old: BaseException) -> BaseException:
    """``new``, raised for ``old``, marked as raised on every rank when ``old`` was
    (``gpuback.distributed``)."""
    return distributed.mark_on_every_rank(new) if distributed.on_every_rank(old) else new


def _plot(history: dict[str, list], path: Path, title: str, first_epoch: int,
          watched: str) -> Path | None:
    """The run's curve (``gpuback.diagnostics.plots``); None without matplotlib."""
    try:
        return plot_history(history, path, title, first_epoch=first_epoch,
                            validation_name=watched)
    except ImportError:
        return None
