"""The op set, written down: the ``Backend`` protocol every backend module satisfies.

A backend is a module; ``mypy`` checks each one against this protocol (see the bottom
of ``gpuback/backends/__init__.py``), and ``tests/backends/test_registry.py`` checks that each
exports exactly these names. Orchestration (``gpuback.core.propagation``, ``gpuback.training``,
``gpuback.optim``) is written against the protocol alone.

Conventions. ``Array`` is the backend's own array type (``numpy.ndarray`` on the host
backends, a CuPy array on the cuda backend, a simulator device array under the Numba
simulator). Buffers are feature-major: an activation, pre-activation or delta buffer of
a group of ``U`` units for a batch of ``B`` samples is ``(U, B)``, C-contiguous, of the
network's float dtype ``F`` (float32 or float64). A dense block's weight ``W`` from a
group of ``J`` units to one of ``K`` is ``(K, J)``; a sparse block of ``E`` edges holds
its weights as ``(E,)`` and its index as returned by ``prepare_index``. Biases are
``(U,)``. Ops with ``accumulate`` overwrite their output when it is False and add to it
when it is True (the sum over consumers of Bishop eq. 5.56). Every op writes into
buffers it is given and returns nothing unless said; none reads a result back to the
host except ``to_host``, none waits for the device except ``to_host`` and ``wait_for``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from .status import BackendStatus

Array = Any  # numpy.ndarray, cupy.ndarray or a simulator device array: see the docstring


@dataclass(frozen=True)
class SparseIndex:
    """The index arrays of one sparse block, built by the plan (``gpuback.core.plan``) and
    handed to ``prepare_index``: int64 COO ``src``, ``dst`` (edge e joins unit ``src[e]`` to
    unit ``dst[e]``, its weight ``w[e]``); CSR by destination (``dst_ptr``, ``dst_edges``:
    the edges into each destination unit, in order) and CSC by source (``src_ptr``,
    ``src_edges``)."""

    src: np.ndarray
    dst: np.ndarray
    dst_ptr: np.ndarray
    dst_edges: np.ndarray
    src_ptr: np.ndarray
    src_edges: np.ndarray

    @classmethod
    def from_edges(cls, edges: Sequence[Any], n_src: int, n_dst: int) -> SparseIndex:
        """From ``[src, dst]``: two equal-length sequences (lists or arrays) of unit numbers."""
        src = np.asarray(edges[0], dtype=np.int64).reshape(-1)
        dst = np.asarray(edges[1], dtype=np.int64).reshape(-1)
        dst_edges = np.argsort(dst, kind="stable")
        src_edges = np.argsort(src, kind="stable")
        dst_ptr = np.concatenate([[0], np.cumsum(np.bincount(dst, minlength=n_dst))])
        src_ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n_src))])
        return cls(src, dst, dst_ptr.astype(np.int64), dst_edges.astype(np.int64),
                   src_ptr.astype(np.int64), src_edges.astype(np.int64))

    @property
    def n_edges(self) -> int:
        return int(self.src.size)


class Backend(Protocol):
    """The op set of ``gpuback.backends.OP_SET``, with the shapes and dtypes of every
    argument. ``numpy_backend`` is the readable reference implementation of each op."""

    name: str  # the registry's name for the backend: "numpy", "cpu", "cuda"
    device: str  # where its arrays live, as PyTorch names it: "cpu" or "cuda"

    def status(self) -> BackendStatus:
        """Whether the backend can run here (``usable``), whether it runs on the Numba CUDA
        simulator (``simulated``), and a sentence saying why (``reason``)."""

    def describe(self) -> dict[str, Any]:
        """Plain data about what the backend runs on (cores, BLAS, GPU, versions)."""

    def allocation_hook(self) -> Any:
        """A context manager that reports each device allocation to ``gpuback.profile``
        while entered, or None where allocations need no hook (host memory; the
        simulator's arrays count themselves)."""

    # --- values handed in by users -------------------------------------------------------

    def is_device_array(self, value: Any) -> bool:
        """Whether ``value`` lives in GPU memory (CuPy, ``__cuda_array_interface__``, or a
        simulator device array), whichever backend is asked."""

    def as_array(self, value: Any) -> Array:
        """``value`` as an array to validate where it lives: a device array stays on the
        device (no copy), anything else becomes a NumPy array."""

    def array_namespace(self, array: Array) -> ModuleType:
        """The array module for ``array`` (``numpy`` or ``cupy``), to compute checks with."""

    # --- buffers -----------------------------------------------------------------------

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Array:
        """A new zero-filled C-contiguous array (an allocation: for setup, never a step)."""

    def from_host(self, array: Any, dtype: Any) -> Array:
        """A new C-contiguous backend copy of ``array`` (host or device) in ``dtype``."""

    def asarray(self, array: Any, dtype: Any) -> Array:
        """``array`` as a C-contiguous backend array of ``dtype``: itself when it already
        is one (no copy), else a copy."""

    def to_host(self, array: Array) -> np.ndarray:
        """A host NumPy copy of a backend array (on a GPU: a copy and a wait)."""

    def copy_into(self, dst: Array, src: Any) -> None:
        """``dst[...] = src`` with casting; ``src`` a host or device array of ``dst``'s
        shape (or broadcastable to it)."""

    def fill_zero(self, array: Array) -> None:
        """Every entry of a C-contiguous backend array set to zero, in place."""

    def prepare_index(self, index: SparseIndex, deterministic: bool) -> Any:
        """A sparse block's index (``gpuback.core.plan.SparseIndex``: int64 COO ``src``,
        ``dst`` of ``E`` edges and their CSR/CSC orders) in the form this backend's sparse
        ops take; ``deterministic`` asks for a bitwise reproducible ``sparse_backward``."""

    def memory_budget(self) -> float:
        """Bytes a data set may take on the backend before training streams it instead."""

    def free_memory(self) -> int:
        """Bytes the backend can still allocate where its arrays live: host memory for the
        host backends and under the Numba simulator (``host_memory.free_bytes``), the GPU's
        free memory (plus what CuPy's pool holds unused) on a device. ``gpuback.memory``
        compares a network's and a training run's needs with it before allocating."""

    def take_batch(self, source: Array, order: Array, start: int, out: Array) -> None:
        """One mini-batch gathered on the backend: ``source`` is batch-major
        ``(N, features)`` (or ``(N,)`` int64 labels), ``order`` ``(N,)`` int64; with
        ``B = out.shape[-1]``, ``out[:, i] = source[order[start + i], :]`` into a
        feature-major ``(features, B)`` ``out``, cast to its dtype (``out[i] = ...`` for
        labels)."""

    def device_collectives(self, comm: Any) -> Any:
        """The backend's own collectives for its arrays over the ranks of the MPI
        communicator ``comm`` (mpi4py), or None where MPI on host buffers serves (the host
        backends; the simulator). Else an object with ``sum(buffer)``, ``max(buffer)``,
        ``broadcast(buffer, root)``, in place and enqueued in the step's order, and
        ``start_sum(buffer)``, whose result's ``wait()`` orders what follows after it (the
        cuda backend's NCCL: ``gpuback.backends.cuda.nccl``)."""

    # --- the streaming of data sets too large for the backend --------------------------

    def pinned_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A host array that copies to the backend asynchronously (page-locked on a GPU)."""

    def record_event(self) -> Any:
        """A marker of the work queued on the backend so far (None on the host)."""

    def wait_for(self, event: Any) -> None:
        """Block until the marker ``event`` of ``record_event`` has passed."""

    # --- forward (5.48, 5.49) -----------------------------------------------------------

    def dense_forward(self, w: Array, z_src: Array, a_dst: Array, accumulate: bool) -> None:
        """``a_dst (+)= W @ z_src``: ``w`` (K, J), ``z_src`` (J, B), ``a_dst`` (K, B)."""

    def sparse_forward(self, w: Array, index: Any, z_src: Array, a_dst: Array,
                       accumulate: bool) -> None:
        """``a_dst[k] (+)= sum over edges e into k of w[e] z_src[src_e]``: ``w`` (E,)."""

    def add_into(self, src: Array, dst: Array, accumulate: bool) -> None:
        """``dst (+)= src``, both (U, B): an identity connection, forward (z_src into a_dst,
        5.48 with W = I) and backward (delta_dst into acc_src, 5.56 with W = I)."""

    def bias_activation(self, activation: str, b: Array, a: Array, z: Array) -> None:
        """``a += b[:, None]`` in place (5.48), then ``z = h(a)`` (5.49); ``a``, ``z``
        (U, B), ``b`` (U,); ``activation`` a name from ``gpuback.core.spec.ACTIVATIONS``."""

    def layer_norm(self, b: Array, gain: Array, a: Array, xhat: Array, rstd: Array,
                   u: Array) -> None:
        """Layer normalisation of a group: ``a += b[:, None]`` in place (5.48); then per
        sample n (a column), over the group's units, the mean mu_n and ``rstd[n]`` =
        1 / sqrt(var_n + eps) (variance over the units, divided by their number; eps
        ``gpuback.core.spec.NORM_EPS``), ``xhat = (a - mu) * rstd`` and ``u = gain[:, None] *
        xhat``. ``a``, ``xhat``, ``u`` (U, B); ``b``, ``gain`` (U,); ``rstd`` (B,). The
        shift is added by the ``bias_activation`` that follows (u + shift, then h)."""

    def dropout(self, x: Array, out: Array, p: float, key: int, first_sample: int) -> None:
        """``out = x * m / (1 - p)``, both (U, B) (``out`` may be ``x``): m[k, n] = 1 where
        ``mix32((first_sample + n) ^ mix32(k ^ key)) >= round(p * 2^32)``, else 0
        (``gpuback.kernels.mask_hash``; ``key`` from its ``dropout_key``): the same mask on
        every backend, bit for bit."""

    def bias_activation_dropout(self, activation: str, b: Array, a: Array, h: Array, z: Array,
                                p: float, key: int, first_sample: int) -> None:
        """``bias_activation`` into ``h`` (a += b, h = h(a)), then ``dropout(h, z, p, key,
        first_sample)``: a training pass's forward of a group with dropout (an elementwise
        activation); a backend may do it in one pass."""

    # --- the loss and the output deltas (5.54) -----------------------------------------

    def loss_and_output_delta(self, loss: str, activation: str, a: Array, y: Array, t: Array,
                              delta: Array, losses: Array, correct: Array) -> None:
        """Per-sample losses into ``losses`` (B,), the output deltas dE/da (5.54) of the
        mean loss into ``delta`` (K, B), and per-sample correct counts into ``correct``
        (B,). ``a``, ``y`` (K, B) are the output group's pre-activations and outputs;
        ``t`` is (K, B) targets or (B,) int64 class labels (cross-entropy)."""

    def weight_samples(self, delta: Array, losses: Array, weights: Array) -> None:
        """Each sample's output deltas and loss times its weight, in place:
        ``delta[:, n] *= weights[n]`` over ``delta`` (K, B) and ``losses[n] *= weights[n]``
        over ``losses`` (B,); ``weights`` (B,) in ``delta``'s float dtype (a weighted mean
        loss: ``gpuback.training.data.SampleWeights`` gives them)."""

    # --- per-step metrics, kept on the backend until read -------------------------------

    def accumulate_metrics(self, losses: Array, correct: Array, totals: Array,
                           status: Array, step: int) -> None:
        """``totals`` (2,) float64 ``+= (sum of losses, sum of correct)``; a non-finite
        loss sum with ``status[0] == 0`` sets ``status`` (2,) int64 to
        ``(step, LOSS_NOT_FINITE)``."""

    def check_finite(self, array: Array, status: Array, step: int) -> None:
        """A NaN or infinity in ``array`` with ``status[0] == 0`` sets ``status`` to
        ``(step, GRADIENT_NOT_FINITE)``."""

    # --- backward (5.56) and the gradients (5.53) ---------------------------------------

    def dense_backward(self, w: Array, delta_dst: Array, acc_src: Array,
                       accumulate: bool) -> None:
        """``acc_src (+)= W.T @ delta_dst``: ``w`` (K, J), ``delta_dst`` (K, B), ``acc_src``
        (J, B); this block's share of sum_k w_kj delta_k (5.56)."""

    def sparse_backward(self, w: Array, index: Any, delta_dst: Array, acc_src: Array,
                        accumulate: bool) -> None:
        """``acc_src[src_e] (+)= w[e] delta_dst[dst_e]`` over every edge e (5.56)."""

    def activation_delta(self, activation: str, a: Array, z: Array, acc: Array,
                         db: Array) -> None:
        """``acc = h'(a) * acc`` in place (5.56), and ``db`` (U,) = its sum over the batch
        (dE/db); ``a``, ``z``, ``acc`` (U, B)."""

    def layer_norm_backward(self, gain: Array, xhat: Array, rstd: Array, delta: Array,
                            dgain: Array, db: Array) -> None:
        """Backward through ``layer_norm``: ``delta`` (U, B) holds dE/du on entry and dE/da
        on return, in place: with g = gain[:, None] * dE/du, per sample n,
        ``dE/da = rstd[n] * (g - mean_units(g) - xhat * mean_units(g * xhat))`` (every unit
        of the group through the mean and the variance: 5.55 inside the group).
        ``dgain`` (U,) = the sum over the batch of dE/du * xhat, and ``db`` (U,) = the sum
        over the batch of dE/da (the bias gradient)."""

    def dropout_activation_delta(self, activation: str, a: Array, h: Array, acc: Array,
                                 db: Array, p: float, key: int, first_sample: int) -> None:
        """``dropout(acc, acc, p, key, first_sample)`` then ``activation_delta(activation, a,
        h, acc, db)``: delta = h'(a) m / (1 - p) sum_k w_kj delta_k in place, ``h`` the
        unmasked h(a); a backend may do it in one pass."""

    def dense_weight_grad(self, delta_dst: Array, z_src: Array, dw: Array) -> None:
        """``dw = delta_dst @ z_src.T`` (5.53): ``dw`` (K, J)."""

    def sparse_weight_grad(self, index: Any, delta_dst: Array, z_src: Array,
                           dw: Array) -> None:
        """``dw[e] = sum over the batch of delta_dst[dst_e] z_src[src_e]`` (5.53): (E,)."""

    def sparse_block_backward(self, w: Array, index: Any, delta_dst: Array, z_src: Array,
                              dw: Array, acc_src: Array | None, accumulate: bool) -> None:
        """A sparse block's whole backward: ``sparse_weight_grad`` into ``dw`` and, unless
        ``acc_src`` is None (the source is the input: no delta), ``sparse_backward`` into
        ``acc_src``; a backend may do both in one pass over the edges."""

    def bias_grad(self, delta: Array, db: Array) -> None:
        """``db`` (K,) = the sum over the batch of ``delta`` (K, B)."""

    # --- one fused update over the flat parameter buffer --------------------------------

    def sgd_update(self, param: Array, grad: Array, velocity: Array, lr: float,
                   momentum: float, nesterov: bool, weight_decay: float,
                   status: Array, rounded: Array, code: int) -> None:
        """SGD with momentum on flat ``param``, ``grad``, ``velocity`` (P,) in place;
        skipped entirely while ``status[0] != 0`` (neither ``param`` nor ``rounded``
        written). ``rounded``, ``code``: mixed precision's copy of the parameters (P,),
        written in the same pass: ``rounded[i] = round_to_precision(param[i], code)`` once
        element i is updated (bit for bit ``gpuback.precision.round_to``; ``param`` float32);
        with ``code`` FP32 it is not written (pass ``param`` itself); else it must not
        overlap ``param``."""

    def adam_update(self, param: Array, grad: Array, m: Array, v: Array, lr: float,
                    beta1: float, beta2: float, eps: float, weight_decay: float,
                    decoupled: bool, step: int, status: Array, rounded: Array,
                    code: int) -> None:
        """Adam (or AdamW, ``decoupled``) at ``step`` (from 1) on flat (P,) buffers in
        place; skipped entirely while ``status[0] != 0``; ``rounded`` and ``code`` as in
        ``sgd_update``."""

    # --- gradient clipping by global norm -------------------------------------------------

    def clip_gradient_norm(self, grad: Array, max_norm: float, norm: Array) -> None:
        """Clip the flat gradients ``grad`` (P,) in place by their global norm, as
        ``torch.nn.utils.clip_grad_norm_`` defines it: ``norm[0]`` = the Euclidean norm of
        ``grad`` (its squares summed in float64, the root rounded to ``grad``'s dtype), then,
        where ``max_norm / (norm + 1e-6)`` is below 1, ``grad`` times that factor (rounded
        once to ``grad``'s dtype). ``norm`` (1,) is of ``grad``'s dtype and stays on the
        backend: no host wait."""

    # --- mixed precision ------------------------------------------------------------------

    def round_to_precision(self, x: Array, code: int) -> None:
        """Every element of the C-contiguous float32 ``x`` (any shape) rounded in place to
        the precision of ``code`` (``gpuback.kernels.precision.CODES``: nearest, ties to
        even, bit for bit as ``gpuback.precision.round_to``); FP32 leaves it unchanged."""

    # --- dynamic loss scaling (fp16, gpuback.loss_scale) ----------------------------------

    def scale_by_loss_scale(self, x: Array, scaler: Array) -> None:
        """``x *= S`` in place, S = ``scaler[0]`` of the pair ``scaler`` (S, clean steps, in
        ``x``'s float dtype); ``x`` C-contiguous, any shape."""

    def unscale_gradients(self, grad: Array, scaler: Array, step_status: Array,
                          step: int) -> None:
        """``grad`` (P,) ``*= 1/S`` in place (1/S rounded once in ``grad``'s dtype, the
        scaler's too); a NaN or infinity among the results sets the int64 pair ``step_status`` to
        ``(step, SCALE_OVERFLOW)`` (it is never cleared here)."""

    def update_loss_scale(self, scaler: Array, step_status: Array, status: Array,
                          growth_interval: int) -> None:
        """S and its count from ``step_status``: set, S *= ``BACKOFF_FACTOR`` and the count
        is 0; clear, the count + 1, and at ``growth_interval`` S *= ``GROWTH_FACTOR`` and the
        count is 0 (all in the scaler's float type). Then a set ``status`` is copied into a
        clear ``step_status``."""
