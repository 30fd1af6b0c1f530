"""PyTorch tensors handed to gpuback's ops with no copy, on the stream PyTorch is using.

A CPU tensor is a NumPy array over the same memory (``Tensor.numpy``), which the cpu
backend's Numba kernels and BLAS take as it is. A CUDA tensor crosses by its
``__cuda_array_interface__`` into a CuPy array over the same memory, which the cuda
backend's kernels take (PyTorch's interface names no stream, so CuPy adds no wait);
every launch then goes on PyTorch's current stream (``on_stream``: CuPy's current stream,
which the cuda backend launches on, is set to it), so no wait and no copy separates
PyTorch's work from gpuback's.

Mixed precision (``gpuback.precision``): a bfloat16 or float16 input, or a float32 one
under ``torch.autocast`` to those types, is computed as gpuback computes below fp32: every
product reads its operands rounded to that precision (``call_precision``) and accumulates
in float32, and the result is handed back in the low-precision type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ..backends import backend_for_device
from ..backends.protocol import Backend
from ..kernels.precision import CODES

# PyTorch's low-precision float types and the gpuback precisions they are.
LOW_PRECISION = {torch.bfloat16: "bf16", torch.float16: "fp16"}
PRECISION_DTYPE = {name: dtype for dtype, name in LOW_PRECISION.items()}
MASTER_DTYPES = (torch.float32, torch.float64)


def backend_for(device: torch.device) -> Backend:
    """The backend whose kernels run on tensors of ``device``: the cpu backend for CPU
    tensors, the cuda backend for CUDA tensors (which needs CuPy: ``pip install
    'gpuback[cuda12]'``)."""
    if device.type not in ("cpu", "cuda"):
        raise TypeError(f"gpuback.torch runs on CPU and CUDA tensors, got a tensor on "
                        f"{device}")
    return backend_for_device(device.type)


def backend_array(value: Any) -> Any:
    """A tensor's memory as an array the backend of its device takes, with no copy: a
    NumPy array for a CPU tensor; for a CUDA tensor (or any other
    ``__cuda_array_interface__`` producer) the cuda backend's array over it (a CuPy array;
    under the Numba simulator, where such a producer describes host memory, a simulator
    device array)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.device.type == "cpu":
            return value.numpy()
    return backend_for_device("cuda").as_array(value)


@contextlib.contextmanager
def on_stream(device: torch.device) -> Iterator[None]:
    """For a CUDA device: CuPy's current device and stream set to PyTorch's current ones
    while entered (the cuda backend launches every kernel on CuPy's current stream). For
    the CPU: nothing."""
    if device.type != "cuda":
        yield
        return
    import cupy

    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(stream.device_index), \
            cupy.cuda.ExternalStream(stream.cuda_stream, stream.device_index):
        yield


def call_precision(x: torch.Tensor) -> str:
    """The precision a call on ``x`` computes in: bf16 or fp16 for an input of that type,
    or for any input under ``torch.autocast`` to it on ``x``'s device; else fp32."""
    if x.dtype in LOW_PRECISION:
        return LOW_PRECISION[x.dtype]
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return LOW_PRECISION.get(torch.get_autocast_dtype(device_type), "fp32")
    return "fp32"


def precision_code(precision: str) -> int:
    """The kernels' code of a precision name (``gpuback.kernels.precision.CODES``)."""
    return int(CODES[precision])
