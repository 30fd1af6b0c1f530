"""Dynamic loss scaling for fp16 mixed precision (Micikevicius et al., 2018; PyTorch's
``GradScaler`` rule), kept on the backend.

fp16 holds nothing below 2^-24: the deltas of a small loss (Bishop 5.54, 5.56) stored in
fp16 round to zero and so do the gradients made from them. The loss, in effect, is
multiplied by a scale S: the output deltas are multiplied by S right after the loss op,
before they are stored rounded to fp16; every later delta and gradient (5.53-5.56) is then S
times the true one. After backward the flat gradients are multiplied by 1/S. If any is NaN
or infinite, the step is skipped (no parameter and no optimiser moment changes) and S
halves (``BACKOFF_FACTOR``); after ``growth_interval`` (``GROWTH_INTERVAL``, 2,000) clean
steps in a row S doubles (``GROWTH_FACTOR``). The initial scale is ``INIT_SCALE`` (2^16).

S and its count of clean steps live in a pair of the network's float type on the backend
(``LossScaler.state``: float32 for fp16; every kernel then computes in float32)
and the per-step verdict in an int64 pair (``step_status``), so no step waits for the host:
``training.fit`` reads S back once per epoch, to stop a run whose scale fell below
``MIN_SCALE`` (2^-14: gradients overflow at every scale) with ``TrainingDivergedError``.
S, the count and the growth interval are saved in checkpoints (``state_dict``), so a resumed
run is bitwise the unbroken one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .checks import check_real, is_integer

if TYPE_CHECKING:
    from ..backends.protocol import Array, Backend

INIT_SCALE = 2.0**16
GROWTH_INTERVAL = 2000  # clean steps in a row before S doubles
MIN_SCALE = 2.0**-14  # a scale below this at an epoch's end: the run diverged


@dataclass(frozen=True)
class LossScale:
    """The options of dynamic loss scaling: the initial scale and the growth interval."""

    init_scale: float = INIT_SCALE
    growth_interval: int = GROWTH_INTERVAL

    def __post_init__(self) -> None:
        check_real("loss_scale", self.init_scale, 0, low_open=True)
        g = self.growth_interval
        if not is_integer(g, 1, 2**24):
            raise ValueError(f"growth_interval: expected an integer in [1, 2^24] (counted in "
                             f"float32), got {g!r}")


def resolve(loss_scale: Any, precision: str) -> LossScale | None:
    """``fit``'s ``loss_scale`` argument as options, or None for no scaling: None means the
    default of the precision (on for "fp16", off for the others), False off, True on with
    the defaults, a number the initial scale, a ``LossScale`` itself."""
    if loss_scale is None:
        return LossScale() if precision == "fp16" else None
    if loss_scale is False:
        return None
    if loss_scale is True:
        return LossScale()
    if isinstance(loss_scale, LossScale):
        return loss_scale
    if isinstance(loss_scale, (int, float)):
        return LossScale(float(loss_scale))
    raise TypeError(f"loss_scale: expected None, False, True, a positive number or a "
                    f"gpuback.loss_scale.LossScale, got {loss_scale!r}")


class LossScaler:
    """S and its count on ``ops``'s backend (``state``: (2,) of ``dtype``, the gradients'
    float type), the per-step verdict (``step_status``: int64 (2,)), and the ops of one
    step."""

    def __init__(self, ops: Backend, options: LossScale, dtype: Any = np.float32,
                 clean_steps: int = 0) -> None:
        self.ops, self.growth_interval = ops, int(options.growth_interval)
        self.state = ops.from_host(np.array([options.init_scale, clean_steps], dtype), dtype)
        self.step_status = ops.zeros((2,), np.int64)

    def unscale(self, grads: Array, status: Array, step: int) -> Array:
        """After a backward pass run with ``state``: the gradients unscaled and checked, S
        and its count updated, and the pair the optimiser should read returned (set when
        this step overflowed or ``status`` records a non-finite step)."""
        ops = self.ops
        ops.fill_zero(self.step_status)
        ops.unscale_gradients(grads, self.state, self.step_status, step)
        ops.update_loss_scale(self.state, self.step_status, status, self.growth_interval)
        return self.step_status

    def read(self) -> tuple[float, int]:
        """(S, clean steps in a row) (one device-to-host copy)."""
        scale, count = self.ops.to_host(self.state)
        return float(scale), int(count)

    def state_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint: the scale, the count and the growth interval."""
        scale, count = self.read()
        return {"scale": scale, "clean_steps": count, "growth_interval": self.growth_interval}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Set S, its count and the growth interval from ``state_dict()`` output
        (``check_state``), in place: the buffers the steps read stay the same."""
        state = check_state(state)
        self.growth_interval = state["growth_interval"]
        self.ops.copy_into(self.state, np.array([state["scale"], state["clean_steps"]],
                                                self.state.dtype))

    @classmethod
    def from_state(cls, ops: Backend, state: dict[str, Any],
                   dtype: Any = np.float32) -> LossScaler:
        """A scaler on ``ops`` from ``state_dict()`` output (``check_state``)."""
        state = check_state(state)
        options = LossScale(state["scale"], state["growth_interval"])
        return cls(ops, options, dtype, state["clean_steps"])


STATE_FIELDS = ("scale", "clean_steps", "growth_interval")


def check_state(state: Any) -> dict[str, Any]:
    """``LossScaler.state_dict()`` output (as a checkpoint holds it), checked: exactly the
    fields ``STATE_FIELDS``, the scale and growth interval as ``LossScale`` takes them and a
    non-negative integer count below the interval's bound; ValueError naming a bad field."""
    if not isinstance(state, dict) or set(state) != set(STATE_FIELDS):
        raise ValueError(f"loss_scale: expected an object with the fields "
                         f"{list(STATE_FIELDS)}, got {state!r}")
    count = state["clean_steps"]
    if not is_integer(count, 0):
        raise ValueError(f"loss_scale: 'clean_steps' must be a non-negative integer, got "
                         f"{count!r}")
    options = LossScale(state["scale"], state["growth_interval"])  # checks both
    return {"scale": float(options.init_scale), "clean_steps": int(count),
            "growth_interval": int(options.growth_interval)}


class Scaled(Protocol):
    """What ``for_fit`` reads and sets of a network (``gpuback.core.engine.Engine``, which
    imports this module: a Protocol instead of the class)."""

    loss_scaler: LossScaler | None

    @property
    def ops(self) -> Backend: ...

    @property
    def dtype(self) -> str: ...

    @property
    def precision(self) -> str: ...


def for_fit(net: Scaled, loss_scale: Any) -> LossScaler | None:
    """The scaler a ``fit`` call on ``net`` uses, or None: with the default (``loss_scale``
    None) an fp16 network goes on with the scaler it has (from an earlier ``fit`` or its
    checkpoint), else gets a new one; an explicit setting starts a new one (or none)."""
    options = resolve(loss_scale, net.precision)
    if options is None:
        return None
    if loss_scale is None and net.loss_scaler is not None:
        return net.loss_scaler
    net.loss_scaler = LossScaler(net.ops, options, net.dtype)
    return net.loss_scaler
