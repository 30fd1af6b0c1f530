"""Optimisers against the textbook update formulas, and the cuda kernels against NumPy.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from helpers.random_specs import SIM_CASES, random_data
from helpers.tolerances import TOLERANCES, rel_error

import gpuback
from gpuback.optim import optimizers as optim

SPEC = dict(SIM_CASES)["dag-2"]  # dense and sparse blocks, several groups


STEPS = 5


def _textbook(kind: str, hp: dict):
    """A per-parameter update written from the papers, one scalar at a time. Weight decay
    applies to weights (names "src->dst"), to biases only with decay_biases."""
    def decay(name):
        return hp["weight_decay"] if "->" in name or hp.get("decay_biases") else 0.0

    def sgd(name, w, g, state, t, lr):
        out, vel = [], state.setdefault("v", [0.0] * len(w))
        for i, (wi, gi) in enumerate(zip(w, g, strict=True)):
            gi = gi + decay(name) * wi
            vel[i] = hp["momentum"] * vel[i] + gi
            step = gi + hp["momentum"] * vel[i] if hp["nesterov"] else vel[i]
            out.append(wi - lr * step)
        return out

    def adam(name, w, g, state, t, lr):
        b1, b2 = hp["betas"]
        m = state.setdefault("m", [0.0] * len(w))
        v = state.setdefault("v", [0.0] * len(w))
        out = []
        for i, (wi, gi) in enumerate(zip(w, g, strict=True)):
            if kind == "adamw":
                wi = wi * (1 - lr * decay(name))
            else:
                gi = gi + decay(name) * wi
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            out.append(wi - lr * m_hat / (math.sqrt(v_hat) + hp["eps"]))
        return out

    return sgd if kind == "sgd" else adam


CONFIGS = {
    "sgd": ("sgd", dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0)),
    "sgd-momentum-wd": ("sgd", dict(lr=0.05, momentum=0.9, nesterov=False, weight_decay=1e-2)),
    "sgd-nesterov": ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.0)),
    "adam": ("adam", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
    "adam-l2": ("adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    "adamw": ("adamw", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)),
    "sgd-wd-biases": ("sgd", dict(lr=0.05, momentum=0.9, nesterov=False, weight_decay=1e-2,
                                  decay_biases=True)),
    "adamw-biases": ("adamw", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1,
                                   decay_biases=True)),
}


def _make(kind: str, hp: dict, schedule=None) -> optim.Optimizer:
    cls = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}[kind]
    return cls(**hp, schedule=schedule)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_updates_follow_the_textbook_formulas(config: str) -> None:
    kind, hp = CONFIGS[config]
    schedule = optim.Cosine(total_steps=STEPS, warmup_steps=2, min_factor=0.1)
    net = gpuback.Network(SPEC, seed=4)
    opt = _make(kind, hp, schedule)
    update = _textbook(kind, hp)
    rng = np.random.default_rng(0)
    X, T = random_data(SPEC, 6, rng)
    expected = {k: v.ravel().tolist() for k, v in net.parameters().items()}
    states: dict[str, dict] = {k: {} for k in expected}
    for t in range(1, STEPS + 1):
        _, grads = net.loss_and_grads(X, T)
        lr = hp["lr"] * schedule(t - 1)
        assert opt.current_lr() == pytest.approx(lr, rel=1e-15)
        opt.step(net)
        for k in expected:
            expected[k] = update(k, expected[k], grads[k].ravel().tolist(), states[k], t, lr)
        params = net.parameters()
        for k, values in expected.items():
            assert rel_error(params[k].ravel(), np.array(values)) <= 1e-14, (k, t)
            expected[k] = params[k].ravel().tolist()  # next step starts from the same point
    assert opt.steps == STEPS


def test_schedules() -> None:
    assert [optim.Constant()(t) for t in (0, 10)] == [1.0, 1.0]
    decay = optim.StepDecay(step_size=3, gamma=0.5)
    assert [decay(t) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    cos = optim.Cosine(total_steps=10, warmup_steps=4, min_factor=0.0)
    assert [cos(t) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cos(4) == 1.0 and cos(10) == pytest.approx(0.0, abs=1e-15)
    assert cos(7) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert cos(25) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize(("backend", "spec"), [
    # tiny for the simulator (~70 us a thread); for cpu, 40 000 weights: split over the cores
    pytest.param("cuda", dict(SIM_CASES)["size-1"], marks=pytest.mark.sim, id="cuda"),
    pytest.param("cpu", gpuback.mlp_spec([200, 200, 3]), id="cpu"),
])
def test_optimizer_kernels_match_numpy(backend: str, spec: dict, config: str, dtype: str) -> None:
    kind, hp = CONFIGS[config]
    rng = np.random.default_rng(1)
    X, T = random_data(spec, 2, rng)
    nets = [gpuback.Network(spec, backend=b, dtype=dtype, seed=2) for b in ("numpy", backend)]
    opts = [_make(kind, hp) for _ in nets]
    for _ in range(2):
        for net, opt in zip(nets, opts, strict=True):
            net.loss_and_grads(X, T, as_device=True)
            opt.step(net)
    ref, other = (n.parameters() for n in nets)
    for k in ref:
        assert rel_error(other[k], ref[k]) <= TOLERANCES[dtype]["backend"], k


def test_state_dict_round_trip_resumes_exactly() -> None:
    rng = np.random.default_rng(2)
    X, T = random_data(SPEC, 5, rng)
    straight = gpuback.Network(SPEC, seed=5)
    opt = optim.AdamW(lr=1e-2)
    for _ in range(4):
        straight.loss_and_grads(X, T)
        opt.step(straight)

    first = gpuback.Network(SPEC, seed=5)
    opt1 = optim.AdamW(lr=1e-2)
    for _ in range(2):
        first.loss_and_grads(X, T)
        opt1.step(first)
    resumed = gpuback.Network(SPEC, seed=99)
    resumed.set_parameters(first.parameters())
    opt2 = optim.AdamW(lr=1e-2)
    opt2.load_state_dict(opt1.state_dict(), resumed)
    for _ in range(2):
        resumed.loss_and_grads(X, T)
        opt2.step(resumed)
    for k, v in straight.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[k], v)


@pytest.mark.parametrize(("factory", "match"), [
    (lambda: optim.SGD(lr=0), "lr"),
    (lambda: optim.SGD(lr=float("nan")), "lr"),
    (lambda: optim.SGD(momentum=1.0), "momentum"),
    (lambda: optim.SGD(nesterov=True), "nesterov"),
    (lambda: optim.Adam(betas=(0.9, 1.0)), "betas"),
    (lambda: optim.Adam(eps=0), "eps"),
    (lambda: optim.AdamW(weight_decay=-1), "weight_decay"),
    (lambda: optim.StepDecay(0), "step_size"),
    (lambda: optim.Cosine(10, warmup_steps=10), "warmup_steps"),
    (lambda: optim.Cosine(10, min_factor=2.0), "min_factor"),
])
def test_bad_optimizer_arguments(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


@pytest.mark.parametrize("factory", [lambda: optim.SGD(lr=0.1, momentum=0.9),
                                     lambda: optim.Adam(lr=1e-2)])
def test_an_optimiser_belongs_to_one_network(factory) -> None:
    """Its moments are one network's: stepping it on a second one is refused, even one of
    the same spec (whose parameters share every name), and nothing of it changes."""
    spec = gpuback.mlp_spec([3, 4, 2], activation="tanh")
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(8, 3)), rng.integers(0, 2, size=8)
    first, second = gpuback.Network(spec, seed=1), gpuback.Network(spec, seed=2)
    opt = factory()
    first.loss_and_grads(X, y)
    opt.step(first)
    before = second.parameters()
    second.loss_and_grads(X, y)
    with pytest.raises(ValueError, match="holds the state of another network"):
        opt.step(second)
    with pytest.raises(ValueError, match="holds the state of another network"):
        second.fit(X, y, epochs=1, optimizer=opt, progress=False)
    for k, v in second.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    assert opt.steps == 1
    opt.step(first)  # its own network: fine
    # load_state_dict moves a state onto a network explicitly
    moved = factory()
    moved.load_state_dict(opt.state_dict(), second)
    second.loss_and_grads(X, y)
    moved.step(second)
    with pytest.raises(ValueError, match="another network"):
        moved.step(first)



def test_a_bound_optimizer_restores_a_state_in_place() -> None:
    """``load_state_dict(state)`` without a network restores onto the one the optimiser is
    bound to, as ``LossScaler.load_state_dict(state)`` restores a scale; unbound, it says
    which network is missing."""
    net = gpuback.Network(gpuback.mlp_spec([3, 4, 2], activation="tanh"), seed=1)
    X, y = np.random.default_rng(0).normal(size=(5, 3)), np.array([0, 1, 1, 0, 1])
    opt = optim.Adam(lr=1e-2)
    net.loss_and_grads(X, y)
    opt.step(net)
    saved = opt.state_dict()
    net.loss_and_grads(X, y)
    opt.step(net)
    opt.load_state_dict(saved)
    again = opt.state_dict()
    assert again["steps"] == saved["steps"] == 1 and opt.bound_to(net)
    for name, buffers in saved["buffers"].items():
        for buffer, value in buffers.items():
            np.testing.assert_array_equal(again["buffers"][name][buffer], value)
    with pytest.raises(ValueError, match=r"^net: this Adam is bound to no network yet"):
        optim.Adam().load_state_dict(saved)


TANH_SPEC = gpuback.mlp_spec([3, 4, 2], activation="tanh")


def _stepped(opt: optim.Optimizer, dtype: str = "float64", steps: int = 1) -> gpuback.Network:
    net = gpuback.Network(TANH_SPEC, dtype=dtype, seed=1)
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(6, 3)), rng.integers(0, 2, size=6)
    for _ in range(steps):
        net.loss_and_grads(X, y)
        opt.step(net)
    return net


def test_adam_defaults_are_the_papers() -> None:
    # Kingma & Ba (2015), Algorithm 1: alpha = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1e-8
    for cls in (optim.Adam, optim.AdamW):
        opt = cls()
        assert (opt.lr, opt.betas, opt.eps) == (0.001, (0.9, 0.999), 1e-8)
    assert optim.Adam().weight_decay == 0.0
    assert optim.AdamW().weight_decay == 0.01  # decoupled decay is AdamW's point


def test_sgd_defaults_are_plain_gradient_descent() -> None:
    opt = optim.SGD()
    assert (opt.lr, opt.momentum, opt.nesterov, opt.weight_decay) == (0.1, 0.0, False, 0.0)
    assert isinstance(opt.schedule, optim.Constant)


def test_sgd_without_decay_leaves_weights_alone_at_zero_gradient() -> None:
    # w -= lr * (g + wd * w): with g = 0 only a weight decay would move w
    opt = optim.SGD()
    net = gpuback.Network(TANH_SPEC, seed=2)
    before = net.parameters()
    net.loss_and_grads(np.zeros((2, 3)), np.array([0, 1]))
    net.flat_gradients[...] = 0
    opt.step(net)
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize(("factory", "exc", "match"), [
    (lambda: optim.StepDecay(0), ValueError, r"^step_size: expected an integer >= 1, got 0$"),
    (lambda: optim.StepDecay(2, gamma=0.0), ValueError,
     r"^gamma: expected a finite number > 0, got 0\.0$"),
    (lambda: optim.Cosine(0), ValueError, r"^total_steps: expected an integer >= 1, got 0$"),
    (lambda: optim.Cosine(10, warmup_steps=2.5), ValueError,
     r"^warmup_steps: expected an integer in \[0, total_steps=10\), got 2\.5$"),
    (lambda: optim.Cosine(10, warmup_steps=True), ValueError, r"^warmup_steps: .* got True$"),
    (lambda: optim.Cosine(10, warmup_steps=-1), ValueError, r"^warmup_steps: "),
    (lambda: optim.Cosine(10, min_factor=-0.1), ValueError,
     r"^min_factor: expected a number in \[0, 1\], got -0\.1$"),
    (lambda: optim.SGD(lr=0), ValueError, r"^lr: expected a finite number > 0, got 0$"),
    (lambda: optim.SGD(lr=True), TypeError, r"^lr: expected a real number, got True \(bool\)$"),
    (lambda: optim.SGD(lr="0.1"), TypeError, r"^lr: expected a real number, got '0\.1' \(str\)$"),
    (lambda: optim.SGD(lr=math.inf), ValueError, r"^lr: expected a finite number > 0, got inf$"),
    (lambda: optim.SGD(lr=math.nan), ValueError, r"^lr: expected a finite number > 0, got nan$"),
    (lambda: optim.SGD(weight_decay=-1.0), ValueError,
     r"^weight_decay: expected a finite number >= 0, got -1\.0$"),
    (lambda: optim.SGD(weight_decay=True), TypeError, r"^weight_decay: expected a real number"),
    (lambda: optim.SGD(weight_decay="0"), TypeError, r"^weight_decay: expected a real number"),
    (lambda: optim.SGD(schedule=3), TypeError,
     r"^schedule: expected a callable step -> factor, got 3$"),
    (lambda: optim.SGD(momentum=1.0), ValueError,
     r"^momentum: expected a number in \[0, 1\), got 1\.0$"),
    (lambda: optim.SGD(nesterov=True), ValueError, r"^nesterov: needs momentum > 0$"),
    (lambda: optim.Adam(betas=(0.9,)), ValueError,
     r"^betas: expected two numbers in \[0, 1\), got \(0\.9,\)$"),
    (lambda: optim.Adam(betas=(0.9, -0.1)), ValueError, r"^betas: "),
    (lambda: optim.Adam(eps=-1e-8), ValueError,
     r"^eps: expected a finite number > 0, got -1e-08$"),
])
def test_bad_arguments_are_named_with_what_was_expected(factory, exc, match: str) -> None:
    with pytest.raises(exc, match=match):
        factory()


def test_boundary_arguments_are_accepted() -> None:
    assert optim.StepDecay(1)(3) == pytest.approx(0.1**3)
    assert optim.Cosine(1)(0) == 1.0
    assert optim.Cosine(10, min_factor=1.0)(5) == 1.0  # no decay at all
    assert optim.Adam(betas=(0.0, 0.0)).betas == (0.0, 0.0)
    assert optim.SGD(momentum=0.0, weight_decay=0).weight_decay == 0.0


def test_cosine_runs_from_one_down_to_its_floor() -> None:
    # after the warm-up the factor is 1, half way through the cosine it is the midpoint of
    # 1 and the floor, and from total_steps on it is the floor
    cos = optim.Cosine(total_steps=12, warmup_steps=2, min_factor=0.2)
    assert cos(2) == pytest.approx(1.0)
    assert cos(7) == pytest.approx((1.0 + 0.2) / 2)
    assert cos(12) == pytest.approx(0.2) and cos(40) == pytest.approx(0.2)


@dataclasses.dataclass(frozen=True)
class Halving:
    def __call__(self, step: int) -> float:
        return 0.5 ** step


class SlowCosine(optim.Cosine):
    pass


@pytest.mark.parametrize("schedule", [lambda t: 1.0, Halving(), SlowCosine(10)],
                         ids=["lambda", "own-dataclass", "cosine-subclass"])
def test_config_refuses_a_schedule_it_cannot_rebuild(schedule) -> None:
    opt = optim.SGD(schedule=schedule)
    with pytest.raises(TypeError, match=r"^schedule: only \['constant', 'step_decay', "
                                        r"'cosine'\] can be saved, got "):
        opt.config()


def test_stepping_on_a_second_network_names_the_optimiser_and_the_way_out() -> None:
    opt = optim.Adam(lr=1e-2)
    _stepped(opt, steps=2)
    with pytest.raises(ValueError, match=(
            r"^optimizer: this Adam holds the state of another network \(2 steps\); its "
            r"moments would mix with this one's: give each network its own optimiser "
            r"\(load_state_dict moves a saved state onto one\)$")):
        _stepped(opt)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_state_buffers_are_in_the_networks_dtype(dtype: str) -> None:
    opt = optim.Adam(lr=1e-2)
    net = _stepped(opt, dtype=dtype)
    state = opt.state_dict()
    assert set(state["buffers"]) == set(net.parameters())
    for buffers in state["buffers"].values():
        assert {b.dtype for b in buffers.values()} == {np.dtype(dtype)}


def test_a_partial_state_loads_with_zeros_and_a_step_count_of_zero() -> None:
    # a state that leaves out the step count or some parameters: those start from zero
    opt = optim.Adam(lr=1e-2)
    net = _stepped(opt, steps=3)
    full = opt.state_dict()
    some = {name: full["buffers"][name] for name in ("x->h1", "y")}
    fresh = optim.Adam(lr=1e-2)
    fresh.load_state_dict({"buffers": some}, net)
    assert fresh.steps == 0
    loaded = fresh.state_dict()["buffers"]
    for name, buffers in loaded.items():
        for buf, value in buffers.items():
            expected = some[name][buf] if name in some else np.zeros_like(value)
            np.testing.assert_array_equal(value, expected, err_msg=f"{name}/{buf}")
    empty = optim.Adam(lr=1e-2)
    empty.load_state_dict({"steps": 5}, net)
    assert empty.steps == 5
    assert all(not v.any() for b in empty.state_dict()["buffers"].values() for v in b.values())


@pytest.mark.parametrize(("edit", "match"), [
    (lambda s: s["buffers"].update(nope=s["buffers"]["y"]), r"^state: unknown parameter 'nope'$"),
    (lambda s: s["buffers"]["y"].pop("v"), r"^state\['y'\]: expected buffers \['m', 'v'\], "
                                           r"got \['m'\]$"),
    (lambda s: s["buffers"]["y"].update(m=np.zeros(3)),
     r"^state\['y'\]\['m'\]: expected shape \(2,\), got \(3,\)$"),
], ids=["unknown", "buffers", "shape"])
def test_a_state_that_does_not_fit_is_named(edit, match: str) -> None:
    opt = optim.Adam(lr=1e-2)
    net = _stepped(opt)
    state = opt.state_dict()
    edit(state)
    with pytest.raises(ValueError, match=match):
        optim.Adam(lr=1e-2).load_state_dict(state, net)


def test_from_config_without_a_schedule_is_constant() -> None:
    opt = optim.from_config({"type": "SGD", "lr": 0.05, "momentum": 0.5})
    assert isinstance(opt, optim.SGD) and isinstance(opt.schedule, optim.Constant)
    assert (opt.lr, opt.momentum) == (0.05, 0.5)


def test_from_config_rebuilds_betas_from_a_json_list() -> None:
    opt = optim.from_config({"type": "Adam", "betas": [0.8, 0.9], "lr": 0.01})
    assert opt.betas == (0.8, 0.9)
    assert optim.from_config(opt.config()).config() == opt.config()


@pytest.mark.parametrize(("config", "match"), [
    ({"lr": 0.1}, r"^optimizer type: expected one of \['SGD', 'Adam', 'AdamW'\], got None$"),
    ({"type": "RMSprop"}, r"^optimizer type: expected one of .*, got 'RMSprop'$"),
    ({"type": "SGD", "schedule": {"total_steps": 3}},
     r"^schedule type: expected one of \['constant', 'step_decay', 'cosine'\], got None$"),
    ({"type": "SGD", "schedule": {"type": "linear"}}, r"^schedule type: .*, got 'linear'$"),
], ids=["no-type", "unknown-type", "no-schedule-type", "unknown-schedule"])
def test_from_config_names_what_it_cannot_build(config: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        optim.from_config(config)
