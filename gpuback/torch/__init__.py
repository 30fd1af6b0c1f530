"""gpuback inside PyTorch models: modules whose forward and backward are gpuback's kernels.

* ``SparseLinear``: a sparse linear layer (one weight per edge) for any PyTorch model,
  forward and backward by gpuback's sparse kernels, on CPU tensors (the cpu backend) and
  CUDA tensors (the cuda backend), with no copy of the tensors.
* ``Module(net)``: a whole ``gpuback.Network``, any wiring, as a module whose forward and
  backward are the network's own passes and whose parameters are the network's buffers.

Needs PyTorch (``pip install 'gpuback[torch]'``); ``import gpuback`` never imports this
package.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("gpuback.torch needs PyTorch, which is not installed: "
                      "pip install 'gpuback[torch]'") from exc

from .module import Module
from .sparse_linear import SparseLinear

__all__ = ["Module", "SparseLinear"]
