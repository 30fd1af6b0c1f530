"""Optimiser and schedule rules test_optim.py leaves open: the public defaults, every argument
check and its message, the state a float32 network's optimiser keeps, partial states, and
``from_config`` on configs that leave things out."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import gpuback
from gpuback.optim import optimizers as optim

SPEC = gpuback.mlp_spec([3, 4, 2], activation="tanh")


def _stepped(opt: optim.Optimizer, dtype: str = "float64", steps: int = 1) -> gpuback.Network:
    net = gpuback.Network(SPEC, dtype=dtype, seed=1)
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(6, 3)), rng.integers(0, 2, size=6)
    for _ in range(steps):
        net.loss_and_grads(X, y)
        opt.step(net)
    return net


# --- defaults ----------------------------------------------------------------------------

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
    net = gpuback.Network(SPEC, seed=2)
    before = net.parameters()
    net.loss_and_grads(np.zeros((2, 3)), np.array([0, 1]))
    net.flat_gradients[...] = 0
    opt.step(net)
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(value, before[name])


# --- argument checks ---------------------------------------------------------------------

@pytest.mark.parametrize(("factory", "exc", "match"), [
    (lambda: optim.StepDecay(0), ValueError, r"^step_size: expected an integer >= 1, got 0$"),
    (lambda: optim.StepDecay(2, gamma=0.0), ValueError,
     r"^gamma: expected a positive finite number, got 0\.0$"),
    (lambda: optim.Cosine(0), ValueError, r"^total_steps: expected an integer >= 1, got 0$"),
    (lambda: optim.Cosine(10, warmup_steps=2.5), ValueError,
     r"^warmup_steps: expected an integer in \[0, total_steps=10\), got 2\.5$"),
    (lambda: optim.Cosine(10, warmup_steps=True), ValueError, r"^warmup_steps: .* got True$"),
    (lambda: optim.Cosine(10, warmup_steps=-1), ValueError, r"^warmup_steps: "),
    (lambda: optim.Cosine(10, min_factor=-0.1), ValueError,
     r"^min_factor: expected a number in \[0, 1\], got -0\.1$"),
    (lambda: optim.SGD(lr=0), ValueError, r"^lr: expected a positive finite number, got 0$"),
    (lambda: optim.SGD(lr=True), ValueError, r"^lr: expected a positive finite number"),
    (lambda: optim.SGD(lr="0.1"), ValueError, r"^lr: expected a positive finite number"),
    (lambda: optim.SGD(lr=math.inf), ValueError, r"^lr: "),
    (lambda: optim.SGD(weight_decay=-1.0), ValueError,
     r"^weight_decay: expected a non-negative finite number, got -1\.0$"),
    (lambda: optim.SGD(weight_decay=True), ValueError, r"^weight_decay: "),
    (lambda: optim.SGD(weight_decay="0"), ValueError, r"^weight_decay: "),
    (lambda: optim.SGD(schedule=3), TypeError,
     r"^schedule: expected a callable step -> factor, got 3$"),
    (lambda: optim.SGD(momentum=1.0), ValueError,
     r"^momentum: expected a number in \[0, 1\), got 1\.0$"),
    (lambda: optim.SGD(nesterov=True), ValueError, r"^nesterov: needs momentum > 0$"),
    (lambda: optim.Adam(betas=(0.9,)), ValueError,
     r"^betas: expected two numbers in \[0, 1\), got \(0\.9,\)$"),
    (lambda: optim.Adam(betas=(0.9, -0.1)), ValueError, r"^betas: "),
    (lambda: optim.Adam(eps=-1e-8), ValueError,
     r"^eps: expected a positive finite number, got -1e-08$"),
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


# --- config: only the built-in schedules can be saved -------------------------------------

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


# --- one network per optimiser --------------------------------------------------------------

def test_stepping_on_a_second_network_names_the_optimiser_and_the_way_out() -> None:
    opt = optim.Adam(lr=1e-2)
    _stepped(opt, steps=2)
    with pytest.raises(ValueError, match=(
            r"^optimizer: this Adam holds the state of another network \(2 steps\); its "
            r"moments would mix with this one's: give each network its own optimiser "
            r"\(load_state_dict moves a saved state onto one\)$")):
        _stepped(opt)


# --- state ---------------------------------------------------------------------------------

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


# --- from_config ---------------------------------------------------------------------------

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
