"""Where an MPI launcher placed this process, as the backends need it to share a node.

``mpiexec -n N`` starts N copies of one program; those on one node share its cores (the cpu
backend's threads, NumPy's BLAS) and its GPUs (the cuda backend takes the GPU of its local
rank). The launcher's environment variables (MPICH/Hydra ``PMI_RANK``/``PMI_SIZE``, Open MPI
``OMPI_COMM_WORLD_SIZE``, PMIx ``PMIX_RANK``) say that a process was launched; the ranks on
its node come from the launcher's own count where it sets one, else from a shared-memory
split of ``MPI.COMM_WORLD`` (mpi4py is imported then, and only under a launcher). The world
of a data-parallel run (``gpuback.distributed``) is built on the same facts.
"""

from __future__ import annotations

import functools
import os
from typing import Any

# The environment variables that say a process was started by an MPI launcher, each with the
# variable holding the number of ranks where there is one.
LAUNCHER_SIZE = {"PMI_SIZE": "PMI_SIZE", "OMPI_COMM_WORLD_SIZE": "OMPI_COMM_WORLD_SIZE",
                 "PMIX_RANK": None, "PMI_RANK": None}
# The variables some launchers set with the number of ranks on this node (MPICH/Hydra,
# Open MPI, PMIx); without them the node is measured with a shared-memory split.
LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_LOCAL_SIZE")


def launched_by_mpi() -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, mpirun, srun with
    PMI/PMIx), judged from its environment alone."""
    return any(name in os.environ for name in LAUNCHER_SIZE)


def launcher_size() -> int | None:
    """The number of ranks the launcher's environment gives, or None."""
    for variable in LAUNCHER_SIZE.values():
        if variable is not None and variable in os.environ:
            try:
                return int(os.environ[variable])
            except ValueError:
                return None
    return None


def node_placement_of(comm: Any) -> tuple[int, int]:
    """(this rank's place among the ranks of its node, how many share the node) within the
    mpi4py communicator ``comm``: a ``COMM_TYPE_SHARED`` split (a collective call)."""
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    placement = node.Get_rank(), node.Get_size()
    node.Free()
    return placement


@functools.cache
def node_placement() -> tuple[int, int]:
    """``node_placement_of(MPI.COMM_WORLD)``, measured once per process; (0, 1) when this
    process was not launched by MPI, or mpi4py is missing (then one rank runs alone, or
    ``gpuback.distributed.world()`` refuses to start)."""
    if not launched_by_mpi():
        return 0, 1
    try:
        from mpi4py import MPI
    except ImportError:
        return 0, 1
    return node_placement_of(MPI.COMM_WORLD)


def local_rank() -> int:
    """This rank's place among the ranks of its node (0 without MPI): which GPU it takes."""
    return node_placement()[0]


def ranks_per_node() -> int:
    """How many ranks of this job share this node (1 without MPI): the launcher's own count
    when it sets one, else the shared-memory split's (``node_placement``)."""
    if not launched_by_mpi():
        return 1
    if node_placement.cache_info().currsize:
        return node_placement()[1]
    for variable in LOCAL_SIZE_VARIABLES:
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return node_placement()[1]


def cores_per_rank() -> int:
    """The cores this process may run on: under MPI the ranks on one node share its
    cores, each taking ``cores // ranks_per_node`` (at least one), unless the launcher (or
    the user, ``taskset``) has bound it to fewer cores than the machine has, which are
    then its own. Without MPI: the cores it may run on."""
    machine = max(1, os.cpu_count() or 1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else machine
    ranks = ranks_per_node()
    if ranks > 1 and cores >= machine:
        cores //= ranks
    return max(1, cores)
