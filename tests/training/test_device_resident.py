"""Training on the cuda backend: device-resident, sync-free, one stream, within the step budgets.

Under the Numba simulator (``sim``, every CI run) and on a real GPU (``gpu``). The counters
are those users read (``gpuback.profile.counters``); under the simulator the device arrays
count their own allocations and read-backs, so a hidden temporary or host round trip in a
step shows up as it would on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tolerances import TOLERANCES, rel_error

import gpuback
from gpuback import profile
from gpuback.backends.cuda import backend as cuda_backend
from gpuback.backends.cuda import device as cuda_device
from gpuback.optim import optimizers as optim

# Under the simulator these are training runs at ~70 us a simulated thread: the slow set
# (README: the second test command) runs them; on a GPU (-m gpu) they are quick.
MODES = [pytest.param("sim", marks=[pytest.mark.sim, pytest.mark.slow]),
         pytest.param("gpu", marks=pytest.mark.gpu)]
# Per steady-state step of a 3-layer MLP with Adam (the step budget): at most this many
# launches and cuBLAS calls, and no copy, wait or allocation at all.
STEP_BUDGET = {"launches": 12, "gemms": 8, "host_to_device": 0, "device_to_host": 0,
               "host_waits": 0, "allocations": 0}
PER_EPOCH_MOST = 8  # copies or waits an epoch may add (order upload, reading the metrics)


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


def _mlp(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + 2 * (X[:, 2] > 0.5)
    return gpuback.mlp_spec([12, 10, 8, 4], activation="tanh"), X, y


def _fit_counts(spec, X, y, epochs: int, batch: int, **kwargs) -> profile.Counts:
    net = gpuback.Network(spec, backend="cuda", dtype="float32", seed=1)
    with profile.counters() as counts:
        net.fit(X, y, epochs=epochs, batch_size=batch, optimizer=optim.Adam(lr=1e-2),
                progress=False, **kwargs)
    return counts


def test_steady_state_step_meets_the_budget(mode: str) -> None:
    spec, X, y = _mlp(64)
    batch = 8
    # the same run with 8 and with 4 more steps per epoch: what differs is the steps' cost
    short = _fit_counts(spec, X[:32], y[:32], epochs=2, batch=batch)
    long = _fit_counts(spec, X, y, epochs=2, batch=batch)
    extra_steps = 2 * (64 - 32) // batch
    per_step = {f: (getattr(long, f) - getattr(short, f)) / extra_steps for f in profile.FIELDS}
    for field, most in STEP_BUDGET.items():
        assert per_step[field] <= most, (field, per_step)
    assert per_step["launches"] > 0 and per_step["gemms"] == 8, per_step  # it did count


def test_epochs_after_the_first_allocate_nothing_validation_included(mode: str) -> None:
    spec, X, y = _mlp(40)
    kwargs = {"validation": (X[:13], y[:13]), "batch": 8}  # partial batches in both
    one = _fit_counts(spec, X, y, epochs=1, **kwargs)
    three = _fit_counts(spec, X, y, epochs=3, **kwargs)
    extra = three - one
    assert extra.allocations == 0, extra
    for field in ("host_to_device", "device_to_host", "host_waits"):
        assert getattr(extra, field) <= 2 * PER_EPOCH_MOST, (field, extra)


@pytest.mark.sim
def test_every_launch_is_on_the_current_stream(monkeypatch) -> None:
    """Every kernel the simulator is asked to run was configured with the current stream
    (on a GPU, test_non_blocking_stream_gives_the_same_training checks the ordering)."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    configurations = []
    original = FakeCUDAKernel.__getitem__

    def record(self, configuration):
        configurations.append(configuration)
        return original(self, configuration)

    monkeypatch.setattr(FakeCUDAKernel, "__getitem__", record)
    spec, X, y = _mlp(24)
    gpuback.Network(spec, backend="cuda", seed=0).fit(X, y, epochs=1, batch_size=8,
                                                     validation=(X[:5], y[:5]), progress=False)
    assert len(configurations) > 20
    stream = cuda_device.current_stream()
    assert all(len(c) >= 3 and c[2] is stream for c in configurations), \
        [c for c in configurations if len(c) < 3 or c[2] is not stream][:3]


@pytest.mark.gpu
def test_non_blocking_stream_gives_the_same_training() -> None:
    """On a non-blocking stream nothing orders work but the stream itself: a kernel or a
    cuBLAS call that ran elsewhere would race and change the result."""
    import cupy

    spec, X, y = _mlp(48)
    results = []
    for use_stream in (False, True):
        net = gpuback.Network(spec, backend="cuda", dtype="float64", seed=4)
        if use_stream:
            with cupy.cuda.Stream(non_blocking=True):
                net.fit(X, y, epochs=2, batch_size=8, progress=False)
        else:
            net.fit(X, y, epochs=2, batch_size=8, progress=False)
        results.append(net.parameters())
    for k in results[0]:
        np.testing.assert_array_equal(results[0][k], results[1][k])


def test_fit_matches_the_numpy_reference(mode: str) -> None:
    spec, X, y = _mlp(30)
    runs = {}
    for backend in ("numpy", "cuda"):
        net = gpuback.Network(spec, backend=backend, dtype="float64", seed=5)
        history = net.fit(X, y, epochs=2, batch_size=7, optimizer=optim.Adam(lr=1e-2),
                          validation=(X[:9], y[:9]), progress=False, seed=3)
        runs[backend] = (net.parameters(), history)
    tol = TOLERANCES["float64"]["backend"]
    (p_ref, h_ref), (p_cuda, h_cuda) = runs["numpy"], runs["cuda"]
    assert max(rel_error(p_cuda[k], p_ref[k]) for k in p_ref) <= tol
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert rel_error(h_cuda[key], h_ref[key]) <= tol, key


def test_device_inputs_are_used_in_place(mode: str) -> None:
    spec, X, y = _mlp(20)
    host = gpuback.Network(spec, backend="cuda", seed=2)
    host.fit(X, y, epochs=1, batch_size=6, progress=False)
    device = gpuback.Network(spec, backend="cuda", seed=2)
    X_dev = cuda_backend.from_host(X, np.float64)
    y_dev = cuda_backend.from_host(y, np.int64)
    with profile.counters() as counts:
        device.fit(X_dev, y_dev, epochs=1, batch_size=6, progress=False)
    for k, v in host.parameters().items():
        np.testing.assert_array_equal(device.parameters()[k], v)
    assert counts.host_to_device <= 2, counts  # the order (and no data) was uploaded


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # the simulator's float math
def test_divergence_names_the_first_bad_step_and_skips_its_update(mode: str) -> None:
    rng = np.random.default_rng(3)
    spec = gpuback.mlp_spec([5, 6, 3], activation="tanh", loss="sum_of_squares")
    X, T = rng.normal(size=(40, 5)), rng.normal(size=(40, 3))
    T[21] = 1e200  # its squared error overflows: step 21 // 4 + 1 = 6 goes non-finite
    net = gpuback.Network(spec, backend="cuda", seed=0)
    with pytest.raises(gpuback.TrainingDivergedError, match=r"loss is NaN or infinite at "
                                                            r"epoch 1, step 6"):
        net.fit(X, T, epochs=2, batch_size=4, shuffle=False, optimizer=optim.SGD(lr=0.05),
                progress=False)
    clean = gpuback.Network(spec, backend="cuda", seed=0)  # the five good steps alone
    clean.fit(X[:20], T[:20], epochs=1, batch_size=4, shuffle=False,
              optimizer=optim.SGD(lr=0.05), progress=False)
    for k, v in clean.parameters().items():
        np.testing.assert_array_equal(net.parameters()[k], v)


def test_large_data_streams_through_pinned_buffers(mode: str, monkeypatch) -> None:
    spec, X, y = _mlp(30)
    resident = gpuback.Network(spec, backend="cuda", seed=6)
    history = resident.fit(X, y, epochs=2, batch_size=8, validation=(X[:9], y[:9]),
                           progress=False)
    monkeypatch.setattr(cuda_backend, "memory_budget", lambda: 0.0)  # nothing fits
    streamed = gpuback.Network(spec, backend="cuda", seed=6)
    with profile.counters() as counts:
        streamed_history = streamed.fit(X, y, epochs=2, batch_size=8, validation=(X[:9], y[:9]),
                                        progress=False)
    for k, v in resident.parameters().items():
        np.testing.assert_array_equal(streamed.parameters()[k], v)
    assert streamed_history["loss"] == history["loss"]
    steps = 2 * (4 + 1)  # training and validation batches
    assert 2 * steps <= counts.host_to_device <= 2 * steps + 2 * PER_EPOCH_MOST, counts
