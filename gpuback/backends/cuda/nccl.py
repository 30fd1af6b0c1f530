"""NCCL collectives for the cuda backend's data-parallel runs (CuPy's ``cupy.cuda.nccl``).

One NCCL communicator per MPI job: rank 0 makes the unique id, MPI broadcasts it (MPI only
starts NCCL up; CUDA-aware MPI is not assumed), every rank joins with its rank on the GPU
it uses (its local rank's, made current when the cuda backend is first asked for:
``cuda_device``). Every collective is enqueued, never waited for on the host: a blocking
one (``sum``, ``max``, ``broadcast``) on the step's stream, in its order; a bucket's
(``start_sum``, ``gpuback.distributed.buckets``) on a stream of its own, after an event recorded on
the step's stream where the bucket's gradients are final, so it runs while the rest of
backward does; its ``wait`` makes the step's stream wait for it (an event again), before
anything reads the summed gradients. Under the simulator there is no NCCL: the buffers are
host arrays and MPI sums them (``gpuback.distributed``).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def available() -> bool:
    """Whether CuPy was built with NCCL and finds its library (the ``nvidia-nccl`` wheel of
    the cuda extras)."""
    try:
        from cupy.cuda import nccl
    except ImportError:
        return False
    return bool(getattr(nccl, "available", False))


class NcclCollectives:
    """Sums, maxima and broadcasts of the cuda backend's arrays over the ranks of the MPI
    communicator ``comm`` (mpi4py), by NCCL, in place, on the device."""

    def __init__(self, comm: Any) -> None:
        import cupy
        from cupy.cuda import nccl

        self.cupy, self.nccl = cupy, nccl
        unique_id = nccl.get_unique_id() if comm.Get_rank() == 0 else None
        unique_id = comm.bcast(unique_id, root=0)
        self.comm = nccl.NcclCommunicator(comm.Get_size(), unique_id, comm.Get_rank())
        self.side = cupy.cuda.Stream(non_blocking=True)  # the buckets' stream
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32,
                      np.dtype(np.float64): nccl.NCCL_FLOAT64,
                      np.dtype(np.int64): nccl.NCCL_INT64}

    def _args(self, buffer: Any) -> tuple[int, int, int]:
        if not buffer.flags.c_contiguous:
            raise ValueError("NCCL collectives take contiguous buffers")
        return buffer.data.ptr, buffer.size, self.types[np.dtype(buffer.dtype)]

    def _reduce(self, buffer: Any, op: int, stream: Any) -> None:
        ptr, count, kind = self._args(buffer)
        self.comm.allReduce(ptr, ptr, count, kind, op, stream.ptr)

    def sum(self, buffer: Any) -> None:
        """``buffer`` replaced by its sum over the ranks, on the step's stream."""
        self._reduce(buffer, self.nccl.NCCL_SUM, self.cupy.cuda.get_current_stream())

    def max(self, buffer: Any) -> None:
        """``buffer`` replaced by its element-wise maximum over the ranks."""
        self._reduce(buffer, self.nccl.NCCL_MAX, self.cupy.cuda.get_current_stream())

    def broadcast(self, buffer: Any, root: int) -> None:
        """``buffer`` set to rank ``root``'s on every rank."""
        ptr, count, kind = self._args(buffer)
        self.comm.bcast(ptr, count, kind, root, self.cupy.cuda.get_current_stream().ptr)

    def start_sum(self, buffer: Any) -> PendingOnSide:
        """The sum of ``buffer`` over the ranks started on the buckets' stream once the
        step's stream has reached this point; ``wait()`` orders the step's stream after it."""
        self.side.wait_event(self._event(self.cupy.cuda.get_current_stream()))
        self._reduce(buffer, self.nccl.NCCL_SUM, self.side)
        return PendingOnSide(self._event(self.side))

    def _event(self, stream: Any) -> Any:
        """An event recorded on ``stream`` now (``cuda_device.record_event``'s kind, on a
        stream of choice)."""
        event = self.cupy.cuda.Event(block=False, disable_timing=True)
        event.record(stream)
        return event


class PendingOnSide:
    """A bucket's all-reduce enqueued on the buckets' stream, and the event after it."""

    def __init__(self, done: Any) -> None:
        self.done = done

    def test(self) -> bool:
        """Whether the GPU has finished it (a query, no wait; the GPU needs no driving)."""
        return bool(self.done.done)

    def wait(self) -> None:
        """The step's stream waits (on the device, not the host) for the all-reduce."""
        import cupy

        cupy.cuda.get_current_stream().wait_event(self.done)
