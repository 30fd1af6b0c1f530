"""Checkpoints: a directory holding the weights (safetensors), the spec and the training state.

    model/
      weights.safetensors     every parameter, by its name in ``Network.parameters()``
      network.json            the spec, dtype and the number of epochs trained
      optimizer.safetensors   the optimiser's state buffers (when one is saved)
      optimizer.json          its class, hyperparameters, schedule and step count

A save writes a complete new directory beside the target, reads it back to check it,
and only then swaps it in (``os.replace``), so an interrupted save leaves the previous
checkpoint intact and a checkpoint that was written always loads.

This module reads and writes files; it builds no network (``Network.load`` builds one
from what ``read`` returns), so it does not depend on ``gpuback.network``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .checks import FLOAT_DTYPES
from .plan import compile_plan
from .spec import validate_spec

WEIGHTS, NETWORK, OPT_STATE, OPT_CONFIG = ("weights.safetensors", "network.json",
                                           "optimizer.safetensors", "optimizer.json")
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint directory that is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class Saved:
    """What a checkpoint holds about the network: its validated spec, dtype, weights
    (NumPy arrays by parameter name, names, shapes and dtypes checked against the spec)
    and the number of epochs trained."""

    spec: dict[str, Any]
    dtype: str
    weights: dict[str, np.ndarray]
    epochs_trained: int


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
        params = net.parameters()
        save_file({k: np.ascontiguousarray(v) for k, v in params.items()},
                  str(staging / WEIGHTS))
        meta = {"format": FORMAT, "spec": net.spec, "dtype": net.dtype,
                "epochs_trained": net.epochs_trained}
        (staging / NETWORK).write_text(json.dumps(meta, indent=1))
        state = None if optimizer is None else optimizer.state_dict()
        if state is not None:
            flat = {f"{name}/{buf}": np.ascontiguousarray(v)
                    for name, named in state["buffers"].items() for buf, v in named.items()}
            save_file(flat, str(staging / OPT_STATE))
            config = {"config": optimizer.config(), "steps": state["steps"]}
            (staging / OPT_CONFIG).write_text(json.dumps(config, indent=1))
        _check_round_trip(params, optimizer, state, staging)
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read(path: str | os.PathLike) -> Saved:
    """The network part of the checkpoint at ``path``, checked: the format, the spec (as
    ``validate_spec`` would), the dtype, and every weight's name, shape and dtype."""
    from safetensors.numpy import load_file

    folder = _folder(path)
    meta = _read_json(folder / NETWORK)
    if meta.get("format") != FORMAT or "spec" not in meta or "dtype" not in meta:
        raise CheckpointError(f"{folder / NETWORK}: not a gpuback checkpoint (format "
                              f"{FORMAT} with 'spec' and 'dtype' expected)")
    try:
        spec = validate_spec(meta["spec"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / NETWORK}: its spec is not valid ({exc})") from None
    dtype = meta["dtype"]
    if dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"{folder / NETWORK}: dtype {dtype!r}, expected one of "
                              f"{list(FLOAT_DTYPES)}")
    shapes = compile_plan(spec).parameter_shapes()
    weights = _load_safetensors(load_file, folder / WEIGHTS)
    if set(weights) != set(shapes):
        raise CheckpointError(f"{folder / WEIGHTS}: parameter names {sorted(weights)} do not "
                              f"match the spec's {sorted(shapes)}")
    for name, value in weights.items():
        if value.shape != tuple(shapes[name]) or value.dtype != np.dtype(dtype):
            raise CheckpointError(f"{folder / WEIGHTS}: {name!r} is {value.dtype} "
                                  f"{value.shape}, expected {dtype} {tuple(shapes[name])}")
    return Saved(spec, dtype, weights, int(meta.get("epochs_trained", 0)))


def load_optimizer(path: str | os.PathLike, net: Any) -> Any:
    """The optimiser saved with the checkpoint at ``path``, its state on ``net``'s backend
    (and bound to ``net``); None if the checkpoint holds no optimiser."""
    from .optim import from_config

    saved = _read_optimizer(_folder(path))
    if saved is None:
        return None
    config, state = saved
    optimizer = from_config(config)
    try:
        optimizer.load_state_dict(state, net)
    except ValueError as exc:
        raise CheckpointError(f"{Path(path) / OPT_STATE}: {exc}") from None
    return optimizer


def _read_optimizer(folder: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The saved optimiser's config and its ``state_dict``, or None if none was saved."""
    from safetensors.numpy import load_file

    if not (folder / OPT_CONFIG).exists():
        return None
    saved = _read_json(folder / OPT_CONFIG)
    if "config" not in saved or "steps" not in saved:
        raise CheckpointError(f"{folder / OPT_CONFIG}: 'config' and 'steps' expected")
    buffers: dict[str, dict[str, np.ndarray]] = {}
    for key, value in _load_safetensors(load_file, folder / OPT_STATE).items():
        name, _, buf = key.rpartition("/")
        buffers.setdefault(name, {})[buf] = value
    return saved["config"], {"steps": saved["steps"], "buffers": buffers}


def _check_round_trip(params: dict[str, np.ndarray], optimizer: Any,
                      state: dict[str, Any] | None, folder: Path) -> None:
    """Read back what was just written and compare it with what was meant (validate on
    save): every weight bitwise, the optimiser's config, step count and state."""
    loaded = read(folder).weights
    for name, value in params.items():
        if not np.array_equal(loaded[name], value):
            raise CheckpointError(f"{folder}: {name!r} did not read back as written")
    if optimizer is None or state is None:
        return
    saved = _read_optimizer(folder)
    if saved is None or saved[0] != optimizer.config() or \
            saved[1]["steps"] != state["steps"] or \
            not _same_buffers(saved[1]["buffers"], state["buffers"]):
        raise CheckpointError(f"{folder}: the optimiser did not read back as written")


def _same_buffers(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> bool:
    return a.keys() == b.keys() and all(
        a[n].keys() == b[n].keys() and all(np.array_equal(a[n][s], b[n][s]) for s in a[n])
        for n in a)


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
