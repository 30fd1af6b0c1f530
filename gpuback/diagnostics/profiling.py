"""What the cuda backend asks of the device: counters users can read.

    with gpuback.profile.counters() as c:
        net.fit(X, y, epochs=1)
    print(c.launches, c.gemms, c.host_to_device, c.device_to_host, c.host_waits,
          c.allocations)

Counted on the cuda backend, on a GPU or under the Numba CUDA simulator, at the one
module that touches the device (``gpuback.backends.cuda.device``; allocations through the
hooks the backend registry hands out):

* ``launches``: kernels launched (gpuback's Numba kernels, and CuPy's element-wise
  copies and fills when gpuback asks for one);
* ``gemms``: cuBLAS calls (dense products);
* ``host_to_device`` / ``device_to_host``: copies between host and device memory;
* ``host_waits``: every time the host blocks until the device has finished (a
  device-to-host copy is one, as is an explicit synchronisation);
* ``allocations``: device buffers gpuback allocates. On a GPU a CuPy memory hook
  counts every request to CuPy's memory pool while the counters are open, so an
  allocation CuPy makes on gpuback's behalf (a temporary) counts too; under the
  simulator, device arrays are a NumPy subclass that counts every new array created
  from them, temporaries included.

The numpy and cpu backends never touch a device: their counts stay zero.
Counters nest; each open one counts everything that happens while it is open.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from ..backends import allocation_hooks
from ..backends.counters import FIELDS, Counts, active, close_counts, count, open_counts

__all__ = ["FIELDS", "Counts", "active", "count", "counters"]


@contextmanager
def counters() -> Iterator[Counts]:
    """A ``Counts`` that counts the device work done while the ``with`` block runs."""
    counts = Counts()
    open_counts(counts)
    try:
        with ExitStack() as stack:
            for hook in allocation_hooks():
                stack.enter_context(hook)
            yield counts
    finally:
        close_counts(counts)
