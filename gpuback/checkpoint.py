"""Checkpoints: a directory holding the weights (safetensors), the spec and the training state.

    model/
      weights.safetensors     every parameter, by its name in ``Network.parameters()``
      network.json            the spec, dtype and the number of epochs trained
      optimizer.safetensors   the optimiser's state buffers (when one is saved)
      optimizer.json          its class, hyperparameters, schedule and step count

A save writes a complete new directory beside the target, loads it back to check it,
and only then swaps it in (``os.replace``), so an interrupted save leaves the previous
checkpoint intact and a checkpoint that was written always loads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS, NETWORK, OPT_STATE, OPT_CONFIG = ("weights.safetensors", "network.json",
                                           "optimizer.safetensors", "optimizer.json")
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint directory that is missing, incomplete or inconsistent."""


def save(net: Any, path: str | os.PathLike, optimizer: Any = None) -> Path:
    """Write ``net`` (and ``optimizer``'s state) to the directory ``path``, atomically."""
    from safetensors.numpy import save_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; a checkpoint is an ordinary dir
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in net.parameters().items()},
                  str(staging / WEIGHTS))
        meta = {"format": FORMAT, "spec": net.spec, "dtype": net.dtype,
                "epochs_trained": net.epochs_trained}
        (staging / NETWORK).write_text(json.dumps(meta, indent=1))
        if optimizer is not None:
            state = optimizer.state_dict()
            flat = {f"{name}/{buf}": np.ascontiguousarray(v)
                    for name, named in state["buffers"].items() for buf, v in named.items()}
            save_file(flat, str(staging / OPT_STATE))
            config = {"config": optimizer.config(), "steps": state["steps"]}
            (staging / OPT_CONFIG).write_text(json.dumps(config, indent=1))
        _check_round_trip(net, optimizer, staging)
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load(path: str | os.PathLike, backend: str = "numpy") -> Any:
    """The network saved at ``path``, on ``backend``; names, shapes and dtypes are checked."""
    from safetensors.numpy import load_file

    from .network import Network

    folder = _folder(path)
    meta = _read_json(folder / NETWORK)
    if meta.get("format") != FORMAT or "spec" not in meta or "dtype" not in meta:
        raise CheckpointError(f"{folder / NETWORK}: not a gpuback checkpoint (format "
                              f"{FORMAT} with 'spec' and 'dtype' expected)")
    net = Network(meta["spec"], backend=backend, dtype=meta["dtype"])
    weights = _load_safetensors(load_file, folder / WEIGHTS)
    expected = net.parameters()
    if set(weights) != set(expected):
        raise CheckpointError(f"{folder / WEIGHTS}: parameter names {sorted(weights)} do not "
                              f"match the spec's {sorted(expected)}")
    for name, value in weights.items():
        if value.shape != expected[name].shape or value.dtype != expected[name].dtype:
            raise CheckpointError(f"{folder / WEIGHTS}: {name!r} is {value.dtype} "
                                  f"{value.shape}, expected {expected[name].dtype} "
                                  f"{expected[name].shape}")
    net.set_parameters(weights)
    net.epochs_trained = int(meta.get("epochs_trained", 0))
    return net


def load_optimizer(path: str | os.PathLike, net: Any) -> Any:
    """The optimiser saved with the checkpoint at ``path``, its state on ``net``'s backend;
    None if the checkpoint holds no optimiser."""
    from safetensors.numpy import load_file

    from .optim import from_config

    folder = _folder(path)
    if not (folder / OPT_CONFIG).exists():
        return None
    saved = _read_json(folder / OPT_CONFIG)
    optimizer = from_config(saved["config"])
    buffers: dict[str, dict[str, np.ndarray]] = {}
    for key, value in _load_safetensors(load_file, folder / OPT_STATE).items():
        name, _, buf = key.rpartition("/")
        buffers.setdefault(name, {})[buf] = value
    try:
        optimizer.load_state_dict({"steps": saved["steps"], "buffers": buffers}, net)
    except ValueError as exc:
        raise CheckpointError(f"{folder / OPT_STATE}: {exc}") from None
    return optimizer


def _check_round_trip(net: Any, optimizer: Any, folder: Path) -> None:
    """Load what was just written and compare it with what was meant (validate on save)."""
    again = load(folder)
    loaded = again.parameters()
    for name, value in net.parameters().items():
        if not np.array_equal(loaded[name], value):
            raise CheckpointError(f"{folder}: {name!r} did not read back as written")
    if optimizer is not None:
        restored = load_optimizer(folder, again)
        if restored is None or restored.config() != optimizer.config():
            raise CheckpointError(f"{folder}: the optimiser did not read back as written")


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by the complete directory ``staging``: never a half checkpoint."""
    if target.exists():
        if not (target / NETWORK).exists():
            raise CheckpointError(f"{target}: exists and is not a gpuback checkpoint; "
                                  "refusing to replace it")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / "previous")
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def _folder(path: str | os.PathLike) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no checkpoint directory there")
    return folder


def _read_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing from the checkpoint") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc})") from None


def _load_safetensors(load_file: Any, file: Path) -> dict[str, np.ndarray]:
    if not file.exists():
        raise CheckpointError(f"{file}: missing from the checkpoint")
    try:
        return load_file(str(file))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from None
