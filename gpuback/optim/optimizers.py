"""Optimisers (SGD with momentum / Nesterov, Adam, AdamW) and learning-rate schedules.

An optimiser updates a network's parameters in place from the gradients of its last
``loss_and_grads``: a fused backend op (``sgd_update``, ``adam_update``) over the
network's flat parameter buffer (``gpuback.core.layout``), where the parameters live (on the GPU
for the cuda backend), once per run of parameters sharing the same options
(``gpuback.optim.param_options``): one launch for a plain network, two with weight decay (the
weights decay, the biases by default do not). Its state (velocities, moment estimates:
flat buffers in the parameters' layout; the step count) lives on the same backend and can
be saved and restored, per parameter name, with ``state_dict`` / ``load_state_dict``.
Below fp32 (``Network(..., precision=...)``) the same launch writes the network's copy of
the parameters rounded to the precision (``Network.fused_parameters``), which the next
forward pass reads as it is: the weights are cast from the master once per step.

Options every optimiser takes besides its hyperparameters:

* ``weight_decay`` applies to the weights (``"src->dst"``) only; ``decay_biases=True``
  decays the biases too (a group's name is its bias).
* ``lr_multipliers``: ``{group: factor}``; a group's factor (finite, >= 0) scales the
  learning rate of its bias and of every block into it (``"src->group"``), weight decay
  included (for AdamW the decay step is ``lr * factor * weight_decay * w``).
* ``freeze``: parameter names (``"h1->h2"``) or group names (a group's bias and every
  block into it); those are never changed by ``step`` and keep no state (absent from
  ``state_dict``).

Names are checked against the network when the optimiser is bound to it (its first
``step``, ``load_state_dict``, or the start of ``fit``): an unknown one is a ValueError.

Schedules are callables ``step -> factor``; the learning rate at step t (from 0) is
``lr * schedule(t)``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import numpy as np

from ..backends.protocol import Array, Backend
from ..core.checks import check_bool, check_int, check_real, is_integer, is_real
from ..core.engine import Engine
from ..core.layout import FlatLayout
from ..kernels.precision import FP32
from . import param_options

Schedule = Callable[[int], float]


@dataclass(frozen=True)
class Constant:
    """The learning rate as given, at every step."""

    def __call__(self, step: int) -> float:
        return 1.0


@dataclass(frozen=True)
class StepDecay:
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps."""

    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_int("step_size", self.step_size, 1)
        check_real("gamma", self.gamma, 0, low_open=True)

    def __call__(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


@dataclass(frozen=True)
class Cosine:
    """Linear warm-up from 0 over ``warmup_steps``, then a cosine from 1 down to
    ``min_factor`` at ``total_steps`` (and ``min_factor`` after it)."""

    total_steps: int
    warmup_steps: int = 0
    min_factor: float = 0.0

    def __post_init__(self) -> None:
        check_int("total_steps", self.total_steps, 1)
        if not is_integer(self.warmup_steps, 0, self.total_steps - 1):
            raise ValueError(f"warmup_steps: expected an integer in [0, total_steps="
                             f"{self.total_steps}), got {self.warmup_steps!r}")
        check_real("min_factor", self.min_factor, 0, 1, high_open=False)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = self.total_steps - self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi *
                                                                                progress))


SCHEDULES = {"constant": Constant, "step_decay": StepDecay, "cosine": Cosine}


class Optimizer:
    """Base class: learning rate, schedule, step count and per-parameter state buffers."""

    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0,
                 schedule: Schedule | None = None, *, decay_biases: bool = False,
                 lr_multipliers: Mapping[str, float] | None = None,
                 freeze: Sequence[str] = ()) -> None:
        self.lr = check_real("lr", lr, 0, low_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, 0)
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule: expected a callable step -> factor, got {schedule!r}")
        self.schedule = schedule or Constant()
        self.decay_biases = check_bool("decay_biases", decay_biases)
        self.lr_multipliers = param_options.check_lr_multipliers(lr_multipliers)
        self.freeze = param_options.check_freeze(freeze)
        self.steps = 0
        self._state: dict[str, Any] = {}  # state name -> flat buffer in the parameters' layout
        self._network: weakref.ref[Engine] | None = None  # the network this state belongs to
        # the backend the state lives on and its layout, set by step / load_state_dict
        self._ops: Backend | None = None
        self._layout: FlatLayout | None = None
        self._no_status: Array = None
        self._frozen: set[str] = set()  # the frozen parameters of the bound network
        # per segment of equal options: views of the parameters, gradients and each state
        # buffer, the learning-rate factor and whether it decays, and the view of the
        # network's rounded copy (set by _cut), and the options they were cut for
        self._segments: list[tuple[Array, Array, dict[str, Array], float, bool, Array]] = []
        self._code = FP32  # the bound network's precision code (FP32: no rounded copy)
        self._cut_for: Any = None

    def config(self) -> dict[str, Any]:
        """The optimiser's class and hyperparameters as plain data (for checkpoints)."""
        schedule = next((n for n, c in SCHEDULES.items() if type(self.schedule) is c), None)
        if schedule is None or not is_dataclass(self.schedule):
            raise TypeError(f"schedule: only {list(SCHEDULES)} can be saved, got "
                            f"{self.schedule!r}")
        return {"type": type(self).__name__, **self._hyperparameters(),
                "schedule": {"type": schedule, **asdict(self.schedule)}}

    def _hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "weight_decay": self.weight_decay,
                "decay_biases": self.decay_biases, "lr_multipliers": dict(self.lr_multipliers),
                "freeze": list(self.freeze)}

    def state_buffers(self) -> int:
        """How many flat buffers of state, each the size of the parameters, the optimiser
        keeps (allocated by its first step): SGD 1 (velocity, with or without momentum),
        Adam and AdamW 2 (m and v). For memory estimates (``gpuback.memory``)."""
        return len(self.state_names)

    def bound_to(self, net: Engine) -> bool:
        """Whether the optimiser's state belongs to ``net`` already (allocated by a step or
        ``load_state_dict`` on it), so that a further step allocates nothing."""
        return self._network is not None and self._network() is net

    def current_lr(self) -> float:
        """The learning rate the next ``step`` will use."""
        return self.lr * float(self.schedule(self.steps))

    def step(self, net: Engine, status: Array | None = None) -> None:
        """Update ``net``'s parameters from the gradients of its last ``loss_and_grads``.

        ``status``: the backend's int64 status pair of a training run (``gpuback.training``);
        while it records a non-finite step the update is skipped. Without it the update is
        always applied. The first step binds the optimiser to ``net``: its moments are
        ``net``'s, and stepping it on another network is an error (give each network its
        own optimiser; ``load_state_dict`` moves a saved state onto a network).
        One fused update per run of parameters with equal options (module docstring);
        frozen parameters are left alone.
        """
        self._bind(net)
        if self._options() != self._cut_for:  # changed since the last step
            self._cut(net)
        lr = self.current_lr()
        self.steps += 1
        status = self._no_status if status is None else status
        for param, grad, state, factor, decayed, rounded in self._segments:
            self._update(net.ops, param, grad, state, lr * factor,
                         self.weight_decay if decayed else 0.0, status, rounded, self._code)

    def check(self, net: Engine) -> None:
        """Raise ValueError if ``lr_multipliers`` or ``freeze`` names a group or parameter
        that ``net`` lacks (``fit`` checks this before its first step)."""
        self._plan_segments(net)

    def _options(self) -> tuple[Any, ...]:
        """What the segments depend on. ``lr`` and the value of ``weight_decay`` may change
        between steps (``gpuback.sklearn`` sets the decay per batch) without a new cut."""
        return (self.weight_decay == 0.0, self.decay_biases,
                tuple(sorted(self.lr_multipliers.items())), tuple(self.freeze))

    def _plan_segments(self, net: Engine) -> tuple[list[param_options.Segment], set[str]]:
        """``net``'s runs of parameters with equal options, and its frozen parameters."""
        frozen = param_options.frozen_parameters(net.plan, self.freeze)
        return param_options.segments(net.plan, net.layout, self.weight_decay,
                                      self.decay_biases, self.lr_multipliers, frozen), frozen

    def _cut(self, net: Engine) -> None:
        """The bound network's parameters, gradients and state buffers cut into the segments
        of the current options: the buffers themselves when one segment spans them all (one
        launch, as before the options existed), else views ``flat[lo:hi]``. The network's
        rounded copy is cut alike (frozen parameters: neither copy is written)."""
        segments, self._frozen = self._plan_segments(net)
        master, rounded, self._code = net.fused_parameters  # (no remake: kept in step)
        buffers = (master, net.flat_gradients, rounded)
        size = buffers[0].shape[0]
        whole = len(segments) == 1 and (segments[0].lo, segments[0].hi) == (0, size)
        self._segments = []
        for seg in segments:
            if whole:
                param, grad, copy = buffers
                state = dict(self._state)
            else:
                param, grad, copy = (b[seg.lo:seg.hi] for b in buffers)
                state = {s: b[seg.lo:seg.hi] for s, b in self._state.items()}
            self._segments.append((param, grad, state, seg.lr_factor, seg.decayed, copy))
        self._cut_for = self._options()

    def _bind(self, net: Engine) -> None:
        """Allocate the state buffers (zero) for ``net`` the first time it is stepped and
        cut them, with the parameters and gradients, into the segments of equal options;
        refuse any other network afterwards."""
        if self._network is not None:
            if self._network() is net:
                return
            raise ValueError(
                f"optimizer: this {type(self).__name__} holds the state of another network "
                f"({self.steps} steps); its moments would mix with this one's: give each "
                "network its own optimiser (load_state_dict moves a saved state onto one)")
        self.check(net)  # first: a bad name binds nothing
        ops, flat = net.ops, net.fused_parameters[0]
        self._network = weakref.ref(net)
        self._ops, self._layout = ops, net.layout
        self._state = {s: ops.zeros(flat.shape, flat.dtype) for s in self.state_names}
        self._no_status = ops.zeros((2,), np.int64)  # never set: updates always apply
        self._cut(net)

    def _bound_network(self) -> Engine:
        """The network the optimiser is bound to (ValueError if none, or if it is gone)."""
        net = None if self._network is None else self._network()
        if net is None:
            raise ValueError(f"net: this {type(self).__name__} is bound to no network yet; "
                             f"pass the network to load its state onto")
        return net

    def _update(self, ops: Backend, param: Array, grad: Array, state: dict[str, Array],
                lr: float, weight_decay: float, status: Array, rounded: Array,
                code: int) -> None:
        """One fused update of ``param`` (a segment of the flat buffer) on ``ops``."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Host (NumPy) copies of the state per parameter name (frozen parameters have
        none), with the step count: what a checkpoint stores."""
        if not self._state or self._ops is None or self._layout is None:
            return {"steps": self.steps, "buffers": {}}
        layout, ops = self._layout, self._ops
        per_buffer = {s: layout.unpack(ops.to_host(b)) for s, b in self._state.items()}
        return {"steps": self.steps,
                "buffers": {name: {s: per_buffer[s][name] for s in self.state_names}
                            for name in layout.offsets if name not in self._frozen}}

    def load_state_dict(self, state: dict[str, Any], net: Engine | None = None) -> None:
        """Restore ``state_dict()`` output onto ``net``'s backend (names and shapes are
        checked; parameters without saved state start from zero; the saved state of a
        parameter this optimiser freezes is dropped: frozen ones keep none). The optimiser
        is then bound to ``net`` (see ``step``). Without ``net``: onto the network it is
        bound to, as ``LossScaler.load_state_dict(state)`` restores its network's scale."""
        if net is None:
            net = self._bound_network()
        ops, layout = net.ops, net.layout
        buffers = state.get("buffers", {})
        for name, named in buffers.items():
            if name not in layout.shapes:
                raise ValueError(f"state: unknown parameter {name!r}")
            if set(named) != set(self.state_names):
                raise ValueError(f"state[{name!r}]: expected buffers {list(self.state_names)}, "
                                 f"got {sorted(named)}")
            for s, value in named.items():
                if tuple(np.shape(value)) != layout.shapes[name]:
                    raise ValueError(f"state[{name!r}][{s!r}]: expected shape "
                                     f"{layout.shapes[name]}, got {np.shape(value)}")
        self.steps = int(state.get("steps", 0))
        self._network = None
        self._bind(net)
        for s, flat in self._state.items():
            packed = layout.pack({name: np.asarray(named[s]) for name, named in buffers.items()
                                  if name not in self._frozen}, flat.dtype)
            ops.copy_into(flat, packed)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (optionally Nesterov) and L2 weight decay:
    g = grad + wd w;  v = momentum v + g;  w -= lr (g + momentum v if nesterov else v).

    ``wd`` is ``weight_decay`` on the weights, 0 on the biases unless ``decay_biases``;
    ``lr`` is scaled by the group's ``lr_multipliers`` factor; ``freeze``: parameters left
    alone (see the module docstring)."""

    state_names = ("velocity",)

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, schedule: Schedule | None = None, *,
                 decay_biases: bool = False, lr_multipliers: Mapping[str, float] | None = None,
                 freeze: Sequence[str] = ()) -> None:
        super().__init__(lr, weight_decay, schedule, decay_biases=decay_biases,
                         lr_multipliers=lr_multipliers, freeze=freeze)
        self.momentum = check_real("momentum", momentum, 0, 1)
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov: needs momentum > 0")
        self.nesterov = bool(nesterov)

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "momentum": self.momentum,
                "nesterov": self.nesterov}

    def set_lr_keeping_steps(self, lr: float) -> None:
        """Set the learning rate to ``lr`` and scale the velocity by the old rate over the
        new one, so that ``lr v``, the step the velocity carries, is kept: the next update
        is momentum times the last step less ``lr`` times the new gradient, as in SGD whose
        velocity holds steps rather than gradients (scikit-learn's MLP, Keras). Setting
        ``lr`` alone keeps the velocity, which the new rate then scales whole (PyTorch's
        form). Before the first step there is no velocity to scale."""
        lr = check_real("lr", lr, 0, low_open=True)
        velocity = self._state.get("velocity")
        if velocity is not None and lr != self.lr:
            velocity *= self.lr / lr  # a backend array: scaled where it lives
        self.lr = lr

    def _update(self, ops: Backend, param: Array, grad: Array, state: dict[str, Array],
                lr: float, weight_decay: float, status: Array, rounded: Array,
                code: int) -> None:
        ops.sgd_update(param, grad, state["velocity"], lr, self.momentum, self.nesterov,
                       weight_decay, status, rounded, code)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with L2 weight decay added to the gradient (on the weights;
    the biases too with ``decay_biases``); ``lr_multipliers`` and ``freeze`` as in the
    module docstring."""

    state_names = ("m", "v")
    decoupled = False

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 schedule: Schedule | None = None, *, decay_biases: bool = False,
                 lr_multipliers: Mapping[str, float] | None = None,
                 freeze: Sequence[str] = ()) -> None:
        super().__init__(lr, weight_decay, schedule, decay_biases=decay_biases,
                         lr_multipliers=lr_multipliers, freeze=freeze)
        if len(betas) != 2 or not all(is_real(b) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = check_real("eps", eps, 0, low_open=True)

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "betas": list(self.betas), "eps": self.eps}

    def _update(self, ops: Backend, param: Array, grad: Array, state: dict[str, Array],
                lr: float, weight_decay: float, status: Array, rounded: Array,
                code: int) -> None:
        ops.adam_update(param, grad, state["m"], state["v"], lr, self.betas[0], self.betas[1],
                        self.eps, weight_decay, self.decoupled, self.steps, status, rounded,
                        code)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): w -= lr wd w, then the
    Adam step on the plain gradient. The decay applies to the weights (the biases too with
    ``decay_biases``)."""

    decoupled = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01,
                 schedule: Schedule | None = None, *, decay_biases: bool = False,
                 lr_multipliers: Mapping[str, float] | None = None,
                 freeze: Sequence[str] = ()) -> None:
        super().__init__(lr, betas, eps, weight_decay, schedule, decay_biases=decay_biases,
                         lr_multipliers=lr_multipliers, freeze=freeze)


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


def from_config(config: dict[str, Any]) -> Optimizer:
    """An optimiser built from ``Optimizer.config()`` output.

    A config without ``decay_biases`` was saved before the option existed, when weight
    decay applied to every parameter: it is rebuilt with ``decay_biases=True``, so that a
    run resumed from such a checkpoint goes on as it began."""
    config = dict(config)
    config.setdefault("decay_biases", True)
    kind = config.pop("type", None)
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer type: expected one of {list(OPTIMIZERS)}, got {kind!r}")
    schedule = dict(config.pop("schedule", {"type": "constant"}))
    schedule_kind = schedule.pop("type", None)
    if schedule_kind not in SCHEDULES:
        raise ValueError(f"schedule type: expected one of {list(SCHEDULES)}, got "
                         f"{schedule_kind!r}")
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    optimizer: Optimizer = OPTIMIZERS[kind](**config, schedule=SCHEDULES[schedule_kind](**schedule))
    return optimizer
