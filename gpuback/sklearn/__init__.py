"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` trained by gpuback.

Drop-in replacements for ``sklearn.neural_network``'s (see ``estimators``): ``params``
checks their constructor parameters, ``base`` holds what they share (fitting, attributes,
pickling), ``stochastic`` scikit-learn's training rules as a callback of gpuback's one
epoch loop and ``weights`` scikit-learn's initial weights and its view of a network's.
scikit-learn is an optional dependency: ``pip install 'gpuback[sklearn]'``;
``import gpuback`` never imports it, ``import gpuback.sklearn`` does."""

from __future__ import annotations

from .estimators import (
    INSTALL_HINT,
    SKLEARN,
    MLPClassifier,
    MLPRegressor,
)

__all__ = [
    "INSTALL_HINT",
    "SKLEARN",
    "MLPClassifier",
    "MLPRegressor",
]
