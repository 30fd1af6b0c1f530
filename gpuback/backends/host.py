"""The ops of the op set that are the same for every backend whose arrays live in host memory
(numpy and cpu): array identification, and the streaming hooks, which have nothing to
overlap on the host.

Which values are device arrays is a property of the value, not of the backend, so the
identification ops are ``gpuback.backends.arrays``': a host backend handed a CuPy array still
recognises it (and its ``copy_into`` copies it to the host).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import host_memory
from .arrays import array_namespace as array_namespace  # (the op set's: re-exported)
from .arrays import as_array as as_array
from .arrays import is_device_array as is_device_array

device = "cpu"  # where this backend's arrays live (PyTorch's device name for it)


def device_collectives(comm: Any) -> None:
    """None: a host backend's arrays are summed over the ranks by MPI where they are
    (``gpuback.distributed``)."""
    return None


def allocation_hook() -> None:
    """A context that counts device allocations for ``gpuback.profile``: none, a host
    backend allocates no device memory."""
    return None


def free_memory() -> int:
    """Bytes of host memory this process can still allocate (``host_memory.free_bytes``:
    MemAvailable, the memory cgroups and RLIMIT_AS, whichever is smallest)."""
    return host_memory.free_bytes()


def pinned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A host buffer to stage batches in: a plain NumPy array (host memory needs no
    pinning to be read by a host backend)."""
    return np.empty(shape, dtype=dtype)


def record_event() -> None:
    """A marker of the work queued so far: none, host backends run every op to completion."""
    return None


def wait_for(event: Any) -> None:
    """Wait for ``record_event``'s marker: nothing to wait for on the host."""
    del event
