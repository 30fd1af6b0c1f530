"""The backend registry: the one place that knows which backends exist.

Every backend is a module exporting the same op set (``OP_SET``) as
``numpy_backend``, the reference. Orchestration code receives a backend module from
``get_backend`` and never asks which one it is.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The op set: every backend module exports these names, with the signatures of the
# NumPy reference (gpuback/backends/numpy_backend.py documents each one).
OP_SET = (
    "name", "status",
    # buffers, and mini-batches gathered from data that lives on the backend
    "zeros", "from_host", "asarray", "to_host", "copy_into", "fill_zero", "prepare_index",
    "memory_budget", "take_batch",
    # forward (5.48, 5.49)
    "dense_forward", "sparse_forward", "bias_activation",
    # loss and output deltas (5.54)
    "loss_and_output_delta",
    # per-step metrics and non-finite detection, kept on the backend until read
    "accumulate_metrics", "check_finite",
    # backward (5.56) and gradients (5.53)
    "dense_backward", "sparse_backward", "activation_delta",
    "dense_weight_grad", "sparse_weight_grad", "bias_grad",
    # optimiser updates, one fused op over the flat parameter buffer
    "sgd_update", "adam_update",
)

# name -> module path, in the order "auto" prefers them (fastest first).
_BACKENDS = {
    "cuda": "gpuback.backends.cuda_backend",
    "cpu": "gpuback.backends.cpu_backend",
    "numpy": "gpuback.backends.numpy_backend",
}
AUTO = "auto"


def backend_names() -> list[str]:
    """Every backend gpuback knows, usable on this machine or not."""
    return list(_BACKENDS)


def _module(name: str) -> ModuleType:
    return importlib.import_module(_BACKENDS[name])


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


def get_backend(name: str) -> ModuleType:
    """The backend module for ``name`` (or "auto"); a clear error if it cannot run here."""
    module = _module(resolve_backend_name(name))
    state = module.status()
    if not state.usable:
        raise RuntimeError(f"backend: {module.name!r} cannot run here: {state.reason}")
    return module
