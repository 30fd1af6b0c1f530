"""``--json``: stdout is one JSON document (train's summary, every report), everything else
goes to stderr, piped into ``python -m json.tool`` as a user would; without it the summary
is not JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpuback
from gpuback.cli.app import main

TINY = ["--hidden", "8", "--epochs", "2", "--backend", "numpy", "--no-progress"]


def _only_json(text: str) -> dict:
    """The whole of ``text`` is one JSON document (json.loads refuses anything more)."""
    return json.loads(text)


def test_train_json_piped_into_json_tool(tmp_path: Path) -> None:
    """``gpuback train --json | python -m json.tool``, as a user types it."""
    train = subprocess.run([sys.executable, "-m", "gpuback", "train", "--json", *TINY,
                            "--out", str(tmp_path / "run")], capture_output=True, text=True,
                           cwd=tmp_path, check=False)
    assert train.returncode == 0, train.stderr
    tool = subprocess.run([sys.executable, "-m", "json.tool"], input=train.stdout,
                          capture_output=True, text=True, check=False)
    assert tool.returncode == 0, (train.stdout, tool.stderr)
    summary = json.loads(tool.stdout)
    assert summary["epochs"] == 2 and summary["backend"] == "numpy"
    assert 0 <= summary["test_accuracy"] <= 1
    # the human lines are all still there, on stderr
    assert "gpuback train: embedded UCI digits" in train.stderr
    assert "model saved to" in train.stderr


@pytest.mark.parametrize("argv", [
    ["gradcheck", "--json"],
    ["gradcheck", "--json", "--tol", "1e-30"],  # a failed check reports in JSON too
    ["explain", "--json"],
    ["info", "--json"],
], ids=["gradcheck", "gradcheck-failed", "explain", "info"])
def test_every_json_command_prints_one_document(argv, capsys) -> None:
    code = main(argv)
    out = capsys.readouterr().out
    document = _only_json(out)
    if argv[0] == "gradcheck":
        assert code == (0 if "--tol" not in argv else 1)
        assert document["passed"] is (code == 0)
        assert document["network"]["dtype"] == "float64"
        assert {c["name"] for c in document["checks"]} >= {"x->h", "h->g1"}
    elif argv[0] == "explain":
        assert code == 0 and document["group"] == "h"
        assert document["relative_error"] < 1e-6
        # h[0] feeds g1's 3 units, 2 of g2's through sparse edges, and y's 2
        assert [t["group"] for t in document["terms"]] == ["g1"] * 3 + ["g2"] * 2 + ["y"] * 2
        assert list(document["per_group"]) == ["g1", "g2", "y"]
    else:
        assert code == 0 and document["backends"]["numpy"]["usable"]


def test_train_json_summary_and_what_goes_to_stderr(tmp_path: Path, capsys) -> None:
    assert main(["train", "--json", *TINY, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    summary = _only_json(captured.out)
    assert summary["model"] == str(tmp_path / "model")
    assert summary["epochs"] == summary["epochs_trained"] == 2
    assert summary["stopped_early"] is False and summary["loss"] == "cross_entropy"
    again = gpuback.Network.load(tmp_path / "model", backend="numpy")
    assert again.evaluate(*_digits_test())["accuracy"] == summary["test_accuracy"]
    assert summary["precision"] == "fp32" and summary["loss_scale"] is None
    assert "epochs 2: train loss" in captured.err


def test_train_json_summary_reports_the_fp16_loss_scale(tmp_path: Path, capsys) -> None:
    """fp16 scales its loss from 2^16; the summary gives the scale the run ended with, the
    one its checkpoint holds."""
    assert main(["train", "--json", *TINY, "--precision", "fp16", "--out", str(tmp_path)]) == 0
    summary = _only_json(capsys.readouterr().out)
    saved = gpuback.Network.load(tmp_path / "model", backend="numpy")
    assert summary["precision"] == "fp16"
    assert summary["loss_scale"] == saved.loss_scaler.read()[0]
    assert 0 < summary["loss_scale"] <= 2.0**16


def _digits_test() -> tuple[np.ndarray, np.ndarray]:
    data = gpuback.datasets.load_digits()
    return data.X_test.astype(np.float32), data.y_test


def test_without_json_the_summary_is_not_json(tmp_path: Path, capsys) -> None:
    assert main(["train", *TINY, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "{" not in out
