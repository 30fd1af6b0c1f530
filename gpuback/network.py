"""``Network``: the engine (``gpuback.core.engine``) with training, prediction and
checkpoints: the class users meet."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .backends import AUTO
from .checkpoint import files as checkpoint
from .core.engine import Engine
from .core.loss_scale import LossScaler
from .distributed.mpi import SingleProcess
from .optim.optimizers import Optimizer
from .training import evaluation, loop
from .training.callbacks import Callback
from .training.loop import Seed
from .training.stopping import DIVERGENCE_FACTOR


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
            optimizer: Optimizer | None = None, validation: tuple[Any, Any] | None = None,
            shuffle: bool = True, seed: Seed = 0, early_stopping: int | None = None,
            checkpoint: str | None = None, progress: bool = True, tol: float = 1e-4,
            n_iter_no_change: int | None = None, loss_scale: Any = None,
            comm: SingleProcess | None = None, *,
            on_epoch_end: Callable[[int], None] | None = None,
            history: dict[str, list[Any]] | None = None, callbacks: Iterable[Callback] = (),
            divergence_factor: float | None = DIVERGENCE_FACTOR,
            clip_grad_norm: float | None = None,
            sample_weight: Any = None) -> dict[str, list[Any]]:
        """Train by mini-batch gradient descent on the error E = sum_n E_n (Bishop 5.44):
        each step's gradient (5.53, by backpropagation 5.54-5.56) is that of the mean
        loss over its batch; return the per-epoch history.

        ``X``, ``T``: the inputs (samples, n_in) and the targets (class labels, or
        (samples, n_out)) as ``forward`` and ``loss`` take them. ``epochs``: how many
        epochs to run (this call's, added to ``epochs_trained``). ``batch_size``: samples
        a step (the last step of an epoch takes what is left).
        ``optimizer``: a ``gpuback.optim`` optimiser (default ``Adam()``), bound to this
        network by its first step. ``validation``: ``(X_val, T_val)``, evaluated after
        every epoch. ``shuffle``/``seed``: the batch order, reproducible from the seed: an
        integer draws each epoch's order from a generator of its own per (seed, epoch
        number), so a resumed run shuffles as an unbroken one; a
        ``numpy.random.RandomState`` shuffles the last epoch's order of this call by its
        next ``permutation`` every epoch (as scikit-learn's MLP draws it from its
        ``random_state``).
        ``early_stopping``: stop after that many epochs without a lower validation loss;
        the network then goes back to the best epoch, whole: its weights, its
        ``epochs_trained``, the optimiser's state and, with ``checkpoint``, the directory
        on disk (rewritten), so the model returned, the model on disk and a resumed run
        all start from the same epoch. ``checkpoint``: a directory written (with the
        optimiser) after every epoch; a run that diverges leaves the last good one.
        ``progress``: a tqdm bar on a terminal (``gpuback.training.progress``).
        ``n_iter_no_change``, ``tol``: stop on a plateau of the training loss, as
        scikit-learn's MLP does (off by default; ``gpuback.training.Plateau``): once more
        than ``n_iter_no_change`` epochs in a row have a mean training loss above this
        call's best less ``tol``; unlike early stopping, the network keeps its last
        epoch's parameters. On a flat loss it stops after ``n_iter_no_change + 2`` epochs.
        ``loss_scale``: dynamic loss scaling (``gpuback.loss_scale``): None (the default)
        scales an fp16 network's loss (going on with the scale it has from an earlier
        ``fit`` or its checkpoint, else from 2^16) and no other; False never, True (from
        2^16) or an initial scale (a positive number, or a ``LossScale``, which sets the
        growth interval too) always, restarting the scale. With scaling, a step whose
        unscaled gradients overflow is skipped (its optimiser op changes nothing; the
        optimiser's host step count, and so Adam's bias correction and the schedule, still
        advances, unlike PyTorch's GradScaler) and is not a divergence; the float32 master
        values are checked after every update instead.
        ``comm``: the world of a data-parallel run (``gpuback.distributed``); None, the
        default, is ``distributed.world()``, so a script started by ``mpiexec -n N`` trains
        data-parallel as it is, and a plain run as it always has. With N ranks every rank
        passes the same arguments and data (checked at the start: a difference raises
        ``ValueError`` on every rank, as does a bad argument or bad data on any one of
        them), ``batch_size`` is the global batch, each rank steps on its contiguous share
        of it (``gpuback.training.DataParallel``), the parameters start as rank 0's, every
        figure of the history and every decision (early stopping, plateau, divergence) is
        the job's, and rank 0 alone writes ``checkpoint`` and shows a progress bar;
        ``on_epoch_end`` and the callbacks are called on every rank.
        ``on_epoch_end``: a function called with ``epochs_trained`` after every epoch, once
        its checkpoint (if any) is written. ``history``: an empty dict that the per-epoch
        figures are written into as each epoch ends (and that is returned), so a caller
        keeps the figures of the epochs a run completed when it is interrupted (``gpuback
        train``'s ``history.jsonl``); a new dict by default.
        ``callbacks``: ``gpuback.training.Callback`` objects, called in order:
        ``on_epoch_begin(epoch, order)`` before every epoch, ``before_update(step, batch)``
        in every step, after its passes and before the
        optimiser's update, and ``on_epoch_end(epoch, figures)`` after every epoch
        (``gpuback.training.EpochFigures``), before early stopping's decision and the
        epoch's checkpoint; one returning True stops training after that epoch (see
        ``gpuback.training.callbacks``).
        ``divergence_factor``: the divergence rule's factor (default
        ``gpuback.training.DIVERGENCE_FACTOR``, 10); None switches that rule off (a
        non-finite step or loss still raises).
        ``clip_grad_norm``: clip each step's gradients by their global norm before the
        update, as ``torch.nn.utils.clip_grad_norm_`` does: multiplied by
        ``clip_grad_norm / (norm + 1e-6)`` when that is below 1 (``gpuback.training.clipping``;
        the norm of all the network's gradients together, on the backend, no host wait;
        under fp16 loss scaling the unscaled gradients). None (the default): no clipping.
        ``sample_weight``: each sample's weight in the loss, a 1-D array of ``len(X)``
        finite, non-negative numbers, not all zero (None, the default: all alike). Each
        step's loss is then the weighted mean over its batch, sum_n w_n E_n / sum_n w_n
        (as scikit-learn's and PyTorch's weighted means), and so are its gradient and the
        training loss of the history (the mean over the epoch of its batches' weighted
        means, by batch size); the validation figures are unweighted
        (``gpuback.training.data.SampleWeights``).
        History keys: ``loss``, ``accuracy`` (None entries for sum of squares and Poisson),
        ``samples_per_second``, and with validation ``val_loss``, ``val_accuracy``: one
        entry per epoch run (early stopping included).
        Raises ``gpuback.TrainingDivergedError`` when training diverges: a step whose loss
        or gradient is NaN or infinite (its update is skipped), an epoch whose mean
        training loss is NaN or infinite, an fp16 loss scale fallen below
        ``loss_scale.MIN_SCALE`` (2^-14) by the end of an epoch, or an epoch whose mean
        training loss is more than ``divergence_factor`` times this call's reference: for
        the first epoch of an untrained network, the loss of its first batch, before any
        update (one read back); for later epochs, the first epoch's mean loss of this call.
        The error's ``epoch`` (counted as ``epochs_trained`` counts), ``step``, ``what``,
        ``loss`` and ``reference`` say which. The diverged epoch is neither counted nor
        checkpointed, so ``checkpoint`` holds the last good epoch.
        Raises ``gpuback.memory.InsufficientMemoryError`` before the first step when the
        optimiser's state and the workspace cannot fit in the backend's free memory.
        """
        return loop.fit(self, X, T, epochs, batch_size, optimizer, validation, shuffle, seed,
                        early_stopping, checkpoint, progress, on_epoch_end, tol,
                        n_iter_no_change, history, loss_scale, comm, callbacks=callbacks,
                        divergence_factor=divergence_factor, clip_grad_norm=clip_grad_norm,
                        sample_weight=sample_weight)

    def save(self, path: str | os.PathLike[str], optimizer: Optimizer | None = None,
             metadata: dict[str, Any] | None = None) -> None:
        """Save to the checkpoint directory ``path``, with ``optimizer``'s state and the
        JSON object ``metadata`` (``gpuback.checkpoint.read(path).metadata``): a new
        version switched in atomically, so a crash at any point leaves the previous
        checkpoint or this one, whole (see ``gpuback.checkpoint``)."""
        checkpoint.save(self, path, optimizer, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike[str], backend: str = AUTO,
             deterministic: bool = False) -> Network:
        """A network saved with ``save``, on ``backend`` (any: a checkpoint does not depend
        on the backend that wrote it), ``deterministic`` as in ``Network``;
        ``gpuback.checkpoint.load_optimizer`` restores the optimiser saved beside it."""
        saved = checkpoint.read(path)
        net = cls(saved.spec, backend=backend, dtype=saved.dtype, deterministic=deterministic,
                  precision=saved.precision, seed=saved.seed)
        net.set_parameters(saved.weights)
        net.epochs_trained = saved.epochs_trained
        if saved.loss_scale is not None:
            net.loss_scaler = LossScaler.from_state(net.ops, saved.loss_scale, net.dtype)
        return net

    def predict(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Outputs for every sample of ``X`` (batch-major), in batches of ``batch_size``."""
        return evaluation.predict(self, X, batch_size)

    def evaluate(self, X: Any, T: Any, batch_size: int = 1024) -> dict[str, float | None]:
        """``{"loss": mean loss, "accuracy": fraction correct or None}`` over ``X``, ``T``."""
        return evaluation.evaluate(self, X, T, batch_size)

