"""Memory pre-flight: the bytes a network and a training run need, checked before allocating.

A network too large for the machine should be refused in a line, before anything is
allocated, not after half a minute of drawing weights and a ``MemoryError`` traceback from
deep inside NumPy or CuPy. The figures are computed from the plan alone:

* a network (``check_network``, from ``Network.__init__``): its parameters and their
  gradients, one flat buffer each of ``layout.size`` elements of its dtype
  (``gpuback.flat``), and the host staging of the initial weights (one float64 chunk
  and its cast, ``gpuback.init.staging_bytes``);
* a training run before its network exists (``check_run``, from ``gpuback train``): both
  of the above, all still to allocate;
* a training run (``check_training``, from the training loop): the optimiser's state
  (``Optimizer.state_buffers()`` more flat buffers: Adam and AdamW 2, SGD 1), the
  workspace for the largest batch (``gpuback.workspace.workspace_bytes``: what
  ``Arena.reserve`` allocates) and the data set where it goes on the backend; the
  parameters and gradients, allocated with the network, are in the figure but already
  out of the free memory.

Each is compared with ``ops.free_memory()``, the bytes the network's backend can still
allocate (host memory for the host backends and the simulator, the GPU's on a device).
Too much raises ``InsufficientMemoryError``, a ``MemoryError`` and a ``ValueError`` (an
argument, the spec or the batch size, asks for more than there is), whose one-line
message gives the figure, what it is made of and what is free.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .flat import FlatLayout
from .init import staging_bytes
from .optim import Adam
from .workspace import workspace_bytes

if TYPE_CHECKING:
    from .backends.protocol import Backend
    from .plan import Plan

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
LABELS_ITEMSIZE = 8  # class labels live on the backend as int64


class InsufficientMemoryError(MemoryError, ValueError):
    """A network or a training run needs more memory than its backend has free; raised
    before anything is allocated."""


@dataclass(frozen=True)
class Need:
    """One part of a memory figure: what it is, its bytes, and whether it is allocated
    already (part of the figure, but no longer part of the free memory)."""

    what: str
    nbytes: int
    allocated: bool = False


def human(nbytes: float) -> str:
    """``nbytes`` in binary units with three significant digits: ``7.28 TiB``, ``512 B``."""
    value, unit = float(nbytes), 0
    while abs(value) >= 1024 and unit < len(UNITS) - 1:
        value, unit = value / 1024, unit + 1
    if unit == 0:
        return f"{int(value)} B"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f} {UNITS[unit]}"


def parameter_count(plan: Plan) -> int:
    """Weights and biases of ``plan`` (without the layout's alignment padding)."""
    return sum(int(np.prod(shape, dtype=np.int64)) for shape in plan.parameter_shapes().values())


def network_needs(plan: Plan, layout: FlatLayout, dtype: Any,
                  precision: str = "fp32") -> list[Need]:
    """What ``Network.__init__`` allocates for ``plan`` in ``dtype``: parameters, gradients
    (``layout.size`` elements each), below fp32 the parameters' rounded copy the products
    read, and the staging of the initial weights."""
    flat = layout.size * np.dtype(dtype).itemsize
    weights = sum(int(np.prod(b.shape, dtype=np.int64)) for b in plan.blocks)
    staging = staging_bytes(dtype, weights)
    rounded = [] if precision == "fp32" else [Need(f"parameters rounded to {precision}", flat)]
    return [Need("parameters", flat), Need("gradients", flat), *rounded,
            Need("initial-weight staging", staging)]


def check_network(ops: Backend, plan: Plan, layout: FlatLayout, dtype: Any,
                  precision: str = "fp32") -> None:
    """Refuse (``InsufficientMemoryError``) a network whose buffers exceed what ``ops`` has
    free, before any of them is allocated."""
    dtype = np.dtype(dtype)
    count = parameter_count(plan)
    smaller = ", dtype='float32'" if dtype.itemsize > 4 else ""
    _check(ops, f"Network: {count:,} {dtype.name} parameters need",
           network_needs(plan, layout, dtype, precision),
           f"use fewer or smaller groups{smaller}, or a backend with more memory")


def training_needs(net: Any, batch_size: int, optimizer: Any = None,
                   data_bytes: int = 0) -> list[Need]:
    """What a training run of ``net`` with batches of up to ``batch_size`` samples adds to
    the network (and what the network holds already): see ``check_training``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if isinstance(data_bytes, bool) or not isinstance(data_bytes, (int, np.integer)) \
            or data_bytes < 0:
        raise ValueError(f"data_bytes: expected a non-negative integer, got {data_bytes!r}")
    flat = net.layout.size * np.dtype(net.dtype).itemsize
    state, workspace = _run_needs(net.plan, net.dtype, flat, int(batch_size), optimizer)
    precision = getattr(net, "precision", "fp32")
    rounded = [] if precision == "fp32" else \
        [Need(f"parameters rounded to {precision}", flat, allocated=True)]
    return [Need("parameters", flat, allocated=True),
            Need("gradients", flat, allocated=True), *rounded,
            dataclasses.replace(state, allocated=optimizer is not None and
                                optimizer.bound_to(net)),
            dataclasses.replace(workspace, allocated=batch_size <= net.reserved_batch),
            Need("data set", int(data_bytes))]


def _run_needs(plan: Plan, dtype: Any, flat: int, batch: int,
               optimizer: Any) -> tuple[Need, Need]:
    """The optimiser's state (None: fit's default, Adam) and the workspace for batches of
    ``batch``, for a network of ``flat`` parameter bytes."""
    optimizer = _or_fit_default(optimizer)
    buffers, name = optimizer.state_buffers(), type(optimizer).__name__
    return (Need(f"{name} state ({buffers} x parameters)", buffers * flat),
            Need(f"workspace for batches of {batch}", workspace_bytes(plan, dtype, batch)))


def check_run(ops: Backend, plan: Plan, dtype: Any, batch_size: int,
              optimizer: Any = None) -> None:
    """Refuse (``InsufficientMemoryError``) a training run before its network is built:
    the network's buffers (``network_needs``), the optimiser's state and the workspace
    for batches of ``batch_size``, all still to allocate. What ``gpuback train`` checks
    first, so that a run too large for the machine stops before its weights are drawn."""
    layout = FlatLayout.of(plan.parameter_shapes())
    flat = layout.size * np.dtype(dtype).itemsize
    needs = [*network_needs(plan, layout, dtype),
             *_run_needs(plan, dtype, flat, int(batch_size), optimizer)]
    _check(ops, f"training with batches of {int(batch_size)} needs", needs,
           _advice(dtype, optimizer))


def check_training(net: Any, batch_size: int, optimizer: Any = None,
                   data_bytes: int = 0) -> None:
    """Refuse (``InsufficientMemoryError``) a training run that would run out of memory on
    ``net``'s backend, before its first allocation.

    ``batch_size``: the largest batch the run computes (the workspace is reserved for it);
    ``optimizer``: the run's optimiser (None: ``fit``'s default, Adam); ``data_bytes``: the
    bytes of data the run still puts on the backend (0 once the data set is there, or
    when it is used in place). The figure holds the parameters and gradients (allocated
    with the network), the optimiser's state (allocated unless it is bound to ``net``
    already), the workspace (allocated unless ``net`` has reserved that batch size) and the
    data; what is not yet allocated must fit in ``net.ops.free_memory()``.
    """
    _check(net.ops, f"training with batches of {int(batch_size)} needs",
           training_needs(net, batch_size, optimizer, data_bytes),
           _advice(net.dtype, optimizer))


def _advice(dtype: Any, optimizer: Any) -> str:
    buffers = _or_fit_default(optimizer).state_buffers()
    advice = ["lower batch_size"]
    if buffers > 1:
        advice.append(f"use SGD (1 state buffer, not {buffers})")
    if np.dtype(dtype).itemsize > 4:
        advice.append("dtype='float32'")
    return f"{', '.join(advice)} or a smaller network"


def _check(ops: Backend, what: str, needs: list[Need], advice: str) -> None:
    new = sum(n.nbytes for n in needs if not n.allocated)
    if new == 0:
        return
    free = int(ops.free_memory())
    if new <= free:
        return
    parts = ", ".join(f"{n.what} {human(n.nbytes)}" + (" (allocated)" if n.allocated else "")
                      for n in needs if n.nbytes)
    held = sum(n.nbytes for n in needs if n.allocated)
    total = f"{human(new + held)} in all, {human(new)} of it still to allocate" if held \
        else human(new)
    raise InsufficientMemoryError(
        f"{what} {total} on the {ops.name} backend ({parts}), but only {human(free)} "
        f"is free there; {advice}")


def _or_fit_default(optimizer: Any) -> Any:
    """``optimizer``, or for None the one ``fit`` would make (``Adam()``)."""
    return Adam() if optimizer is None else optimizer
