"""Training options of the core API, on every backend (the ``backend`` fixture, tests/conftest.py):
weight decay on weights only (``decay_biases`` to opt back in), per-group learning-rate
multipliers, frozen parameters, their config and checkpoint round trips, ``forward(X,
outputs=...)`` and the plateau stop of ``fit`` (``n_iter_no_change``, ``tol``).

Expected values come from NumPy written here, from the update formulas, never from gpuback's
own optimiser code."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from helpers.tolerances import TOLERANCES, rel_error

import gpuback
from gpuback import training
from gpuback.checkpoint import files as checkpoint
from gpuback.optim import optimizers as optim

EXACT = TOLERANCES["float64"]["invariance"]  # one computation reached two ways

# A DAG whose blocks into one group are not next to each other in the flat buffer:
# x -> h1 -> h2 -> y, with skips x -> h2 and x -> y.
DAG = {
    "groups": [{"name": "x", "size": 3}, {"name": "h1", "size": 4, "activation": "tanh"},
               {"name": "h2", "size": 3, "activation": "tanh"},
               {"name": "y", "size": 2, "activation": "identity"}],
    "connections": [{"src": "x", "dst": "h1", "kind": "dense"},
                    {"src": "x", "dst": "h2", "kind": "dense"},
                    {"src": "h1", "dst": "h2", "kind": "dense"},
                    {"src": "h2", "dst": "y", "kind": "dense"},
                    {"src": "x", "dst": "y", "kind": "dense"}],
    "input": "x", "output": "y", "loss": "sum_of_squares",
}
WEIGHTS = ("x->h1", "x->h2", "h1->h2", "h2->y", "x->y")
BIASES = ("h1", "h2", "y")


def _owner(name: str) -> str:
    """A parameter's group, from its name alone: "src->dst" belongs to dst, a bias is its
    group."""
    return name.split("->")[1] if "->" in name else name


def _dag_net(backend: str, seed: int = 3) -> gpuback.Network:
    net = gpuback.Network(DAG, backend=backend, seed=seed)
    rng = np.random.default_rng(seed)
    net.set_parameters({g: rng.normal(size=size) for g, size in (("h1", 4), ("h2", 3),
                                                                   ("y", 2))})
    return net


def _data(n: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 2))


# --- weight decay: weights only, unless decay_biases ---------------------------------------

def _decayed(kind: str, w: np.ndarray, lr: float, wd: float, eps: float) -> np.ndarray:
    """One step from ``w`` at zero gradient, from the formulas: SGD w - lr wd w; Adam's L2
    decay g = wd w, m_hat = g, v_hat = g^2 after one step, w - lr g / (|g| + eps); AdamW
    w (1 - lr wd), then an Adam step on g = 0, which moves nothing."""
    if kind == "sgd":
        return w - lr * (wd * w)
    if kind == "adam":
        g = wd * w
        return w - lr * g / (np.sqrt(g * g) + eps)
    return w * (1 - lr * wd)


def _optimizer(kind: str, **kwargs) -> optim.Optimizer:
    if kind == "sgd":
        return optim.SGD(lr=0.3, momentum=0.5, **kwargs)
    return {"adam": optim.Adam, "adamw": optim.AdamW}[kind](lr=0.1, eps=1e-8, **kwargs)


@pytest.mark.parametrize("decay_biases", [False, True])
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_weight_decay_moves_biases_only_when_asked(backend: str, kind: str,
                                                   decay_biases: bool) -> None:
    net = _dag_net(backend)
    before = net.parameters()  # the gradient buffer is zero: only a decay moves anything
    opt = _optimizer(kind, weight_decay=0.2, decay_biases=decay_biases)
    opt.step(net)
    after = net.parameters()
    lr = opt.lr
    for name in WEIGHTS + BIASES:
        if name in BIASES and not decay_biases:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
            continue
        expected = _decayed(kind, before[name], lr, 0.2, 1e-8)
        assert not np.array_equal(expected, before[name]), name  # it does move
        assert rel_error(after[name], expected) <= EXACT, name


def test_without_weight_decay_a_plain_network_is_one_update(backend: str) -> None:
    """No decay, factors or frozen parameters: one run over the whole flat buffer, as before
    the options existed; decay on the weights alone: two runs (weights, then biases)."""
    from gpuback.optim import param_options

    net = _dag_net(backend)
    plain = optim.Adam()
    plain.check(net)
    plan, layout = net.plan, net.layout
    assert len(param_options.segments(plan, layout, 0.0, False, {}, set())) == 1
    assert len(param_options.segments(plan, layout, 0.1, True, {}, set())) == 1
    assert len(param_options.segments(plan, layout, 0.1, False, {}, set())) == 2


def test_weight_decay_changed_between_steps_applies_from_the_next(backend: str) -> None:
    """``gpuback.sklearn`` sets ``weight_decay`` per batch: a new value (from 0, where every
    parameter shares one run, to a decay on the weights alone) applies from the next step."""
    net = _dag_net(backend)
    opt = optim.SGD(lr=0.3)
    opt.step(net)  # zero gradients, no decay: nothing moves
    before = net.parameters()
    opt.weight_decay = 0.2
    opt.step(net)
    after = net.parameters()
    for name in WEIGHTS:
        assert rel_error(after[name], _decayed("sgd", before[name], 0.3, 0.2, 0.0)) <= EXACT
    for name in BIASES:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


# --- learning-rate multipliers -------------------------------------------------------------

@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_lr_multipliers_scale_a_groups_bias_and_incoming_blocks(backend: str,
                                                               momentum: float) -> None:
    factors = {"h2": 3.0, "y": 0.0}
    lr, wd = 0.05, 0.1
    net = _dag_net(backend)
    X, T = _data()
    opt = optim.SGD(lr=lr, momentum=momentum, weight_decay=wd, lr_multipliers=factors)
    before = net.parameters()
    _, grads = net.loss_and_grads(X, T)
    opt.step(net)
    after = net.parameters()
    for name in WEIGHTS + BIASES:
        # first step: velocity = g + wd w (weights only), the step lr * factor * velocity
        g = grads[name] + (wd * before[name] if "->" in name else 0.0)
        expected = before[name] - lr * factors.get(_owner(name), 1.0) * g
        if factors.get(_owner(name), 1.0) == 0.0:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        else:
            assert rel_error(after[name], expected) <= EXACT, name


def test_lr_multipliers_scale_adamw_and_its_decay(backend: str) -> None:
    """AdamW's first step from zero moments: w (1 - lr f wd) - lr f g / (|g| + eps)."""
    factors, lr, wd, eps = {"h1": 0.25, "h2": 2.0}, 1e-2, 0.1, 1e-8
    net = _dag_net(backend)
    X, T = _data()
    opt = optim.AdamW(lr=lr, weight_decay=wd, eps=eps, lr_multipliers=factors)
    before = net.parameters()
    _, grads = net.loss_and_grads(X, T)
    opt.step(net)
    after = net.parameters()
    for name in WEIGHTS + BIASES:
        f = factors.get(_owner(name), 1.0)
        w = before[name] * (1 - lr * f * (wd if "->" in name else 0.0))
        g = grads[name]
        expected = w - lr * f * g / (np.abs(g) + eps)
        assert rel_error(after[name], expected) <= EXACT, name


# --- freezing ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_frozen_parameters_stay_bitwise_and_keep_no_state(backend: str, kind: str) -> None:
    frozen = {"x->h1", "h1", "x->h2", "h1->h2", "h2"}  # group h1, group h2's blocks and bias
    net = _dag_net(backend)
    X, T = _data()
    opt = _optimizer(kind, weight_decay=0.1, decay_biases=True, freeze=["h1", "h2"])
    before = net.parameters()
    for _ in range(3):
        net.loss_and_grads(X, T)
        opt.step(net)
    after = net.parameters()
    for name in WEIGHTS + BIASES:
        if name in frozen:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        else:
            assert not np.array_equal(after[name], before[name]), name
    state = opt.state_dict()
    assert set(state["buffers"]) == {"h2->y", "x->y", "y"}
    # a state loaded onto an optimiser that freezes more drops the newly frozen one's
    again = _optimizer(kind, weight_decay=0.1, decay_biases=True, freeze=["h1", "h2", "x->y"])
    again.load_state_dict(state, net)
    assert set(again.state_dict()["buffers"]) == {"h2->y", "y"}


def test_freezing_a_single_block(backend: str) -> None:
    net = _dag_net(backend)
    X, T = _data()
    opt = optim.SGD(lr=0.1, freeze=("x->y",))
    before = net.parameters()
    _, grads = net.loss_and_grads(X, T)
    opt.step(net)
    after = net.parameters()
    np.testing.assert_array_equal(after["x->y"], before["x->y"])
    for name in set(WEIGHTS + BIASES) - {"x->y"}:
        assert rel_error(after[name], before[name] - 0.1 * grads[name]) <= EXACT, name


def test_a_skipped_step_changes_nothing_in_any_segment(backend: str) -> None:
    """The status flag of a non-finite step (``gpuback.training``) skips every segment's
    update, parameters and state alike."""
    net = _dag_net(backend)
    X, T = _data()
    opt = optim.Adam(lr=1e-2, weight_decay=0.1, lr_multipliers={"h1": 2.0}, freeze=["h2"])
    net.loss_and_grads(X, T)
    opt.step(net)
    before, state = net.parameters(), opt.state_dict()
    status = net.ops.from_host(np.array([1, 2]), np.int64)  # step 1 went non-finite
    net.loss_and_grads(X, T)
    opt.step(net, status)
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    for name, buffers in opt.state_dict()["buffers"].items():
        for buf, value in buffers.items():
            np.testing.assert_array_equal(value, state["buffers"][name][buf], err_msg=name)


# --- bad names and values ------------------------------------------------------------------

@pytest.mark.parametrize(("factory", "match"), [
    (lambda: optim.SGD(lr_multipliers={"h9": 2.0}),
     r"^lr_multipliers: unknown group 'h9'; expected one of \['h1', 'h2', 'y'\]$"),
    (lambda: optim.Adam(lr_multipliers={"x": 2.0}),
     r"^lr_multipliers: 'x' is the input group, which has no parameters$"),
    (lambda: optim.AdamW(freeze=["h1->y"]),
     r"^freeze: unknown parameter or group 'h1->y'; expected one of \['x->h1', "),
    (lambda: optim.SGD(freeze=["x"]), r"^freeze: 'x' is the input group"),
], ids=["unknown-group", "input-group", "unknown-freeze", "freeze-input"])
def test_unknown_names_are_refused_before_anything_changes(factory, match: str) -> None:
    net = _dag_net("numpy")
    X, T = _data()
    before = net.parameters()
    net.loss_and_grads(X, T)
    opt = factory()
    with pytest.raises(ValueError, match=match):
        opt.step(net)
    with pytest.raises(ValueError, match=match):
        net.fit(X, T, epochs=1, optimizer=factory(), progress=False)
    assert not opt.bound_to(net) and opt.steps == 0
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


@pytest.mark.parametrize(("factory", "exc", "match"), [
    (lambda: optim.SGD(lr_multipliers={"h1": -1.0}), ValueError,
     r"^lr_multipliers\['h1'\]: expected a finite number >= 0, got -1\.0$"),
    (lambda: optim.SGD(lr_multipliers={"h1": float("inf")}), ValueError,
     r"^lr_multipliers\['h1'\]: "),
    (lambda: optim.SGD(lr_multipliers={"h1": True}), TypeError,
     r"^lr_multipliers\['h1'\]: expected a real number, got True \(bool\)$"),
    (lambda: optim.SGD(lr_multipliers=[("h1", 2.0)]), TypeError, r"^lr_multipliers: "),
    (lambda: optim.SGD(freeze="h1"), TypeError,
     r"^freeze: expected a sequence of parameter or group names, got the string 'h1'"),
    (lambda: optim.SGD(freeze=[1]), TypeError, r"^freeze: "),
    (lambda: optim.SGD(decay_biases=1), TypeError, r"^decay_biases: expected True or False"),
])
def test_bad_option_values_are_named(factory, exc, match: str) -> None:
    with pytest.raises(exc, match=match):
        factory()


# --- config and checkpoints ----------------------------------------------------------------

@pytest.mark.parametrize("opt", [
    optim.SGD(lr=0.05, momentum=0.9, weight_decay=0.1, decay_biases=True,
              lr_multipliers={"h1": 0.5}, freeze=["x->y"]),
    optim.Adam(lr=1e-3, lr_multipliers={"y": 2}, freeze=("h2",)),
    optim.AdamW(weight_decay=0.05, schedule=optim.Cosine(10, warmup_steps=2)),
], ids=["sgd", "adam", "adamw"])
def test_config_records_and_restores_the_options(opt: optim.Optimizer) -> None:
    config = opt.config()
    for key in ("decay_biases", "lr_multipliers", "freeze"):
        assert key in config
    again = optim.from_config(json.loads(json.dumps(config)))  # as a checkpoint holds it
    assert again.config() == config
    assert (again.decay_biases, again.lr_multipliers, again.freeze) == \
        (opt.decay_biases, opt.lr_multipliers, opt.freeze)


def test_a_config_from_before_decay_biases_decays_every_parameter() -> None:
    """Checkpoints written before the option existed decayed the biases too: resumed, they
    go on doing so."""
    old = {"type": "SGD", "lr": 0.1, "weight_decay": 0.1, "momentum": 0.0,
           "nesterov": False, "schedule": {"type": "constant"}}
    opt = optim.from_config(old)
    assert opt.decay_biases is True and opt.lr_multipliers == {} and opt.freeze == ()
    net = _dag_net("numpy")
    before = net.parameters()
    opt.step(net)  # zero gradients
    np.testing.assert_allclose(net.parameters()["y"], before["y"] * (1 - 0.1 * 0.1),
                               rtol=EXACT)


def test_resume_with_options_equals_training_straight_through(backend: str, simulated: bool,
                                                              tmp_path) -> None:
    """Two epochs, a checkpoint, two more from it (Network.load and load_optimizer): bitwise
    the four epochs straight through."""
    X, T = _data(8 if simulated else 60, seed=1)
    kwargs = {"batch_size": 4 if simulated else 16, "seed": 5, "progress": False}

    def make() -> optim.Optimizer:
        return optim.AdamW(lr=1e-2, weight_decay=0.05, lr_multipliers={"h1": 0.5, "y": 2.0},
                           freeze=["x->h2"], schedule=optim.Cosine(total_steps=30))

    straight = gpuback.Network(DAG, backend=backend, seed=2, deterministic=True)
    straight.fit(X, T, epochs=4, optimizer=make(), **kwargs)
    first = gpuback.Network(DAG, backend=backend, seed=2, deterministic=True)
    opt = make()
    first.fit(X, T, epochs=2, optimizer=opt, **kwargs)
    first.save(tmp_path / "ckpt", opt)
    resumed = gpuback.Network.load(tmp_path / "ckpt", backend=backend, deterministic=True)
    resumed_opt = checkpoint.load_optimizer(tmp_path / "ckpt", resumed)
    assert resumed_opt is not None and resumed_opt.config() == opt.config()
    assert set(resumed_opt.state_dict()["buffers"]) == set(opt.state_dict()["buffers"])
    assert "x->h2" not in resumed_opt.state_dict()["buffers"]
    resumed.fit(X, T, epochs=2, optimizer=resumed_opt, **kwargs)
    for name, value in straight.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[name], value, err_msg=name)
    np.testing.assert_array_equal(straight.parameters()["x->h2"],
                                  first.parameters()["x->h2"])  # frozen throughout


# --- forward(X, outputs=...) ---------------------------------------------------------------

def test_forward_outputs_are_the_groups_activations(backend: str) -> None:
    net = _dag_net(backend)
    X, _ = _data(4)
    trace = net.trace(X)
    got = net.forward(X, outputs=["h2", "x", "y", "h1"])
    assert list(got) == ["h2", "x", "y", "h1"]
    for g, value in got.items():
        assert value.shape == (4, {"x": 3, "h1": 4, "h2": 3, "y": 2}[g])
        np.testing.assert_array_equal(value, trace.z[g], err_msg=g)
    np.testing.assert_array_equal(got["x"], X)
    np.testing.assert_array_equal(net.forward(X), got["y"])  # without outputs: unchanged


@pytest.mark.parametrize(("outputs", "exc", "match"), [
    (["h1", "h7"], ValueError,
     r"^outputs: unknown group 'h7'; expected some of \['x', 'h1', 'h2', 'y'\]$"),
    ("h1", TypeError, r"^outputs: expected a sequence of group names, got the string 'h1'"),
    (3, TypeError, r"^outputs: expected a sequence of group names, got 3$"),
])
def test_forward_names_a_bad_output(outputs, exc, match: str) -> None:
    net = _dag_net("numpy")
    with pytest.raises(exc, match=match):
        net.forward(_data(2)[0], outputs=outputs)


# --- plateau stop --------------------------------------------------------------------------

def _flat_run(backend: str, simulated: bool, epochs: int, **fit_kwargs) -> tuple[dict, int]:
    X, T = _data(8 if simulated else 40, seed=2)
    net = gpuback.Network(DAG, backend=backend, seed=1)
    history = net.fit(X, T, epochs=epochs, batch_size=8, optimizer=optim.SGD(lr=1e-12),
                      progress=False, **fit_kwargs)
    return history, net.epochs_trained


@pytest.mark.parametrize("n_iter_no_change", [1, 3])
def test_plateau_stop_on_a_flat_loss(backend: str, simulated: bool,
                                     n_iter_no_change: int) -> None:
    # lr 1e-12: each epoch's mean loss moves by far less than tol
    history, trained = _flat_run(backend, simulated, 10, n_iter_no_change=n_iter_no_change)
    assert len(history["loss"]) == trained == n_iter_no_change + 2
    assert all(len(v) == n_iter_no_change + 2 for v in history.values())


def test_plateau_stop_is_off_by_default(backend: str, simulated: bool) -> None:
    history, trained = _flat_run(backend, simulated, 4)
    assert len(history["loss"]) == trained == 4


def test_plateau_stop_lets_an_improving_run_go_on(backend: str, simulated: bool) -> None:
    """Full-batch gradient descent with a small step: the loss falls every epoch by more
    than tol, so even n_iter_no_change=1 never stops it."""
    X, T = _data(8 if simulated else 40, seed=2)
    net = gpuback.Network(DAG, backend=backend, seed=1)
    history = net.fit(X, T, epochs=4, batch_size=len(X), optimizer=optim.SGD(lr=0.05),
                      progress=False, n_iter_no_change=1, tol=1e-4)
    losses = history["loss"]
    assert len(losses) == net.epochs_trained == 4
    assert all(b < a - 1e-4 for a, b in itertools.pairwise(losses)), losses  # the premise


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"n_iter_no_change": 0}, ValueError, r"^n_iter_no_change: expected an integer >= 1"),
    ({"n_iter_no_change": 2.0}, TypeError, r"^n_iter_no_change: expected an integer"),
    ({"n_iter_no_change": 2, "tol": -1e-3}, ValueError,
     r"^tol: expected a finite number >= 0, got -0\.001$"),
    ({"tol": float("nan")}, ValueError, r"^tol: "),
])
def test_bad_plateau_arguments(kwargs: dict, exc, match: str) -> None:
    net = _dag_net("numpy")
    X, T = _data()
    with pytest.raises(exc, match=match):
        net.fit(X, T, epochs=1, progress=False, **kwargs)
    assert net.epochs_trained == 0


# --- fit's history, recorded as the epochs end --------------------------------------------

def test_fit_records_into_the_given_history_as_each_epoch_ends(backend: str,
                                                              simulated: bool) -> None:
    """An interrupted run leaves the figures of the epochs it completed in the caller's
    dict: the same as the first epochs of an unbroken run."""
    X, T = _data(8 if simulated else 40, seed=2)

    def run(epochs: int, history: dict | None = None, stop_after: int | None = None) -> dict:
        net = gpuback.Network(DAG, backend=backend, seed=1)

        def maybe_stop(epochs_trained: int) -> None:
            if epochs_trained == stop_after:
                raise KeyboardInterrupt

        return training.fit(net, X, T, epochs=epochs, batch_size=8,
                            optimizer=optim.SGD(lr=0.05), progress=False,
                            on_epoch_end=maybe_stop, history=history)

    unbroken = run(3)
    kept: dict = {}
    with pytest.raises(KeyboardInterrupt):
        run(3, kept, stop_after=2)
    assert kept["loss"] == unbroken["loss"][:2]
    assert kept["accuracy"] == unbroken["accuracy"][:2]
    assert len(kept["samples_per_second"]) == 2


def test_fit_refuses_a_history_that_is_not_an_empty_dict() -> None:
    X, T = _data(8, seed=2)
    net = gpuback.Network(DAG, backend="numpy", seed=1)
    for bad, error in (({"loss": [1.0]}, ValueError), ([], TypeError), ("h", TypeError)):
        with pytest.raises(error, match=r"^history: expected an empty dict"):
            training.fit(net, X, T, epochs=1, history=bad, progress=False)
    assert net.epochs_trained == 0
