"""The MPI world of a data-parallel run and its collectives (mpi4py; nothing home-made).

``mpiexec -n N python script.py`` (or ``mpiexec -n N gpuback train ...``) starts N copies
of one program; ``world()`` finds that out from the launcher's environment variables
(MPICH/Hydra ``PMI_RANK``/``PMI_SIZE``, Open MPI ``OMPI_COMM_WORLD_SIZE``, PMIx
``PMIX_RANK``) and only then imports mpi4py: a plain ``python`` run never imports it and
gets ``SingleProcess``, whose collectives do nothing.

Synchronous data parallelism (as PyTorch DDP, Horovod): every rank holds the same
parameters (``broadcast`` from rank 0 at the start), computes the gradient of its
``share`` of each global batch, weighted by its share of the batch, and the weighted
gradients are summed over the ranks (``start_allreduce_sum``: the flat gradient buffer
in buckets, each started while backward goes on, ``gpuback.distributed.buckets``), so every rank
applies the same update: the gradient of the mean loss over the global batch, as one
process would compute it (Bishop 5.53 summed over the batch's samples, whichever rank
holds them).

Transports: MPI sums host arrays where they are (the numpy and cpu backends, the cuda
backend under the simulator); on a GPU the cuda backend's own collectives do
(``device_collectives``: NCCL, started up over MPI), else MPI sums host copies.

Failure: an exception that escapes on one rank would leave the others waiting in a
collective for ever, so ``world()`` installs a ``sys.excepthook`` that prints the
traceback prefixed with the rank and calls ``MPI.COMM_WORLD.Abort(1)`` (mpiexec then ends
every rank). An error raised on every rank alike (``raise_on_every_rank``, ``check_same``,
``agree``) is marked as such (``on_every_rank``): it is printed once, by rank 0, and each
rank exits with it, without an abort.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ..backends.launcher import (  # noqa: F401  (public here: the world's own facts)
    cores_per_rank,
    launched_by_mpi,
    launcher_size,
    node_placement,
    node_placement_of,
    ranks_per_node,
)
from ..backends.protocol import Array, Backend
from .buckets import BUCKET_BYTES

INSTALL_HINT = "pip install 'gpuback[mpi]'"
_ON_EVERY_RANK = "_gpuback_on_every_rank"  # the attribute that marks a collective error
_MAX_SHOWN = 120  # characters of a differing value a mismatch message shows

T = TypeVar("T")


def share_bounds(batch: int, size: int, rank: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous part ``[lo, hi)`` of ``batch`` rows split over ``size``
    ranks: the first ``batch % size`` ranks get one row more, so shares differ by at most
    one row; a rank gets none when ``batch < size`` and ``rank >= batch``."""
    base, extra = divmod(batch, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def on_every_rank(exc: BaseException) -> bool:
    """Whether ``exc`` was raised alike on every rank (see ``mark_on_every_rank``)."""
    return bool(getattr(exc, _ON_EVERY_RANK, False))


def mark_on_every_rank(exc: BaseException) -> BaseException:
    """Mark ``exc`` as raised alike on every rank (returned, to ``raise``): it is reported
    once, by rank 0, and ends each rank without an abort."""
    setattr(exc, _ON_EVERY_RANK, True)
    return exc


class Done:
    """A collective that has nothing left to do (every collective of one process)."""

    def test(self) -> bool:
        """Whether it has finished (driving it on where the transport needs that)."""
        return True

    def wait(self) -> None:
        """Return once it has finished (on a GPU: once the step's stream is ordered after
        it); only then may its buffer be read."""


class SingleProcess:
    """The world of a run without MPI: one rank; every collective leaves its data as it is.
    ``bucket_bytes``: the size at which a data-parallel step starts a bucket's all-reduce
    during backward (``gpuback.distributed.buckets``; PyTorch DDP's ``bucket_cap_mb``), set on the
    world before ``fit``."""

    rank, size, local_rank, ranks_per_node = 0, 1, 0, 1
    bucket_bytes = BUCKET_BYTES

    @property
    def is_root(self) -> bool:
        """Whether this rank is rank 0, the one that writes files and prints."""
        return self.rank == 0

    def share(self, n_global: int, start: int, batch: int) -> tuple[int, int]:
        """This rank's rows ``[lo, hi)`` (positions in the epoch's sample order) of the
        global batch of up to ``batch`` rows starting at ``start`` of ``n_global``."""
        rows = max(0, min(batch, n_global - start))
        lo, hi = share_bounds(rows, self.size, self.rank)
        return start + lo, start + hi

    def allreduce_sum(self, ops: Backend, buffer: Array) -> None:
        """``buffer`` (a backend array) replaced by its sum over the ranks, in place."""

    def start_allreduce_sum(self, ops: Backend, buffer: Array) -> Done:
        """The sum of ``buffer`` over the ranks, in place, started and not waited for: call
        ``wait()`` on the result before reading ``buffer``; ``test()`` drives it on meanwhile
        (MPI moves a non-blocking collective on only inside MPI calls)."""
        return Done()

    def allreduce_max(self, ops: Backend, buffer: Array) -> None:
        """``buffer`` replaced by its element-wise maximum over the ranks, in place."""

    def broadcast(self, ops: Backend, buffer: Array, root: int = 0) -> None:
        """``buffer`` set to rank ``root``'s, in place, on every rank."""

    def sum_floats(self, values: list[float]) -> list[float]:
        """Each of ``values`` summed over the ranks (float64, on the host)."""
        return [float(v) for v in values]

    def check_same(self, fields: dict[str, Any]) -> None:
        """Raise ``ValueError`` on every rank, naming the field and the ranks, unless every
        rank passed the same ``fields`` (JSON-able values; compared as JSON)."""

    def agree(self, action: Callable[[], T]) -> T:
        """``action()``; under MPI an exception on any rank is raised on every rank alike."""
        return action()


class MPIWorld(SingleProcess):
    """The world of an MPI job (``mpi4py.MPI.COMM_WORLD``). ``local_rank``: this rank's
    place among the ranks of its node (``COMM_TYPE_SHARED`` split: which GPU it takes),
    ``ranks_per_node``: how many share the node (and so its cores)."""

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI  # only under a launcher: see world()

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if comm is None:
            self.local_rank, self.ranks_per_node = node_placement()
        else:
            self.local_rank, self.ranks_per_node = node_placement_of(self.comm)
        self._device: dict[str, Any] = {}  # backend name -> its collectives, or None

    def _device_collectives(self, ops: Backend) -> Any:
        """The backend's own collectives for a device buffer (made once per backend, on
        every rank alike: NCCL starts up collectively), or None: MPI on a host copy."""
        if ops.name not in self._device:
            self._device[ops.name] = ops.device_collectives(self.comm)
        return self._device[ops.name]

    def _reduce(self, ops: Backend, buffer: Array, op: Any) -> None:
        if _on_host(ops, buffer):  # reduced where it is
            self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=op)
            return
        device = self._device_collectives(ops)
        if device is not None:
            (device.sum if op == self.MPI.SUM else device.max)(buffer)
            return
        host = np.ascontiguousarray(ops.to_host(buffer))  # staged (no CUDA-aware MPI)
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=op)
        ops.copy_into(buffer, host)

    def allreduce_sum(self, ops: Backend, buffer: Array) -> None:
        self._reduce(ops, buffer, self.MPI.SUM)

    def start_allreduce_sum(self, ops: Backend, buffer: Array) -> Any:
        if _on_host(ops, buffer):
            return MPIPending(self.comm.Iallreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM))
        device = self._device_collectives(ops)
        if device is not None:
            return device.start_sum(buffer)
        host = np.ascontiguousarray(ops.to_host(buffer))
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        return MPIPending(request, lambda: ops.copy_into(buffer, host))

    def allreduce_max(self, ops: Backend, buffer: Array) -> None:
        self._reduce(ops, buffer, self.MPI.MAX)

    def broadcast(self, ops: Backend, buffer: Array, root: int = 0) -> None:
        if _on_host(ops, buffer):
            self.comm.Bcast(buffer, root=root)
            return
        device = self._device_collectives(ops)
        if device is not None:
            device.broadcast(buffer, root)
            return
        host = np.ascontiguousarray(ops.to_host(buffer))
        self.comm.Bcast(host, root=root)
        ops.copy_into(buffer, host)

    def sum_floats(self, values: list[float]) -> list[float]:
        array = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return [float(v) for v in array]

    def check_same(self, fields: dict[str, Any]) -> None:
        mine = {name: json.dumps(value, sort_keys=True, default=repr)
                for name, value in fields.items()}
        everyone = self.comm.allgather(mine)
        for name in fields:
            values = [each.get(name) for each in everyone]
            if len(set(values)) == 1:
                continue
            differ = [r for r, v in enumerate(values) if v != values[0]]
            shown = ", ".join(f"rank {r} has {_shorten(values[r])}" for r in differ[:3])
            raise mark_on_every_rank(ValueError(
                f"{name}: differs between the ranks of the MPI job: rank 0 has "
                f"{_shorten(values[0])}, {shown} (rank{'s' if len(differ) > 1 else ''} "
                f"{', '.join(map(str, differ))} differ{'' if len(differ) > 1 else 's'}); "
                f"every rank must pass the same"))

    def agree(self, action: Callable[[], T]) -> T:
        try:
            result, failure = action(), None
        except Exception as exc:  # re-raised below, on every rank
            result, failure = None, exc
        report = None if failure is None else (type(failure).__name__, str(failure))
        reports = self.comm.allgather(report)
        failed = [(r, rep) for r, rep in enumerate(reports) if rep is not None]
        if not failed:
            return result  # type: ignore[return-value]
        if failure is not None and len(failed) == self.size and \
                len({rep for _, rep in failed}) == 1:
            raise mark_on_every_rank(failure)  # alike everywhere: as it is, on every rank
        rank, (kind, message) = failed[0]
        others = f" (and on rank {', '.join(str(r) for r, _ in failed[1:])})" \
            if len(failed) > 1 else ""
        text = f"rank {rank}: {message}{others}"
        error: Exception
        if failure is not None and failed[0][0] == self.rank:
            error = _same_kind(failure, text)
        else:
            error = _KINDS.get(kind, RuntimeError)(text)
        raise mark_on_every_rank(error) from failure

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (``MPI_Abort``)."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)


def _on_host(ops: Backend, buffer: Array) -> bool:
    """Whether MPI can read and write ``buffer`` where it is: a host array. A device array
    (the simulator's stand-ins included, as strict as a GPU's) goes through the backend's
    own collectives or a host copy."""
    return isinstance(buffer, np.ndarray) and not ops.is_device_array(buffer)


class MPIPending(Done):
    """A non-blocking MPI all-reduce (``Iallreduce``) under way; ``then``, if given, runs
    once it has finished (a staged buffer copied back to the device)."""

    def __init__(self, request: Any, then: Callable[[], None] | None = None) -> None:
        self.request, self.then, self.done = request, then, False

    def _finish(self) -> None:
        self.done = True
        if self.then is not None:
            self.then()

    def test(self) -> bool:
        if not self.done and self.request.Test():
            self._finish()
        return self.done

    def wait(self) -> None:
        if not self.done:
            self.request.Wait()
            self._finish()


_KINDS: dict[str, type[Exception]] = {"ValueError": ValueError, "TypeError": TypeError}


def _same_kind(failure: Exception, text: str) -> Exception:
    """An exception of ``failure``'s base kind (ValueError, TypeError, else RuntimeError)
    with ``text``: what every rank raises for it, the failing one included."""
    for base in (ValueError, TypeError):
        if isinstance(failure, base):
            return base(text)
    return RuntimeError(text)


def _shorten(text: str | None) -> str:
    text = "nothing" if text is None else text
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."


@functools.cache
def world() -> SingleProcess:
    """The world of this process: an ``MPIWorld`` when started by an MPI launcher (mpi4py
    is then imported, and an uncaught exception aborts the job), else ``SingleProcess``.
    The same object on every call. Under a launcher of more than one rank without mpi4py,
    ``ImportError`` (N copies training alone, each writing the same files, is never what
    was meant)."""
    if not launched_by_mpi():
        return SingleProcess()
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        size = launcher_size()
        if size is not None and size <= 1:
            return SingleProcess()
        raise ImportError(f"this process was started by an MPI launcher (mpiexec) but mpi4py "
                          f"is not installed: {INSTALL_HINT}") from None
    mpi = MPIWorld()
    if mpi.size > 1:
        _install_excepthook(mpi)
    if mpi.ranks_per_node > 1:
        _share_blas_threads()
    return mpi


BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                         "BLIS_NUM_THREADS")


def _share_blas_threads() -> None:
    """BLAS (NumPy's, which the numpy backend's products run on) held to this rank's share
    of the node's cores (``cores_per_rank``), as the cpu backend's own threads are:
    N ranks each running a BLAS of every core oversubscribe the node several times over.
    Unless told otherwise: a thread count set in the environment is left as it is."""
    if any(name in os.environ for name in BLAS_THREAD_VARIABLES):
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=cores_per_rank(), user_api="blas")


def _install_excepthook(mpi: MPIWorld) -> None:
    """An uncaught exception on a rank prints its traceback prefixed with the rank and
    aborts the job (no rank left waiting in a collective); one raised alike on every rank
    is printed by rank 0 only and each rank exits with it."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        if on_every_rank(exc):
            if mpi.rank == 0:
                previous(kind, exc, tb)
            return
        lines = traceback.format_exception(kind, exc, tb)
        text = "".join(lines).rstrip("\n").splitlines()
        print("\n".join(f"[rank {mpi.rank}] {line}" for line in text), file=sys.stderr)
        print(f"[rank {mpi.rank}] gpuback: an uncaught exception on rank {mpi.rank}; aborting "
              f"the MPI job", file=sys.stderr)
        mpi.abort(1)

    sys.excepthook = hook
