"""propagation's host-side pieces, checked against independent arithmetic."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from gpuback.core import propagation


def test_mean_loss_sums_float32_losses_in_float64() -> None:
    # 2**24 + 1 is not a float32: summed in float32 the 1 is lost (round half to even).
    # The exact mean, from math.fsum over the same values, keeps it.
    losses = np.array([2.0**24, 1.0], dtype=np.float32)
    ops = SimpleNamespace(to_host=np.asarray)
    ws = SimpleNamespace(losses=losses, batch=2)
    assert np.float32(2.0**24) + np.float32(1.0) == np.float32(2.0**24)  # the premise
    assert propagation.mean_loss(ops, ws) == math.fsum([2.0**24, 1.0]) / 2
