"""``Network``: a validated spec, its parameters on a backend, forward and backprop."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import checkpoint, propagation, training
from .backends import get_backend
from .checks import check_inputs, check_parameters, check_targets
from .flat import FlatLayout
from .init import initial_parameters
from .plan import compile_plan
from .spec import validate_spec
from .workspace import Arena, Workspace

DTYPES = ("float32", "float64")


class Network:
    """A feed-forward network of unit groups wired by any acyclic set of blocks.

    ``Network(spec, backend="numpy", dtype="float64", seed=0)`` validates and
    compiles ``spec`` (see ``gpuback.spec``), and draws reproducible initial weights
    from ``seed`` (``gpuback.init``). Users pass and receive batch-major
    ``(batch, features)`` NumPy arrays; the engine works feature-major inside.

    ``backend``: "numpy" (the reference), "cpu" (Numba kernels and BLAS shared over the
    CPU cores), "cuda" (Numba kernels on CuPy memory; NumPy or CuPy inputs), or "auto"
    (cuda on a usable GPU, else cpu, else numpy).
    ``deterministic``: make the sparse backward bitwise reproducible (the cuda
    backend then gathers over a CSC index instead of its atomic scatter-add).
    """

    def __init__(self, spec: Mapping[str, Any], backend: str = "numpy", dtype: str = "float64",
                 seed: int = 0, deterministic: bool = False) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed: expected a non-negative integer, got {seed!r}")
        if seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed}")
        self._ops = get_backend(backend)
        self._plan = compile_plan(validate_spec(spec))
        self._dtype = _float_dtype(dtype)
        self._shapes = self._plan.parameter_shapes()
        if not isinstance(deterministic, bool):
            raise TypeError(f"deterministic: expected True or False, got {deterministic!r}")
        self._indices = {b.name: self._ops.prepare_index(b.index, deterministic)
                         for b in self._plan.blocks if b.kind == "sparse"}
        # one flat buffer each for parameters and gradients; the dicts hold views (gpuback.flat)
        self._layout = FlatLayout.of(self._shapes)
        initial = self._layout.pack(initial_parameters(self._plan, int(seed)), self._dtype)
        self._flat_params = self._ops.from_host(initial, self._dtype)
        self._flat_grads = self._ops.zeros((self._layout.size,), self._dtype)
        self._params = self._layout.views(self._flat_params)
        self._grads = self._layout.views(self._flat_grads)
        self.epochs_trained = 0  # counted by fit, saved in checkpoints (resumes shuffling)
        self._arena = Arena(self._plan, self._ops, self._dtype)
        self._workspace: Workspace | None = None  # the one the last call used

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
        return self._dtype.name

    def __repr__(self) -> str:
        sizes = ", ".join(f"{g}={self._plan.groups[g].size}" for g in self._plan.order)
        return f"Network({sizes}; loss={self._plan.loss!r}, backend={self.backend!r}, " \
               f"dtype={self.dtype!r})"

    # --- parameters -----------------------------------------------------------------------

    def parameters(self) -> dict[str, np.ndarray]:
        """NumPy copies of every parameter: ``"src->dst"`` -> weights, group name -> bias."""
        return self._layout.unpack(self._ops.to_host(self._flat_params))

    def set_parameters(self, params: Mapping[str, Any]) -> None:
        """Replace some or all parameters; names, shapes and values are checked first."""
        checked = check_parameters(params, self._shapes)
        for key, value in checked.items():
            self._ops.copy_into(self._params[key], value)

    # --- computation ----------------------------------------------------------------------

    def forward(self, X: Any) -> np.ndarray:
        """Network outputs y (after the output activation) for inputs ``X`` (batch, n_in)."""
        ws = self._load_inputs(X)
        propagation.forward(self._ops, self._plan, self._params, self._indices, ws)
        return self._ops.to_host(ws.z[self._plan.output]).T.copy()

    def loss_and_grads(self, X: Any, T: Any,
                       as_device: bool = False) -> tuple[float, dict[str, Any]]:
        """Mean loss over the batch and its gradient for every parameter, by backprop.

        ``T`` is ``(batch, n_out)``, or ``(batch,)`` integer class labels for
        cross-entropy. The gradient dict has the keys of ``parameters()``: NumPy
        copies, or with ``as_device=True`` the backend's own gradient buffers (CuPy
        arrays on the cuda backend, views of one flat buffer), with no copy; those are
        overwritten by the next call, so use them (an optimiser step, say) before
        calling again. The loss is read back to the host: one wait on a GPU.
        """
        ws = self._load_inputs(X)
        targets = self._load_targets(T, ws)
        self._forward_backward(ws, targets)
        loss = propagation.mean_loss(self._ops, ws)
        if as_device:
            return loss, dict(self._grads)
        return loss, self._layout.unpack(self._ops.to_host(self._flat_grads))

    def _forward_backward(self, ws: Workspace, targets: Any) -> None:
        """Forward and backprop on a loaded workspace; nothing is read back."""
        propagation.forward(self._ops, self._plan, self._params, self._indices, ws)
        propagation.backward(self._ops, self._plan, self._params, self._indices, ws, targets,
                             self._grads)

    # --- training (gpuback.training) -------------------------------------------------------

    def fit(self, X: Any, T: Any, epochs: int = 10, batch_size: int = 32,
            optimizer: Any = None, validation: tuple[Any, Any] | None = None,
            shuffle: bool = True, seed: int = 0, early_stopping: int | None = None,
            checkpoint: str | None = None, progress: bool = True) -> dict[str, list]:
        """Train by mini-batch gradient descent; return the per-epoch history.

        ``optimizer``: a ``gpuback.optim`` optimiser (default ``Adam()``).
        ``validation``: ``(X_val, T_val)``, evaluated after every epoch.
        ``shuffle``/``seed``: the batch order, reproducible from the seed.
        ``early_stopping``: stop after that many epochs without a lower validation
        loss, keeping the best epoch's weights. ``checkpoint``: a directory written
        (with the optimiser) after every epoch; a run that diverges leaves the last
        good one. ``progress``: a tqdm bar on a terminal.
        History keys: ``loss``, ``accuracy`` (None entries for sum of squares),
        ``samples_per_second``, and with validation ``val_loss``, ``val_accuracy``.
        Raises ``gpuback.TrainingDivergedError`` on a NaN or infinite loss or gradient.
        """
        return training.fit(self, X, T, epochs, batch_size, optimizer, validation, shuffle,
                            seed, early_stopping, checkpoint, progress)

    def save(self, path: str, optimizer: Any = None) -> None:
        """Save to the directory ``path`` (see ``gpuback.checkpoint``), atomically."""
        checkpoint.save(self, path, optimizer)

    @classmethod
    def load(cls, path: str, backend: str = "numpy") -> Network:
        """A network saved with ``save``; ``gpuback.checkpoint.load_optimizer`` restores the
        optimiser saved beside it."""
        return checkpoint.load(path, backend)

    def predict(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Outputs for every sample of ``X`` (batch-major), in batches of ``batch_size``."""
        return training.predict(self, X, batch_size)

    def evaluate(self, X: Any, T: Any, batch_size: int = 1024) -> dict[str, float | None]:
        """``{"loss": mean loss, "accuracy": fraction correct or None}`` over ``X``, ``T``."""
        return training.evaluate(self, X, T, batch_size)

    def _optimizer_view(self) -> tuple[Any, Any, Any, FlatLayout]:
        """The backend, the flat parameter and gradient buffers and their layout, for
        ``gpuback.optim``."""
        return self._ops, self._flat_params, self._flat_grads, self._layout

    def _loss(self, X: Any, T: Any) -> float:
        """The mean loss alone: a forward pass, no backward (for finite differences)."""
        ws = self._load_inputs(X)
        targets = self._load_targets(T, ws)
        propagation.forward(self._ops, self._plan, self._params, self._indices, ws)
        propagation.loss_and_output_delta(self._ops, self._plan, ws, targets)
        return propagation.mean_loss(self._ops, ws)

    def _workspace_for(self, batch: int) -> Workspace:
        """The workspace for ``batch`` samples (views of the arena), now the current one."""
        self._workspace = self._arena.workspace(batch)
        return self._workspace

    def _load_inputs(self, X: Any) -> Workspace:
        X = check_inputs(X, self._plan.n_in)
        ws = self._workspace_for(X.shape[0])
        self._ops.copy_into(ws.z[self._plan.input], X.T)
        return ws

    def _load_targets(self, T: Any, ws: Workspace) -> Any:
        T = check_targets(T, self._plan.loss, self._plan.n_out, ws.batch)
        if T.ndim == 1:
            self._ops.copy_into(ws.labels, T)
            return ws.labels
        self._ops.copy_into(ws.targets, T.T)
        return ws.targets


def _float_dtype(dtype: Any) -> np.dtype:
    """``dtype`` ("float32", "float64", or a NumPy spelling of them) as a NumPy dtype."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if dtype is None or resolved is None or resolved.name not in DTYPES:
        raise ValueError(f"dtype: expected one of {list(DTYPES)}, got {dtype!r}")
    return resolved
