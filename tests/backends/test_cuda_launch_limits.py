"""Every launch of the cuda backend is legal at the GPU block shape, at any size:
gridDim.x <= 2^31 - 1, gridDim.y and .z <= 65,535, at most 1,024 threads per block, and no
more threads than a reduction kernel's shared arrays hold.

Each op of the backend runs on fake arrays (shape and dtype only) while
``cuda_device.launch`` records what it would launch, so the test checks what the ops really
launch, not a copy of their arithmetic: for the sparse95 bench network (784-4096-4096-10,
838,861 edges per hidden block), a 65,536-unit layer, and 2^31 edges and units, at batch
sizes from 1 to beyond the grid's y limit. Every kernel is grid-stride, so a grid capped at
a limit is still correct; below the caps, the grid gives every item its own thread. One test
runs real kernels in the simulator at the GPU block shape.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re

import numpy as np
import pytest
from helpers.op_checks import NON_COMPUTING_OPS, cases, check_case

from gpuback.backends import OP_SET
from gpuback.backends.cuda import backend as cuda_backend
from gpuback.backends.cuda import device as cuda_device
from gpuback.backends.cuda import launch as cuda_launch
from gpuback.backends.cuda.launch import REDUCE_CAPACITY

MAX_X, MAX_YZ, MAX_THREADS = 2**31 - 1, 65_535, 1024
SPARSE95_EDGES = round(0.05 * 4096 * 4096)  # 838,861: gridDim.y 104,858 with the old launch
BATCHES = [1, 2, 3, 17, 31, 32, 33, 256, 4097, 65_535 * 32 + 1, 2**31 - 1]


class Fake:
    """A stand-in for a device array: shape, dtype and the views the ops take."""

    def __init__(self, shape: tuple[int, ...], dtype: str = "float32") -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.size = math.prod(self.shape)

    def reshape(self, *shape: int) -> Fake:
        assert shape in ((-1,), (self.size,)), shape
        return Fake((self.size,), self.dtype)

    @property
    def T(self) -> Fake:  # noqa: N802  (NumPy's name)
        return Fake(self.shape[::-1], self.dtype)


# What one thread of each kernel covers: "2d" (rows x samples: grid x * block y over rows,
# grid y * block x over samples), "rows" (a row reduction: grid x * block y over rows),
# "sample" (a block per sample), "1d" (grid x * block x over elements), "one" (one block);
# and the work sizes from the kernel's arguments.
WORK = {
    "buffers.fill_zero": ("1d", lambda a: (a[0].size,)),
    "buffers.take_batch": ("2d", lambda a: a[3].shape),
    "buffers.take_labels": ("1d", lambda a: (a[3].size,)),
    "sparse.gather": ("2d", lambda a: a[5].shape),
    "sparse.scatter_add": ("2d", lambda a: (a[1].size, a[3].shape[1])),
    "sparse.edge_grad": ("rows", lambda a: (a[0].size,)),
    "identity.add_into": ("2d", lambda a: a[1].shape),
    "layer_norm.normalise": ("sample", lambda a: (a[0].shape[1],)),
    "dropout.apply_dropout": ("2d", lambda a: a[0].shape),
    "dropout.bias_activation_dropout": ("2d", lambda a: a[0].shape),
    "dropout.dropout_activation_delta": ("rows", lambda a: (a[0].shape[0],)),
    "layer_norm.gain_grad": ("rows", lambda a: (a[0].shape[0],)),
    "layer_norm.normalise_backward": ("sample", lambda a: (a[1].shape[1],)),
    "activation.bias_activation": ("2d", lambda a: a[0].shape),
    "activation.softmax_bias": ("sample", lambda a: (a[0].shape[1],)),
    "activation.activation_delta": ("rows", lambda a: (a[0].shape[0],)),
    "reduce.row_sum": ("rows", lambda a: (a[0].shape[0],)),
    "loss.sum_of_squares": ("sample", lambda a: (a[0].shape[1],)),
    "loss.binary_cross_entropy": ("sample", lambda a: (a[0].shape[1],)),
    "loss.poisson": ("sample", lambda a: (a[0].shape[1],)),
    "loss.cross_entropy": ("sample", lambda a: (a[0].shape[1],)),
    "loss.cross_entropy_labels": ("sample", lambda a: (a[0].shape[1],)),
    "metrics.accumulate_metrics": ("one", lambda a: ()),
    "metrics.check_finite": ("1d", lambda a: (a[0].size,)),
    "optimizer.sgd": ("1d", lambda a: (a[0].size,)),
    "optimizer.adam": ("1d", lambda a: (a[0].size,)),
    "rounding.round_elements": ("1d", lambda a: (a[1].size,)),
    "clip.global_norm": ("one", lambda a: ()),
    "clip.clip_scale": ("1d", lambda a: (a[0].size,)),
    "sample_weight.weight_samples": ("1d", lambda a: (a[0].size,)),
    "loss_scale.scale_elements": ("1d", lambda a: (a[0].size,)),
    "loss_scale.unscale_check": ("1d", lambda a: (a[0].size,)),
    "loss_scale.update_scale": ("one", lambda a: ()),
}
REDUCING = {"rows", "sample", "one"}


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list:
    """Launches as (kernel name, grid, block, args), at the GPU block shape, compiling
    nothing and running nothing."""
    launches = []
    monkeypatch.setattr(cuda_backend, "_simulated", lambda: False)
    monkeypatch.setattr(cuda_backend, "_kernel", lambda family, kernel, dtype:
                        f"{family}.{kernel}")
    monkeypatch.setattr(cuda_device, "launch", lambda kernel, grid, block, *args:
                        launches.append((kernel, tuple(grid), tuple(block), args)))
    monkeypatch.setattr(cuda_device, "gemm", lambda *args: None)
    return launches


def _index(n_src: int, n_dst: int, edges: int, deterministic: bool):
    i = "int64"
    return cuda_backend.DeviceIndex(Fake((edges,), i), Fake((edges,), i), Fake((n_dst + 1,), i),
                                    Fake((edges,), i), Fake((n_src + 1,), i), Fake((edges,), i),
                                    deterministic)


def run_every_op(n_src: int, n_dst: int, edges: int, batch: int) -> set[str]:
    """Every op of the backend once or more for a block (n_src -> n_dst, ``edges`` sparse
    edges) at ``batch``; the names of the ops run."""
    be, f = cuda_backend, Fake
    z, a, acc = f((n_src, batch)), f((n_dst, batch)), f((n_src, batch))
    b, db, w, dense = f((n_dst,)), f((n_src,)), f((edges,)), f((n_dst, n_src))
    per_sample, status, totals = f((batch,)), f((2,), "int64"), f((2,), "float64")
    ran = set()

    def call(op: str, *args) -> None:
        ran.add(op)
        getattr(be, op)(*args)

    call("take_batch", f((batch + 5, n_src)), f((batch + 5,), "int64"), 5, z)
    call("take_batch", f((batch + 5,), "int64"), f((batch + 5,), "int64"), 5,
         f((batch,), "int64"))
    for array in (z, status, totals, dense):
        call("fill_zero", array)
    for deterministic, accumulate in itertools.product((False, True), (False, True)):
        index = _index(n_src, n_dst, edges, deterministic)
        call("sparse_forward", w, index, z, a, accumulate)
        call("sparse_backward", w, index, a, acc, accumulate)
    call("sparse_weight_grad", index, a, z, w)
    call("sparse_block_backward", w, index, a, z, w, acc, True)
    call("sparse_block_backward", w, index, a, z, w, None, False)
    for op in ("dense_forward", "dense_backward", "dense_weight_grad"):
        ran.add(op)
    be.dense_forward(dense, z, a, False)
    be.dense_backward(dense, a, acc, True)
    be.dense_weight_grad(a, z, dense)
    for accumulate in (False, True):
        call("add_into", a, a, accumulate)
    call("layer_norm", b, b, a, a, f((batch,)), a)
    call("dropout", a, a, 0.1, 12345, 3)
    call("bias_activation_dropout", "gelu", b, a, a, a, 0.1, 12345, 3)
    call("dropout_activation_delta", "gelu", acc, acc, acc, db, 0.1, 12345, 3)
    call("layer_norm_backward", b, a, f((batch,)), a, b, b)
    for activation in ("relu", "softmax"):
        call("bias_activation", activation, b, a, a)
    call("activation_delta", "tanh", acc, acc, acc, db)
    call("bias_grad", a, b)
    targets, labels = f((n_dst, batch)), f((batch,), "int64")
    for loss, activation, t in [("sum_of_squares", "tanh", targets),
                                ("binary_cross_entropy", "sigmoid", targets),
                                ("poisson", "exp", targets),
                                ("cross_entropy", "softmax", targets),
                                ("cross_entropy", "softmax", labels)]:
        call("loss_and_output_delta", loss, activation, a, a, t, a, per_sample, per_sample)
    call("weight_samples", a, per_sample, per_sample)
    call("accumulate_metrics", per_sample, per_sample, totals, status, 3)
    call("check_finite", w, status, 3)
    call("check_finite", dense, status, 3)
    call("sgd_update", w, w, w, 0.1, 0.9, True, 0.0, status, w, 2)  # rounded to bf16
    call("adam_update", dense, dense, dense, dense, 1e-3, 0.9, 0.999, 1e-8, 0.0, True, 7, status,
         dense, 3)  # rounded to fp16
    call("clip_gradient_norm", dense, 1.0, f((1,), "float32"))
    call("round_to_precision", dense, 2)  # bf16 (gpuback.kernels.precision.CODES)
    call("round_to_precision", z, 3)  # fp16
    scaler = f((2,), "float32")
    call("scale_by_loss_scale", a, scaler)
    call("unscale_gradients", dense, scaler, status, 3)
    call("update_loss_scale", scaler, status, status, 2000)
    return ran


def check_launch(kernel: str, grid: tuple, block: tuple, args: tuple) -> None:
    where = f"{kernel} grid {grid} block {block}"
    assert 1 <= len(grid) <= 3 and 1 <= len(block) <= 3, where
    assert all(isinstance(g, int) and g >= 1 for g in grid + block), where
    assert grid[0] <= MAX_X and all(g <= MAX_YZ for g in grid[1:]), where
    assert math.prod(block) <= MAX_THREADS and block[0] <= 1024, where
    assert len(block) < 2 or block[1] <= 1024, where
    assert len(block) < 3 or block[2] <= 64, where
    kind, work = WORK[kernel]
    sizes = work(args)
    if kind in REDUCING:  # shared arrays of REDUCE_CAPACITY slots, halved by the tree
        assert math.prod(block) <= REDUCE_CAPACITY, where
        assert block[0] & (block[0] - 1) == 0, where
    if kind == "2d":
        rows, samples = sizes
        assert grid[0] * block[1] >= rows or grid[0] == MAX_X, where
        assert grid[1] * block[0] >= samples or grid[1] == MAX_YZ, where
        # one warp-wide run of samples, without idle lanes at a small batch
        assert block[0] == min(32, 1 << (samples - 1).bit_length()), where
        assert math.prod(block) == cuda_launch.GPU_THREADS, where
    elif kind == "rows":
        assert len(grid) == 1 and (grid[0] * block[1] >= sizes[0] or grid[0] == MAX_X), where
    elif kind == "sample":
        assert len(grid) == 1 and (grid[0] >= sizes[0] or grid[0] == MAX_X), where
        assert len(block) == 1 and block[0] >= 32, where
    elif kind == "1d":
        assert len(grid) == 1 and (grid[0] * block[0] >= sizes[0] or grid[0] == MAX_X), where
    else:
        assert grid == (1,), where


NETWORKS = {
    # (n_src, n_dst, sparse edges): the sparse95 and sparse99 bench networks' blocks, wide and
    # huge layers
    "sparse95-784-4096": (784, 4096, round(0.05 * 784 * 4096)),
    "sparse95-4096-4096": (4096, 4096, SPARSE95_EDGES),
    "sparse95-4096-10": (4096, 10, round(0.05 * 4096 * 10)),
    "sparse99-4096-4096": (4096, 4096, round(0.01 * 4096 * 4096)),
    "wide-65536": (65_536, 65_536, 65_536 * 64),
    "huge-2^31-edges": (2**16, 2**16, 2**31),
    "huge-2^31-units": (2**31, 2**31, 2**31 + 7),
    "tiny": (1, 1, 1),
}


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("sizes", NETWORKS.values(), ids=NETWORKS.keys())
def test_every_launch_is_legal_at_the_gpu_block_shape(recorded: list, sizes, batch: int) -> None:
    ran = run_every_op(*sizes, batch)
    assert recorded, "no launches recorded"
    for launch in recorded:
        check_launch(*launch)
    launched = {kernel for kernel, *_ in recorded}
    assert launched == set(WORK), f"not launched: {set(WORK) - launched}"
    assert ran == set(OP_SET) - NON_COMPUTING_OPS


def test_the_sparse95_block_needed_more_than_65535_rows_of_blocks(recorded: list) -> None:
    """The launch this replaces put edges on gridDim.y with blocks of (32, 8): 104,858."""
    assert -(-SPARSE95_EDGES // 8) == 104_858 > MAX_YZ
    run_every_op(4096, 4096, SPARSE95_EDGES, 256)
    scatter = [(g, b) for k, g, b, _ in recorded if k == "sparse.scatter_add"]
    assert scatter and all(g[0] * b[1] >= SPARSE95_EDGES and g[1] <= MAX_YZ for g, b in scatter)


def test_cuda_backend_launches_only_through_cuda_device() -> None:
    """One stream: no ``kernel[grid, block](...)`` launch and no CuPy call of its own (the
    recording test above would also fail on a launch that bypasses ``cuda_device.launch``)."""
    source = inspect.getsource(cuda_backend)
    assert not re.search(r"\[[^\[\]]+,[^\[\]]+\]\s*\(", source), "a direct kernel launch"
    for call in ("xp()", "import cupy", ".fill(", "isfinite"):
        assert call not in source, call


def test_every_kernel_has_a_work_entry() -> None:
    import kernel_report

    assert set(kernel_report.kernel_tables()) == set(WORK)


@pytest.mark.parametrize("simulated", [False, True])
def test_launch_functions_at_any_size(simulated: bool) -> None:
    sizes = [0, 1, 2, 7, 31, 32, 33, 255, 257, 65_535, 65_536, 2**20 + 3, 2**31 - 1, 2**31,
             2**40]
    for n, m in itertools.product(sizes, sizes):
        for grid, block in (cuda_launch.rows_by_samples(n, m, simulated),
                            cuda_launch.row_reduction(n, m, simulated),
                            cuda_launch.per_sample(n, m, simulated),
                            cuda_launch.elementwise(n, simulated),
                            cuda_launch.single_block(simulated)):
            assert grid[0] <= MAX_X and all(g <= MAX_YZ for g in grid[1:]), (n, m, grid)
            assert all(g >= 1 for g in grid + block), (n, m, grid, block)
            assert math.prod(block) <= min(MAX_THREADS, REDUCE_CAPACITY), (n, m, block)


# Small cases whose GPU launch is a block or a few (at 256 threads per block, 32 or more per
# sample); the batch of 300 is more than one block of accumulate_metrics holds.
GPU_SHAPE_CASES = ["bias_activation-relu-17x5", "bias_activation-softmax-17x5",
                   "activation_delta-gelu-17x5", "bias_grad-17x5",
                   "sparse_backward-3to17-b5-acc0-det0", "sparse_backward-3to17-b5-acc1-det1",
                   "sparse_weight_grad-3to17-b5", "loss_and_output_delta-ce-targets-17x5",
                   "loss_and_output_delta-ce-labels-ties", "loss_and_output_delta-bce-17x5",
                   "loss_and_output_delta-poisson-17x5",
                   "accumulate_metrics-b300", "weight_samples-17x300", "check_finite-3x5-inf-first",
                   "sgd_update-300-status0-nesterov1-mu0.9", "take_batch-20x17-b13-at0",
                   "add_into-17x5-acc1", "layer_norm-17x5", "layer_norm_backward-17x5",
                   "dropout-17x5-p0.1", "bias_activation_dropout-gelu-17x5-p0.1",
                   "dropout_activation_delta-gelu-17x5-p0.1"]


def _gpu_shape_cases() -> list:
    by_id = {c.id: c for c in cases("float32")}
    return [by_id[f"{name}-float32"] for name in GPU_SHAPE_CASES]


@pytest.mark.sim
@pytest.mark.parametrize("case", _gpu_shape_cases(), ids=lambda c: c.id)
def test_kernels_at_the_gpu_block_shape_match_the_reference(case, monkeypatch) -> None:
    """Real kernels in the simulator, launched with the GPU's blocks (256 threads, a warp or
    more per sample) on a small case: the shapes a GPU runs are checked for results too."""
    monkeypatch.setattr(cuda_backend, "_simulated", lambda: False)
    check_case(cuda_backend, case)
