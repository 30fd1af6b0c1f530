"""Checkpoints: a network's weights, spec and training state, crash-safe on disk.

    model/                          the checkpoint path: a directory
      latest.json                   which version is current, and every file's SHA-256
      v00000007/                    the current version:
        weights.safetensors         every parameter, by its name in ``Network.parameters()``
        network.json                the spec, dtype, precision, the epochs trained and
                                    the fp16 loss scale (gpuback.loss_scale)
        optimizer.safetensors       the optimiser's state buffers (when one is saved)
        optimizer.json              its class, hyperparameters, schedule and step count
      .lock                         the advisory lock writers and readers take

The storage is ``gpuback.checkpoint.versioned_dir``: a save writes a complete new version, reads
it back and checks it (every weight bitwise, the optimiser's config, step count and
state), fsyncs it, and only then switches ``latest.json`` to it with one atomic
``os.replace``. A crash or Ctrl-C at any point of a save leaves a loadable checkpoint
at the path, the previous one or the new one, whole; what a crashed save left behind
is removed by the next save. Concurrent savers to one path take turns (``flock``);
a load waits for a save in progress. Every file's size and SHA-256 are checked at
load, so a corrupted file is a ``CheckpointError`` naming it, never different
weights. Files in the directory that a checkpoint did not write are never touched.

Checkpoints of format 1 (the four files directly in the directory, no checksums)
still load; the next save over one replaces it with the versioned layout.

This module reads and writes files; it builds no network (``Network.load`` builds one
from what ``read`` returns), so it does not depend on ``gpuback.network``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.precision import check_precision
from ..core.checks import FLOAT_DTYPES, is_integer
from ..core.engine import Engine
from ..core.loss_scale import check_state as check_loss_scale_state
from ..core.plan import compile_plan
from ..core.spec import validate_spec
from ..optim.optimizers import Optimizer, from_config
from .versioned_dir import POINTER, StoreError, Version, VersionedDir, read_json_object, write_file

WEIGHTS, NETWORK, OPT_STATE, OPT_CONFIG = ("weights.safetensors", "network.json",
                                           "optimizer.safetensors", "optimizer.json")
FILES = (WEIGHTS, NETWORK, OPT_STATE, OPT_CONFIG)
FORMAT = 2  # of network.json; format 1 checkpoints (no versions, no checksums) still load


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, corrupted or inconsistent, or cannot be
    written; the message names the file (and the field) at fault."""


@dataclass(frozen=True)
class Saved:
    """What a checkpoint holds about the network: its validated spec, dtype, weights
    (NumPy arrays by parameter name, names, shapes and dtypes checked against the spec),
    the number of epochs trained, and the caller's ``metadata`` saved with it."""

    spec: dict[str, Any]
    dtype: str
    weights: dict[str, np.ndarray]
    epochs_trained: int
    metadata: dict[str, Any]
    precision: str = "fp32"  # the product precision (gpuback.precision); fp32 before it
    # fp16 dynamic loss scaling (gpuback.loss_scale.LossScaler.state_dict): the scale, its
    # count of clean steps and the growth interval; None when the network had no scaler
    loss_scale: dict[str, Any] | None = None
    seed: int = 0  # the network's seed: its dropout masks' (0 in checkpoints before it)


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a gpuback checkpoint (it may still fail to load)."""
    folder = Path(path)
    return (folder / POINTER).is_file() or (folder / NETWORK).is_file()


def save(net: Engine, path: str | os.PathLike[str], optimizer: Optimizer | None = None,
         metadata: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (and ``optimizer``'s state) to the checkpoint directory ``path`` as a
    new version, atomically (see the module doc). ``metadata``: a JSON object of the
    caller's (a run's options, say), saved in the same version, so it always goes with
    these weights. Refuses a directory that holds files but no checkpoint. Errors are
    ``CheckpointError``; the previous checkpoint stays."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    target = Path(path)
    check_target(target)
    metadata = _check_metadata(metadata)
    params = net.parameters()
    state = None if optimizer is None else optimizer.state_dict()
    store = VersionedDir(target, FILES)
    replaces_format_1 = _holds_format_1(target)
    try:
        with store.write() as staging:
            save_file({k: np.ascontiguousarray(v) for k, v in params.items()},
                      str(staging / WEIGHTS))
            meta = {"format": FORMAT, "spec": net.spec, "dtype": net.dtype,
                    "precision": net.precision, "epochs_trained": net.epochs_trained,
                    "seed": net.seed, "metadata": metadata}
            if net.loss_scaler is not None:
                meta["loss_scale"] = net.loss_scaler.state_dict()
            write_file(staging / NETWORK, _json_bytes(meta))
            if optimizer is not None and state is not None:
                flat = {f"{name}/{buf}": np.ascontiguousarray(v)
                        for name, named in state["buffers"].items() for buf, v in named.items()}
                save_file(flat, str(staging / OPT_STATE))
                config = {"config": optimizer.config(), "steps": state["steps"]}
                write_file(staging / OPT_CONFIG, _json_bytes(config))
            _check_round_trip(params, optimizer, state, staging)
    except StoreError as exc:
        raise CheckpointError(str(exc)) from None
    except CheckpointError:
        raise
    except (OSError, SafetensorError) as exc:  # a full or read-only disk, a permission
        raise CheckpointError(f"{target}: the save failed, the previous checkpoint is "
                              f"unchanged: {_describe(exc)}") from None
    if replaces_format_1:  # its marker, network.json, last: a crash here is redone next save
        store.remove_files((OPT_STATE, OPT_CONFIG, WEIGHTS, NETWORK))
    return target


def check_target(path: str | os.PathLike[str]) -> None:
    """``CheckpointError`` if ``save`` would refuse ``path``: it is not a directory, or a
    directory holding files but no checkpoint (what a crashed save left does not count)."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"{target}: exists and is not a directory; a checkpoint is one")
    if target.is_dir() and not exists(target):
        foreign = sorted(p.name for p in target.iterdir() if not VersionedDir.is_own_entry(p.name))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise CheckpointError(f"{target}: holds files but no gpuback checkpoint ({shown}); "
                                  f"refusing to save into it (choose an empty or new directory)")


def read(path: str | os.PathLike[str]) -> Saved:
    """The network part of the checkpoint at ``path``, checked: every file's checksum,
    the format, the spec (as ``validate_spec`` would), the dtype, the epoch count, and
    every weight's name, shape and dtype."""
    saved: Saved = _reading(path, _read_network)
    return saved


def load_optimizer(path: str | os.PathLike[str], net: Engine) -> Optimizer | None:
    """The optimiser saved with the checkpoint at ``path``, its state on ``net``'s backend
    (and bound to ``net``); None if the checkpoint holds no optimiser.

    It reads the current version; ``Network.load`` is a read of its own, so with another
    process saving to ``path`` meanwhile the two may come from consecutive saves."""
    saved = _reading(path, _read_optimizer)
    if saved is None:
        return None
    config, state, folder = saved
    try:
        optimizer = from_config(config)
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{folder / OPT_CONFIG}: 'config' does not describe an "
                              f"optimiser ({_describe(exc)})") from None
    try:
        optimizer.load_state_dict(state, net)
    except ValueError as exc:
        raise CheckpointError(f"{folder / OPT_STATE}: {exc}") from None
    return optimizer


class _Folder:
    """The files of one checkpoint version: verified against their checksums (format 2)
    or taken as they are (format 1)."""

    def __init__(self, path: Path, version: Version | None) -> None:
        self.path, self.version = path, version

    def file(self, name: str) -> Path:
        if self.version is None:
            return self.path / name
        return self.version.verify(name)

    def has(self, name: str) -> bool:
        return (self.path / name).exists() if self.version is None else \
            name in self.version.files

    def __truediv__(self, name: str) -> Path:
        return self.path / name


def _reading(path: str | os.PathLike[str], parse: Callable[[_Folder], Any]) -> Any:
    """``parse`` applied to the current version of the checkpoint at ``path``, read under
    the store's shared lock; every failure a ``CheckpointError``."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no checkpoint directory there")
    store = VersionedDir(folder, FILES)
    try:
        if not store.has_pointer():
            if not (folder / NETWORK).exists():
                raise CheckpointError(f"{folder}: no gpuback checkpoint there (no {POINTER})")
            return parse(_Folder(folder, None))  # format 1
        with store.reading() as version:
            _check_file_list(folder / POINTER, set(version.files))
            return parse(_Folder(version.folder, version))
    except StoreError as exc:
        raise CheckpointError(str(exc)) from None
    except OSError as exc:
        raise CheckpointError(f"{folder}: cannot be read: {_describe(exc)}") from None


def _check_file_list(pointer: Path, names: set[str]) -> None:
    """A version holds the network's two files, and the optimiser's two or none."""
    with_optimizer = {NETWORK, WEIGHTS, OPT_CONFIG, OPT_STATE}
    if names not in ({NETWORK, WEIGHTS}, with_optimizer):
        raise CheckpointError(f"{pointer}: lists the files {sorted(names)}; a checkpoint holds "
                              f"{sorted({NETWORK, WEIGHTS})}, and "
                              f"{sorted({OPT_CONFIG, OPT_STATE})} with an optimiser")


def _read_network(folder: _Folder) -> Saved:
    from safetensors.numpy import load_file

    where = folder / NETWORK
    meta = _read_json(folder.file(NETWORK))
    fmt = meta.get("format")
    if is_integer(fmt, FORMAT + 1):
        raise CheckpointError(f"{where}: format {fmt} was written by a newer gpuback (this "
                              f"one reads formats 1 to {FORMAT}); upgrade gpuback to read it")
    if fmt not in (1, FORMAT) or "spec" not in meta or "dtype" not in meta:
        raise CheckpointError(f"{where}: not a gpuback checkpoint (a 'format', 'spec' and "
                              f"'dtype' expected)")
    try:
        spec = validate_spec(meta["spec"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: its spec is not valid ({exc})") from None
    dtype = meta["dtype"]
    if dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"{where}: dtype {dtype!r}, expected one of {list(FLOAT_DTYPES)}")
    precision = meta.get("precision", "fp32")
    try:
        check_precision(precision, dtype)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    epochs = meta.get("epochs_trained", 0)
    if not is_integer(epochs, 0):
        raise CheckpointError(f"{where}: 'epochs_trained' must be a non-negative integer, got "
                              f"{epochs!r}")
    seed = meta.get("seed", 0)
    if not is_integer(seed, 0):
        raise CheckpointError(f"{where}: 'seed' must be a non-negative integer, got {seed!r}")
    metadata = meta.get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{where}: 'metadata' must be a JSON object, got "
                              f"{type(metadata).__name__}")
    loss_scale = _check_loss_scale(meta.get("loss_scale"), where)
    shapes = compile_plan(spec).parameter_shapes()
    weights = _load_safetensors(load_file, folder, WEIGHTS)
    where = folder / WEIGHTS
    if set(weights) != set(shapes):
        raise CheckpointError(f"{where}: parameter names {sorted(weights)} do not match the "
                              f"spec's {sorted(shapes)}")
    for name, value in weights.items():
        if value.shape != tuple(shapes[name]) or value.dtype != np.dtype(dtype):
            raise CheckpointError(f"{where}: {name!r} is {value.dtype} {value.shape}, "
                                  f"expected {dtype} {tuple(shapes[name])}")
        if not np.isfinite(value).all():
            raise CheckpointError(f"{where}: {name!r} holds NaN or infinite values")
    return Saved(spec, dtype, weights, int(epochs), metadata, precision, loss_scale, int(seed))


def _check_loss_scale(saved: Any, where: Path) -> dict[str, Any] | None:
    """The saved loss-scaler state, checked as ``gpuback.loss_scale.check_state`` does (None
    when none was saved)."""
    if saved is None:
        return None
    try:
        return check_loss_scale_state(saved)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def _read_optimizer(folder: _Folder) -> tuple[dict[str, Any], dict[str, Any], Path] | None:
    """The saved optimiser's config, its ``state_dict`` and the folder, or None if none
    was saved."""
    from safetensors.numpy import load_file

    if not folder.has(OPT_CONFIG):
        return None
    where = folder / OPT_CONFIG
    saved = _read_json(folder.file(OPT_CONFIG))
    for field in ("config", "steps"):
        if field not in saved:
            raise CheckpointError(f"{where}: the field {field!r} is missing")
    if not isinstance(saved["config"], dict):
        raise CheckpointError(f"{where}: 'config' must be a JSON object, got "
                              f"{type(saved['config']).__name__}")
    if not is_integer(saved["steps"], 0):
        raise CheckpointError(f"{where}: 'steps' must be a non-negative integer, got "
                              f"{saved['steps']!r}")
    buffers: dict[str, dict[str, np.ndarray]] = {}
    for key, value in _load_safetensors(load_file, folder, OPT_STATE).items():
        if value.dtype.kind != "f" or not np.isfinite(value).all():
            found = f"{value.dtype}" + (" with NaN or infinite values"
                                        if value.dtype.kind == "f" else "")
            raise CheckpointError(f"{folder / OPT_STATE}: {key!r} must hold finite floats, got "
                                  f"{found}")
        name, _, buf = key.rpartition("/")
        buffers.setdefault(name, {})[buf] = value
    return saved["config"], {"steps": saved["steps"], "buffers": buffers}, folder.path


def _check_round_trip(params: dict[str, np.ndarray], optimizer: Optimizer | None,
                      state: dict[str, Any] | None, staging: Path) -> None:
    """Read back what was just written and compare it with what was meant (validate on
    save): every weight bitwise, the optimiser's config, step count and state."""
    folder = _Folder(staging, None)
    loaded = _read_network(folder).weights
    for name, value in params.items():
        if not np.array_equal(loaded[name], value):
            raise CheckpointError(f"{staging}: {name!r} did not read back as written")
    if optimizer is None or state is None:
        return
    saved = _read_optimizer(folder)
    if saved is None or saved[0] != optimizer.config() or \
            saved[1]["steps"] != state["steps"] or \
            not _same_buffers(saved[1]["buffers"], state["buffers"]):
        raise CheckpointError(f"{staging}: the optimiser did not read back as written")


def _same_buffers(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> bool:
    return a.keys() == b.keys() and all(
        a[n].keys() == b[n].keys() and all(np.array_equal(a[n][s], b[n][s]) for s in a[n])
        for n in a)


def _holds_format_1(folder: Path) -> bool:
    """Whether ``folder`` holds the files of a format 1 checkpoint (directly in it)."""
    try:
        return bool(json.loads((folder / NETWORK).read_text()).get("format") == 1)
    except (OSError, ValueError, AttributeError):
        return False


def _check_metadata(metadata: Any) -> dict[str, Any]:
    """``metadata`` as a dict that JSON round-trips unchanged (None: empty)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected a dict (a JSON object), got "
                        f"{type(metadata).__name__}")
    try:
        again = json.loads(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata: not JSON-serialisable ({exc})") from None
    if again != metadata:
        raise TypeError("metadata: does not survive JSON unchanged (non-string keys or "
                        "tuples?); use str keys, lists and plain numbers")
    checked: dict[str, Any] = again
    return checked


def _json_bytes(data: dict[str, Any]) -> bytes:
    """One line of JSON (no indent: the C encoder, ten times faster, for a save per epoch;
    ``python -m json.tool`` shows it indented)."""
    return (json.dumps(data) + "\n").encode()


def _read_json(file: Path) -> dict[str, Any]:
    """The JSON object in ``file`` (a ``StoreError`` otherwise, which every caller turns
    into a ``CheckpointError``)."""
    return read_json_object(file, "missing from the checkpoint")


def _load_safetensors(load_file: Any, folder: _Folder, name: str) -> dict[str, np.ndarray]:
    if not folder.has(name):
        raise CheckpointError(f"{folder / name}: missing from the checkpoint")
    file = folder.file(name)  # (a file listed but gone is named by ``Version.verify``)
    try:
        arrays: dict[str, np.ndarray] = load_file(str(file))
        return arrays
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from None


def _describe(exc: BaseException) -> str:
    """An exception as one line: its message, or its type when it has none."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
