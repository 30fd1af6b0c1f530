"""``Network.fit`` is the loop's door: it takes every option of ``gpuback.training.fit`` and
hands each on; and the batch order a ``seed`` gives, an integer or a ``RandomState``."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from helpers.training_runs import record_orders

import gpuback
from gpuback import training
from gpuback.training import loop


def _net() -> gpuback.Network:
    return gpuback.Network(gpuback.mlp_spec([4, 5, 3], activation="tanh"), backend="numpy")


def _problem(n: int):
    X = np.random.default_rng(0).normal(size=(n, 4))
    return X, (X[:, 0] > 0).astype(int)


def _options(function) -> list[inspect.Parameter]:
    return list(inspect.signature(function).parameters.values())[1:]  # after net / self


def test_network_fit_takes_every_option_of_the_loop() -> None:
    loop_options = {p.name: p.default for p in _options(training.fit)}
    assert {p.name: p.default for p in _options(gpuback.Network.fit)} == loop_options


@pytest.mark.parametrize("positional", [False, True])
def test_network_fit_hands_every_option_to_the_loop(monkeypatch, positional: bool) -> None:
    received: dict = {}

    def spy(*args, **kwargs):
        received.update(inspect.signature(real).bind(*args, **kwargs).arguments)
        return "the history"

    real = loop.fit
    monkeypatch.setattr(loop, "fit", spy)
    net = _net()
    options = _options(gpuback.Network.fit)
    given = {p.name: object() for p in options}  # a distinct value for each option
    if positional:
        args = [given[p.name] for p in options if p.kind == p.POSITIONAL_OR_KEYWORD]
        kwargs = {p.name: given[p.name] for p in options if p.kind == p.KEYWORD_ONLY}
        assert net.fit(*args, **kwargs) == "the history"
    else:
        assert net.fit(**given) == "the history"
    assert received.pop("net") is net
    assert received.keys() == given.keys()
    assert all(received[name] is given[name] for name in given)


def test_a_random_state_seed_shuffles_the_last_order_each_epoch(monkeypatch) -> None:
    """Each epoch's order is the last epoch's, shuffled by the next permutation the
    RandomState draws (what scikit-learn's MLP does with its random_state each epoch:
    tests/sklearn)."""
    X, y = _problem(11)
    orders = record_orders(monkeypatch)
    seed = np.random.RandomState(7)
    _net().fit(X, y, epochs=3, batch_size=4, seed=seed, progress=False)
    theirs = np.random.RandomState(7)
    expected, order = [], np.arange(11)
    for _ in range(3):
        order = order[theirs.permutation(11)]
        expected.append(order)
    assert len(orders) == 3
    for ours, drawn in zip(orders, expected, strict=True):
        np.testing.assert_array_equal(ours, drawn)
    # the generator moved on by exactly those draws
    assert seed.randint(1 << 30) == theirs.randint(1 << 30)


def test_an_integer_seed_draws_one_generator_per_epoch(monkeypatch) -> None:
    """An integer seed: epoch k's order from ``default_rng([seed, k])``, so a run resumed
    after k epochs shuffles as an unbroken one."""
    X, y = _problem(11)
    orders = record_orders(monkeypatch)
    net = _net()
    net.fit(X, y, epochs=2, batch_size=4, seed=3, progress=False)
    net.fit(X, y, epochs=1, batch_size=4, seed=3, progress=False)
    expected = [np.random.default_rng([3, k]).permutation(11) for k in range(3)]
    for ours, drawn in zip(orders, expected, strict=True):
        np.testing.assert_array_equal(ours, drawn)


def test_without_shuffling_a_random_state_is_not_drawn_from(monkeypatch) -> None:
    X, y = _problem(11)
    orders = record_orders(monkeypatch)
    seed = np.random.RandomState(7)
    _net().fit(X, y, epochs=2, batch_size=4, seed=seed, shuffle=False, progress=False)
    assert all(np.array_equal(order, np.arange(11)) for order in orders)
    assert seed.randint(1 << 30) == np.random.RandomState(7).randint(1 << 30)


@pytest.mark.parametrize(("seed", "error"), [(-1, ValueError), (1.5, TypeError),
                                             ("7", TypeError), (True, TypeError)])
def test_bad_seeds_are_refused_before_training(seed, error) -> None:
    X, y = _problem(8)
    net = _net()
    with pytest.raises(error, match=r"^seed: expected an integer"):
        net.fit(X, y, epochs=1, seed=seed, progress=False)
    assert net.epochs_trained == 0
