"""Memory pre-flight of a training run: what it adds to its network, checked before the run
allocates anything (``gpuback.core.memory`` holds the network's own figure).

* before its network exists (``check_run``, from ``gpuback train``): the network's buffers,
  the optimiser's state and the workspace, all still to allocate;
* on its network (``check_training``, from the training loop): the optimiser's state
  (``Optimizer.state_buffers()`` more flat buffers: Adam and AdamW 2, SGD 1), the
  workspace for the largest batch (``gpuback.core.workspace.workspace_bytes``: what
  ``Arena.reserve`` allocates) and the data set where it goes on the backend; the
  parameters and gradients, allocated with the network, are in the figure but already
  out of the free memory.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..backends.protocol import Backend
from ..core.checks import is_integer
from ..core.engine import Engine
from ..core.layout import FlatLayout
from ..core.memory import Need, check_needs, network_needs
from ..core.plan import Plan
from ..core.workspace import workspace_bytes
from ..optim.optimizers import Adam, Optimizer


def training_needs(net: Engine, batch_size: int, optimizer: Optimizer | None = None,
                   data_bytes: int = 0) -> list[Need]:
    """What a training run of ``net`` with batches of up to ``batch_size`` samples adds to
    the network (and what the network holds already): see ``check_training``."""
    if not is_integer(batch_size, 1):
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if not is_integer(data_bytes, 0):
        raise ValueError(f"data_bytes: expected a non-negative integer, got {data_bytes!r}")
    flat = net.layout.size * np.dtype(net.dtype).itemsize
    state, workspace = _run_needs(net.plan, net.dtype, flat, int(batch_size), optimizer)
    precision = net.precision
    rounded = [] if precision == "fp32" else \
        [Need(f"parameters rounded to {precision}", flat, allocated=True)]
    return [Need("parameters", flat, allocated=True),
            Need("gradients", flat, allocated=True), *rounded,
            dataclasses.replace(state, allocated=optimizer is not None and
                                optimizer.bound_to(net)),
            dataclasses.replace(workspace, allocated=batch_size <= net.reserved_batch),
            Need("data set", int(data_bytes))]


def _run_needs(plan: Plan, dtype: Any, flat: int, batch: int,
               optimizer: Optimizer | None) -> tuple[Need, Need]:
    """The optimiser's state (None: fit's default, Adam) and the workspace for batches of
    ``batch``, for a network of ``flat`` parameter bytes."""
    optimizer = _or_fit_default(optimizer)
    buffers, name = optimizer.state_buffers(), type(optimizer).__name__
    return (Need(f"{name} state ({buffers} x parameters)", buffers * flat),
            Need(f"workspace for batches of {batch}", workspace_bytes(plan, dtype, batch)))


def check_run(ops: Backend, plan: Plan, dtype: Any, batch_size: int,
              optimizer: Optimizer | None = None) -> None:
    """Refuse (``InsufficientMemoryError``) a training run before its network is built:
    the network's buffers (``network_needs``), the optimiser's state and the workspace
    for batches of ``batch_size``, all still to allocate. What ``gpuback train`` checks
    first, so that a run too large for the machine stops before its weights are drawn."""
    layout = FlatLayout.of(plan.parameter_shapes())
    flat = layout.size * np.dtype(dtype).itemsize
    needs = [*network_needs(plan, layout, dtype),
             *_run_needs(plan, dtype, flat, int(batch_size), optimizer)]
    check_needs(ops, f"training with batches of {int(batch_size)} needs", needs,
           _advice(dtype, optimizer))


def check_training(net: Engine, batch_size: int, optimizer: Optimizer | None = None,
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
    check_needs(net.ops, f"training with batches of {int(batch_size)} needs",
           training_needs(net, batch_size, optimizer, data_bytes),
           _advice(net.dtype, optimizer))


def _advice(dtype: Any, optimizer: Optimizer | None) -> str:
    buffers = _or_fit_default(optimizer).state_buffers()
    advice = ["lower batch_size"]
    if buffers > 1:
        advice.append(f"use SGD (1 state buffer, not {buffers})")
    if np.dtype(dtype).itemsize > 4:
        advice.append("dtype='float32'")
    return f"{', '.join(advice)} or a smaller network"


def _or_fit_default(optimizer: Optimizer | None) -> Optimizer:
    """``optimizer``, or for None the one ``fit`` would make (``Adam()``)."""
    return Adam() if optimizer is None else optimizer
