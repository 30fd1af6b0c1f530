"""Every failure of the ``gpuback`` command is one line on stderr and an exit code: bad
arguments and input (2), failed runs (1), Ctrl-C (130). Bad inputs for every subcommand,
faults injected where the run writes or computes, and a real Ctrl-C in a subprocess."""

from __future__ import annotations

import errno
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gpuback
from gpuback.benchmark import suite as bench
from gpuback.checkpoint import files as checkpoint
from gpuback.cli import app as cli
from gpuback.cli import diagnose, train_setup
from gpuback.cli.app import main
from gpuback.cli.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE

SMALL = ["--hidden", "8", "--backend", "numpy", "--no-progress", "--epochs", "2"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    """Bad input files, by name; {tmp} in the table below is tmp_path."""
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "network.json").write_text("[1, 2]")  # a list: not a checkpoint
    (tmp_path / "notckpt").mkdir()
    (tmp_path / "notckpt" / "model").mkdir()
    (tmp_path / "notckpt" / "model" / "stuff.txt").write_text("mine")
    (tmp_path / "listrun").mkdir()
    (tmp_path / "listrun" / "model").mkdir()
    (tmp_path / "listrun" / "model" / "network.json").write_text("[]")
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not a zip at all")
    (tmp_path / "spec-list.json").write_text("[]")
    (tmp_path / "spec-bad.json").write_text("{not json")
    (tmp_path / "tiny.csv").write_text("1,0\n2,1\n")
    (tmp_path / "a-file").write_text("x")
    return {"tmp": str(tmp_path)}


BAD = [  # argv ({tmp}: a temporary directory), exit code, what stderr names
    (["train", "--batch-size", "0"], EXIT_USAGE, "--batch-size"),
    (["train", "--batch-size", "-3"], EXIT_USAGE, "--batch-size"),
    (["train", "--seed", "-1"], EXIT_USAGE, "--seed"),
    (["train", "--seed", "1.5"], EXIT_USAGE, "--seed"),
    (["train", "--schedule", "cosine", "--epochs", "0"], EXIT_USAGE, "--epochs"),
    (["train", "--epochs", "2.5"], EXIT_USAGE, "--epochs"),
    (["train", "--lr", "0"], EXIT_USAGE, "--lr"),
    (["train", "--lr", "-1"], EXIT_USAGE, "--lr"),
    (["train", "--lr", "nan"], EXIT_USAGE, "--lr"),
    (["train", "--lr", "inf"], EXIT_USAGE, "--lr"),
    (["train", "--lr", "fast"], EXIT_USAGE, "--lr"),
    (["train", "--test-fraction", "0"], EXIT_USAGE, "--test-fraction"),
    (["train", "--test-fraction", "1"], EXIT_USAGE, "--test-fraction"),
    (["train", "--density", "0"], EXIT_USAGE, "--density"),
    (["train", "--density", "1.5"], EXIT_USAGE, "--density"),
    (["train", "--momentum", "1"], EXIT_USAGE, "--momentum"),
    (["train", "--weight-decay", "-0.1"], EXIT_USAGE, "--weight-decay"),
    (["train", "--hidden", "0"], EXIT_USAGE, "--hidden"),
    (["train", "--hidden", "16", "x"], EXIT_USAGE, "--hidden"),
    (["train", "--scale", "0"], EXIT_USAGE, "--scale"),
    (["train", "--scale", "big"], EXIT_USAGE, "--scale"),
    (["train", "--dtype", "float16"], EXIT_USAGE, "--dtype"),
    (["train", "--backend", "tpu"], EXIT_USAGE, "--backend"),
    (["train", "--activation", "softmax"], EXIT_USAGE, "--activation"),
    (["train", "--optimizer", "lbfgs"], EXIT_USAGE, "--optimizer"),
    (["train", "--frobnicate"], EXIT_USAGE, "--frobnicate"),
    (["train", "--data", "{tmp}/garbage.npz", "--out", "{tmp}/o"], EXIT_USAGE, "garbage.npz"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/o"], EXIT_USAGE, "directory"),
    (["train", "--data", "{tmp}/nothere.csv", "--out", "{tmp}/o"], EXIT_USAGE, "no such file"),
    (["train", "--data", "{tmp}/tiny.csv", "--out", "{tmp}/o"], EXIT_USAGE, "test_fraction"),
    (["train", "--out", "{tmp}/a-file"], EXIT_USAGE, "--out"),
    (["train", "--out", "{tmp}/a-file/below"], EXIT_USAGE, "--out"),
    (["train", "--out", "{tmp}/notckpt"], EXIT_USAGE, "holds files but no gpuback checkpoint"),
    (["train", "--resume", "--out", "{tmp}/o"], EXIT_USAGE, "--resume"),
    (["train", "--resume", "--overwrite", "--out", "{tmp}/o"], EXIT_USAGE, "--overwrite"),
    (["train", "--resume", "--out", "{tmp}/listrun"], EXIT_USAGE, "listrun"),
    (["gradcheck", "--batch", "0"], EXIT_USAGE, "--batch"),
    (["gradcheck", "--tol", "0"], EXIT_USAGE, "--tol"),
    (["gradcheck", "--tol", "nan"], EXIT_USAGE, "--tol"),
    (["gradcheck", "--seed", "-1"], EXIT_USAGE, "--seed"),
    (["gradcheck", "--mode", "half"], EXIT_USAGE, "--mode"),
    (["gradcheck", "--backend", "tpu"], EXIT_USAGE, "--backend"),
    (["gradcheck", "{tmp}/nothere.json"], EXIT_USAGE, "nothere.json"),
    (["gradcheck", "{tmp}/spec-bad.json"], EXIT_USAGE, "not valid JSON"),
    (["gradcheck", "{tmp}/spec-list.json"], EXIT_USAGE, "spec"),
    (["gradcheck", "{tmp}"], EXIT_USAGE, "directory"),
    (["explain", "--unit", "-1"], EXIT_USAGE, "--unit"),
    (["explain", "--unit", "9"], EXIT_USAGE, "unit"),
    (["explain", "--seed", "-2"], EXIT_USAGE, "--seed"),
    (["explain", "--group", "nope"], EXIT_USAGE, "group"),
    (["explain", "--model", "{tmp}/nothere"], EXIT_USAGE, "nothere"),
    (["explain", "--model", "{tmp}/list"], EXIT_USAGE, "list"),
    (["bench", "--seconds", "0"], EXIT_USAGE, "--seconds"),
    (["bench", "--seconds", "inf"], EXIT_USAGE, "--seconds"),
    (["bench", "--cases", "huge"], EXIT_USAGE, "--cases"),
    (["bench", "--backends", "tpu"], EXIT_USAGE, "--backends"),
    (["bench", "--json", "{tmp}"], EXIT_USAGE, "--json"),
    (["bench", "--json", "{tmp}/nothere/out.json"], EXIT_USAGE, "--json"),
    (["bench", "--json", "{tmp}/a-file/out.json"], EXIT_USAGE, "--json"),
    (["info", "--verbose"], EXIT_USAGE, "--verbose"),
    (["frobnicate"], EXIT_USAGE, "frobnicate"),
    ([], EXIT_USAGE, "COMMAND"),
]


@pytest.mark.parametrize(("argv", "code", "names"), BAD,
                         ids=[" ".join(a).replace("{tmp}/", "") or "empty" for a, _, _ in BAD])
def test_bad_input_is_one_line_naming_it(argv, code: int, names: str, files, capsys,
                                         monkeypatch) -> None:
    monkeypatch.setattr(bench, "run", _must_not_run)  # bench: rejected before any timing
    argv = [a.format(**files) for a in argv]
    if argv[:1] == ["train"] and "--out" not in argv:
        argv += ["--out", os.path.join(files["tmp"], "out")]
    assert main(argv) == code
    line = _one_line(capsys)
    assert names in line
    assert line.startswith("gpuback")


def _must_not_run(*args, **kwargs):
    raise AssertionError("bench.run ran although its arguments were bad")


# --- faults while running ---------------------------------------------------------------------

def _raising(exc: BaseException):
    def raise_it(*args, **kwargs):
        raise exc
    return raise_it


class PreflightMemoryError(MemoryError, ValueError):
    """Stands for the memory pre-flight's refusal: a MemoryError that is bad input too."""


class FakeSafetensorError(Exception):
    """Stands for safetensors' own error type (not an OSError), e.g. on a full disk."""


@pytest.mark.parametrize(("fault", "code", "names"), [
    (OSError(errno.ENOSPC, "No space left on device"), EXIT_FAILED, "No space left on device"),
    (FakeSafetensorError("Error while serializing: IoError(no space)"), EXIT_FAILED,
     "could not save epoch 1"),
    (checkpoint.CheckpointError("x: did not read back as written"), EXIT_FAILED,
     "did not read back"),
    (MemoryError(), EXIT_FAILED, "out of memory"),
    (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted at epoch 1; no checkpoint was "
                                            "written yet"),
])
def test_a_failing_save_is_one_line(fault: BaseException, code: int, names: str, tmp_path,
                                    capsys, monkeypatch) -> None:
    monkeypatch.setattr(checkpoint, "save", _raising(fault))
    assert main(["train", *SMALL, "--out", str(tmp_path / "run")]) == code
    assert names in _one_line(capsys)
    assert not (tmp_path / "run" / "model").exists()


def test_a_save_failing_later_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch) -> None:
    real = checkpoint.save

    def full_after_one(net, path, optimizer=None, metadata=None):
        if net.epochs_trained > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(net, path, optimizer, metadata)

    monkeypatch.setattr(checkpoint, "save", full_after_one)
    assert main(["train", *SMALL, "--out", str(tmp_path / "run")]) == EXIT_FAILED
    line = _one_line(capsys)
    assert "could not save epoch 2" in line and "holds epoch 1" in line
    assert gpuback.Network.load(tmp_path / "run" / "model").epochs_trained == 1


# the module of gpuback train that looks each name up: where a fault is injected
TRAIN_MODULE_OF = {"Network": train_setup, "load_data": train_setup, "fit": gpuback.Network}


@pytest.mark.parametrize(("where", "fault", "code", "names"), [
    ("Network", MemoryError("needs 12.0 GiB, 3.1 GiB free"), EXIT_FAILED,
     "out of memory: needs 12.0 GiB"),
    ("Network", PreflightMemoryError("training needs 9 GiB, 1 GiB is free; use a smaller "
                                   "batch"), EXIT_USAGE, "error: training needs 9 GiB"),
    ("fit", AttributeError("'NoneType' object has no attribute 'x'"), EXIT_FAILED,
     "internal error: AttributeError"),
    ("fit", ZeroDivisionError("division by zero"), EXIT_FAILED, "internal error"),
    ("fit", RuntimeError("line one\nline two"), EXIT_FAILED, "line one line two"),
    ("fit", KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted at epoch 1; no checkpoint"),
    ("load_data", KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted"),
])
def test_faults_in_train_are_one_line(where: str, fault, code: int, names: str, tmp_path,
                                      capsys, monkeypatch) -> None:
    monkeypatch.setattr(TRAIN_MODULE_OF[where], where, _raising(fault))
    assert main(["train", *SMALL, "--out", str(tmp_path / "run")]) == code
    assert names in _one_line(capsys)


def test_internal_errors_show_their_traceback_on_request(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(gpuback.Network, "fit", _raising(AttributeError("boom")))
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    assert main(["train", *SMALL, "--out", str(tmp_path / "run")]) == EXIT_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("Traceback") and "AttributeError: boom" in err[-2]
    assert err[-1].startswith("gpuback train: internal error: AttributeError: boom")


def test_bench_json_is_checked_before_running_and_leaves_no_temporary_file(
        tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(bench, "run", lambda *a, **k: {"results": []})
    target = tmp_path / "out.json"
    real_replace = Path.replace
    monkeypatch.setattr(Path, "replace", _raising(OSError(errno.EROFS, "Read-only file system")))
    assert main(["bench", "--quick", "--json", str(target)]) == EXIT_USAGE
    assert "Read-only file system" in _one_line(capsys)
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
    monkeypatch.setattr(Path, "replace", real_replace)
    assert main(["bench", "--quick", "--json", str(target)]) == 0
    assert json.loads(target.read_text()) == {"results": []}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.parametrize("command", [["bench", "--quick"], ["gradcheck"], ["info"]])
def test_ctrl_c_in_other_commands(command, capsys, monkeypatch) -> None:
    monkeypatch.setattr(bench, "run", _raising(KeyboardInterrupt()))
    monkeypatch.setattr(diagnose, "gradcheck", _raising(KeyboardInterrupt()))
    # (the module: gpuback.info is the function)
    monkeypatch.setattr(importlib.import_module("gpuback.diagnostics.report"), "info",
                        _raising(KeyboardInterrupt()))
    assert main(command) == EXIT_INTERRUPTED
    assert _one_line(capsys) == f"gpuback {command[0]}: interrupted"


def test_a_failed_gradcheck_exits_1(capsys) -> None:
    assert main(["gradcheck", "--tol", "1e-30"]) == EXIT_FAILED
    assert "FAILED" in capsys.readouterr().out


# --- a real Ctrl-C ----------------------------------------------------------------------------

@pytest.mark.parametrize(("signum", "code", "how"), [
    (signal.SIGINT, EXIT_INTERRUPTED, "interrupted"),
    (signal.SIGTERM, 128 + signal.SIGTERM, "terminated by SIGTERM"),
], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_training_with_a_consistent_checkpoint(tmp_path, signum, code: int,
                                                             how: str) -> None:
    out = tmp_path / "run"
    model = out / "model"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(cli.TRACEBACK_ENV, None)
    proc = subprocess.Popen([sys.executable, "-m", "gpuback", "train", "--backend", "numpy",
                             "--hidden", "32", "--epochs", "100000", "--no-progress", "--out",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists(model):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        time.sleep(0.3)  # a few more epochs: the signal may land in a step or a save
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    found = re.fullmatch(rf"gpuback train: {how} at epoch (\d+); the checkpoint in (.+) "
                         r"holds epoch (\d+)", lines[0])
    assert found is not None, lines[0]
    at, where, held = found.groups()
    assert where == str(model)
    held = int(held)
    assert held == int(at) - 1
    net = gpuback.Network.load(model)
    assert net.epochs_trained == held >= 1
    assert checkpoint.load_optimizer(model, net) is not None
    assert all(np.isfinite(v).all() for v in net.parameters().values())


def test_kill_9_then_a_bare_resume_gives_bitwise_the_unbroken_run(tmp_path) -> None:
    """The run's options travel in the checkpoint itself: a training killed with SIGKILL
    at any moment, then ``--resume`` with no other option, continues the same run (seed,
    batch size, split, backend) and ends with the unbroken run's weights."""
    options = ["--epochs", "6", "--hidden", "16", "--seed", "3", "--batch-size", "48",
               "--test-fraction", "0.3", "--backend", "numpy", "--no-progress"]
    assert main(["train", *options, "--out", str(tmp_path / "unbroken")]) == 0
    out = tmp_path / "broken"
    proc = subprocess.Popen([sys.executable, "-m", "gpuback", "train", *options, "--out",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists(out / "model") and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
    killed_at = gpuback.Network.load(out / "model").epochs_trained
    assert main(["train", "--resume", "--no-progress", "--out", str(out)]) == 0
    unbroken = gpuback.Network.load(tmp_path / "unbroken" / "model").parameters()
    resumed = gpuback.Network.load(out / "model")
    assert resumed.epochs_trained == 6 and killed_at >= 1
    for name, value in unbroken.items():
        assert np.array_equal(resumed.parameters()[name], value), name


def test_what_a_crashed_first_save_left_does_not_block_a_new_run(tmp_path, capsys) -> None:
    model = tmp_path / "run" / "model"
    (model / ".staging-1234").mkdir(parents=True)  # a first save killed half-way
    (model / ".lock").write_text("")
    assert main(["train", *SMALL, "--out", str(tmp_path / "run")]) == 0
    assert gpuback.Network.load(model).epochs_trained == 2


def test_an_epoch_a_signal_left_partly_recorded_is_left_out_of_the_history() -> None:
    """A signal raised between two of an epoch's appends to fit's history (the lists then
    of unequal lengths) must not turn the stop into an internal error: the history file
    gets the epochs every list holds."""
    from gpuback.cli import history as run_history

    history = {"loss": [0.9, 0.5, 0.4], "accuracy": [0.6, 0.8],
               "samples_per_second": [100.0, 120.0]}
    done = run_history.records(history, 3, 60)
    assert [r["epoch"] for r in done] == [3, 4]
    assert [r["loss"] for r in done] == [0.9, 0.5]
