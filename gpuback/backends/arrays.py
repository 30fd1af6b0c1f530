"""Which values are device arrays, wherever they came from, and their host copies.

Whether a value lives on a device is a property of the value, not of the backend it is
handed to: every backend identifies arrays with these functions (a host backend handed a
CuPy array still recognises it, and its ``copy_into`` copies it to the host). A device
array is a CuPy array, another ``__cuda_array_interface__`` producer (wrapped by CuPy, not
copied), or under the Numba CUDA simulator a ``SimDeviceArray``: a NumPy array that counts
its allocations and read-backs as device memory would (``gpuback.profile``). CuPy is
imported only when a CuPy array is met.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from . import counters

T = TypeVar("T")


def _cupy() -> ModuleType:
    import cupy

    module: ModuleType = cupy  # (CuPy ships no type information)
    return module


class SimDeviceArray(np.ndarray):
    """A NumPy array standing in for device memory under the Numba CUDA simulator.

    It makes the simulator as strict as a GPU about what a step costs: every new array
    made from one (a temporary of an expression, a copy) counts as a device allocation,
    and reading a value back to the host (``float``, ``bool``, ``int``, ``item``,
    ``tolist``) counts as a device-to-host copy and a host wait, as CuPy would.
    Views (slices, reshapes, transposes) are free, as on a GPU.
    """

    def __array_finalize__(self, obj: Any) -> None:
        root: np.ndarray = self
        while isinstance(root.base, np.ndarray):
            root = root.base
        if id(root) not in _sim_memory and not _sim_quiet[0]:
            _sim_memory[id(root)] = root
            counters.count("allocations")

    def _read_back(self, convert: Callable[[np.ndarray], T]) -> T:
        counters.count("device_to_host")
        counters.count("host_waits")
        return convert(self.view(np.ndarray))

    def __float__(self) -> float:
        return self._read_back(float)

    def __int__(self) -> int:
        return self._read_back(int)

    def __bool__(self) -> bool:
        return self._read_back(bool)

    def __index__(self) -> int:
        return self._read_back(operator.index)

    def item(self, *args: Any) -> Any:
        return self._read_back(lambda a: a.item(*args))

    def tolist(self) -> Any:
        return self._read_back(lambda a: a.tolist())


_sim_memory: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()
_sim_quiet = [False]  # the simulator's own copies of kernel arguments are not allocations


@contextmanager
def uncounted() -> Iterator[None]:
    """Arrays made while this is entered are not counted as allocations (the simulator's
    copies of a kernel's arguments, in and out)."""
    _sim_quiet[0] = True
    try:
        yield
    finally:
        _sim_quiet[0] = False


def sim_array(host: np.ndarray) -> SimDeviceArray:
    """``host`` as a simulator device array (a view, no copy)."""
    return host.view(SimDeviceArray)


def is_device_array(value: Any) -> bool:
    """True for a CuPy array (or another ``__cuda_array_interface__`` producer), or for a
    simulator device array."""
    if isinstance(value, SimDeviceArray):
        return True
    return hasattr(value, "__cuda_array_interface__") and not isinstance(value, np.ndarray)


def interface_memory(value: Any) -> np.ndarray:
    """The memory a ``__cuda_array_interface__`` producer describes, as a NumPy array over
    it (no copy). Only where device pointers are host pointers: under the Numba CUDA
    simulator, whose "device" memory is host memory."""
    described = value.__cuda_array_interface__
    host_interface = {key: described[key] for key in ("shape", "typestr", "data", "version")}
    host_interface["strides"] = described.get("strides")

    class Memory:
        __array_interface__ = host_interface

    return np.asarray(Memory())


def as_array(value: Any) -> Any:
    """``value`` as an array that checks can run on where it lives: a device array as a
    CuPy array (in place: ``__cuda_array_interface__`` producers are wrapped, not copied;
    a simulator device array as itself), anything else through ``numpy.asarray``."""
    if is_device_array(value):
        return value if isinstance(value, np.ndarray) else _cupy().asarray(value)
    return np.asarray(value)


def array_namespace(array: Any) -> ModuleType:
    """The array module to compute on ``array`` with: NumPy for host arrays (and simulator
    device arrays), CuPy for device arrays."""
    return np if isinstance(array, np.ndarray) else _cupy()


def to_numpy(array: Any) -> np.ndarray:
    """A host NumPy copy of a device (or host) array: a device-to-host copy and a wait."""
    if isinstance(array, np.ndarray) and not isinstance(array, SimDeviceArray):
        return np.array(array, copy=True)
    counters.count("device_to_host")
    counters.count("host_waits")
    if isinstance(array, SimDeviceArray):
        return np.array(array.view(np.ndarray), copy=True)
    host: np.ndarray = array.get()  # a CuPy array's host copy
    return host
