"""The backend registry: the one place that knows which backends exist.

Every backend is a module exporting the same op set (``OP_SET``) as
``numpy_backend``, the reference. Orchestration code receives a backend module from
``get_backend`` and never asks which one it is.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from .protocol import Backend
from .status import BackendStatus

# The op set: every backend module exports these names, with the signatures (and the shapes
# and dtypes) of the ``Backend`` protocol in gpuback/backends/protocol.py.
OP_SET = (
    "name", "device", "status", "describe", "allocation_hook",
    # values handed in by users: where they live, and the array module to check them with
    "is_device_array", "as_array", "array_namespace",
    # buffers, and mini-batches gathered from data that lives on the backend
    "zeros", "from_host", "asarray", "to_host", "copy_into", "fill_zero", "prepare_index",
    "memory_budget", "free_memory", "take_batch",
    # staging for data sets streamed from the host
    "pinned_empty", "record_event", "wait_for",
    # forward (5.48, 5.49); add_into is an identity connection, forward and backward
    "dense_forward", "sparse_forward", "add_into", "bias_activation",
    # layer normalisation of a group, forward and backward; dropout's counter-based masks
    "layer_norm", "layer_norm_backward", "dropout", "bias_activation_dropout",
    "dropout_activation_delta",
    # loss and output deltas (5.54), each sample's weighted
    "loss_and_output_delta", "weight_samples",
    # per-step metrics and non-finite detection, kept on the backend until read
    "accumulate_metrics", "check_finite",
    # backward (5.56) and gradients (5.53)
    "dense_backward", "sparse_backward", "activation_delta",
    "dense_weight_grad", "sparse_weight_grad", "sparse_block_backward", "bias_grad",
    # optimiser updates, one fused op over the flat parameter buffer
    "sgd_update", "adam_update",
    # gradient clipping by global norm, the norm kept on the backend
    "clip_gradient_norm",
    # mixed precision: values rounded in place to tf32, bf16 or fp16 (gpuback.precision)
    "round_to_precision",
    # dynamic loss scaling for fp16, the scale kept on the backend (gpuback.loss_scale)
    "scale_by_loss_scale", "unscale_gradients", "update_loss_scale",
    # data-parallel runs: the backend's own collectives over an MPI job (gpuback.distributed)
    "device_collectives",
)

__all__ = [
    "AUTO",
    "OP_SET",
    "Backend",
    "BackendStatus",
    "allocation_hooks",
    "available_backends",
    "backend_for_device",
    "backend_module",
    "backend_names",
    "backend_status",
    "describe",
    "get_backend",
    "resolve_backend_name",
]

# name -> module path, in the order "auto" prefers them (fastest first).
_BACKENDS = {
    "cuda": "gpuback.backends.cuda.backend",
    "cpu": "gpuback.backends.cpu.backend",
    "numpy": "gpuback.backends.numpy_backend",
}
AUTO = "auto"


def backend_names() -> list[str]:
    """Every backend gpuback knows, usable on this machine or not."""
    return list(_BACKENDS)


def backend_module(name: str) -> ModuleType:
    """The module of backend ``name`` whether or not it can run here (to inspect it; use
    ``get_backend`` to run on it)."""
    return importlib.import_module(_BACKENDS[resolve_backend_name(name)])


def _module(name: str) -> Backend:
    """The module of backend ``name`` as the op set it exports (mypy checks each module
    against ``Backend``: the end of this file)."""
    return cast(Backend, importlib.import_module(_BACKENDS[name]))


def backend_status(name: str) -> BackendStatus:
    """Whether backend ``name`` can run here and why (it need not be usable)."""
    return _module(resolve_backend_name(name)).status()


def describe(name: str) -> dict[str, Any]:
    """Plain data about what backend ``name`` runs on, or would (versions found)."""
    return _module(resolve_backend_name(name)).describe()


def allocation_hooks() -> list[Any]:
    """The allocation-counting contexts of every usable backend that has one
    (``gpuback.profile.counters`` enters them)."""
    hooks = (_module(n).allocation_hook() for n in _BACKENDS if _module(n).status().usable)
    return [hook for hook in hooks if hook is not None]


def available_backends(include_simulated: bool = True) -> list[str]:
    """The backends usable on this machine; the cuda backend under the Numba CUDA simulator
    counts unless ``include_simulated`` is False."""
    return [n for n in _BACKENDS if _module(n).status().usable
            and (include_simulated or not _module(n).status().simulated)]


def resolve_backend_name(name: str) -> str:
    """``name`` itself, or for "auto" the first usable backend that is not simulated."""
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a backend name (str), got {name!r}")
    if name == AUTO:
        return next(n for n in _BACKENDS
                    if _module(n).status().usable and not _module(n).status().simulated)
    if name not in _BACKENDS:
        raise ValueError(f"backend: expected one of {[AUTO, *_BACKENDS]}, got {name!r}")
    return name


def get_backend(name: str) -> Backend:
    """The backend module for ``name`` (or "auto"); a clear error if it cannot run here."""
    module = _module(resolve_backend_name(name))
    state = module.status()
    if not state.usable:
        raise RuntimeError(f"backend: {module.name!r} cannot run here: {state.reason}")
    return module


def backend_for_device(device: str) -> Backend:
    """The fastest usable backend whose arrays live on ``device`` ("cpu" or "cuda", as
    PyTorch names devices): for PyTorch tensors handed to gpuback's ops
    (``gpuback.torch``)."""
    for name in _BACKENDS:
        module = _module(name)
        if module.device == device and module.status().usable:
            return module
    known = sorted({_module(n).device for n in _BACKENDS})
    if device in known:
        return get_backend(next(n for n in _BACKENDS if _module(n).device == device))
    raise ValueError(f"device: expected one of {known}, got {device!r}")


if TYPE_CHECKING:  # mypy checks every backend module against the protocol
    from . import numpy_backend
    from .cpu import backend as cpu_backend
    from .cuda import backend as cuda_backend

    _numpy: Backend = numpy_backend
    _cpu: Backend = cpu_backend
    _cuda: Backend = cuda_backend
