"""Everything ``gpuback train`` does before its first step: the options checked against
each other and against ``OUT/model``, the data loaded (``gpuback.cli.run_data``), and the
network and optimiser made, new from the options (or ``--spec``) after the memory
pre-flight, or, with ``--resume``, read from the checkpoint and checked against the
options given and the data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..backends import get_backend
from ..checkpoint import files as checkpoint
from ..core.plan import compile_plan
from ..core.spec import mlp_spec, sparse_mlp_spec, validate_spec
from ..datasets import loaders as datasets
from ..network import Network
from ..optim import optimizers as optim
from ..training import memory
from .failures import UsageError
from .files import check_writable_dir, read_spec_file, reading
from .options import show_value
from .run_data import RunData, load_data
from .run_settings import (
    MLP_SHAPE_OPTIONS,
    MODEL_OPTIONS,
    OPTIMIZER_NAMES,
    RUN_METADATA,
    TRAIN_DEFAULTS,
    run_options,
    saved_settings,
)

# a run's network, its optimiser, its data and its options (the defaults filled in)
Setup = tuple[Network, optim.Optimizer, RunData, dict[str, Any]]


def prepare(args: argparse.Namespace) -> tuple[Path, bool, Setup] | None:
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


def _new_setup(given: dict[str, Any]) -> Setup:
    """A new run: the data, then a network and optimiser from the options."""
    opts = {**TRAIN_DEFAULTS, **given}
    _check_validation_fraction(given, opts)
    spec = None if opts["spec"] is None else _read_spec(given, opts)
    data = load_data(opts)
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


def _optimizer(opts: dict[str, Any], steps: int) -> optim.Optimizer:
    schedule = (optim.Cosine(total_steps=max(steps, 2), warmup_steps=min(steps // 20, steps - 1))
                if opts["schedule"] == "cosine" else None)
    if opts["optimizer"] == "sgd":
        return optim.SGD(lr=opts["lr"], momentum=opts["momentum"],
                         nesterov=opts["momentum"] > 0, weight_decay=opts["weight_decay"],
                         schedule=schedule)
    cls = optim.AdamW if opts["optimizer"] == "adamw" else optim.Adam
    return cls(lr=opts["lr"], weight_decay=opts["weight_decay"], schedule=schedule)


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


def _resume_setup(given: dict[str, Any], out: Path) -> Setup | None:
    """A resumed run: the network and optimiser from OUT/model, the run's other options
    from its metadata unless given; None when the checkpoint already holds --epochs."""
    model = out / "model"
    settings = _resumed_settings(model)
    opts = {**run_options(settings), **given}
    net, optimizer = _load_checkpoint(model, opts["backend"])
    opts.update(_check_same_model(given, net, optimizer, settings, model))
    _resumed_spec(given, opts, settings, net, model)
    _check_validation_fraction(given, opts)
    data = load_data(opts)
    _check_resumable(net, optimizer, data.split, opts, model)
    if net.epochs_trained >= opts["epochs"]:
        print(f"nothing to do: {model} already holds {net.epochs_trained} epochs "
              f"(--epochs {opts['epochs']})")
        return None
    print(f"resuming {model} at epoch {net.epochs_trained + 1} of {opts['epochs']}")
    return net, optimizer, data, opts


def _resumed_settings(model: Path) -> dict[str, Any]:
    """The options of the run that wrote the checkpoint in ``model`` (none for one written
    by the Python API)."""
    with reading(model, "gpuback checkpoint"):
        settings = saved_settings(model)
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


__all__ = ["Setup", "prepare"]
