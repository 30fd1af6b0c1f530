"""Memory pre-flight: the bytes a network and a training run need, checked before allocating.

A network too large for the machine should be refused in a line, before anything is
allocated, not after half a minute of drawing weights and a ``MemoryError`` traceback from
deep inside NumPy or CuPy. The figures are computed from the plan alone:

* a network (``check_network``, from ``Network.__init__``): its parameters and their
  gradients, one flat buffer each of ``layout.size`` elements of its dtype
  (``gpuback.core.layout``), and the host staging of the initial weights (one float64 chunk
  and its cast, ``gpuback.core.init.staging_bytes``);
* a training run, before its network exists or on it (``gpuback.training.memory``).

Each is compared with ``ops.free_memory()``, the bytes the network's backend can still
allocate (host memory for the host backends and the simulator, the GPU's on a device).
Too much raises ``InsufficientMemoryError``, a ``MemoryError`` and a ``ValueError`` (an
argument, the spec or the batch size, asks for more than there is), whose one-line
message gives the figure, what it is made of and what is free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .init import staging_bytes
from .layout import FlatLayout

if TYPE_CHECKING:
    from ..backends.protocol import Backend
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
    check_needs(ops, f"Network: {count:,} {dtype.name} parameters need",
                network_needs(plan, layout, dtype, precision),
                f"use fewer or smaller groups{smaller}, or a backend with more memory")


def check_needs(ops: Backend, what: str, needs: list[Need], advice: str) -> None:
    """Refuse (``InsufficientMemoryError``, its message ``what``, the figure, its parts and
    ``advice``) ``needs`` whose bytes still to allocate exceed what ``ops`` has free."""
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
