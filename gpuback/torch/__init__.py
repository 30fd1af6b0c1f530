"""gpuback inside PyTorch models: modules whose forward and backward are gpuback's kernels.

* ``SparseLinear``: a sparse linear layer (one weight per edge) for any PyTorch model,
  forward and backward by gpuback's sparse kernels, on CPU tensors (the cpu backend) and
  CUDA tensors (the cuda backend), with no copy of the tensors.
* ``Module(net)``: a whole ``gpuback.Network``, any wiring, as a module whose forward and
  backward are the network's own passes and whose parameters are the network's buffers.

Needs PyTorch (``pip install 'gpuback[torch]'``); ``import gpuback`` never imports this
package.

Threads on the CPU: PyTorch's OpenMP threads keep spinning for a while after each of its
parallel ops (GNU OpenMP's default: 300,000 spins, some milliseconds), on the cores that
gpuback's thread pool then needs; measured on 2 cores, that doubled the time of gpuback's
kernels inside a PyTorch step. Imported before PyTorch, this package sets
``GOMP_SPINCOUNT=10000`` (a shorter spin, read by OpenMP when PyTorch loads it) unless
``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is set already; imported after, it changes nothing:
set the variable in the environment that starts Python (``SPIN_SETTING``).
"""

from __future__ import annotations

import os
import sys

# GNU OpenMP's spin before an idle thread sleeps: short enough to leave the cores to
# gpuback's pool between PyTorch's ops, long enough that PyTorch's own back-to-back ops
# (and SparseProp's) keep their threads awake (0, or OMP_WAIT_POLICY=PASSIVE, made
# SparseProp's step 5-13x slower on 2 cores).
SPIN_SETTING = ("GOMP_SPINCOUNT", "10000")

if "torch" not in sys.modules and not {SPIN_SETTING[0], "OMP_WAIT_POLICY"} & set(os.environ):
    os.environ[SPIN_SETTING[0]] = SPIN_SETTING[1]

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("gpuback.torch needs PyTorch, which is not installed: "
                      "pip install 'gpuback[torch]'") from exc

from .module import Module  # noqa: E402  (after the spin setting)
from .sparse_linear import SparseLinear  # noqa: E402

__all__ = ["SPIN_SETTING", "Module", "SparseLinear"]
