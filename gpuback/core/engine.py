"""``Engine``: a validated spec compiled, its parameters on a backend, forward and backprop
(Bishop 5.48-5.56); ``gpuback.Network`` is the engine with training and checkpoints."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from ..backends import AUTO, get_backend
from ..backends.precision import check_precision
from ..backends.protocol import Array, Backend
from ..kernels.precision import CODES as PRECISION_CODES
from ..kernels.precision import FP32
from . import memory, propagation
from .checks import (
    FLOAT_DTYPES,
    check_bool,
    check_inputs,
    check_int,
    check_parameters,
    check_targets,
    is_integer,
    is_real,
)
from .dropout import DropoutDraw
from .init import unit_gains, weight_chunks
from .layout import FlatLayout
from .loss_scale import LossScaler
from .plan import Plan, compile_plan
from .spec import validate_spec
from .workspace import Arena, Workspace


@dataclass(frozen=True)
class Trace:
    """Every group's values for one batch, batch-major NumPy copies (``Network.trace``).

    ``a[g]``: pre-activations a (5.48) of every computed group; ``z[g]``: outputs z = h(a)
    (5.49) of every group, the input group's being X; ``h_prime[g]``: h'(a) of every
    hidden group; ``u[g]``: for each layer-normalised group, what its activation reads, u =
    gain * (a - mean) / sqrt(var + eps) + shift over its units (then z = h(u), and
    ``h_prime[g]`` is h'(u)); ``mask[g]``: in a training trace, for each group with dropout,
    its 0/1 mask (z = h(a) * mask / (1 - p)); with targets, ``delta[g]``: dE/da (5.54 for
    the output group, 5.56 for the hidden ones), E being the mean loss over the batch, and
    ``loss``: that mean.
    """

    a: dict[str, np.ndarray]
    z: dict[str, np.ndarray]
    h_prime: dict[str, np.ndarray]
    delta: dict[str, np.ndarray] | None
    loss: float | None
    u: dict[str, np.ndarray] = field(default_factory=dict)
    mask: dict[str, np.ndarray] = field(default_factory=dict)


class Engine:
    """A compiled network on a backend: its parameters, forward and backpropagation.

    The engine of ``gpuback.Network`` (which adds training, prediction and checkpoints):
    ``Engine(spec, backend, dtype, seed, deterministic, precision)`` validates and compiles
    ``spec``, allocates one flat buffer each for the parameters and the gradients and draws
    the initial weights; ``forward``, ``loss_and_grads``, ``loss`` and ``trace`` take and give
    batch-major NumPy arrays, and the engine's own doors (``ops``, ``plan``, ``layout``, the
    flat buffers, ``workspace``, ``run_forward``, ``run_loss``, ``run_backward``) are what the
    training loop, the optimisers and a loop of the user's own run on. See ``Network`` for
    the arguments.
    """

    def __init__(self, spec: Mapping[str, Any], backend: str = AUTO, dtype: str = "float64",
                 seed: int = 0, deterministic: bool = False, precision: str = "fp32") -> None:
        self.seed = check_int("seed", seed, 0)  # the initial weights' and the dropout masks'
        self._ops = get_backend(backend)
        self._plan = compile_plan(validate_spec(spec))
        self._dtype = _float_dtype(dtype)
        self._precision = check_precision(precision, self._dtype)
        self._precision_code = PRECISION_CODES[self._precision]
        self._shapes = self._plan.parameter_shapes()
        deterministic = check_bool("deterministic", deterministic)
        self._indices = {b.name: self._ops.prepare_index(b.index, deterministic)
                         for b in self._plan.blocks if b.index is not None}
        # one flat buffer each for parameters and gradients; the dicts hold views
        # (gpuback.core.layout)
        self._layout = FlatLayout.of(self._shapes)
        # refused in a line before anything is allocated when it cannot fit (gpuback.memory)
        memory.check_network(self._ops, self._plan, self._layout, self._dtype,
                             self._precision)
        self._flat_params = self._ops.zeros((self._layout.size,), self._dtype)
        # the initial weights, chunk by chunk cast into the buffer: no float64 copy of the
        # whole network (gpuback.core.init); biases and padding stay zero
        for name, start, values in weight_chunks(self._plan, self.seed):
            at = self._layout.offsets[name] + start
            self._ops.copy_into(self._flat_params[at:at + values.size], values)
        for name, values in unit_gains(self._plan).items():
            at = self._layout.offsets[name]
            self._ops.copy_into(self._flat_params[at:at + values.size], values)
        self._flat_grads = self._ops.zeros((self._layout.size,), self._dtype)
        self._params = self._layout.views(self._flat_params)
        self._grads = self._layout.views(self._flat_grads)
        # below fp32: the products read a copy of the parameters rounded to the precision,
        # kept in step with the master by the optimiser's fused update (fused_parameters)
        # and remade from the master by the next forward pass whenever the master may have
        # been written from outside (_rounded_stale: flat_parameters, set_parameters)
        self._flat_rounded = self._flat_params if self._precision_code == FP32 else \
            self._ops.zeros((self._layout.size,), self._dtype)
        self._rounded = self._layout.views(self._flat_rounded)
        self._rounded_stale = self._precision_code != FP32
        self.epochs_trained = 0  # counted by fit, saved in checkpoints (resumes shuffling)
        # fp16 dynamic loss scaling: set by the first fit that scales, kept between fits
        # and saved in checkpoints (gpuback.loss_scale)
        self.loss_scaler: LossScaler | None = None
        self._arena = Arena(self._plan, self._ops, self._dtype)

    # --- description ----------------------------------------------------------------------

    @property
    def spec(self) -> dict[str, Any]:
        """The validated, normalised spec (a copy; JSON round-trips)."""
        return copy.deepcopy(self._plan.spec)

    @property
    def backend(self) -> str:
        return self._ops.name

    @property
    def dtype(self) -> str:
        return str(self._dtype.name)

    @property
    def precision(self) -> str:
        """The precision of the products and the stored activations and deltas
        (``gpuback.precision``): "fp32", "tf32", "bf16" or "fp16"; ``dtype`` is the
        master copy's."""
        return self._precision

    def __repr__(self) -> str:
        sizes = ", ".join(f"{g}={self._plan.groups[g].size}" for g in self._plan.order)
        precision = "" if self._precision == "fp32" else f", precision={self._precision!r}"
        return f"{type(self).__name__}({sizes}; loss={self._plan.loss!r}, " \
               f"backend={self.backend!r}, dtype={self.dtype!r}{precision})"

    # --- parameters -----------------------------------------------------------------------

    def parameters(self) -> dict[str, np.ndarray]:
        """NumPy copies of every parameter: ``"src->dst"`` -> weights, group name -> bias."""
        return self._layout.unpack(self._ops.to_host(self._flat_params))

    def set_parameters(self, params: Mapping[str, Any]) -> None:
        """Replace some or all parameters; names, shapes and values are checked first."""
        checked = check_parameters(self._ops, params, self._shapes, self._dtype)
        for key, value in checked.items():
            self._ops.copy_into(self._params[key], value)
        self._master_written()

    # --- computation ----------------------------------------------------------------------

    @overload
    def forward(self, X: Any, outputs: None = None) -> np.ndarray: ...

    @overload
    def forward(self, X: Any, outputs: Sequence[str]) -> dict[str, np.ndarray]: ...

    def forward(self, X: Any, outputs: Sequence[str] | None = None
                ) -> np.ndarray | dict[str, np.ndarray]:
        """Network outputs y (after the output activation) for inputs ``X`` (batch, n_in).

        ``outputs``: group names; then a dict group -> that group's activations z = h(a)
        (5.49), a NumPy array (batch, group size): the input group's are ``X`` itself, the
        output group's the network outputs. One forward pass serves every group asked for.
        """
        groups = None if outputs is None else self._check_outputs(outputs)
        ws = self._load_inputs(X)
        self.run_forward(ws)
        if groups is None:
            return _batch_major(self._ops, ws.z[self._plan.output])
        return {g: _batch_major(self._ops, ws.z[g]) for g in groups}

    def _check_outputs(self, outputs: Any) -> list[str]:
        order = list(self._plan.order)
        if isinstance(outputs, str):
            raise TypeError(f"outputs: expected a sequence of group names, got the string "
                            f"{outputs!r} (write [{outputs!r}])")
        if not isinstance(outputs, Sequence):
            raise TypeError(f"outputs: expected a sequence of group names, got {outputs!r}")
        for g in outputs:
            if not isinstance(g, str) or g not in self._plan.groups:
                raise ValueError(f"outputs: unknown group {g!r}; expected some of {order}")
        return list(outputs)

    def loss_and_grads(self, X: Any, T: Any, as_device: bool = False, training: bool = False,
                       step: int = 0) -> tuple[float, dict[str, Any]]:
        """Mean loss over the batch and its gradient for every parameter, by backprop.

        ``T``: any form ``gpuback.core.checks.check_targets`` accepts: ``(batch, n_out)`` rows
        (a ``(batch,)`` vector for a single output), or for cross-entropy class labels as
        ``(batch,)`` or ``(batch, 1)`` integers or integral floats. The gradient dict has
        the keys of ``parameters()``: NumPy copies, or with ``as_device=True`` the
        backend's own gradient buffers (CuPy arrays on the cuda backend, views of one
        flat buffer), with no copy; those are
        overwritten by the next call, so use them (an optimiser step, say) before
        calling again. The loss is read back to the host: one wait on a GPU.
        ``training=True``: with the dropout masks that ``fit`` draws at its ``step`` (counted
        from 0 over the network's training) for a batch in the rows of ``X``; without it
        (the default) no dropout, as in ``forward``.
        """
        draw = self._draw(training, step)
        ws = self._load_inputs(X)
        targets = self._load_targets(T, ws)
        self.run_forward(ws, dropout=draw)
        self.run_backward(ws, targets, dropout=draw)
        loss = propagation.mean_loss(self._ops, ws)
        if as_device:
            return loss, dict(self._grads)
        return loss, self._layout.unpack(self._ops.to_host(self._flat_grads))

    def loss(self, X: Any, T: Any, nudge: tuple[str, int, float] | None = None) -> float:
        """The mean loss alone: a forward pass, no backward (for finite differences, 5.69).

        ``nudge = (group, unit, amount)`` adds ``amount`` to that unit's pre-activation a_j
        in every sample before its activation, so that dE/da_j can be measured by
        perturbing a_j itself (``gpuback.explain``).
        """
        ws = self._load_inputs(X)
        targets = self._load_targets(T, ws)
        if nudge is not None:
            self._check_nudge(nudge)
        self.run_forward(ws, nudge)
        self.run_loss(ws, targets)
        return propagation.mean_loss(self._ops, ws)

    def trace(self, X: Any, T: Any = None, training: bool = False, step: int = 0) -> Trace:
        """Every group's a, z and h'(a) for inputs ``X`` and, given targets ``T``, every
        group's delta and the mean loss: a look inside one pass, for diagnostics
        (``gpuback.explain``, finite-difference checks). It copies everything to the host;
        training never calls it. ``training``, ``step``: as for ``loss_and_grads``; a
        training trace also holds each dropout mask (``Trace.mask``).
        """
        plan, ops = self._plan, self._ops
        draw = self._draw(training, step)
        ws = self._load_inputs(X)
        targets = None if T is None else self._load_targets(T, ws)
        self.run_forward(ws, dropout=draw)
        delta = loss = None
        if targets is not None:
            self.run_backward(ws, targets, dropout=draw)
            loss = propagation.mean_loss(ops, ws)
            delta = {g: _batch_major(ops, ws.delta[g]) for g in plan.computed}
        h_prime = {}
        for g in plan.computed:
            if g == plan.output:
                continue
            # activation_delta turns an accumulator into h'(a) * acc (5.56): with acc = 1,
            # h'(a) itself, computed by the backend's own derivative
            ones = ops.from_host(np.ones(ws.a[g].shape), self._dtype)
            h = ws.h[g] if draw is not None and g in ws.h else ws.z[g]  # h(a), unmasked
            ops.activation_delta(plan.groups[g].activation,
                                 propagation.activation_input(plan, ws, g), h, ones,
                                 ops.zeros((plan.groups[g].size,), self._dtype))
            h_prime[g] = _batch_major(ops, ones)
        return Trace(a={g: _batch_major(ops, ws.a[g]) for g in plan.computed},
                     z={g: _batch_major(ops, ws.z[g]) for g in plan.order},
                     h_prime=h_prime, delta=delta, loss=loss,
                     u={g: _batch_major(ops, ws.u[g]) for g in ws.u},
                     mask={} if draw is None else self._masks(draw, ws.batch))

    def _draw(self, training: Any, step: Any) -> DropoutDraw | None:
        """The masks of a training pass at ``step`` (None without dropout or training)."""
        training = check_bool("training", training)
        step = check_int("step", step, 0)
        return self.dropout_draw(step) if training else None

    def dropout_draw(self, step: int, first_sample: int = 0) -> DropoutDraw | None:
        """The dropout masks of training step ``step`` for a pass whose first row is row
        ``first_sample`` of the step's global batch (``gpuback.core.dropout``); None for a
        network without dropout."""
        return DropoutDraw(self.seed, step, first_sample) if self._plan.dropped else None

    def _masks(self, draw: DropoutDraw, batch: int) -> dict[str, np.ndarray]:
        """Each dropout group's 0/1 mask for ``draw``, batch-major, drawn by the backend."""
        masks = {}
        for g in self._plan.dropped:
            ones = self._ops.from_host(np.ones((self._plan.groups[g].size, batch)),
                                       self._dtype)
            self._ops.dropout(ones, ones, self._plan.groups[g].dropout,
                              draw.key(self._plan, g), draw.first_sample)
            masks[g] = (_batch_major(self._ops, ones) != 0).astype(np.float64)
        return masks

    def _check_nudge(self, nudge: Any) -> None:
        plan = self._plan
        if not isinstance(nudge, tuple) or len(nudge) != 3:
            raise TypeError(f"nudge: expected (group, unit, amount), got {nudge!r}")
        group, unit, amount = nudge
        if group not in plan.computed:
            raise ValueError(f"nudge: expected a computed group, one of {list(plan.computed)}, "
                             f"got {group!r}")
        size = plan.groups[group].size
        if not is_integer(unit, 0, size - 1):
            raise ValueError(f"nudge: unit must be an integer in [0, {size}) for group "
                             f"{group!r}, got {unit!r}")
        if not is_real(amount):
            raise ValueError(f"nudge: amount must be a finite number, got {amount!r}")

    # --- the engine underneath, for training loops -----------------------------------------
    # ``gpuback.training`` and ``gpuback.optim`` are written against this, and so can a loop
    # of the user's own be: buffers stay on the backend and nothing is read back.

    @property
    def ops(self) -> Backend:
        """The backend module: the op set of ``gpuback.backends.protocol.Backend``."""
        return self._ops

    @property
    def plan(self) -> Plan:
        """The compiled plan (``gpuback.core.plan.Plan``): groups in topological order, blocks and
        their sparse indices, input, output and loss. Read it; do not change it."""
        return self._plan

    @property
    def layout(self) -> FlatLayout:
        """Where each parameter lives in the flat buffers (``gpuback.core.layout``)."""
        return self._layout

    @property
    def flat_parameters(self) -> Array:
        """The one backend buffer holding every parameter (in ``layout``); updated in place.

        Below fp32 the products read a rounded copy of it, which the next forward pass
        remakes from this buffer because it was handed out (it may be written): take the
        property again for every write, not a buffer kept from before a pass (a write
        through a kept buffer after a pass goes unseen by the passes until the property is
        taken again or ``set_parameters`` is called). Code that only reads the master every
        step reads it otherwise (``check_parameters_finite``), so that training does not
        remake the copy at every pass."""
        self._master_written()
        return self._flat_params

    @property
    def fused_parameters(self) -> tuple[Array, Array, int]:
        """``(master, rounded, code)``: the buffers the optimiser's fused update writes (in
        ``layout``): the master (``flat_parameters``' buffer), the copy the products read and
        its precision code (``gpuback.kernels.precision.CODES``). Below fp32 the copy is the
        master rounded to the precision; at fp32 it is the master itself, code FP32. A
        writer of the master through these must write the copy in the same op, as
        ``sgd_update`` / ``adam_update`` do (``gpuback.optim``): taking them does not mark
        the copy stale."""
        return self._flat_params, self._flat_rounded, self._precision_code

    def check_parameters_finite(self, status: Array, step: int) -> None:
        """``ops.check_finite`` on the master parameters (a read: the rounded copy stays
        as it is): a NaN or infinity sets ``status`` to ``(step, GRADIENT_NOT_FINITE)``."""
        self._ops.check_finite(self._flat_params, status, step)

    def _master_written(self) -> None:
        """The master may have been written outside the optimiser: below fp32 the next
        forward pass remakes the rounded copy from it."""
        if self._precision_code != FP32:
            self._rounded_stale = True

    @property
    def flat_gradients(self) -> Array:
        """The one backend buffer that every backward pass fills with the gradients (in
        ``layout``), overwritten by the next one."""
        return self._flat_grads

    def reserve(self, batch: int) -> None:
        """Allocate the buffers for batches of up to ``batch`` samples now, so that no
        later step allocates."""
        self._arena.reserve(batch)

    def workspace(self, batch: int) -> Workspace:
        """The buffers (``gpuback.core.workspace.Workspace``) for ``batch`` samples, views of
        memory reserved once; a pass runs on a workspace whose ``z[plan.input]`` holds the
        inputs (feature-major) and, for the loss, whose ``labels`` or ``targets`` hold the
        targets."""
        return self._arena.workspace(batch)

    def run_forward(self, ws: Workspace, nudge: tuple[str, int, float] | None = None,
                    dropout: DropoutDraw | None = None) -> None:
        """Forward propagation (5.48, 5.49) on a loaded workspace; nothing is read back.
        Below fp32 the products read the parameters rounded to the precision: the copy that
        the optimiser's fused update keeps in step, remade here from the master only when
        the master may have been written from outside since (``flat_parameters``).
        ``dropout``: the masks of a training pass (``dropout_draw``), None for none."""
        if self._rounded_stale:
            self._ops.copy_into(self._flat_rounded, self._flat_params)
            self._ops.round_to_precision(self._flat_rounded, self._precision_code)
            self._rounded_stale = False
        propagation.forward(self._ops, self._plan, self._rounded, self._indices, ws, nudge,
                            self._precision_code, dropout)

    def run_loss(self, ws: Workspace, targets: Array) -> None:
        """After ``run_forward``: per-sample losses, correct counts and output deltas (5.54)
        into the workspace."""
        propagation.loss_and_output_delta(self._ops, self._plan, ws, targets)

    def run_backward(self, ws: Workspace, targets: Array, loss_scale: Array | None = None,
                     on_group_done: Callable[[str], None] | None = None,
                     dropout: DropoutDraw | None = None,
                     sample_weights: Array | None = None) -> None:
        """After ``run_forward``: the loss and backpropagation (5.53-5.56); every gradient
        into ``flat_gradients``. ``targets`` is ``ws.labels`` or ``ws.targets``.
        ``loss_scale``: a ``gpuback.loss_scale.LossScaler``'s ``state`` (the gradients come
        out multiplied by its scale) or None. ``on_group_done(group)``: called as each
        group's gradients become final (``gpuback.core.propagation.backward``). ``dropout``:
        the masks the forward pass drew (the same draw), or None. ``sample_weights``: a
        backend (batch,) buffer of each sample's weight of the loss, or None."""
        propagation.backward(self._ops, self._plan, self._rounded, self._indices, ws, targets,
                             self._grads, self._precision_code, loss_scale, on_group_done,
                             dropout, sample_weights)

    def run_backpropagate(self, ws: Workspace, output_delta: str = "z",
                          input_delta: Array | None = None,
                          dropout: DropoutDraw | None = None) -> None:
        """After ``run_forward``: backpropagation from a gradient of the caller's own in
        ``ws.delta[plan.output]``, with no loss op (how ``gpuback.torch.Module`` runs the
        backward of a network inside a larger model). ``output_delta``: "z" when that buffer
        holds dE/dy of the outputs (an elementwise output activation: its derivative is
        applied first), "a" when it holds dE/da of the output activation's input. Every
        gradient goes into ``flat_gradients``; ``input_delta``, an (n_in, batch) buffer,
        receives dE/dx, or None for none (``gpuback.core.propagation.backpropagate``)."""
        if output_delta == "z" and self._plan.groups[self._plan.output].activation == \
                "softmax":
            raise ValueError("output_delta: 'z' needs an elementwise output activation; "
                             "for softmax pass dE/da (y * (g - sum(g * y)) per sample) with "
                             "output_delta='a'")
        propagation.backpropagate(self._ops, self._plan, self._rounded, self._indices, ws,
                                  self._grads, self._precision_code, dropout=dropout,
                                  output_delta=output_delta, input_delta=input_delta)

    @property
    def reserved_batch(self) -> int:
        """The largest batch the buffers reserved so far hold (0 before the first pass):
        a larger one allocates (``reserve``)."""
        return self._arena.capacity

    def load_batch(self, X: Any, T: Any = None) -> tuple[Workspace, Array | None]:
        """Check ``X`` (and ``T``) and load them into the workspace of their batch size, for
        callers that run the passes themselves (``run_forward``, ``run_loss``,
        ``run_backward``): the workspace, and the targets' buffer in it (None without T)."""
        ws = self._load_inputs(X)
        return ws, None if T is None else self._load_targets(T, ws)

    def _load_inputs(self, X: Any) -> Workspace:
        X = check_inputs(self._ops, X, self._plan.n_in, self._dtype)
        ws = self.workspace(X.shape[0])
        self._ops.copy_into(ws.z[self._plan.input], X.T)
        return ws

    def _load_targets(self, T: Any, ws: Workspace) -> Array:
        T = check_targets(self._ops, T, self._plan.loss, self._plan.n_out, ws.batch,
                          self._dtype)
        if T.ndim == 1:
            self._ops.copy_into(ws.labels, T)
            return ws.labels
        self._ops.copy_into(ws.targets, T.T)
        return ws.targets


def _batch_major(ops: Backend, array: Array) -> np.ndarray:
    """A host copy of the feature-major backend ``array`` (units, batch), as users get
    arrays: batch-major (batch, units), C-contiguous."""
    host: np.ndarray = ops.to_host(array).T.copy()
    return host


def _float_dtype(dtype: Any) -> np.dtype[Any]:
    """``dtype`` ("float32", "float64", or a NumPy spelling of them) as a NumPy dtype."""
    resolved: np.dtype[Any] | None
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if dtype is None or resolved is None or resolved.name not in FLOAT_DTYPES:
        raise ValueError(f"dtype: expected one of {list(FLOAT_DTYPES)}, got {dtype!r}")
    return resolved
