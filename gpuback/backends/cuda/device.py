"""Where the cuda backend's arrays live, and the only module that touches CuPy.

On a machine with an NVIDIA GPU, buffers are CuPy arrays and dense products go to
cuBLAS. Under the Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before Numba
is imported) the same kernels run on the CPU: buffers are ``SimDeviceArray`` (NumPy
arrays that count their allocations and read-backs like device memory) and dense
products are ``numpy.matmul``. Everything that differs between the two lives here.

The NCCL collectives of data-parallel runs are ``gpuback.backends.cuda.nccl``'s.

Every launch, product, copy, wait and allocation passes through this module and is
counted for ``gpuback.profile.counters()``. Everything runs on one stream: CuPy's
current stream, which Numba launches use too (``current_stream``).

Detection runs once per process and is cached: asking a machine without a device
can be slow.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType
from typing import Any

import numpy as np

from .. import arrays, host_memory, launcher
from .. import counters as profile
from ..arrays import SimDeviceArray
from ..arrays import array_namespace as array_namespace  # the cuda backend's array ops
from ..arrays import is_device_array as is_device_array
from ..arrays import to_numpy as to_numpy
from ..status import BackendStatus

INSTALL_HINT = ("install the CUDA extra that matches your driver, pip install 'gpuback[cuda12]' "
                "or 'gpuback[cuda13]' (never both), or use backend='numpy'")


@functools.cache
def status() -> BackendStatus:
    """Whether the cuda backend can run here, and on what (cached for the process)."""
    try:
        from numba import config, cuda
    except ImportError:
        return BackendStatus(False, False, f"numba-cuda is not installed: {INSTALL_HINT}")
    if config.ENABLE_CUDASIM:  # type: ignore[attr-defined]
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
    _use_local_gpu()
    return BackendStatus(True, False, "an NVIDIA GPU through CuPy")


def _use_local_gpu() -> None:
    """Under an MPI launcher, one rank per GPU: the GPU of this rank's local rank (modulo
    the GPUs it sees; one when the launcher sets ``CUDA_VISIBLE_DEVICES`` per rank) made
    current for CuPy and Numba, before anything is allocated on a device."""
    if not launcher.launched_by_mpi():
        return
    import cupy
    from numba import cuda

    index = launcher.local_rank() % cupy.cuda.runtime.getDeviceCount()
    cupy.cuda.Device(index).use()
    cuda.select_device(index)


def device_collectives(comm: Any) -> Any:
    """NCCL collectives over the MPI communicator ``comm`` (``gpuback.backends.cuda.nccl``) on a
    GPU whose CuPy has NCCL; None under the simulator (host arrays: MPI sums them) or
    without NCCL (then MPI sums copies on the host: correct, slower)."""
    from . import nccl

    if status().simulated or not nccl.available():
        return None
    return nccl.NcclCollectives(comm)


def as_array(value: Any) -> Any:
    """``value`` as an array checks and ops can run on where it lives (no copy for a device
    array: ``gpuback.backends.arrays.as_array``). Under the simulator a
    ``__cuda_array_interface__`` producer (a stand-in for a CUDA tensor) describes host
    memory, which becomes a simulator device array over that memory."""
    if status().simulated and is_device_array(value) and not isinstance(value, np.ndarray):
        return arrays.sim_array(arrays.interface_memory(value))
    return arrays.as_array(value)


def xp() -> ModuleType:
    """The array module: CuPy on a GPU, NumPy under the simulator."""
    if status().simulated:
        return np
    import cupy

    module: ModuleType = cupy  # (CuPy ships no type information)
    return module


def zeros(shape: tuple[int, ...], dtype: Any) -> Any:
    """A new zero-filled device array (one allocation)."""
    if status().simulated:
        return arrays.sim_array(np.zeros(shape, dtype=dtype))
    return xp().zeros(shape, dtype=dtype)


def from_host(array: Any, dtype: Any) -> Any:
    """A new C-contiguous device array holding ``array`` (host or device) in ``dtype``."""
    if isinstance(array, SimDeviceArray):
        return arrays.sim_array(np.array(array.view(np.ndarray), dtype=dtype, order="C"))
    if is_device_array(array):
        profile.count("launches")
        return xp().array(array, dtype=dtype, order="C", copy=True)
    host = np.ascontiguousarray(array, dtype=dtype)
    profile.count("host_to_device")
    if status().simulated:
        return arrays.sim_array(np.array(host, copy=True))
    return xp().asarray(host)


def asarray(array: Any, dtype: Any) -> Any:
    """``array`` as a C-contiguous device array in ``dtype``: itself when it already is one
    (a user's CuPy data is used in place), else a copy (``from_host``)."""
    if is_device_array(array) and array.dtype == np.dtype(dtype) and array.flags.c_contiguous:
        return array
    return from_host(array, dtype)


def copy_into(dst: Any, src: Any) -> None:
    """``dst[...] = src`` with casting; ``src`` may be a host or a device array.

    A host array is converted on the host and uploaded straight into ``dst`` (no device
    allocation); a device array is copied by one element-wise kernel on the stream.
    """
    if is_device_array(src):
        profile.count("launches")
        if isinstance(dst, np.ndarray):  # the simulator
            np.copyto(dst.view(np.ndarray), src.view(np.ndarray), casting="unsafe")
        else:
            dst[...] = src
        return
    profile.count("host_to_device")
    if isinstance(dst, np.ndarray):  # the simulator
        np.copyto(dst.view(np.ndarray), src, casting="unsafe")
    else:
        dst.set(np.ascontiguousarray(src, dtype=dst.dtype), stream=_cupy_stream())


def memory_budget() -> float:
    """Bytes of device memory a data set may take (half of what is free now); unlimited
    under the simulator, whose device memory is host memory."""
    if status().simulated:
        return float("inf")
    free, _ = xp().cuda.runtime.memGetInfo()
    return float(free) / 2


def free_memory() -> int:
    """Bytes the cuda backend can still allocate: on a GPU the device's free memory
    (``cudaMemGetInfo``) plus what CuPy's memory pool holds unused, capped by the pool's
    limit if one is set; under the simulator, whose device arrays are host memory, the
    host's (``host_memory.free_bytes``)."""
    if status().simulated:
        return host_memory.free_bytes()
    cupy = xp()
    free, _ = cupy.cuda.runtime.memGetInfo()
    pool = cupy.get_default_memory_pool()
    free += pool.free_bytes()
    limit = pool.get_limit()
    if limit:
        free = min(free, limit - pool.used_bytes())
    return int(max(0, free))


def pinned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A host array in page-locked memory (copies from it to the device are asynchronous);
    a plain NumPy array under the simulator."""
    if status().simulated:
        return np.empty(shape, dtype=dtype)
    import cupyx

    pinned: np.ndarray = cupyx.empty_pinned(shape, dtype=dtype)
    return pinned


def record_event() -> Any:
    """A CUDA event recorded on the current stream now (None under the simulator)."""
    if status().simulated:
        return None
    event = xp().cuda.Event(block=False, disable_timing=True)
    event.record(_cupy_stream())
    return event


def wait_for(event: Any) -> None:
    """Block the host until ``event`` has happened (one host wait)."""
    profile.count("host_waits")
    if event is not None:
        event.synchronize()


def synchronize() -> None:
    """Block the host until the current stream has finished its work (one host wait)."""
    profile.count("host_waits")
    if not status().simulated:
        _cupy_stream().synchronize()


# --- the stream, launches and products ---------------------------------------------------------

def _cupy_stream() -> Any:
    import cupy

    return cupy.cuda.get_current_stream()


def current_stream() -> Any:
    """CuPy's current stream as a Numba stream: every kernel of a step is launched on it,
    and CuPy (cuBLAS, copies) runs on it too, so all of a step's work is ordered on one
    stream. A user picks the stream with CuPy (``with cupy.cuda.Stream(non_blocking=True):``).
    Under the simulator: the simulator's (synchronous) default stream."""
    if status().simulated:
        return _numba_stream(None)
    return _numba_stream(_cupy_stream().ptr)


@functools.lru_cache(maxsize=64)
def _numba_stream(ptr: int | None) -> Any:
    from numba import cuda

    if ptr is None:
        return cuda.default_stream()
    if ptr == 0:  # CuPy's null stream is the legacy default stream
        return cuda.legacy_default_stream()
    return cuda.external_stream(ptr)


def launch(kernel: Any, grid: tuple[int, ...] | int, block: tuple[int, ...] | int,
           *args: Any) -> None:
    """``kernel[grid, block, stream](*args)`` on the current stream (one counted launch)."""
    profile.count("launches")
    configured = kernel[grid, block, current_stream()]
    if not status().simulated:
        configured(*args)
        return
    with arrays.uncounted():  # the simulator copies every array argument in and out
        configured(*args)


def tf32_allowed() -> bool:
    """Whether float32 dense products may use TensorFloat-32 (CuPy's ``CUPY_TF32=1``).

    Off unless the user sets ``CUPY_TF32=1``: TF32 keeps 10 mantissa bits, far from the
    float32 tolerances gpuback's tests hold the backend to.
    """
    return os.environ.get("CUPY_TF32", "0") not in ("", "0")


def gemm(a: Any, b: Any, out: Any, accumulate: bool) -> None:
    """out (+)= a @ b; ``a`` and ``b`` may be transposed views. One cuBLAS call on a GPU.

    cuBLAS ``sgemm``/``dgemm`` with beta = 1 to accumulate, in place, in the default
    (full-precision) math mode. With ``CUPY_TF32=1`` float32 products go through
    ``cupy.matmul``, which then runs them in TF32.
    CuPy runs cuBLAS on its current stream. Under the simulator ``numpy.matmul``
    stands in, on the host views (no device temporary, as with cuBLAS's beta = 1).
    """
    profile.count("gemms")
    if isinstance(out, np.ndarray):  # the simulator: its device arrays are host memory
        host_out = out.view(np.ndarray)
        product = np.matmul(a.view(np.ndarray), b.view(np.ndarray))
        if accumulate:
            host_out += product
        else:
            host_out[...] = product
        return
    import cupy
    from cupy import cublas

    if out.dtype == np.float32 and tf32_allowed():
        # CuPy's matmul honours CUPY_TF32; accumulating then needs a temporary.
        if accumulate:
            out += cupy.matmul(a, b)
        else:
            cupy.matmul(a, b, out=out)
        return
    cublas.gemm("N", "N", a, b, out=out, alpha=1.0, beta=1.0 if accumulate else 0.0)


def allocation_hook() -> Any:
    """On a GPU, a CuPy memory hook that counts every request to CuPy's memory pool as an
    allocation while it is entered; None under the simulator (its arrays count themselves)
    or when the cuda backend cannot run."""
    state = status()
    if state.simulated or not state.usable:
        return None
    from cupy.cuda import memory_hook

    # (CuPy ships no type information: its MemoryHook is Any to mypy)
    class CountAllocations(memory_hook.MemoryHook):  # type: ignore[misc]
        name = "gpuback.profile"

        def malloc_preprocess(self, **kwargs: Any) -> None:
            profile.count("allocations")

    return CountAllocations()


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
