"""Op-level comparisons of a backend with the NumPy reference, shared by the cuda (simulator
and GPU) and cpu backend tests.

Each case is one call of one op of the op set on small random host arrays (odd sizes 1, 3, 17,
batch 1 and non-powers of two). ``check_case`` runs the reference op on host copies and the
backend op on backend copies of the same arguments, then compares every array argument
afterwards (outputs and inputs alike): floats within ``TOLERANCES[dtype]["backend"]``
(normwise), integer arrays, correct counts, status pairs and arrays holding non-finite values
exactly. An optimiser update's rounded copy (mixed precision, ``Case.rounding``) must be, bit
for bit, ``gpuback.precision.round_to`` of the parameters that same backend computed (those
within tolerance of the reference's): the rounding of a value 1 ulp off the reference's may
legitimately land one step of the precision away.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from gpuback.kernels.precision import CODES as PRECISION_CODES

from gpuback.backends import numpy_backend
from gpuback.backends.precision import round_to
from gpuback.core.plan import SparseIndex

from .random_specs import ELEMENTWISE, random_edges
from .tolerances import TOLERANCES, rel_error

# The ops that compute nothing on the network's numbers (buffers, values, staging,
# description): tests/backends/test_registry.py checks those; the cases below cover all the others.
NON_COMPUTING_OPS = frozenset({
    "name", "device", "status", "describe", "allocation_hook", "is_device_array", "as_array",
    "array_namespace", "zeros", "from_host", "asarray", "to_host", "copy_into",
    "prepare_index", "memory_budget", "free_memory", "pinned_empty", "record_event", "wait_for",
    "device_collectives"})

DTYPES = ["float64", "float32"]
STATUS_CLEAR = (0, 0)
STATUS_SET = (3, 2)  # a step went non-finite earlier: step 3, GRADIENT_NOT_FINITE


@dataclass(frozen=True)
class Sparse:
    """A sparse block's index as an op argument; the backend gets ``prepare_index`` of it."""

    index: SparseIndex
    deterministic: bool = False


@dataclass(frozen=True)
class Case:
    id: str
    op: str
    args: tuple
    dtype: str
    exact: tuple[int, ...] = ()  # argument positions compared exactly
    # (param, rounded, code) positions of an update that writes a rounded copy (below fp32,
    # status clear): rounded must be round_to(param, code) exactly, on each side
    rounding: tuple[int, int, int] | None = None


def _status(value: tuple[int, int]) -> np.ndarray:
    return np.array(value, dtype=np.int64)


def _sparse(rng: np.random.Generator, n_src: int, n_dst: int) -> SparseIndex:
    return SparseIndex.from_edges(random_edges(rng, n_src, n_dst, 0.5), n_src, n_dst)


def cases(dtype: str) -> list[Case]:
    """Every op of the op set that computes, in ``dtype``."""
    rng = np.random.default_rng(0 if dtype == "float64" else 1)

    def real(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(dtype)

    def spread(n: int) -> np.ndarray:  # magnitudes from 1e-7 to 1e5
        return (rng.normal(size=n) * 10.0 ** rng.uniform(-7, 5, size=n)).astype(dtype)

    out: list[Case] = []

    def add(id_: str, op: str, *args: Any, exact: tuple[int, ...] = (),
            rounding: tuple[int, int, int] | None = None) -> None:
        out.append(Case(f"{op}-{id_}-{dtype}", op, args, dtype, exact, rounding))

    # mini-batches: a permutation of the samples and a start offset
    for samples, features, b, start in [(11, 5, 4, 3), (7, 1, 1, 6), (20, 17, 13, 0)]:
        order = rng.permutation(samples).astype(np.int64)
        add(f"{samples}x{features}-b{b}-at{start}", "take_batch", real(samples, features),
            order, start, real(features, b))
        labels = rng.integers(0, 10, size=samples).astype(np.int64)
        add(f"labels{samples}-b{b}-at{start}", "take_batch", labels, order, start,
            np.full(b, -1, dtype=np.int64))
    for shape in [(3, 17), (1,), (2, 3, 5)]:
        add("x".join(map(str, shape)), "fill_zero", real(*shape))
    add("int64-status", "fill_zero", _status(STATUS_SET))
    add("float64-totals", "fill_zero", np.array([1.5, 2.0]))

    # sparse blocks, forward and backward, and their weight gradients
    for (n_src, n_dst), batch in itertools.product([(3, 17), (17, 1), (1, 3)], [1, 5]):
        index = _sparse(rng, n_src, n_dst)
        size = f"{n_src}to{n_dst}-b{batch}"
        for accumulate in (False, True):
            add(f"{size}-acc{int(accumulate)}", "sparse_forward", real(index.n_edges),
                Sparse(index), real(n_src, batch), real(n_dst, batch), accumulate)
            for deterministic in (False, True):
                add(f"{size}-acc{int(accumulate)}-det{int(deterministic)}", "sparse_backward",
                    real(index.n_edges), Sparse(index, deterministic), real(n_dst, batch),
                    real(n_src, batch), accumulate)
        add(size, "sparse_weight_grad", Sparse(index), real(n_dst, batch), real(n_src, batch),
            real(index.n_edges))
    for (rows, inner, cols), accumulate in itertools.product([(3, 17, 5), (1, 3, 1)],
                                                             (False, True)):
        tag = f"{rows}x{inner}x{cols}-acc{int(accumulate)}"
        add(tag, "dense_forward", real(rows, inner), real(inner, cols), real(rows, cols),
            accumulate)
        add(tag, "dense_backward", real(inner, rows), real(inner, cols), real(rows, cols),
            accumulate)
    add("3x5", "dense_weight_grad", real(3, 4), real(5, 4), real(3, 5))
    for (units, batch), accumulate in itertools.product([(3, 17), (1, 1), (17, 5)],
                                                         (False, True)):
        add(f"{units}x{batch}-acc{int(accumulate)}", "add_into", real(units, batch),
            real(units, batch), accumulate, exact=(0, 1))

    # layer normalisation, forward and backward (the sizes cover one unit, where xhat = 0)
    for units, batch in [(1, 3), (3, 1), (17, 5)]:
        size = f"{units}x{batch}"
        add(size, "layer_norm", real(units), real(units), real(units, batch) * 3.0 + 1.0,
            real(units, batch), real(batch), real(units, batch))
        a = real(units, batch)
        xhat = ((a - a.mean(axis=0)) / np.sqrt(a.var(axis=0) + 1e-5)).astype(dtype)
        rstd = (1.0 + np.abs(real(batch))).astype(dtype)
        add(size, "layer_norm_backward", real(units), xhat, rstd, real(units, batch),
            real(units), real(units))

    # dropout: keys and first samples of every size, exactly the reference's masks and values
    # (in place, as backward runs it, in the network tests)
    for (units, batch), p, key, first in [((3, 17), 0.5, 0, 0), ((17, 5), 0.1, 2**32 - 1, 7),
                                          ((1, 1), 0.9, 12345, 2**31), ((5, 3), 0.0, 77, 1)]:
        add(f"{units}x{batch}-p{p}", "dropout", real(units, batch), real(units, batch), p, key,
            first, exact=(1,))
        for activation in ("gelu", "tanh", "relu"):
            tag = f"{activation}-{units}x{batch}-p{p}"
            add(tag, "bias_activation_dropout", activation, real(units), real(units, batch),
                real(units, batch), real(units, batch), p, key, first)
            add(tag, "dropout_activation_delta", activation, real(units, batch),
                real(units, batch), real(units, batch), real(units), p, key, first)

    # activations, h'(a) with the bias gradient, bias gradients
    for units, batch in itertools.product([1, 3, 17], [1, 5]):
        size = f"{units}x{batch}"
        for activation in [*ELEMENTWISE, "softmax"]:
            add(f"{activation}-{size}", "bias_activation", activation, real(units),
                real(units, batch), real(units, batch))
        for activation in ELEMENTWISE:
            add(f"{activation}-{size}", "activation_delta", activation, real(units, batch),
                real(units, batch), real(units, batch), real(units))
        add(size, "bias_grad", real(units, batch), real(units))

    # losses, output deltas and correct counts (positions 6, 7: losses, correct)
    def loss_case(tag: str, loss: str, activation: str, a: np.ndarray, t: np.ndarray) -> None:
        a = a.astype(dtype)
        y = np.empty_like(a)
        numpy_backend.bias_activation(activation, np.zeros(a.shape[0], dtype), a.copy(), y)
        batch = a.shape[1]
        add(tag, "loss_and_output_delta", loss, activation, a, y, t, real(*a.shape),
            real(batch), real(batch), exact=(7,))

    for units, batch in itertools.product([1, 3, 17], [1, 5]):
        size = f"{units}x{batch}"
        a = rng.normal(size=(units, batch))
        for activation in ("identity", "tanh", "sigmoid"):
            loss_case(f"sos-{activation}-{size}", "sum_of_squares", activation, a,
                      real(units, batch))
        bce_t = rng.uniform(size=(units, batch)).astype(dtype)
        bce_t.flat[::3] = 0.5  # on the threshold: (t > 0.5) is False
        loss_case(f"bce-{size}", "binary_cross_entropy", "sigmoid", a, bce_t)
        loss_case(f"ce-targets-{size}", "cross_entropy", "softmax", a,
                  rng.dirichlet(np.ones(units), size=batch).T.astype(dtype))
        loss_case(f"ce-labels-{size}", "cross_entropy", "softmax", a,
                  rng.integers(0, units, size=batch).astype(np.int64))
    # ties: two equal largest outputs (the first one counts), target rows with ties
    tied = np.zeros((5, 4))
    tied[[1, 3], :] = 2.0
    labels = np.array([1, 3, 0, 1], dtype=np.int64)  # first max, second max, neither, first
    loss_case("ce-labels-ties", "cross_entropy", "softmax", tied, labels)
    targets = np.zeros((5, 4))
    targets[[1, 3], 0] = 0.5  # tie at 1 and 3: first arg-max 1, as y's
    targets[[3, 4], 1] = 0.5  # first arg-max 3 (y's is 1)
    targets[[0, 1], 2] = 0.5  # first arg-max 0
    targets[1, 3] = 1.0
    loss_case("ce-targets-ties", "cross_entropy", "softmax", tied, targets.astype(dtype))

    # each sample's output deltas and loss weighted (zero weights included)
    for units, batch in itertools.product([1, 3, 17], [1, 5, 300]):
        weights = np.abs(real(batch))
        weights[::4] = 0.0
        add(f"{units}x{batch}", "weight_samples", real(units, batch), np.abs(real(batch)),
            weights)

    # per-step metrics and non-finite status (positions: totals 2, status 3)
    for batch in (1, 5, 300):
        losses, correct = np.abs(real(batch)), rng.integers(0, 2, size=batch).astype(dtype)
        add(f"b{batch}", "accumulate_metrics", losses, correct, np.array([1.5, 2.0]),
            _status(STATUS_CLEAR), 7, exact=(3,))
    counts = np.array([1, 0, 1, 1, 0], dtype=dtype)  # integers: their sum is exact in any order
    bad = np.abs(real(5))
    bad[2] = np.nan
    add("nan-first", "accumulate_metrics", bad, counts, np.zeros(2), _status(STATUS_CLEAR), 7,
        exact=(2, 3))
    bad = np.abs(real(5))
    bad[4] = np.inf
    add("inf-kept", "accumulate_metrics", bad, counts, np.zeros(2), _status(STATUS_SET), 7,
        exact=(2, 3))
    for shape in [(17,), (1,), (3, 5)]:
        tag = "x".join(map(str, shape))
        add(f"{tag}-finite", "check_finite", real(*shape), _status(STATUS_CLEAR), 4, exact=(1,))
        for value, where in [(np.inf, -1), (np.nan, 0), (-np.inf, 0)]:
            x = real(*shape)
            x.flat[where] = value
            add(f"{tag}-{value}-first", "check_finite", x, _status(STATUS_CLEAR), 4,
                exact=(0, 1))
            add(f"{tag}-{value}-kept", "check_finite", x, _status(STATUS_SET), 4, exact=(0, 1))

    # optimiser updates over flat buffers; skipped while the status is set. At fp32 (code 0)
    # the rounded copy is not written: a zero buffer must stay zero
    for n, status in itertools.product([1, 17, 300], [STATUS_CLEAR, STATUS_SET]):
        tag = f"{n}-status{status[0]}"
        for nesterov, momentum in [(False, 0.0), (False, 0.9), (True, 0.9)]:
            add(f"{tag}-nesterov{int(nesterov)}-mu{momentum}", "sgd_update", real(n), real(n),
                real(n), 0.1, momentum, nesterov, 0.01, _status(status), np.zeros(n, dtype), 0,
                exact=(7, 8))
        for decoupled, step in [(False, 1), (True, 5)]:
            add(f"{tag}-decoupled{int(decoupled)}-step{step}", "adam_update", real(n),
                real(n), np.abs(real(n)) * 0.1, np.abs(real(n)) * 0.01, 0.01, 0.9, 0.999,
                1e-8, 0.01, decoupled, step, _status(status), np.zeros(n, dtype), 0,
                exact=(11, 12))
    # the fused sparse backward, from a generator of its own (the cases above keep their
    # values); (40, 30): rows of ~20 edges, so the kernels' groups of 8 and 4 edges and their
    # remainders all run
    rng = np.random.default_rng(2 if dtype == "float64" else 3)
    for (n_src, n_dst), batch in itertools.product([(3, 17), (17, 1), (1, 3), (40, 30)],
                                                   [1, 5]):
        index = _sparse(rng, n_src, n_dst)
        size = f"{n_src}to{n_dst}-b{batch}"
        for accumulate in (False, True):
            add(f"{size}-acc{int(accumulate)}", "sparse_block_backward", real(index.n_edges),
                Sparse(index), real(n_dst, batch), real(n_src, batch), real(index.n_edges),
                real(n_src, batch), accumulate)
        add(f"{size}-inputs", "sparse_block_backward", real(index.n_edges), Sparse(index),
            real(n_dst, batch), real(n_src, batch), real(index.n_edges), None, False)
    # mixed precision, from a generator of their own (the cases above keep their values)
    rng = np.random.default_rng(4 if dtype == "float64" else 5)
    if dtype == "float32":  # rounding reads float32 values (a float32 master copy)
        edges = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65520.0, 6e-8,
                          1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 3.4e38, 1e-40], dtype)
        for code, name in ((1, "tf32"), (2, "bf16"), (3, "fp16")):
            for shape in ((3, 7), (300,)):
                x = (rng.normal(size=shape) * 10.0 ** rng.uniform(-8, 5, size=shape))
                x = x.astype(dtype)
                x.reshape(-1)[:edges.size] = edges[: x.size]
                add(f"{name}-{'x'.join(map(str, shape))}", "round_to_precision", x, code,
                    exact=(0,))
        add("fp32-unchanged", "round_to_precision", real(4, 5), 0, exact=(0,))
        # the optimisers' fused rounded copy (a master written once per step into its copy);
        # parameters spread over magnitudes so every rounding branch is met, fp16's
        # subnormals and overflow included (no L2 decay: its gradient would be the spread
        # parameters, a float32 sum of squares beyond the backend tolerance); while the
        # status is set neither buffer changes
        for name, n, status in itertools.product(("tf32", "bf16", "fp16"), (17, 300),
                                                 (STATUS_CLEAR, STATUS_SET)):
            code = PRECISION_CODES[name]
            tag = f"{name}-{n}-status{status[0]}"
            clear = status == STATUS_CLEAR
            add(f"{tag}-nesterov1-mu0.9", "sgd_update", spread(n), real(n), real(n), 0.1, 0.9,
                True, 0.0, _status(status), real(n), code,
                exact=(7,) if clear else (7, 8), rounding=(0, 8, 9) if clear else None)
            for decoupled, step in [(False, 1), (True, 5)]:
                add(f"{tag}-decoupled{int(decoupled)}-step{step}", "adam_update", spread(n),
                    real(n), np.abs(real(n)) * 0.1, np.abs(real(n)) * 0.01, 0.01, 0.9, 0.999,
                    1e-8, 0.01 if decoupled else 0.0, decoupled, step, _status(status),
                    real(n), code,
                    exact=(11,) if clear else (11, 12),
                    rounding=(0, 12, 13) if clear else None)
    # gradient clipping by global norm: a max_norm below the norm (clipped), above it (left
    # as it is), and a single element; longer than a block's threads, so every thread sums
    for n, max_norm in [(1, 0.5), (17, 1.0), (300, 2.0), (300, 1e6), (1000, 3.0)]:
        add(f"{n}-max{max_norm:g}", "clip_gradient_norm", real(n), max_norm, real(1))
    # dynamic loss scaling: the scaler pair (S, clean steps) in the gradients' dtype
    add("3x5", "scale_by_loss_scale", real(3, 5), np.array([2.0**16, 3.0], dtype))
    add("odd-scale", "scale_by_loss_scale", real(17), np.array([3.0, 0.0], dtype))
    clean = real(17)
    add("finite", "unscale_gradients", clean, np.array([1024.0, 0.0], dtype),
        _status(STATUS_CLEAR), 4, exact=(2,))
    for bad_value in (np.inf, np.nan):
        bad = real(17)
        bad[5] = bad_value
        add(f"{bad_value}", "unscale_gradients", bad, np.array([1024.0, 0.0], dtype),
            _status(STATUS_CLEAR), 4, exact=(2,))
    overflow = (3, 3)  # step 3, SCALE_OVERFLOW
    for tag, scaler, step_status, status in [
            ("clean", (1024.0, 5.0), STATUS_CLEAR, STATUS_CLEAR),
            ("overflow", (1024.0, 5.0), overflow, STATUS_CLEAR),
            ("merged", (1024.0, 5.0), STATUS_CLEAR, STATUS_SET),
            ("growth", (1024.0, 6.0), STATUS_CLEAR, STATUS_CLEAR)]:
        add(tag, "update_loss_scale", np.array(scaler, dtype), _status(step_status),
            _status(status), 7, exact=(0, 1, 2))
    _poisson_loss_cases(dtype, add, loss_case)
    return out


def _poisson_loss_cases(dtype: str, add: Any, loss_case: Any) -> None:
    """The Poisson loss (exp outputs) and sum of squares on exp outputs, from a generator of
    their own (the cases above keep their values): counts with zeros among them (t log t = 0),
    pre-activations far out on both sides (y up to e^80 and down to e^-80), targets so small
    that t e^(a - log t) overflows where e^a does not, and, in float64, y within 1e-4 of t,
    where t log t - t a and y - t cancel (float32 rounds log t by more than that leaves).
    Beyond e^a's range, y, the losses and the deltas are inf on every backend (the CUDA
    simulator's math.exp would raise instead: ``scalar.exp_or_inf``)."""
    rng = np.random.default_rng(6 if dtype == "float64" else 7)
    for units, batch in itertools.product([1, 3, 17], [1, 5]):
        size = f"{units}x{batch}"
        a = 2.0 * rng.normal(size=(units, batch))
        counts = rng.poisson(2.0, size=(units, batch)).astype(dtype)
        counts.flat[::3] = 0.0
        loss_case(f"poisson-{size}", "poisson", "exp", a, counts)
        loss_case(f"sos-exp-{size}", "sum_of_squares", "exp", a,
                  rng.normal(size=(units, batch)).astype(dtype))
    far = rng.uniform(20.0, 80.0, size=(17, 5))
    counts = rng.poisson(3.0, size=(17, 5)).astype(dtype)
    counts[::2] = 0.0
    loss_case("poisson-far-above", "poisson", "exp", far, counts)
    loss_case("poisson-far-below", "poisson", "exp", -far, counts)
    tiny = np.full((3, 5), 1e-30 if dtype == "float32" else 1e-300, dtype)
    tiny[1] = 0.0
    loss_case("poisson-tiny-targets", "poisson", "exp", np.full((3, 5), 30.0), tiny)
    beyond = np.full((3, 5), 800.0)
    add("exp-overflow-3x5", "bias_activation", "exp", np.zeros(3, dtype), beyond.astype(dtype),
        np.zeros((3, 5), dtype))
    loss_case("poisson-overflow", "poisson", "exp", beyond, tiny)
    if dtype == "float64":
        counts = rng.poisson(50.0, size=(17, 5)).astype(dtype) + 1.0
        near = np.log(counts) + 1e-4 * rng.normal(size=(17, 5))
        loss_case("poisson-near-targets", "poisson", "exp", near, counts)


def _backend_arg(backend: Any, arg: Any) -> Any:
    if isinstance(arg, np.ndarray):
        return backend.from_host(arg, arg.dtype)
    if isinstance(arg, Sparse):
        return backend.prepare_index(arg.index, arg.deterministic)
    return arg


def _reference_arg(arg: Any) -> Any:
    if isinstance(arg, np.ndarray):
        return arg.copy()
    if isinstance(arg, Sparse):
        return arg.index
    return arg


def check_case(backend: Any, case: Case) -> None:
    """Run ``case`` on the reference and on ``backend``; every array argument must agree."""
    reference = [_reference_arg(a) for a in case.args]
    on_backend = [_backend_arg(backend, a) for a in case.args]
    getattr(numpy_backend, case.op)(*reference)
    getattr(backend, case.op)(*on_backend)
    tol = TOLERANCES[case.dtype]["backend"]
    if case.rounding is not None:
        param, rounded, code = case.rounding
        name = {c: n for n, c in PRECISION_CODES.items()}[case.args[code]]
        for side, args, host in (("reference", reference, np.asarray),
                                 ("backend", on_backend, backend.to_host)):
            master, copy = host(args[param]), host(args[rounded])
            np.testing.assert_array_equal(copy, round_to(master, name),
                                          err_msg=f"{case.id}: {side}'s rounded copy")
    for position, (ref, got) in enumerate(zip(reference, on_backend, strict=True)):
        if not isinstance(ref, np.ndarray):
            continue
        got = backend.to_host(got)
        assert got.dtype == ref.dtype and got.shape == ref.shape, (position, got.dtype)
        if case.rounding is not None and position == case.rounding[1]:
            continue  # checked above, against this side's own parameters
        exact = (position in case.exact or ref.dtype.kind in "iu"
                 or not np.isfinite(ref).all())
        if exact:
            np.testing.assert_array_equal(got, ref, err_msg=f"{case.id}: argument {position}")
        else:
            error = rel_error(got, ref)
            assert error <= tol, f"{case.id}: argument {position}: {error:.3e} > {tol:.0e}"
