"""Checkpoints: round trips, loading on another backend, resume equivalence, interrupted
saves, divergence, bad files; on every backend (the ``backend`` fixture, tests/conftest.py:
fewer samples where the backend is simulated)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.checkpoint_files import current, rewrite
from helpers.tolerances import TOLERANCES, rel_error

import gpuback
from gpuback.checkpoint import files as checkpoint
from gpuback.checkpoint.files import CheckpointError
from gpuback.optim import optimizers as optim

N = {False: 120, True: 16}  # training samples at full speed, and on a simulated backend


def _problem(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def _spec() -> dict:
    return gpuback.sparse_mlp_spec([5, 8, 6, 2], density=0.5, seed=1, activation="tanh")


def _optimizer() -> optim.Optimizer:
    return optim.AdamW(lr=1e-2, schedule=optim.Cosine(total_steps=40, warmup_steps=5))


def _assert_same_parameters(a: gpuback.Network, b: gpuback.Network) -> None:
    pa, pb = a.parameters(), b.parameters()
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


def _assert_same_optimizer(a: optim.Optimizer, b: optim.Optimizer) -> None:
    assert a.config() == b.config() and a.steps == b.steps
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["buffers"].keys() == sb["buffers"].keys()
    for name, buffers in sa["buffers"].items():
        for buf, value in buffers.items():
            np.testing.assert_array_equal(value, sb["buffers"][name][buf], err_msg=name)


def test_the_package_presents_the_reading_side() -> None:
    """``Network.save`` is the one public door to save (the writer is ``files.save``, what it
    and ``fit`` call); ``gpuback.checkpoint`` presents what reads a checkpoint back."""
    assert set(gpuback.checkpoint.__all__) == {"CheckpointError", "FORMAT", "Saved", "exists",
                                               "load_optimizer", "read"}
    assert not hasattr(gpuback.checkpoint, "save")
    assert gpuback.checkpoint.CheckpointError is CheckpointError


def test_a_saved_optimizer_comes_back_bound_to_its_network(tmp_path) -> None:
    net = gpuback.Network(_spec(), seed=2)
    X, y = _problem(20)
    opt = _optimizer()
    net.fit(X, y, epochs=1, batch_size=8, optimizer=opt, progress=False)
    net.save(tmp_path / "model", opt)
    assert gpuback.checkpoint.exists(tmp_path / "model")
    again = gpuback.Network.load(tmp_path / "model")
    loaded = gpuback.checkpoint.load_optimizer(tmp_path / "model", again)
    assert loaded is not None and loaded.bound_to(again)
    _assert_same_optimizer(opt, loaded)
    assert gpuback.checkpoint.read(tmp_path / "model").epochs_trained == 1


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_round_trip(backend: str, tmp_path, dtype: str) -> None:
    net = gpuback.Network(_spec(), backend=backend, dtype=dtype, seed=3)
    net.save(tmp_path / "model")
    again = gpuback.Network.load(tmp_path / "model", backend=backend)
    assert again.spec == net.spec and again.dtype == dtype and again.backend == backend
    _assert_same_parameters(again, net)
    assert checkpoint.load_optimizer(tmp_path / "model", again) is None
    X, _ = _problem(3)
    np.testing.assert_array_equal(again.forward(X), net.forward(X))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_load_on_another_backend(backend: str, other_backend: str, tmp_path,
                                 dtype: str) -> None:
    """Saved on ``backend``, loaded on ``other_backend``: the same parameters and optimiser
    state, bitwise, and the same outputs within the backends' tolerance."""
    X, y = _problem(8)
    net = gpuback.Network(_spec(), backend=backend, dtype=dtype, seed=3)
    opt = _optimizer()
    net.fit(X, y, epochs=1, batch_size=4, optimizer=opt, progress=False)  # moments not zero
    net.save(tmp_path / "model", opt)
    again = gpuback.Network.load(tmp_path / "model", backend=other_backend)
    assert again.backend == other_backend and again.dtype == dtype
    assert again.spec == net.spec and again.epochs_trained == 1
    _assert_same_parameters(again, net)
    again_opt = checkpoint.load_optimizer(tmp_path / "model", again)
    assert again_opt is not None
    _assert_same_optimizer(again_opt, opt)
    err = rel_error(again.forward(X), net.forward(X))
    assert err <= TOLERANCES[dtype]["backend"], f"outputs: relative error {err:.3e}"


def test_resume_equals_training_straight_through(backend: str, simulated: bool,
                                                 tmp_path) -> None:
    """Two epochs, a checkpoint, two more from it: bitwise the four epochs straight through
    (``deterministic=True`` everywhere, for the cuda backend's sparse backward)."""
    X, y = _problem(8 if simulated else 120)  # two steps an epoch when simulated
    kwargs = {"batch_size": 4 if simulated else 16, "seed": 9, "progress": False}
    straight = gpuback.Network(_spec(), backend=backend, seed=2, deterministic=True)
    straight.fit(X, y, epochs=4, optimizer=_optimizer(), **kwargs)

    first = gpuback.Network(_spec(), backend=backend, seed=2, deterministic=True)
    opt = _optimizer()
    first.fit(X, y, epochs=2, optimizer=opt, **kwargs)
    first.save(tmp_path / "ckpt", opt)
    resumed = gpuback.Network.load(tmp_path / "ckpt", backend=backend, deterministic=True)
    assert resumed.epochs_trained == 2
    _assert_same_parameters(resumed, first)
    resumed_opt = checkpoint.load_optimizer(tmp_path / "ckpt", resumed)
    assert resumed_opt.steps == opt.steps
    assert resumed_opt.config() == opt.config()
    resumed.fit(X, y, epochs=2, optimizer=resumed_opt, **kwargs)
    _assert_same_parameters(resumed, straight)  # bitwise


def test_an_interrupted_save_leaves_the_previous_checkpoint(backend: str, simulated: bool,
                                                            tmp_path, monkeypatch) -> None:
    import safetensors.numpy

    X, y = _problem(N[simulated])
    net = gpuback.Network(_spec(), backend=backend, seed=4)
    opt = _optimizer()
    net.save(tmp_path / "ckpt", opt)
    before = gpuback.Network.load(tmp_path / "ckpt", backend=backend)
    net.fit(X, y, epochs=1, optimizer=opt, progress=False)

    calls = []

    def crash_on_second_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:  # the weights are written, the optimiser state is not
            raise KeyboardInterrupt("power cut")
        return real(tensors, filename, metadata)

    real = safetensors.numpy.save_file
    monkeypatch.setattr(safetensors.numpy, "save_file", crash_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        net.save(tmp_path / "ckpt", opt)
    monkeypatch.undo()
    _assert_same_parameters(gpuback.Network.load(tmp_path / "ckpt", backend=backend), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no half directories left


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_keeps_the_last_good_checkpoint(backend: str, simulated: bool,
                                                   tmp_path) -> None:
    X, _ = _problem(N[simulated])
    T = X[:, :2] * 3.0
    net = gpuback.Network(gpuback.mlp_spec([5, 8, 2], activation="identity",
                                           loss="sum_of_squares"), backend=backend, seed=5)
    opt = optim.SGD(lr=0.01)
    net.fit(X, T, epochs=1, optimizer=opt, checkpoint=str(tmp_path / "ckpt"), progress=False)
    opt.lr = 1e3  # a linear network with this step size grows without bound
    with pytest.raises(gpuback.TrainingDivergedError, match=r"diverged.* epoch \d+") as info:
        net.fit(X, T, epochs=5, optimizer=opt, checkpoint=str(tmp_path / "ckpt"),
                progress=False)
    failed_epoch = info.value.epoch
    kept = gpuback.Network.load(tmp_path / "ckpt", backend=backend)
    # the checkpoint is the one written after the last epoch that finished (the epoch count
    # runs on from the first fit: the diverged epoch is epochs_trained + 1)
    assert kept.epochs_trained == failed_epoch - 1 >= 1
    assert all(np.isfinite(v).all() for v in kept.parameters().values())
    assert checkpoint.load_optimizer(tmp_path / "ckpt", kept) is not None


def test_load_errors(backend: str, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        gpuback.Network.load(tmp_path / "nothing", backend=backend)
    net = gpuback.Network(_spec(), backend=backend)
    net.save(tmp_path / "a")
    rewrite(tmp_path / "a", "weights.safetensors", b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        gpuback.Network.load(tmp_path / "a", backend=backend)

    net.save(tmp_path / "b")
    rewrite(tmp_path / "b", "network.json", b"{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        gpuback.Network.load(tmp_path / "b", backend=backend)

    net.save(tmp_path / "c")
    other = gpuback.Network(gpuback.mlp_spec([5, 8, 6, 2]), backend=backend)  # other shapes
    other.save(tmp_path / "d")
    rewrite(tmp_path / "d", "network.json", current(tmp_path / "c", "network.json").read_bytes())
    with pytest.raises(CheckpointError, match=r"'\w+->\w+' is float64 \(\d+, \d+\), expected "
                                              r"float64 \(\d+,\)"):
        gpuback.Network.load(tmp_path / "d", backend=backend)

    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match=r"holds files but no gpuback checkpoint "
                                              r"\(notes\.txt\); refusing"):
        net.save(tmp_path / "e")
    assert (tmp_path / "e" / "notes.txt").read_text() == "mine"
