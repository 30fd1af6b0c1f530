"""Mixed precision's rounded weights, cast from the master once per step.

Below fp32 the products read a copy of the float32 master parameters rounded to the
precision. The optimiser's fused update (``sgd_update`` / ``adam_update``) writes the master
and that copy in one launch, so a forward pass no longer remakes the copy from the master;
it does only after the master may have been written from outside (``flat_parameters``,
``set_parameters``, ``Network.load``). The expected values here come from the old rule,
computed in the test: before every forward pass the copy is set to
``gpuback.precision.round_to(master)`` on the host.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from gpuback.kernels.precision import CODES
from helpers.backend_params import backend_cases

import gpuback
from gpuback import Network, profile
from gpuback.backends.cuda import backend as cuda_backend
from gpuback.backends.precision import round_to
from gpuback.optim import optimizers as optim
from gpuback.optim import param_options

MODES = [pytest.param("sim", marks=pytest.mark.sim), pytest.param("gpu", marks=pytest.mark.gpu)]

PRECISIONS = ["tf32", "bf16", "fp16"]
OPTIMIZERS = {
    "sgd": lambda: optim.SGD(lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": lambda: optim.Adam(lr=0.05, weight_decay=1e-3),
    # segments: frozen parameters and learning-rate factors cut the buffers into views
    "adam-segments": lambda: optim.Adam(lr=0.05, lr_multipliers={"y": 0.5}, freeze=["h2"]),
    "sgd-segments": lambda: optim.SGD(lr=0.1, momentum=0.5, weight_decay=1e-2,
                                      lr_multipliers={"h1": 2.0}, freeze=["h1->h2"]),
}
SPEC = gpuback.mlp_spec([5, 6, 4, 3], activation="tanh", loss="cross_entropy")
# (optimiser, precision): every pair at full speed; on a simulated backend (~70 us a thread)
# each optimiser and each precision once or more
STEP_CASES = [(f"{k}-{p}", (k, p)) for k, p in itertools.product(OPTIMIZERS, PRECISIONS)]
SIM_STEP_CASES = [(f"{k}-{p}", (k, p)) for k, p in [("adam-segments", "bf16"),
                                                     ("sgd-segments", "fp16")]]
WRITES = ["flat_parameters", "flat_parameters-entries", "set_parameters", "load"]
WRITE_CASES = [(f"{w}-{p}", (w, p)) for w, p in itertools.product(WRITES, PRECISIONS)]
SIM_WRITE_CASES = [(f"{w}-{p}", (w, p)) for w, p in zip(WRITES, PRECISIONS * 2, strict=False)]


def _problem(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(np.float32) * 2.0
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return X, y


def _net(backend: str, precision: str, seed: int = 3) -> Network:
    return Network(SPEC, backend=backend, dtype="float32", precision=precision, seed=seed)


def _master(net: Network) -> np.ndarray:
    """The master parameters, read without handing out ``flat_parameters``."""
    return net.layout.pack(net.parameters(), np.float32)


def _copy(net: Network) -> np.ndarray:
    """The rounded copy the products read."""
    _, buffer, _ = net.fused_parameters
    return net.ops.to_host(buffer)


def _remake_from_master(net: Network, precision: str) -> None:
    """The old rule: the copy set to round_to(master), here on the host."""
    _, buffer, _ = net.fused_parameters
    net.ops.copy_into(buffer, round_to(_master(net), precision))


def _steps(net: Network, optimizer: optim.Optimizer, X: np.ndarray, y: np.ndarray,
           batch: int, old_rule: str | None = None) -> list[np.ndarray]:
    """Mini-batch steps through the engine's passes; the per-sample losses of each."""
    losses = []
    for start in range(0, len(X), batch):
        ws, targets = net.load_batch(X[start:start + batch], y[start:start + batch])
        if old_rule is not None:
            _remake_from_master(net, old_rule)
        net.run_forward(ws)
        net.run_backward(ws, targets)
        losses.append(net.ops.to_host(ws.losses))
        optimizer.step(net)
    return losses


@pytest.mark.parametrize(("backend", "case", "spec"), backend_cases(STEP_CASES, SIM_STEP_CASES),
                         indirect=["backend"])
def test_steps_match_the_copy_remade_before_every_forward(backend: str, case: str,
                                                          spec: tuple[str, str],
                                                          simulated: bool) -> None:
    """Bitwise: the fused copy gives the parameters and losses of the old rule, and after
    every step (no forward pass since) the copy is round_to(master) exactly, frozen
    parameters and lr_multipliers' segments included: the update wrote it."""
    kind, precision = spec
    X, y = _problem(8 if simulated else 12)
    fused, old = _net(backend, precision), _net(backend, precision)
    opt_fused, opt_old = OPTIMIZERS[kind](), OPTIMIZERS[kind]()
    start = _master(fused)
    for epoch in range(2):
        got = _steps(fused, opt_fused, X, y, batch=4)
        expected = _steps(old, opt_old, X, y, batch=4, old_rule=precision)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_array_equal(g, e, err_msg=f"losses, epoch {epoch}")
        np.testing.assert_array_equal(_master(fused), _master(old))
        np.testing.assert_array_equal(_copy(fused), round_to(_master(fused), precision))
    assert not np.array_equal(_master(fused), start)  # it trained
    # a frozen parameter: neither copy changed
    frozen = param_options.frozen_parameters(fused.plan, OPTIMIZERS[kind]().freeze)
    for name in frozen:
        lo = fused.layout.offsets[name]
        hi = lo + int(np.prod(fused.layout.shapes[name]))
        np.testing.assert_array_equal(_master(fused)[lo:hi], start[lo:hi])


@pytest.mark.slow  # (on the simulator)
@pytest.mark.parametrize(("backend", "case", "precision"),
                         backend_cases([(p, p) for p in PRECISIONS], [("fp16", "fp16")]),
                         indirect=["backend"])
def test_fit_matches_the_copy_remade_before_every_forward(backend: str, case: str,
                                                          precision: str, simulated: bool,
                                                          monkeypatch) -> None:
    """``fit`` (fp16 with its dynamic loss scaling) against the same fit whose every forward
    pass first sets the copy to round_to(master): the same history and parameters."""
    X, y = _problem(8 if simulated else 16)
    fused, old = _net(backend, precision), _net(backend, precision)
    plain_forward = Network.run_forward

    def old_forward(ws, nudge=None, dropout=None):
        _remake_from_master(old, precision)
        plain_forward(old, ws, nudge, dropout)

    monkeypatch.setattr(old, "run_forward", old_forward)
    kwargs = {"epochs": 1 if simulated else 2, "batch_size": 5, "progress": False, "seed": 1}
    got = fused.fit(X, y, optimizer=optim.Adam(lr=0.03), **kwargs)
    expected = old.fit(X, y, optimizer=optim.Adam(lr=0.03), **kwargs)
    assert got["loss"] == expected["loss"]
    np.testing.assert_array_equal(_master(fused), _master(old))
    np.testing.assert_array_equal(_copy(fused), round_to(_master(fused), precision))


def _copy_remakes(net: Network, monkeypatch) -> list[int]:
    """A list that gets one entry per rounding of the parameter copy in place (the remake
    of ``run_forward``), recorded at the backend's ``round_to_precision``."""
    remade: list[int] = []
    ops = net.ops
    plain = ops.round_to_precision
    _, buffer, _ = net.fused_parameters

    def recording(x, code):
        if x is buffer:
            remade.append(code)
        plain(x, code)

    monkeypatch.setattr(ops, "round_to_precision", recording)
    return remade


@pytest.mark.slow  # (on the simulator)
@pytest.mark.parametrize(("backend", "case", "precision"),
                         backend_cases([("bf16", "bf16"), ("fp16", "fp16")], [("fp16", "fp16")]),
                         indirect=["backend"])
def test_training_remakes_the_copy_once_not_at_every_forward(backend: str, case: str,
                                                             precision: str, simulated: bool,
                                                             monkeypatch) -> None:
    """A fit (epochs of 3 steps, with validation): the copy is rounded from the master
    once, at the first forward pass; the steps keep it (fp16's per-step check that the
    master is finite reads it without marking the copy stale). Then a hand-out of
    ``flat_parameters`` makes the next pass remake it once more."""
    X, y = _problem(9)
    net = _net(backend, precision)
    remade = _copy_remakes(net, monkeypatch)
    net.fit(X, y, epochs=1 if simulated else 3, batch_size=3, optimizer=optim.SGD(lr=0.1),
            progress=False, validation=_problem(4, seed=2))
    assert remade == [CODES[precision]]
    net.predict(X)
    assert len(remade) == 1
    net.flat_parameters  # noqa: B018  (handed out: may be written)
    net.predict(X)
    net.predict(X)
    assert len(remade) == 2


def _write_cases(net: Network, new: np.ndarray, tmp_path) -> dict:
    """Ways of writing the parameters ``new`` (flat) from outside the optimiser."""
    ops = net.ops

    def through_the_buffer():
        ops.copy_into(net.flat_parameters, new)
        return net

    def one_entry_at_a_time():  # as gpuback.gradcheck writes: the property taken per write
        for i in range(new.size):
            ops.copy_into(net.flat_parameters[i:i + 1], new[i:i + 1])
        return net

    def set_parameters():
        net.set_parameters(net.layout.unpack(new))
        return net

    def load():  # a checkpoint of the new values, saved from another backend's network
        source = Network(SPEC, backend="numpy", dtype="float32", precision=net.precision)
        source.set_parameters(net.layout.unpack(new))
        source.save(tmp_path / "saved")
        return Network.load(tmp_path / "saved", backend=net.backend)

    return {"flat_parameters": through_the_buffer, "flat_parameters-entries": one_entry_at_a_time,
            "set_parameters": set_parameters, "load": load}


@pytest.mark.parametrize(("backend", "case", "spec"),
                         backend_cases(WRITE_CASES, SIM_WRITE_CASES), indirect=["backend"])
def test_a_forward_after_an_outside_write_uses_the_new_values(backend: str, case: str,
                                                              spec: tuple[str, str],
                                                              simulated: bool,
                                                              tmp_path) -> None:
    """After training (the copy kept by the optimiser) and a forward pass, parameters written
    from outside reach the next pass: its outputs are those of a network built with them."""
    how, precision = spec
    X, y = _problem(8)
    net = _net(backend, precision)
    net.fit(X, y, epochs=1, batch_size=8 if simulated else 4, optimizer=optim.Adam(lr=0.05),
            progress=False)
    before = net.forward(X)
    moved = net.layout.unpack(_master(net) * np.float32(-1.5) + np.float32(0.01))
    new = net.layout.pack(moved, np.float32)  # (the layout's padding stays zero)
    written = _write_cases(net, new, tmp_path)[how]()
    got = written.forward(X)
    fresh = _net(backend, precision)
    fresh.set_parameters(net.layout.unpack(new))
    np.testing.assert_array_equal(got, fresh.forward(X))
    assert not np.allclose(got, before)  # the old copy would have given the old outputs
    np.testing.assert_array_equal(_copy(written), round_to(new, precision))


def test_a_loaded_network_forwards_as_the_trained_one(backend: str, simulated: bool,
                                                      tmp_path) -> None:
    """The copy a trained network kept step by step and the copy a load makes from the
    saved master give the same outputs, bitwise."""
    X, y = _problem(8)
    net = _net(backend, "bf16")
    net.fit(X, y, epochs=1 if simulated else 2, batch_size=4, optimizer=optim.Adam(lr=0.05),
            progress=False)
    net.save(tmp_path / "m")
    loaded = Network.load(tmp_path / "m", backend=backend)
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))
    np.testing.assert_array_equal(_copy(loaded), _copy(net))


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_a_skipped_step_writes_neither_copy(backend: str, kind: str) -> None:
    """With the status set the update is skipped: the master and the rounded copy keep
    their values, even a copy that differs from round(master) (poisoned here)."""
    X, y = _problem(4)
    net = _net(backend, "fp16")
    opt = OPTIMIZERS[kind]()
    net.loss_and_grads(X, y)
    opt.step(net)  # bound, its state non-zero
    net.loss_and_grads(X, y)
    master = _master(net)
    _, buffer, _ = net.fused_parameters
    poison = np.full(master.shape, 7.0, np.float32)
    net.ops.copy_into(buffer, poison)
    status = net.ops.from_host(np.array([5, 3]), np.int64)  # step 5, SCALE_OVERFLOW
    opt.step(net, status)
    np.testing.assert_array_equal(_master(net), master)
    np.testing.assert_array_equal(_copy(net), poison)


def test_fp16_overflowing_steps_leave_both_copies_as_they_were(backend: str,
                                                               simulated: bool) -> None:
    """From a loss scale of 2^40 every step overflows and is skipped (S halves each time):
    the master and its copy keep their values through a whole fit."""
    X, y = _problem(6)
    net = _net(backend, "fp16")
    net.forward(X)  # the copy made
    master, copy = _master(net), _copy(net)
    np.testing.assert_array_equal(copy, round_to(master, "fp16"))
    epochs = 1 if simulated else 2
    net.fit(X, y, epochs=epochs, batch_size=3, optimizer=optim.Adam(lr=0.1), progress=False,
            loss_scale=2.0**40)
    assert net.loss_scaler.read()[0] == 2.0 ** (40 - 2 * epochs)  # every step skipped
    np.testing.assert_array_equal(_master(net), master)
    np.testing.assert_array_equal(_copy(net), copy)


# --- the cuda backend: the per-forward rounding launch is gone --------------------------------

def _address(array) -> tuple[int, int]:
    """(first byte, elements) of a device array: CuPy's or the simulator's."""
    if isinstance(array, np.ndarray):
        return array.__array_interface__["data"][0], array.size
    return array.__cuda_array_interface__["data"][0], array.size


def _fit_launches(precision: str, steps: int, monkeypatch) -> tuple[int, list[int]]:
    """Kernel launches (``gpuback.profile``) of a one-epoch fit of ``steps`` steps on the
    cuda backend, and the precision code of every rounding kernel run on the weights'
    copy (its launches recorded by kernel name)."""
    X, y = _problem(3 * steps)
    net = Network(SPEC, backend="cuda", dtype="float32", precision=precision, seed=1)
    copy = _address(net.fused_parameters[1])
    on_copy: list[int] = []
    plain = cuda_backend._launch  # noqa: SLF001  (its kernel names: which op rounds what)

    def recording(family, kernel, dtype, config, *args):
        if kernel == "round_elements" and _address(args[1]) == copy:
            on_copy.append(int(args[0]))
        plain(family, kernel, dtype, config, *args)

    monkeypatch.setattr(cuda_backend, "_launch", recording)
    with profile.counters() as c:
        net.fit(X, y, epochs=1, batch_size=3, optimizer=optim.Adam(lr=1e-2), progress=False)
    monkeypatch.undo()
    return c.launches, on_copy


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_steps_launch_no_rounding_of_the_weights(mode: str, precision: str,
                                                      monkeypatch) -> None:
    """On the cuda backend no rounding kernel runs on the weights' copy after the first
    forward pass of a fit (fp16: loss-scaled): the fused optimiser kernel writes it. So a
    bf16 step costs exactly one launch more than an fp32 step per buffer of activations or
    deltas it rounds (the input, each hidden group's z, each computed group's delta): the
    copy is neither copied nor rounded per pass."""
    launches, on_copy = _fit_launches(precision, 3, monkeypatch)
    assert on_copy == [CODES[precision]]  # the first forward pass's, of 3 steps
    if precision == "bf16":  # (fp16 adds the loss scaling's launches)
        plan = _net("numpy", "fp32").plan
        rounded_buffers = 1 + (len(plan.computed) - 1) + len(plan.computed)
        fewer, _ = _fit_launches(precision, 1, monkeypatch)
        fp32, fp32_fewer = (_fit_launches("fp32", n, monkeypatch)[0] for n in (3, 1))
        per_step, per_fp32_step = (launches - fewer) / 2, (fp32 - fp32_fewer) / 2
        assert per_step - per_fp32_step == rounded_buffers
