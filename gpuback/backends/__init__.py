"""The backend registry: the one place that knows which backends exist.

Every backend is a module exporting the same op set as ``numpy_backend`` (the
reference). Orchestration code receives a backend module from ``get_backend`` and
never asks which one it is.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The op set: every backend module exports these names, with the signatures of the
# NumPy reference (gpuback/backends/numpy_backend.py documents each one).
OP_SET = (
    "name", "is_available",
    # buffers
    "zeros", "from_host", "to_host", "copy_into", "prepare_index",
    # forward (5.48, 5.49)
    "dense_forward", "sparse_forward", "bias_activation",
    # loss and output deltas (5.54)
    "loss_and_output_delta",
    # backward (5.56) and gradients (5.53)
    "dense_backward", "sparse_backward", "activation_delta",
    "dense_weight_grad", "sparse_weight_grad", "bias_grad",
)

# name -> module path; later backends (cuda, cpu) register here.
_BACKENDS = {
    "numpy": "gpuback.backends.numpy_backend",
}


def backend_names() -> list[str]:
    """Every backend gpuback knows, available on this machine or not."""
    return list(_BACKENDS)


def available_backends() -> list[str]:
    """The backends usable on this machine."""
    return [n for n in _BACKENDS if importlib.import_module(_BACKENDS[n]).is_available()]


def get_backend(name: str) -> ModuleType:
    """The backend module called ``name``; a clear error if it is unknown or unusable."""
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a backend name (str), got {name!r}")
    if name not in _BACKENDS:
        raise ValueError(f"backend: expected one of {backend_names()}, got {name!r}")
    module = importlib.import_module(_BACKENDS[name])
    if not module.is_available():
        raise RuntimeError(f"backend: {name!r} is not available on this machine; "
                           f"available backends are {available_backends()}")
    return module
