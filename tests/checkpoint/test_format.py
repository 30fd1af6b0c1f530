"""The checkpoint directory's format and the checks around it: where a save stages its files,
what it verifies before switching to them, and what ``read`` refuses, message by message
(each file rewritten with its checksum updated, so the check behind the checksum is reached;
tests/checkpoint/test_faults.py corrupts files without that).

On the numpy backend (the checkpoint module is backend-independent;
tests/checkpoint/test_round_trips.py runs the round trips on every backend)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import stat

import numpy as np
import pytest
import safetensors.numpy
from helpers.checkpoint_files import (
    current,
    edit_json,
    entries,
    only_one_version,
    rewrite,
    version_folder,
)

import gpuback
from gpuback.checkpoint import files as checkpoint
from gpuback.checkpoint import versioned_dir
from gpuback.checkpoint.files import CheckpointError
from gpuback.optim import optimizers as optim

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


def test_files_are_staged_inside_the_target_then_renamed_to_a_version(tmp_path,
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
    assert staging.parent == target  # inside the target: the rename stays on one device
    assert staging.name.startswith(".staging-")
    assert not staging.exists()
    assert only_one_version(target)
    assert entries(version_folder(target)) == sorted(checkpoint.FILES)
    assert _entries(tmp_path) == ["model"]


def test_replacing_a_checkpoint_switches_the_pointer_and_removes_the_old_version(
        tmp_path, monkeypatch) -> None:
    net, opt = _trained()
    target = tmp_path / "model"
    checkpoint.save(net, target, opt)
    first = version_folder(target)
    replaced: list[tuple[str, str]] = []
    real = os.replace

    def record(src, dst):
        replaced.append((pathlib.Path(src).name, pathlib.Path(dst).name))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", record)
    checkpoint.save(net, target, opt)
    monkeypatch.undo()
    second = version_folder(target)
    assert second.name > first.name and not first.exists()
    # one os.replace, of a temporary pointer onto latest.json: the commit point
    assert [dst for _, dst in replaced] == ["latest.json"]
    assert replaced[0][0].startswith(".latest.json.")
    assert only_one_version(target)


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
    real = checkpoint.write_file

    def write_file(file, data):
        if file.name == "optimizer.json":
            saved = json.loads(data)
            edit(saved)
            data = json.dumps(saved).encode()
        return real(file, data)

    monkeypatch.setattr(checkpoint, "write_file", write_file)


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
    assert only_one_version(target)  # no staging directory left behind
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
    edit_json(target, "network.json", edit)


NOT_OURS = r"network\.json: not a gpuback checkpoint \(a 'format', 'spec' and 'dtype' expected\)$"


@pytest.mark.parametrize("edit", [
    lambda m: m.update(format=0),
    lambda m: m.update(format="2"),
    lambda m: m.pop("spec"),
    lambda m: m.pop("dtype"),
    lambda m: m.pop("format"),
], ids=["format-0", "format-str", "no-spec", "no-dtype", "no-format"])
def test_read_refuses_a_foreign_network_json(tmp_path, edit) -> None:
    target = _saved(tmp_path)
    _edit_meta(target, edit)
    with pytest.raises(CheckpointError, match=NOT_OURS):
        checkpoint.read(target)


def test_a_newer_format_is_named_as_such(tmp_path) -> None:
    target = _saved(tmp_path)
    _edit_meta(target, lambda m: m.update(format=checkpoint.FORMAT + 1))
    with pytest.raises(CheckpointError, match=r"network\.json: format 3 was written by a newer "
                                              r"gpuback \(this one reads formats 1 to 2\)"):
        checkpoint.read(target)
    pointer = json.loads((target / "latest.json").read_text())
    (target / "latest.json").write_text(json.dumps({**pointer, "format": 2}))
    with pytest.raises(CheckpointError, match=r"latest\.json: format 2 was written by a newer "
                                              r"gpuback"):
        checkpoint.read(target)
    net, _ = _trained()
    with pytest.raises(CheckpointError, match=r"newer gpuback.*; refusing to replace it$"):
        checkpoint.save(net, target)  # a save would delete a version this one cannot read
    assert (target / pointer["version"]).is_dir()


@pytest.mark.parametrize(("value", "shown"), [("many", "'many'"), (-1, "-1"), (2.5, "2.5"),
                                              (True, "True")])
def test_read_names_a_bad_epoch_count(tmp_path, value, shown: str) -> None:
    target = _saved(tmp_path)
    _edit_meta(target, lambda m: m.update(epochs_trained=value))
    with pytest.raises(CheckpointError, match=(rf"network\.json: 'epochs_trained' must be a "
                                               rf"non-negative integer, got {re.escape(shown)}$")):
        checkpoint.read(target)


def test_a_json_file_that_is_not_an_object_is_named(tmp_path) -> None:
    target = _saved(tmp_path)
    rewrite(target, "network.json", b"[1, 2]")
    with pytest.raises(CheckpointError, match=r"network\.json: expected a JSON object, got list$"):
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
    weights = safetensors.numpy.load_file(str(current(target, "weights.safetensors")))
    weights["extra"] = np.zeros(2)
    del weights["y"]
    rewrite(target, "weights.safetensors", safetensors.numpy.save(weights))
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


def test_non_finite_saved_weights_are_named(tmp_path) -> None:
    target = _saved(tmp_path)
    weights = safetensors.numpy.load_file(str(current(target, "weights.safetensors")))
    weights["y"][0] = np.nan
    rewrite(target, "weights.safetensors", safetensors.numpy.save(weights))
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: 'y' holds NaN or infinite "
                                              r"values$"):
        checkpoint.read(target)


@pytest.mark.parametrize("name", ["network.json", "weights.safetensors",
                                  "optimizer.safetensors", "optimizer.json"])
def test_a_missing_file_is_named(tmp_path, name: str) -> None:
    target = _saved(tmp_path, optimizer=True)
    current(target, name).unlink()
    net = gpuback.Network(SPEC)
    with pytest.raises(CheckpointError, match=rf"{name}: missing from the checkpoint$"):
        checkpoint.read(target)
        checkpoint.load_optimizer(target, net)


@pytest.mark.parametrize("drop", ["config", "steps"])
def test_optimizer_json_needs_config_and_steps(tmp_path, drop: str) -> None:
    target = _saved(tmp_path, optimizer=True)
    edit_json(target, "optimizer.json", lambda saved: saved.pop(drop))
    with pytest.raises(CheckpointError,
                       match=rf"optimizer\.json: the field '{drop}' is missing$"):
        checkpoint.load_optimizer(target, gpuback.Network(SPEC))


@pytest.mark.parametrize(("edit", "match"), [
    (lambda s: s.update(steps="x"), r"'steps' must be a non-negative integer, got 'x'$"),
    (lambda s: s.update(steps=-3), r"'steps' must be a non-negative integer, got -3$"),
    (lambda s: s.update(config=[1]), r"'config' must be a JSON object, got list$"),
    (lambda s: s["config"].update(gamma=0.5),
     r"'config' does not describe an optimiser \(.*gamma"),
    (lambda s: s["config"].update(type="rmsprop"),
     r"'config' does not describe an optimiser \(optimizer type: expected one of"),
    (lambda s: s["config"].update(lr="fast"), r"'config' does not describe an optimiser \("),
    (lambda s: s["config"].update(betas=3), r"'config' does not describe an optimiser \("),
    (lambda s: s["config"].update(schedule=[]), r"'config' does not describe an optimiser \("),
], ids=["steps-str", "steps-negative", "config-list", "unknown-hyperparameter",
        "unknown-type", "lr-str", "betas-int", "schedule-list"])
def test_a_malformed_optimizer_json_is_named_with_its_field(tmp_path, edit, match) -> None:
    target = _saved(tmp_path, optimizer=True)
    edit_json(target, "optimizer.json", edit)
    with pytest.raises(CheckpointError, match=r"optimizer\.json: " + match):
        checkpoint.load_optimizer(target, gpuback.Network(SPEC))


def test_optimizer_state_that_does_not_fit_the_network_is_named(tmp_path) -> None:
    target = _saved(tmp_path, optimizer=True)
    other = gpuback.Network({**SPEC, "groups": [SPEC["groups"][0],
                                                {**SPEC["groups"][1], "size": 5},
                                                SPEC["groups"][2]]})
    with pytest.raises(CheckpointError, match=(
            "^" + re.escape(str(current(target, "optimizer.safetensors")))
            + r": state\['[^']+'\]\['[mv]'\]: expected shape \(")):
        checkpoint.load_optimizer(target, other)


def test_metadata_is_saved_with_the_weights_and_read_back(tmp_path) -> None:
    net, opt = _trained()
    target = tmp_path / "model"
    checkpoint.save(net, target, opt, metadata={"run": {"seed": 3, "lr": 0.5, "tags": ["a"]}})
    assert checkpoint.read(target).metadata == {"run": {"seed": 3, "lr": 0.5, "tags": ["a"]}}
    checkpoint.save(net, target, opt)  # a save without metadata has none
    assert checkpoint.read(target).metadata == {}


@pytest.mark.parametrize(("metadata", "match"), [
    ([1, 2], r"metadata: expected a dict \(a JSON object\), got list$"),
    ({"a": object()}, r"metadata: not JSON-serialisable"),
    ({"a": float("nan")}, r"metadata: not JSON-serialisable"),
    ({"a": (1, 2)}, r"^metadata: does not survive JSON unchanged \(non-string keys or "
                    r"tuples\?\); use str keys, lists and plain numbers$"),
    ({1: "x"}, r"^metadata: does not survive JSON unchanged"),
], ids=["list", "object", "nan", "tuple", "int-key"])
def test_metadata_that_json_would_change_is_refused_before_writing(tmp_path, metadata,
                                                                   match: str) -> None:
    net, _ = _trained()
    with pytest.raises(TypeError, match=match):
        checkpoint.save(net, tmp_path / "model", metadata=metadata)
    assert not (tmp_path / "model").exists()


def test_metadata_that_is_not_an_object_is_named(tmp_path) -> None:
    target = _saved(tmp_path)
    _edit_meta(target, lambda m: m.update(metadata=[1]))
    with pytest.raises(CheckpointError, match=r"network\.json: 'metadata' must be a JSON "
                                              r"object, got list$"):
        checkpoint.read(target)


@pytest.mark.parametrize(("value", "match"), [
    (np.full((4,), np.inf), r"must hold finite floats, got float64 with NaN or infinite"),
    (np.zeros((4,), np.int64), r"must hold finite floats, got int64$"),
], ids=["inf", "int"])
def test_optimizer_state_that_is_not_finite_floats_is_named(tmp_path, value, match) -> None:
    target = _saved(tmp_path, optimizer=True)
    state = safetensors.numpy.load_file(str(current(target, "optimizer.safetensors")))
    state["a/b/m"] = value
    rewrite(target, "optimizer.safetensors", safetensors.numpy.save(state))
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors: 'a/b/m' " + match):
        checkpoint.load_optimizer(target, gpuback.Network(SPEC))


# --- the pointer, and what a save finds in the directory ---------------------------------

@pytest.mark.parametrize(("edit", "match"), [
    (lambda p: p.update(format=0), r"'format' must be a positive integer, got 0$"),
    (lambda p: p.update(format="1"), r"'format' must be a positive integer, got '1'$"),
    (lambda p: p.update(version="../elsewhere"),
     r"'version' must name a folder like 'v00000001', got '\.\./elsewhere'$"),
    (lambda p: p.update(files=[]), r"'files' must map each file name to its 'bytes' and "
                                   r"'sha256'$"),
    (lambda p: p["files"]["network.json"].pop("sha256"), r"'files' must map each file"),
    (lambda p: p["files"]["network.json"].update(bytes=-1), r"'files' must map each file"),
    (lambda p: p["files"].update({"notes.txt": p["files"]["network.json"]}),
     r"lists the files \['network\.json', 'notes\.txt', 'weights\.safetensors'\]; a "
     r"checkpoint holds \['network\.json', 'weights\.safetensors'\], and "
     r"\['optimizer\.json', 'optimizer\.safetensors'\] with an optimiser$"),
], ids=["format-0", "format-str", "version-path", "files-list", "no-sha", "negative-size",
        "foreign-file"])
def test_a_malformed_pointer_is_named_with_its_field(tmp_path, edit, match: str) -> None:
    target = _saved(tmp_path)
    pointer = json.loads((target / "latest.json").read_text())
    edit(pointer)
    (target / "latest.json").write_text(json.dumps(pointer))
    with pytest.raises(CheckpointError, match=r"latest\.json: " + match):
        checkpoint.read(target)


def test_a_version_names_a_file_it_does_not_list(tmp_path) -> None:
    target = _saved(tmp_path)
    version = versioned_dir.VersionedDir(target, checkpoint.FILES)
    with version.reading() as current_version, pytest.raises(
            versioned_dir.StoreError, match=r"optimizer\.json: not part of this checkpoint "
                                            r"version$"):
        current_version.verify("optimizer.json")


def test_a_checkpoint_that_cannot_be_read_is_named(tmp_path, monkeypatch) -> None:
    target = _saved(tmp_path)
    real = pathlib.Path.read_text

    def denied(self, *args, **kwargs):  # what a non-root user meets on a mode 000 file
        if self.name == "latest.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", denied)
    with pytest.raises(CheckpointError, match=r"model: cannot be read: \[Errno 13\] "
                                              r"Permission denied"):
        checkpoint.read(target)


def test_an_empty_directory_holds_no_checkpoint(tmp_path) -> None:
    (tmp_path / "model").mkdir()
    with pytest.raises(CheckpointError, match=r"model: no gpuback checkpoint there \(no "
                                              r"latest\.json\)$"):
        checkpoint.read(tmp_path / "model")
    assert not checkpoint.exists(tmp_path / "model")


def test_what_crashed_saves_left_is_not_foreign_and_is_removed(tmp_path) -> None:
    target = tmp_path / "model"
    (target / ".staging-12-34").mkdir(parents=True)
    (target / ".staging-12-34" / "weights.safetensors").write_bytes(b"half")
    (target / ".latest.json.12.tmp").write_text("{")
    (target / "v00000007").mkdir()
    (target / "v00000007" / "network.json").write_text("{}")
    (target / ".lock").touch()
    net, opt = _trained()
    checkpoint.save(net, target, opt)  # no pointer: nothing there was completed
    assert only_one_version(target) and not (target / "v00000007").exists()
    assert checkpoint.read(target).spec == net.spec


def test_foreign_files_are_listed_when_a_save_refuses(tmp_path) -> None:
    folder = tmp_path / "home"
    folder.mkdir()
    for name in ("a", "b", "c", "d"):  # one more than the message shows
        (folder / name).touch()
    net, _ = _trained()
    with pytest.raises(CheckpointError, match=r"holds files but no gpuback checkpoint \(a, b, "
                                              r"c, \.\.\.\); refusing"):
        checkpoint.save(net, folder)
    (folder / "d").unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint \(a, b, c\); refusing"):
        checkpoint.save(net, folder)


def test_a_top_level_network_json_that_is_not_format_1_is_kept(tmp_path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "network.json").write_text("not JSON: somebody's notes")
    net, _ = _trained()
    checkpoint.save(net, target)
    assert (target / "network.json").read_text() == "not JSON: somebody's notes"
    assert checkpoint.read(target).spec == net.spec


def test_a_format_1_checkpoint_without_an_optimiser_is_converted(tmp_path) -> None:
    target = _saved(tmp_path)  # weights and network only
    folder = version_folder(target)
    for name in ("weights.safetensors", "network.json"):
        (target / name).write_bytes((folder / name).read_bytes())
    meta = json.loads((target / "network.json").read_text())
    meta.pop("metadata")
    (target / "network.json").write_text(json.dumps({**meta, "format": 1}))
    for name in ("latest.json", ".lock"):
        (target / name).unlink()
    shutil.rmtree(folder)
    assert checkpoint.read(target).metadata == {}
    net, opt = _trained(3)
    checkpoint.save(net, target, opt)
    assert only_one_version(target)
    (target / "weights.safetensors").write_bytes(b"")  # format 1 again, its weights gone
    (target / "network.json").write_text(json.dumps({**meta, "format": 1}))
    for name in ("latest.json", ".lock"):
        (target / name).unlink()
    (target / "weights.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model/weights\.safetensors: missing from the "
                                              r"checkpoint$"):
        checkpoint.read(target)


def test_weights_larger_than_a_read_chunk_round_trip(tmp_path) -> None:
    net = gpuback.Network(gpuback.mlp_spec([3, 200_000, 2]), seed=1)  # 8 MB of weights
    checkpoint.save(net, tmp_path / "model")
    assert current(tmp_path / "model", "weights.safetensors").stat().st_size > 2 << 20
    loaded = checkpoint.read(tmp_path / "model").weights
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(loaded[name], value)


def test_an_error_without_a_message_is_named_by_its_type(tmp_path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise OSError

    monkeypatch.setattr(safetensors.numpy, "save_file", fail)
    net, _ = _trained()
    with pytest.raises(CheckpointError, match=r"the save failed, the previous checkpoint is "
                                              r"unchanged: OSError$"):
        checkpoint.save(net, tmp_path / "model")
