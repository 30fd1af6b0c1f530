"""Networks made for gradient checks: random biases, and data kept away from relu's kink."""

from __future__ import annotations

import numpy as np

import gpuback

from .random_specs import random_data


def randomise_biases(net: gpuback.Network, rng: np.random.Generator) -> None:
    """Give every bias a random value, so that bias paths carry real numbers in the checks
    (initial biases are zero) and no unit sits exactly on relu's kink."""
    params = net.parameters()
    net.set_parameters({g["name"]: rng.normal(scale=0.5, size=g["size"])
                        for g in net.spec["groups"] if g["name"] in params})


def network(spec: dict, backend: str, dtype: str = "float64", seed: int = 0) -> gpuback.Network:
    """``spec`` on ``backend`` with weights from ``seed`` and random biases (``seed + 1``)."""
    net = gpuback.Network(spec, backend=backend, dtype=dtype, seed=seed)
    randomise_biases(net, np.random.default_rng(seed + 1))
    return net


KINKED = ("relu", "leaky_relu")


def kink_margin(net: gpuback.Network, X: np.ndarray) -> float:
    """The smallest |a| over every relu-family unit and sample (inf if there are none).

    Reads every pre-activation through ``Network.trace`` (for a layer-normalised group, the
    normalised value its activation reads).
    """
    trace = net.trace(X)
    pre_activations = {**trace.a, **trace.u}
    margins = [np.abs(pre_activations[g["name"]]).min() for g in net.spec["groups"]
               if g.get("activation") in KINKED]
    return float(min(margins, default=np.inf))


def data_away_from_kinks(net: gpuback.Network, spec: dict, batch: int,
                         rng: np.random.Generator, labels: bool = False, margin: float = 2e-2):
    """``random_data``, redrawn until no relu-family activation input lies within ``margin`` of 0.

    A central difference whose step moves a pre-activation across relu's kink measures an
    average of the two slopes, not the derivative; gradcheck's default step is 2e-3.
    """
    for _ in range(200):
        X, T = random_data(spec, batch, rng, labels=labels)
        if kink_margin(net, X) > margin:
            return X, T
    raise AssertionError("could not draw data away from relu kinks")
