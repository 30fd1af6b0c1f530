"""``Network``: the engine (``gpuback.core.engine``) with training, prediction and
checkpoints: the class users meet."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .backends import AUTO
from .checkpoint import files as checkpoint
from .core.engine import Engine
from .core.loss_scale import LossScaler
from .training import loop as training


class Network(Engine):
    """A feed-forward network of unit groups wired by any acyclic set of blocks.

    ``Network(spec, backend="auto", dtype="float64", seed=0)`` validates and
    compiles ``spec`` (see ``gpuback.core.spec``), and draws reproducible initial weights
    from ``seed`` (``gpuback.core.init``). Users pass and receive batch-major
    ``(batch, features)`` NumPy arrays; the engine works feature-major inside.

    ``backend``: "auto" (the default: cuda on a usable GPU, else cpu, else numpy), "numpy"
    (the reference), "cpu" (Numba kernels and BLAS shared over the CPU cores) or "cuda"
    (Numba kernels on CuPy memory; NumPy or CuPy inputs).
    ``deterministic``: make the sparse backward bitwise reproducible (the cuda
    backend then gathers over a CSC index instead of its atomic scatter-add).
    ``precision``: "fp32" (the default: everything in ``dtype``), or mixed precision with a
    float32 master copy (``dtype="float32"``): "tf32", "bf16" or "fp16". Every dense and
    sparse product then reads its operands rounded to that precision (nearest, ties to
    even: the weights from a rounded copy of the master) and accumulates in float32; the
    activations z of the hidden groups and every delta are stored rounded to it; the output
    group's pre-activations and outputs, the loss, the bias and weight gradients and the
    optimiser update stay float32 (``gpuback.precision``). The rounded copy is cast from the
    master once per step, not per pass: the fused optimiser update (``gpuback.optim``) writes
    the master and its rounded copy in one launch, and a forward pass remakes the copy only
    after the master may have been written from outside (``set_parameters``, ``load``, or
    the buffer handed out by ``flat_parameters``).
    """

    # --- training (gpuback.training) -------------------------------------------------------

    def fit(self, X: Any, T: Any, epochs: int = 10, batch_size: int = 32,
            optimizer: Any = None, validation: tuple[Any, Any] | None = None,
            shuffle: bool = True, seed: int = 0, early_stopping: int | None = None,
            checkpoint: str | None = None, progress: bool = True, tol: float = 1e-4,
            n_iter_no_change: int | None = None, loss_scale: Any = None,
            comm: Any = None) -> dict[str, list]:
        """Train by mini-batch gradient descent; return the per-epoch history.

        ``optimizer``: a ``gpuback.optim`` optimiser (default ``Adam()``), bound to this
        network by its first step. ``validation``: ``(X_val, T_val)``, evaluated after
        every epoch. ``shuffle``/``seed``: the batch order, reproducible from the seed.
        ``early_stopping``: stop after that many epochs without a lower validation loss;
        the network then goes back to the best epoch, whole: its weights, its
        ``epochs_trained``, the optimiser's state and, with ``checkpoint``, the directory
        on disk (rewritten), so the model returned, the model on disk and a resumed run
        all start from the same epoch. ``checkpoint``: a directory written (with the
        optimiser) after every epoch; a run that diverges leaves the last good one.
        ``progress``: a tqdm bar on a terminal.
        ``n_iter_no_change``, ``tol``: stop on a plateau of the training loss, as
        scikit-learn's MLP does (off by default): once more than ``n_iter_no_change``
        epochs in a row have a mean training loss above this call's best less ``tol``;
        unlike early stopping, the network keeps its last epoch's parameters.
        History keys: ``loss``, ``accuracy`` (None entries for sum of squares),
        ``samples_per_second``, and with validation ``val_loss``, ``val_accuracy``: one
        entry per epoch run (early stopping included).
        Raises ``gpuback.TrainingDivergedError`` when training diverges: a step whose loss
        or gradient is NaN or infinite (its update is skipped), or an epoch whose mean
        training loss is NaN, infinite or more than ``gpuback.training.DIVERGENCE_FACTOR``
        (10) times this call's reference: for the first epoch of an untrained network, the
        loss of its first batch, before any update; for later epochs, the first epoch's
        mean loss of this call. The error's ``epoch`` (counted as ``epochs_trained``
        counts), ``step``, ``loss`` and ``reference`` say which. The diverged epoch is
        neither counted nor checkpointed, so ``checkpoint`` holds the last good epoch.
        ``loss_scale``: dynamic loss scaling (``gpuback.loss_scale``): None (the default)
        scales for ``precision="fp16"`` only, False never, True or an initial scale (a
        number, or a ``LossScale``) always; see ``gpuback.training.fit``.
        ``comm``: the world of a data-parallel run (``gpuback.distributed``); None, the
        default, is ``distributed.world()``: under ``mpiexec -n N`` the N ranks train
        data-parallel, ``batch_size`` the global batch (see ``gpuback.training.fit``).
        Raises ``gpuback.memory.InsufficientMemoryError`` before the first step when the
        optimiser's state and the workspace cannot fit in the backend's free memory.
        """
        return training.fit(self, X, T, epochs, batch_size, optimizer, validation, shuffle,
                            seed, early_stopping, checkpoint, progress, tol=tol,
                            n_iter_no_change=n_iter_no_change, loss_scale=loss_scale,
                            comm=comm)

    def save(self, path: str | os.PathLike, optimizer: Any = None,
             metadata: dict[str, Any] | None = None) -> None:
        """Save to the checkpoint directory ``path``, with ``optimizer``'s state and the
        JSON object ``metadata`` (``gpuback.checkpoint.read(path).metadata``): a new
        version switched in atomically, so a crash at any point leaves the previous
        checkpoint or this one, whole (see ``gpuback.checkpoint``)."""
        checkpoint.save(self, path, optimizer, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = AUTO,
             deterministic: bool = False) -> Network:
        """A network saved with ``save``, on ``backend`` (any: a checkpoint does not depend
        on the backend that wrote it), ``deterministic`` as in ``Network``;
        ``gpuback.checkpoint.load_optimizer`` restores the optimiser saved beside it."""
        saved = checkpoint.read(path)
        net = cls(saved.spec, backend=backend, dtype=saved.dtype, deterministic=deterministic,
                  precision=saved.precision)
        net.set_parameters(saved.weights)
        net.epochs_trained = saved.epochs_trained
        if saved.loss_scale is not None:
            net.loss_scaler = LossScaler.from_state(net.ops, saved.loss_scale, net.dtype)
        return net

    def predict(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Outputs for every sample of ``X`` (batch-major), in batches of ``batch_size``."""
        return training.predict(self, X, batch_size)

    def evaluate(self, X: Any, T: Any, batch_size: int = 1024) -> dict[str, float | None]:
        """``{"loss": mean loss, "accuracy": fraction correct or None}`` over ``X``, ``T``."""
        return training.evaluate(self, X, T, batch_size)

