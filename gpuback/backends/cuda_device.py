"""Where the cuda backend's arrays live, and the only module that touches CuPy.

On a machine with an NVIDIA GPU, buffers are CuPy arrays and dense products go to
cuBLAS. Under the Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before Numba
is imported) the same kernels run on the CPU: buffers are NumPy arrays and dense
products are ``numpy.matmul``. Everything that differs between the two lives here.

Detection runs once per process and is cached: asking a machine without a device
can be slow.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType
from typing import Any

import numpy as np

from .status import BackendStatus

INSTALL_HINT = ("install the CUDA extra that matches your driver, pip install 'gpuback[cuda12]' "
                "or 'gpuback[cuda13]' (never both), or use backend='numpy'")


@functools.cache
def status() -> BackendStatus:
    """Whether the cuda backend can run here, and on what (cached for the process)."""
    try:
        from numba import config, cuda
    except ImportError:
        return BackendStatus(False, False, f"numba-cuda is not installed: {INSTALL_HINT}")
    if config.ENABLE_CUDASIM:
        return BackendStatus(True, True, "the Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    try:
        import cupy
    except ImportError:
        return BackendStatus(False, False, f"CuPy is not installed: {INSTALL_HINT}")
    try:
        usable = bool(cupy.is_available()) and bool(cuda.is_available())
    except Exception as exc:  # CUDA runtime or driver errors, whatever their type
        return BackendStatus(False, False, f"the CUDA runtime failed ({exc}); {INSTALL_HINT}")
    if not usable:
        return BackendStatus(False, False, "no usable NVIDIA GPU was found (CuPy and Numba "
                                          "see no device); use backend='numpy'")
    return BackendStatus(True, False, "an NVIDIA GPU through CuPy")


def xp() -> ModuleType:
    """The array module: CuPy on a GPU, NumPy under the simulator."""
    if status().simulated:
        return np
    import cupy

    return cupy


def is_device_array(value: Any) -> bool:
    """True for a CuPy array (or another ``__cuda_array_interface__`` producer)."""
    return hasattr(value, "__cuda_array_interface__") and not isinstance(value, np.ndarray)


def to_numpy(array: Any) -> np.ndarray:
    """A host NumPy copy of a backend array."""
    if isinstance(array, np.ndarray):
        return np.array(array, copy=True)
    return array.get()


def from_host(array: Any, dtype: Any) -> Any:
    """A new C-contiguous backend array holding ``array`` (host or device) in ``dtype``."""
    return xp().array(array, dtype=dtype, order="C", copy=True)


def copy_into(dst: Any, src: Any) -> None:
    """``dst[...] = src`` with casting; ``src`` may be a host or a device array.

    A host array is converted on the host and uploaded straight into ``dst``, so the
    copy allocates no device memory.
    """
    if status().simulated:
        np.copyto(dst, src, casting="unsafe")
    elif is_device_array(src):
        dst[...] = src
    else:
        dst.set(np.ascontiguousarray(src, dtype=dst.dtype))


def tf32_allowed() -> bool:
    """Whether float32 dense products may use TensorFloat-32 (CuPy's ``CUPY_TF32=1``).

    Off unless the user sets ``CUPY_TF32=1``: TF32 keeps 10 mantissa bits, far from the
    float32 tolerances gpuback's tests hold the backend to.
    """
    return os.environ.get("CUPY_TF32", "0") not in ("", "0")


def gemm(a: Any, b: Any, out: Any, accumulate: bool) -> None:
    """out (+)= a @ b; ``a`` and ``b`` may be transposed views. cuBLAS on a GPU.

    By default cuBLAS ``sgemm``/``dgemm`` with beta = 1 to accumulate, in the default
    (full-precision) math mode. With ``CUPY_TF32=1`` float32 products go through
    ``cupy.matmul``, which then runs them in TF32.
    """
    if status().simulated:
        if accumulate:
            out += a @ b
        else:
            np.matmul(a, b, out=out)
        return
    import cupy
    from cupy import cublas

    if out.dtype == np.float32 and tf32_allowed():
        if accumulate:
            out += cupy.matmul(a, b)
        else:
            cupy.matmul(a, b, out=out)
        return
    cublas.gemm("N", "N", a, b, out=out, alpha=1.0, beta=1.0 if accumulate else 0.0)


def describe() -> dict[str, Any]:
    """Versions and the device, for ``gpuback.info()``."""
    found: dict[str, Any] = {}
    try:
        import numba

        found["numba"] = numba.__version__
        from numba import cuda

        found["numba_cuda"] = getattr(cuda, "__version__", None) or _version("numba-cuda")
    except ImportError:
        found["numba"] = None
    found["cupy"] = _version("cupy-cuda12x") or _version("cupy-cuda13x") or _version("cupy")
    if status().usable and not status().simulated:
        import cupy

        device = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
        name = props["name"]
        found["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        cc = str(device.compute_capability)
        found["compute_capability"] = f"{cc[:-1]}.{cc[-1]}"
        found["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        found["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    return found


def _version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
