"""What each piece of today's MLPs adds to a training step on the cuda backend, per group or
block and step: an identity block 2 launches (its add, forward and backward), layer
normalisation 4 (one kernel forward; the gain gradient, the per-sample backward and the bias
gradient), dropout none (its mask is drawn inside the activation's kernels, forward and
backward); and none of them a copy, a host wait or an allocation. Counted under the
simulator as ``gpuback.profile`` counts on a GPU."""

from __future__ import annotations

import numpy as np
import pytest

import gpuback
from gpuback import profile
from gpuback.optim import optimizers as optim

ADDED = {"identity": 2, "norm": 4, "dropout": 0}


def _spec(change: str | None) -> dict:
    hidden = {"name": "h", "size": 5, "activation": "tanh"}
    if change == "norm":
        hidden["norm"] = "layer"
    if change == "dropout":
        hidden["dropout"] = 0.3
    connections = [{"src": "x", "dst": "h", "kind": "dense"},
                   {"src": "x", "dst": "r", "kind": "dense"},
                   {"src": "h", "dst": "y", "kind": "dense"},
                   {"src": "r", "dst": "y", "kind": "dense"}]
    if change == "identity":
        connections.append({"src": "h", "dst": "r", "kind": "identity"})
    return {"groups": [{"name": "x", "size": 4}, hidden,
                       {"name": "r", "size": 5, "activation": "relu"},
                       {"name": "y", "size": 3, "activation": "softmax"}],
            "connections": connections, "input": "x", "output": "y", "loss": "cross_entropy"}


def _two_steps(spec: dict) -> profile.Counts:
    """The counts of two training steps: a run of four steps less a run of two."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(32, 4)), rng.integers(0, 3, 32)

    def counts(n: int) -> profile.Counts:
        net = gpuback.Network(spec, backend="cuda", dtype="float32", seed=1)
        with profile.counters() as counted:
            net.fit(X[:n], y[:n], epochs=1, batch_size=8, optimizer=optim.SGD(lr=0.1),
                    progress=False)
        return counted

    return counts(32) - counts(16)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("change", list(ADDED))
def test_each_piece_adds_its_launches_and_no_copy_wait_or_allocation(change: str) -> None:
    plain, changed = _two_steps(_spec(None)), _two_steps(_spec(change))
    assert changed.launches - plain.launches == 2 * ADDED[change]
    for field in ("gemms", "host_to_device", "device_to_host", "host_waits", "allocations"):
        assert getattr(changed, field) == getattr(plain, field), field
