"""A small three-class problem and its network, for tests of the training loop, and a
recorder of the sample orders a fit sets."""

from __future__ import annotations

import numpy as np

import gpuback
from gpuback.training import data as training_data


def three_class_problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of 4 normal features, labelled 0, 1 or 2 by two thresholds."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5).astype(int)


def three_class_net(backend: str = "numpy", seed: int = 0, **kwargs) -> gpuback.Network:
    """A 4-5-3 tanh network for ``three_class_problem``."""
    return gpuback.Network(gpuback.mlp_spec([4, 5, 3], activation="tanh"), backend=backend,
                           seed=seed, **kwargs)


def record_orders(monkeypatch) -> list[np.ndarray]:
    """Every sample order a fit sets on its (device-resident) data set, from now on."""
    orders: list[np.ndarray] = []
    real = training_data.Dataset.set_order

    def record(self, order: np.ndarray) -> None:
        orders.append(np.array(order))
        real(self, order)

    monkeypatch.setattr(training_data.Dataset, "set_order", record)
    return orders
