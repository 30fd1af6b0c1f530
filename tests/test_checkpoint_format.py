"""The checkpoint directory's format and the checks around it: where a save stages its files,
what it verifies before swapping them in, and what ``read`` refuses, message by message.

On the numpy backend (the checkpoint module is backend-independent; test_checkpoint.py runs
the round trips on every backend)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import stat

import numpy as np
import pytest
import safetensors.numpy

import gpuback
from gpuback import checkpoint, optim
from gpuback.checkpoint import CheckpointError

# A group name with a slash: the optimiser state file keys its tensors "<parameter>/<buffer>".
SPEC = {"groups": [{"name": "x", "size": 3}, {"name": "a/b", "size": 4, "activation": "tanh"},
                   {"name": "y", "size": 2, "activation": "softmax"}],
        "connections": [{"src": "x", "dst": "a/b", "kind": "dense"},
                        {"src": "a/b", "dst": "y", "kind": "sparse",
                         "edges": [[0, 1, 3], [0, 1, 1]]}],
        "input": "x", "output": "y", "loss": "cross_entropy"}


def _trained(steps: int = 2) -> tuple[gpuback.Network, optim.Optimizer]:
    net = gpuback.Network(SPEC, seed=1)
    opt = optim.Adam(lr=1e-2)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5, 3)), rng.integers(0, 2, size=5)
    for _ in range(steps):
        net.loss_and_grads(X, y)
        opt.step(net)
    return net, opt


def _entries(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_save_creates_missing_parent_directories(tmp_path) -> None:
    net, _ = _trained(0)
    target = tmp_path / "runs" / "today" / "model"
    checkpoint.save(net, target)
    assert checkpoint.read(target).spec == net.spec


def test_a_checkpoint_is_an_ordinary_directory(tmp_path) -> None:
    # its mode is what mkdir gives a new directory under the process's umask
    net, _ = _trained(0)
    checkpoint.save(net, tmp_path / "model")
    os.mkdir(tmp_path / "plain")
    mode = stat.S_IMODE((tmp_path / "model").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_files_are_staged_in_a_hidden_directory_beside_the_target(tmp_path,
                                                                  monkeypatch) -> None:
    written: list[pathlib.Path] = []
    real = safetensors.numpy.save_file

    def record(tensors, filename, metadata=None):
        written.append(pathlib.Path(filename))
        return real(tensors, filename, metadata)

    monkeypatch.setattr(safetensors.numpy, "save_file", record)
    net, opt = _trained()
    target = tmp_path / "model"
    checkpoint.save(net, target, opt)
    assert [p.name for p in written] == ["weights.safetensors", "optimizer.safetensors"]
    staging = written[0].parent
    assert staging.parent == tmp_path  # beside the target: os.replace stays on one device
    assert staging.name.startswith(".model.")
    assert _entries(tmp_path) == ["model"]  # and gone once swapped in


def test_replacing_a_checkpoint_moves_the_old_one_aside_beside_it(tmp_path,
                                                                  monkeypatch) -> None:
    net, opt = _trained()
    target = tmp_path / "model"
    checkpoint.save(net, target, opt)
    moves: list[tuple[pathlib.Path, pathlib.Path]] = []
    real = os.replace

    def record(src, dst):
        moves.append((pathlib.Path(src), pathlib.Path(dst)))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", record)
    checkpoint.save(net, target, opt)
    monkeypatch.undo()
    (old_src, old_dst), (new_src, new_dst) = moves
    assert old_src == target and new_dst == target
    assert old_dst.parent.parent == tmp_path and old_dst.parent.name.startswith(".model.old.")
    assert new_src.parent == tmp_path
    assert _entries(tmp_path) == ["model"]  # the previous checkpoint is deleted afterwards


def test_optimizer_state_of_a_parameter_name_with_a_slash_round_trips(tmp_path) -> None:
    net, opt = _trained()
    checkpoint.save(net, tmp_path / "model", opt)
    again = checkpoint.load_optimizer(tmp_path / "model", net)
    assert again is not None
    state, saved = opt.state_dict(), again.state_dict()
    assert set(saved["buffers"]) == set(state["buffers"]) == {"x->a/b", "a/b->y", "a/b", "y"}
    for name, buffers in state["buffers"].items():
        for buf, value in buffers.items():
            np.testing.assert_array_equal(saved["buffers"][name][buf], value)


# --- validate on save: what did not read back as written is refused ----------------------

def _corrupt_tensors(monkeypatch, file_name: str) -> None:
    real = safetensors.numpy.save_file

    def corrupt(tensors, filename, metadata=None):
        if pathlib.Path(filename).name == file_name:
            key = sorted(tensors)[0]
            tensors = {**tensors, key: tensors[key] + 1}
        return real(tensors, filename, metadata)

    monkeypatch.setattr(safetensors.numpy, "save_file", corrupt)


def _corrupt_optimizer_json(monkeypatch, edit) -> None:
    real = pathlib.Path.write_text

    def write_text(self, data, *args, **kwargs):
        if self.name == "optimizer.json":
            saved = json.loads(data)
            edit(saved)
            data = json.dumps(saved)
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)


def _edit_lr(saved: dict) -> None:
    saved["config"]["lr"] *= 2


def _edit_steps(saved: dict) -> None:
    saved["steps"] += 1


@pytest.mark.parametrize(("corrupt", "match"), [
    (lambda mp: _corrupt_tensors(mp, "weights.safetensors"),
     r": '[^']+' did not read back as written$"),
    (lambda mp: _corrupt_tensors(mp, "optimizer.safetensors"),
     r": the optimiser did not read back as written$"),
    (lambda mp: _corrupt_optimizer_json(mp, _edit_lr),
     r": the optimiser did not read back as written$"),
    (lambda mp: _corrupt_optimizer_json(mp, _edit_steps),
     r": the optimiser did not read back as written$"),
], ids=["weights", "optimizer-buffers", "optimizer-config", "optimizer-steps"])
def test_a_save_that_does_not_read_back_is_refused(tmp_path, monkeypatch, corrupt,
                                                   match: str) -> None:
    net, opt = _trained()
    target = tmp_path / "model"
    checkpoint.save(net, target, opt)
    before = checkpoint.read(target).weights
    net.loss_and_grads(np.ones((2, 3)), np.array([0, 1]))
    opt.step(net)  # something new to save
    corrupt(monkeypatch)
    with pytest.raises(CheckpointError, match=match):
        checkpoint.save(net, target, opt)
    monkeypatch.undo()
    assert _entries(tmp_path) == ["model"]  # no staging directory left behind
    kept = checkpoint.read(target).weights
    for name, value in before.items():
        np.testing.assert_array_equal(kept[name], value)


# --- what read refuses -------------------------------------------------------------------

def _saved(tmp_path, optimizer: bool = False) -> pathlib.Path:
    net, opt = _trained()
    target = tmp_path / "model"
    checkpoint.save(net, target, opt if optimizer else None)
    return target


def _edit_meta(target: pathlib.Path, edit) -> None:
    meta = json.loads((target / "network.json").read_text())
    edit(meta)
    (target / "network.json").write_text(json.dumps(meta))


NOT_OURS = r"network\.json: not a gpuback checkpoint \(format 1 with 'spec' and 'dtype' expected\)$"


@pytest.mark.parametrize("edit", [
    lambda m: m.update(format=2),
    lambda m: m.pop("spec"),
    lambda m: m.pop("dtype"),
    lambda m: m.pop("format"),
], ids=["format", "no-spec", "no-dtype", "no-format"])
def test_read_refuses_a_foreign_network_json(tmp_path, edit) -> None:
    target = _saved(tmp_path)
    _edit_meta(target, edit)
    with pytest.raises(CheckpointError, match=NOT_OURS):
        checkpoint.read(target)


def test_read_names_an_invalid_spec(tmp_path) -> None:
    target = _saved(tmp_path)
    _edit_meta(target, lambda m: m["spec"].update(loss="hinge"))
    with pytest.raises(CheckpointError, match=(
            r"network\.json: its spec is not valid \(spec\['loss'\]: .*'hinge'\)$")):
        checkpoint.read(target)


def test_read_names_an_unknown_dtype(tmp_path) -> None:
    target = _saved(tmp_path)
    _edit_meta(target, lambda m: m.update(dtype="float16"))
    with pytest.raises(CheckpointError, match=r"network\.json: dtype 'float16', expected one of "
                                              r"\['float32', 'float64'\]$"):
        checkpoint.read(target)


def test_read_names_weights_that_do_not_match_the_spec(tmp_path) -> None:
    target = _saved(tmp_path)
    weights = safetensors.numpy.load_file(str(target / "weights.safetensors"))
    weights["extra"] = np.zeros(2)
    del weights["y"]
    safetensors.numpy.save_file(weights, str(target / "weights.safetensors"))
    with pytest.raises(CheckpointError, match=(
            r"weights\.safetensors: parameter names \['a/b', 'a/b->y', 'extra', 'x->a/b'\] "
            r"do not match the spec's \['a/b', 'a/b->y', 'x->a/b', 'y'\]$")):
        checkpoint.read(target)


def test_a_checkpoint_without_an_epoch_count_has_trained_none(tmp_path) -> None:
    target = _saved(tmp_path)
    _edit_meta(target, lambda m: m.pop("epochs_trained"))
    assert checkpoint.read(target).epochs_trained == 0
    _edit_meta(target, lambda m: m.update(epochs_trained=3))
    assert checkpoint.read(target).epochs_trained == 3


@pytest.mark.parametrize("name", ["network.json", "weights.safetensors",
                                  "optimizer.safetensors"])
def test_a_missing_file_is_named(tmp_path, name: str) -> None:
    target = _saved(tmp_path, optimizer=True)
    (target / name).unlink()
    net = gpuback.Network(SPEC)
    with pytest.raises(CheckpointError, match=rf"{name}: missing from the checkpoint$"):
        checkpoint.read(target)
        checkpoint.load_optimizer(target, net)


@pytest.mark.parametrize("drop", ["config", "steps"])
def test_optimizer_json_needs_config_and_steps(tmp_path, drop: str) -> None:
    target = _saved(tmp_path, optimizer=True)
    saved = json.loads((target / "optimizer.json").read_text())
    del saved[drop]
    (target / "optimizer.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError,
                       match=r"optimizer\.json: 'config' and 'steps' expected$"):
        checkpoint.load_optimizer(target, gpuback.Network(SPEC))


def test_optimizer_state_that_does_not_fit_the_network_is_named(tmp_path) -> None:
    target = _saved(tmp_path, optimizer=True)
    other = gpuback.Network({**SPEC, "groups": [SPEC["groups"][0],
                                                {**SPEC["groups"][1], "size": 5},
                                                SPEC["groups"][2]]})
    with pytest.raises(CheckpointError, match=(
            "^" + re.escape(str(target / "optimizer.safetensors"))
            + r": state\['[^']+'\]\['[mv]'\]: expected shape \(")):
        checkpoint.load_optimizer(target, other)
