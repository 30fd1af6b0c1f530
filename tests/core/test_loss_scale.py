"""Dynamic loss scaling for fp16 (gpuback.loss_scale): the scale ops on every backend against
NumPy written here, the GradScaler rule (halve on overflow and skip, double after the growth
interval), the recovery from a huge initial scale, a regression whose fp16 gradients
underflow without scaling, bitwise resume, and what counts as a divergence."""

from __future__ import annotations

import numpy as np
import pytest
from gpuback.kernels.scalar import SCALE_OVERFLOW
from helpers.checkpoint_files import edit_json

import gpuback
from gpuback.backends import get_backend
from gpuback.checkpoint import files as checkpoint
from gpuback.core.loss_scale import LossScale
from gpuback.optim.optimizers import SGD, Adam
from gpuback.training import TrainingDivergedError

SPEC = gpuback.mlp_spec([3, 4, 2], activation="tanh", loss="sum_of_squares")


def _problem(n: int, scale: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    T = (scale * np.tanh(X @ rng.normal(size=(3, 2)))).astype(np.float32)
    return X, T


def _net(backend: str, precision: str = "fp16", seed: int = 1) -> gpuback.Network:
    return gpuback.Network(SPEC, backend, dtype="float32", precision=precision, seed=seed,
                           deterministic=True)


# --- the ops ---------------------------------------------------------------------------------

def test_scale_ops_match_numpy(backend: str) -> None:
    ops = get_backend(backend)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 7)).astype(np.float32)
    scaler = np.array([2.0**16, 5.0], np.float32)
    dev, dev_scaler = ops.from_host(x, np.float32), ops.from_host(scaler, np.float32)
    ops.scale_by_loss_scale(dev, dev_scaler)
    np.testing.assert_array_equal(ops.to_host(dev), x * np.float32(65536.0))  # exact: 2^16

    # a scale that is not a power of two: the product rounded once in float32
    g = rng.normal(size=(11,)).astype(np.float32)
    odd = np.array([3.0, 0.0], np.float32)
    dev_g, status = ops.from_host(g, np.float32), ops.zeros((2,), np.int64)
    ops.unscale_gradients(dev_g, ops.from_host(odd, np.float32), status, 4)
    # 1/3 rounded to float32 once, then each product rounded once (exact in float64 first)
    expected = (g.astype(np.float64) * float(np.float32(1 / 3))).astype(np.float32)
    np.testing.assert_array_equal(ops.to_host(dev_g), expected)
    np.testing.assert_array_equal(ops.to_host(status), [0, 0])

    for bad in (np.inf, -np.inf, np.nan):
        g_bad = g.copy()
        g_bad[6] = bad
        dev_g, status = ops.from_host(g_bad, np.float32), ops.zeros((2,), np.int64)
        ops.unscale_gradients(dev_g, ops.from_host(np.array([4.0, 0.0]), np.float32),
                              status, 9)
        np.testing.assert_array_equal(ops.to_host(status), [9, SCALE_OVERFLOW])
    # a finite value that overflows once unscaled (S < 1) counts too
    big = np.array([3e38, 1.0], np.float32)
    dev_g, status = ops.from_host(big, np.float32), ops.zeros((2,), np.int64)
    ops.unscale_gradients(dev_g, ops.from_host(np.array([0.25, 0.0]), np.float32), status, 2)
    assert ops.to_host(status)[0] == 2 and np.isinf(ops.to_host(dev_g)[0])


@pytest.mark.parametrize(("scaler", "step_status", "status", "interval", "after", "merged"), [
    ([8.0, 3.0], [0, 0], [0, 0], 5, [8.0, 4.0], [0, 0]),  # clean: count + 1
    ([8.0, 4.0], [0, 0], [0, 0], 5, [16.0, 0.0], [0, 0]),  # the 5th clean step: doubled
    ([8.0, 4.0], [7, 3], [0, 0], 5, [4.0, 0.0], [7, 3]),  # overflow: halved, count reset
    ([8.0, 1.0], [0, 0], [6, 1], 5, [8.0, 2.0], [6, 1]),  # a non-finite loss: merged, skip
    ([8.0, 0.0], [0, 0], [0, 0], 1, [16.0, 0.0], [0, 0]),  # interval 1: every step
])
def test_update_loss_scale_follows_the_gradscaler_rule(backend: str, scaler, step_status,
                                                        status, interval, after,
                                                        merged) -> None:
    ops = get_backend(backend)
    dev_scaler = ops.from_host(np.array(scaler), np.float32)
    dev_step = ops.from_host(np.array(step_status), np.int64)
    ops.update_loss_scale(dev_scaler, dev_step, ops.from_host(np.array(status), np.int64),
                          interval)
    np.testing.assert_array_equal(ops.to_host(dev_scaler), after)
    np.testing.assert_array_equal(ops.to_host(dev_step), merged)


# --- defaults and arguments ------------------------------------------------------------------

def test_fp16_scales_by_default_and_the_others_do_not(backend: str) -> None:
    X, T = _problem(4)
    for precision, scaled in [("fp16", True), ("bf16", False), ("tf32", False),
                              ("fp32", False)]:
        net = _net(backend, precision)
        net.fit(X, T, epochs=1, batch_size=4, progress=False)
        assert (net.loss_scaler is not None) is scaled, precision
        if scaled:
            assert net.loss_scaler.read() == (2.0**16, 1)  # one clean step
    net = _net(backend, "fp16")
    net.fit(X, T, epochs=1, batch_size=4, progress=False, loss_scale=False)
    assert net.loss_scaler is None


def test_bad_loss_scale_arguments_are_refused() -> None:
    net = _net("numpy")
    X, T = _problem(4)
    for bad, error in [(-1.0, ValueError), (0, ValueError), (float("inf"), ValueError),
                       ("big", TypeError), (LossScale, TypeError)]:
        with pytest.raises(error, match="loss_scale"):
            net.fit(X, T, epochs=1, progress=False, loss_scale=bad)
    for interval in (0, 2**24 + 1, 2.5):
        with pytest.raises(ValueError, match="growth_interval"):
            LossScale(8.0, interval)


# --- the dynamic rule in training --------------------------------------------------------------

def test_a_huge_initial_scale_recovers_by_skipping_steps(backend: str) -> None:
    """2^30 times deltas of order 0.1 overflow fp16 (max 65,504): each such step changes no
    parameter and no moment and halves S, until S is small enough; then training goes on."""
    X, T = _problem(4)
    net = _net(backend)
    opt = Adam(lr=1e-2)
    scales, changed = [], []
    for call in range(16):  # one step per call: 4 samples, a batch of 4
        before, moments = net.parameters(), opt.state_dict()["buffers"]
        net.fit(X, T, epochs=1, batch_size=4, optimizer=opt, progress=False,
                loss_scale=2.0**30 if call == 0 else None)  # None: go on with the scale
        after = net.parameters()
        changed.append(any(not np.array_equal(before[k], after[k]) for k in after))
        if not changed[-1] and moments:  # a skipped step leaves the moments alone too
            now = opt.state_dict()["buffers"]
            assert all(np.array_equal(moments[p][s], now[p][s]) for p in now for s in now[p])
        scales.append(net.loss_scaler.read()[0])
    skipped = changed.index(True)
    assert skipped >= 5, scales  # 2^30 * 0.1 / 2^5 is still far above 65,504
    assert not any(changed[:skipped]) and all(changed[skipped:]), changed
    assert scales[:skipped] == [2.0**(29 - i) for i in range(skipped)]
    assert all(s == scales[skipped - 1] for s in scales[skipped:])  # no growth yet
    assert net.epochs_trained == 16  # a skipped step is no divergence


def test_early_stopping_rolls_the_scale_back_to_the_best_epoch(backend: str) -> None:
    """From 2^40 every step overflows (deltas of order 0.1), so no parameter moves, the
    validation loss never improves, epoch 1 stays the best and S halves at each of an
    epoch's 3 steps: early stopping after epochs 2 and 3 goes back to epoch 1, S too."""
    X, T = _problem(9)
    net = _net(backend)
    net.fit(X, T, epochs=5, batch_size=3, progress=False, loss_scale=2.0**40,
            validation=_problem(4, seed=1), early_stopping=2, shuffle=False)
    assert net.epochs_trained == 1
    assert net.loss_scaler.read() == (2.0**(40 - 3), 0)
    # and training goes on from there: the next step halves epoch 1's scale
    net.fit(X[:3], T[:3], epochs=1, batch_size=3, progress=False)
    assert net.loss_scaler.read() == (2.0**(40 - 4), 0)


def test_the_scale_doubles_after_the_growth_interval(backend: str) -> None:
    X, T = _problem(7)
    net = _net(backend)
    net.fit(X, T, epochs=1, batch_size=1, progress=False, loss_scale=LossScale(8.0, 3))
    assert net.loss_scaler.read() == (16.0 * 2, 1)  # 7 clean steps: doubled at 3 and 6


def test_the_default_growth_interval_is_2000_steps() -> None:
    X, T = _problem(2000, scale=0.1)
    net = _net("numpy")
    net.epochs_trained = 1  # no first-batch reference: one sample's loss is no yardstick
    net.fit(X[:1999], T[:1999], epochs=1, batch_size=1, optimizer=SGD(lr=1e-3),
            progress=False, shuffle=False)
    assert net.loss_scaler.read() == (2.0**16, 1999)
    net.fit(X[1999:], T[1999:], epochs=1, batch_size=1, optimizer=SGD(lr=1e-3),
            progress=False)
    assert net.loss_scaler.read() == (2.0**17, 0)


def test_small_targets_train_only_with_scaling(backend: str, simulated: bool) -> None:
    """Targets and outputs of order 1e-6: a batch-mean output delta of ~1e-8 (a batch of 64)
    rounds to zero in fp16 (below 2^-25), so without scaling no weight gradient is ever
    nonzero and the loss stays where it began (only the output bias, whose gradient is summed
    from the float32 deltas, moves); with scaling fp16 trains to the float32 run's loss."""
    n = 64 if simulated else 256  # the simulator: one batch, two steps
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    T = (1e-6 * np.tanh(X @ rng.normal(size=(3, 2)))).astype(np.float32)

    def tiny_outputs(precision: str) -> gpuback.Network:
        net = _net(backend, precision)
        params = net.parameters()
        params["h1->y"] = params["h1->y"] * np.float32(1e-6)  # outputs of the targets' order
        params["y"] = params["y"] * 0
        net.set_parameters(params)
        return net

    def run(precision: str, scale) -> tuple[float, float, gpuback.Network]:
        net = tiny_outputs(precision)
        start = net.loss(X, T)
        history = net.fit(X, T, epochs=2 if simulated else 10, batch_size=64,
                          optimizer=Adam(lr=1e-7, eps=1e-14), progress=False,
                          loss_scale=scale)
        return start, history["loss"][-1], net

    start, unscaled, net = run("fp16", False)
    for at in (tiny_outputs("fp16"), net):  # the premise, at the start and at the end
        _, grads = at.loss_and_grads(X[:64], T[:64])
        assert not np.any(grads["h1->y"]) and not np.any(grads["x->h1"])
    assert unscaled > 0.9 * start
    _, scaled, net = run("fp16", None)
    _, reference, _ = run("fp32", None)
    assert net.loss_scaler.read()[0] == 2.0**16  # no overflow on the way
    learnt = 0.95 if simulated else 0.6
    assert reference < learnt * start  # float32 learns
    assert scaled < learnt * start and abs(scaled - reference) < 0.1 * (start - reference)

def test_resume_with_scaling_is_bitwise(backend: str, simulated: bool, tmp_path) -> None:
    """Skips in the first epochs (2^24 overflows at first), growth every 3 clean steps: the
    scale and its count go through the checkpoint, and the resumed run is the unbroken one."""
    X, T = _problem(8 if simulated else 48)
    kwargs = {"batch_size": 4 if simulated else 8, "seed": 5, "progress": False}
    options = LossScale(2.0**24, growth_interval=3)
    straight = _net(backend)
    straight.fit(X, T, epochs=4, optimizer=Adam(lr=1e-2), loss_scale=options, **kwargs)

    first, opt = _net(backend), Adam(lr=1e-2)
    first.fit(X, T, epochs=2, optimizer=opt, loss_scale=options, **kwargs)
    first.save(tmp_path / "ckpt", opt)
    resumed = gpuback.Network.load(tmp_path / "ckpt", backend=backend, deterministic=True)
    assert resumed.loss_scaler is not None
    assert resumed.loss_scaler.state_dict() == first.loss_scaler.state_dict()
    assert checkpoint.read(tmp_path / "ckpt").loss_scale == first.loss_scaler.state_dict()
    resumed.fit(X, T, epochs=2, optimizer=checkpoint.load_optimizer(tmp_path / "ckpt",
                                                                    resumed), **kwargs)
    for name, value in straight.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[name], value)
    assert resumed.loss_scaler.state_dict() == straight.loss_scaler.state_dict()
    assert straight.loss_scaler.read()[0] < 2.0**24  # it did skip


@pytest.mark.parametrize(("field", "value", "match"), [
    ("scale", -1.0, r"loss_scale: expected a finite number > 0, got -1\.0"),
    ("clean_steps", 1.5, "'clean_steps' must be a non-negative integer"),
    ("growth_interval", 2**25, "growth_interval: expected an integer in"),
    ("extra", 1, "expected an object with the fields")])
def test_a_bad_saved_loss_scale_is_a_checkpoint_error(tmp_path, field: str, value,
                                                      match: str) -> None:
    net = _net("numpy")
    net.fit(*_problem(4), epochs=1, batch_size=4, progress=False)
    target = tmp_path / "ckpt"
    net.save(target)
    assert checkpoint.read(target).loss_scale == {"scale": 2.0**16, "clean_steps": 1,
                                                  "growth_interval": 2000}
    edit_json(target, "network.json", lambda meta: meta["loss_scale"].update({field: value}))
    with pytest.raises(checkpoint.CheckpointError, match=r"network\.json: .*" + match):
        gpuback.Network.load(target, backend="numpy")


# --- what still diverges ---------------------------------------------------------------------

def test_a_scale_below_the_floor_is_a_divergence(backend: str) -> None:
    """Targets of 1e14: deltas overflow fp16 even at the floor 2^-14, so the first step halves
    S below it; the epoch's end reads S and raises."""
    X, T = _problem(4, scale=1e14)
    net = _net(backend)
    with pytest.raises(TrainingDivergedError, match="loss scale") as info:
        net.fit(X, T, epochs=1, batch_size=4, progress=False, loss_scale=2.0**-14)
    assert info.value.epoch == 1 and net.epochs_trained == 0
    assert net.loss_scaler.read()[0] == 2.0**-15


def test_non_finite_master_values_are_a_divergence(backend: str) -> None:
    """Finite unscaled gradients, but an SGD step of lr 1e38 overflows the float32 weights:
    the check after the update stops the run."""
    X, T = _problem(4, scale=100.0)  # gradients of order 10, fp16-safe at a scale of 1
    net = _net(backend)
    with pytest.raises(TrainingDivergedError, match="master value") as info:
        net.fit(X, T, epochs=1, batch_size=4, optimizer=SGD(lr=1e38), progress=False,
                loss_scale=1.0)
    assert info.value.step == 1

