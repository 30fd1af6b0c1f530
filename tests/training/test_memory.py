"""What training needs in memory (``gpuback.memory``): the optimiser's state, the
workspace and the data counted before anything is allocated, a run larger than the free
memory refused, and ``fit``'s training arguments checked first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.small_networks import LABELS, Allocations, inputs, small_net, stub_free

import gpuback
from gpuback import memory
from gpuback.optim.optimizers import SGD, Adam, AdamW


def _features(n: int) -> np.ndarray:
    return np.arange(2 * n, dtype=np.float64).reshape(n, 2)


def test_the_cli_counts_the_optimiser_before_drawing_a_weight(tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    """A network that fits, whose Adam state does not: refused before the network exists
    (no weight drawn), with the figure of the whole run."""
    from gpuback.cli.app import main
    from gpuback.core import engine as network_module

    spec = gpuback.mlp_spec([64, 300, 10])
    flat = gpuback.Network(spec).layout.size * 4  # float32 parameter bytes
    stub_free(monkeypatch, "numpy", 3 * flat)  # params + grads fit, + 2 Adam buffers do not
    drawn = []
    real = network_module.weight_chunks
    monkeypatch.setattr(network_module, "weight_chunks",
                        lambda *a, **k: drawn.append(1) or real(*a, **k))
    code = main(["train", "--hidden", "300", "--epochs", "1", "--backend", "numpy",
                 "--no-progress", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Adam state (2 x parameters)" in err and "is free there" in err
    assert len(err.strip().splitlines()) == 1
    assert drawn == []
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.parametrize(("make", "buffers"), [(Adam, 2), (AdamW, 2), (SGD, 1),
                                                (lambda: SGD(momentum=0.9), 1)],
                         ids=["Adam", "AdamW", "SGD", "SGD-momentum"])
def test_state_buffers_is_what_a_step_allocates(backend: str, monkeypatch: pytest.MonkeyPatch,
                                                make, buffers: int) -> None:
    optimizer = make()
    net = small_net(backend)
    net.loss_and_grads(inputs(0.0), LABELS)
    allocations = Allocations(monkeypatch, backend)
    assert optimizer.state_buffers() == buffers and not optimizer.bound_to(net)
    optimizer.step(net)
    flat = net.layout.size * 4
    assert allocations.nbytes.count(flat) == buffers and optimizer.bound_to(net)


def test_the_workspace_figure_is_what_reserve_allocates(backend: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    net = gpuback.Network(gpuback.mlp_spec([7, 5, 3]), backend=backend, dtype="float32")
    allocations = Allocations(monkeypatch, backend)
    net.reserve(13)
    assert sum(allocations.nbytes) == \
        gpuback.core.workspace.workspace_bytes(net.plan, "float32", 13)
    assert net.reserved_batch == 13


def test_a_training_run_larger_than_the_free_memory_is_refused(
        backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    net = gpuback.Network(gpuback.mlp_spec([30, 20, 5]), backend=backend, dtype="float32")
    flat = net.layout.size * 4
    workspace = gpuback.core.workspace.workspace_bytes(net.plan, "float32", 32)
    data = 1000
    need = 2 * flat + workspace + data  # Adam's m and v, the workspace, the data
    stub_free(monkeypatch, backend, need)
    memory.check_training(net, 32, Adam(), data_bytes=data)  # exactly enough
    stub_free(monkeypatch, backend, need - 1)
    with pytest.raises(memory.InsufficientMemoryError) as info:
        memory.check_training(net, 32, Adam(), data_bytes=data)
    message = str(info.value)
    assert "\n" not in message and message.startswith("training with batches of 32 needs ")
    assert f"{memory.human(need)} of it still to allocate" in message
    assert f"Adam state (2 x parameters) {memory.human(2 * flat)}" in message
    assert f"parameters {memory.human(flat)} (allocated)" in message
    assert f"only {memory.human(need - 1)} is free" in message
    # SGD keeps one buffer: the same run fits with one parameter buffer less
    stub_free(monkeypatch, backend, need - flat)
    memory.check_training(net, 32, SGD(), data_bytes=data)
    with pytest.raises(memory.InsufficientMemoryError):
        memory.check_training(net, 32, None, data_bytes=data)  # fit's default: Adam


def test_what_is_allocated_already_is_not_asked_for_again(
        backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    net = gpuback.Network(gpuback.mlp_spec([30, 20, 5]), backend=backend, dtype="float32")
    optimizer = Adam()
    net.fit(_features(8)[:, :1].repeat(30, axis=1) / 16, np.arange(8) % 5, epochs=1,
            batch_size=4, optimizer=optimizer, progress=False)
    stub_free(monkeypatch, backend, 0)  # nothing free: only a run that allocates nothing fits
    memory.check_training(net, 4, optimizer)  # state bound, workspace reserved
    with pytest.raises(memory.InsufficientMemoryError, match="workspace for batches of 64"):
        memory.check_training(net, 64, optimizer)
    with pytest.raises(memory.InsufficientMemoryError, match="SGD state"):
        memory.check_training(net, 4, SGD())


@pytest.mark.parametrize(("kwargs", "match"), [({"batch_size": 0}, "batch_size"),
                                               ({"batch_size": 2.5}, "batch_size"),
                                               ({"data_bytes": -1}, "data_bytes")])
def test_check_training_arguments(kwargs: dict, match: str) -> None:
    net = small_net("numpy")
    with pytest.raises(ValueError, match=match):
        memory.check_training(net, **{"batch_size": 8, **kwargs})
