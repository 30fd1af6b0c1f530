"""What a new user runs into on the command line: ``--json`` stdout that is one JSON
document, ``--version``, regression and multi-label training (``--loss``), early stopping,
``explain`` and ``gradcheck`` on the models ``train`` saves, a throttled progress bar."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gpuback
from gpuback.cli.app import EXIT_USAGE, main
from gpuback.training import loop as training

TINY = ["--hidden", "8", "--epochs", "2", "--backend", "numpy", "--no-progress"]


def _only_json(text: str) -> dict:
    """The whole of ``text`` is one JSON document (json.loads refuses anything more)."""
    return json.loads(text)


# --- --json: stdout is exactly one JSON document --------------------------------------------

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


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"gpuback {gpuback.__version__}"
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'version = "{gpuback.__version__}"' in pyproject


# --- --loss: regression and multi-label ------------------------------------------------------

def _regression_csv(path: Path, n: int = 240) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([0.5, -1.0, 0.25]) + 0.3
    np.savetxt(path, np.c_[X, y], delimiter=",")
    return y


def test_regression_with_sum_of_squares(tmp_path: Path, capsys) -> None:
    y = _regression_csv(tmp_path / "r.csv")
    assert main(["train", "--data", str(tmp_path / "r.csv"), "--loss", "sum_of_squares",
                 "--hidden", "16", "--epochs", "40", "--lr", "0.01", "--backend", "numpy",
                 "--no-progress", "--json", "--out", str(tmp_path / "out")]) == 0
    summary = _only_json(capsys.readouterr().out)
    assert summary["loss"] == "sum_of_squares" and summary["test_accuracy"] is None
    baseline = 0.5 * np.var(y)  # the loss of predicting the mean (sum of squares / 2)
    assert summary["test_loss"] < 0.05 * baseline
    net = gpuback.Network.load(tmp_path / "out" / "model", backend="numpy")
    assert net.plan.loss == "sum_of_squares" and net.plan.n_out == 1
    assert net.spec["groups"][-1]["activation"] == "identity"


def test_multi_label_with_binary_cross_entropy(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    Y = np.c_[X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < 0.5].astype(np.uint8)
    np.savez(tmp_path / "m.npz", X=X, y=Y)
    assert main(["train", "--data", str(tmp_path / "m.npz"), "--loss",
                 "binary_cross_entropy", "--hidden", "16", "--epochs", "30", "--lr", "0.01",
                 "--backend", "numpy", "--no-progress", "--json", "--out",
                 str(tmp_path / "out")]) == 0
    summary = _only_json(capsys.readouterr().out)
    assert summary["test_accuracy"] > 0.9  # of the 3 x 60 test labels
    net = gpuback.Network.load(tmp_path / "out" / "model", backend="numpy")
    assert net.plan.n_out == 3 and net.spec["groups"][-1]["activation"] == "sigmoid"


def test_several_target_columns_of_a_csv(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(100, 3))
    np.savetxt(tmp_path / "t.csv", np.c_[X, X[:, :2] * 2], delimiter=",")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--loss", "sum_of_squares",
                 "--target-columns", "2", *TINY, "--json", "--out", str(tmp_path / "o")]) == 0
    _only_json(capsys.readouterr().out)
    net = gpuback.Network.load(tmp_path / "o" / "model", backend="numpy")
    assert (net.plan.n_in, net.plan.n_out) == (3, 2)


@pytest.mark.parametrize("argv, message", [
    (["--loss", "sum_of_squares"], "the embedded digits hold class labels"),
    (["--target-columns", "2"], "class labels are one column"),
    (["--loss", "hinge"], "invalid choice: 'hinge'"),
], ids=["digits-regression", "label-columns", "unknown-loss"])
def test_loss_options_that_cannot_apply(argv, message: str, tmp_path: Path, capsys) -> None:
    assert main(["train", *argv, *TINY, "--out", str(tmp_path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_classification_file_with_fractional_targets_says_which_loss(tmp_path: Path,
                                                                       capsys) -> None:
    _regression_csv(tmp_path / "r.csv")
    assert main(["train", "--data", str(tmp_path / "r.csv"), *TINY, "--out",
                 str(tmp_path / "o")]) == EXIT_USAGE
    assert "labels must be integers" in capsys.readouterr().err


def test_resume_keeps_the_loss(tmp_path: Path, capsys) -> None:
    _regression_csv(tmp_path / "r.csv")
    base = ["train", "--data", str(tmp_path / "r.csv"), "--hidden", "8", "--backend",
            "numpy", "--no-progress", "--out", str(tmp_path / "o")]
    assert main([*base, "--loss", "sum_of_squares", "--epochs", "1"]) == 0
    assert main([*base, "--resume", "--epochs", "2"]) == 0  # the loss comes from the checkpoint
    capsys.readouterr()
    assert main([*base, "--resume", "--epochs", "3", "--loss", "cross_entropy"]) == EXIT_USAGE
    assert "--loss cross_entropy: the checkpoint" in capsys.readouterr().err


# --- --early-stopping ---------------------------------------------------------------------------

def test_early_stopping_keeps_the_best_epoch_on_a_validation_part(tmp_path: Path,
                                                                  capsys) -> None:
    # a high learning rate overfits the digits within a few epochs
    argv = ["train", "--early-stopping", "2", "--lr", "0.03", "--epochs", "40", "--backend",
            "numpy", "--no-progress", "--json", "--out", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = _only_json(captured.out)
    assert summary["stopped_early"] is True
    assert summary["epochs_trained"] == summary["epochs"] - 2  # patience 2: back to the best
    assert "1294 train / 144 validation / 359 test samples" in captured.err  # 10% held out
    net = gpuback.Network.load(tmp_path / "model", backend="numpy")
    assert net.epochs_trained == summary["epochs_trained"]
    assert net.evaluate(*_digits_test())["loss"] == pytest.approx(summary["test_loss"])


def test_early_stopping_options_are_checked(tmp_path: Path, capsys) -> None:
    for argv, message in ((["--early-stopping", "0"], "an integer >= 1"),
                          (["--validation-fraction", "1.5"], "a number in (0, 1)")):
        assert main(["train", *argv, *TINY, "--out", str(tmp_path)]) == EXIT_USAGE
        assert message in capsys.readouterr().err


# --- explain and gradcheck on what train saved ---------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    assert main(["train", "--hidden", "32", "--epochs", "3", "--backend", "numpy",
                 "--no-progress", "--out", str(out)]) == 0
    return out / "model"


def test_explain_a_model_trained_by_the_cli(trained: Path, capsys) -> None:
    assert main(["explain", "--model", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "Unit j = h1[0]" in out  # the only hidden group, chosen by default
    assert main(["explain", "--model", str(trained), "--group", "h"]) == EXIT_USAGE
    assert "expected a hidden group, one of ['h1']" in capsys.readouterr().err


def test_explain_picks_the_group_that_feeds_the_most_groups() -> None:
    from gpuback.diagnostics.explanation import DEMO_SPEC, default_group

    assert default_group(gpuback.Network(DEMO_SPEC, backend="numpy")) == "h"
    two = gpuback.Network(gpuback.mlp_spec([3, 4, 5, 2]), backend="numpy")
    assert default_group(two) == "h1"  # equal fan-out: the first
    flat = gpuback.Network(gpuback.mlp_spec([3, 2]), backend="numpy")
    with pytest.raises(ValueError, match="no hidden group"):
        default_group(flat)


@pytest.mark.parametrize("how", ["--model", "model-dir-as-spec", "network.json"])
def test_gradcheck_a_model_trained_by_the_cli(how: str, trained: Path, capsys) -> None:
    if how == "--model":
        argv = ["gradcheck", "--model", str(trained), "--json"]
    elif how == "model-dir-as-spec":
        argv = ["gradcheck", str(trained), "--json"]
    else:
        version = json.loads((trained / "latest.json").read_text())["version"]
        argv = ["gradcheck", str(trained / version / "network.json"), "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    report = _only_json(capsys.readouterr().out)
    assert report["passed"] is True
    assert report["network"]["groups"] == {"x": 64, "h1": 32, "y": 10}
    if how != "network.json":  # the trained weights, not fresh ones
        saved = gpuback.Network.load(trained, backend="numpy").parameters()
        fresh = gpuback.Network(gpuback.mlp_spec([64, 32, 10]), backend="numpy").parameters()
        assert not np.array_equal(saved["x->h1"], fresh["x->h1"])


def test_gradcheck_model_and_spec_exclude_each_other(trained: Path, capsys) -> None:
    assert main(["gradcheck", str(trained), "--model", str(trained)]) == EXIT_USAGE
    assert "not both" in capsys.readouterr().err


# --- the progress bar -------------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_at_most_ten_times_a_second(monkeypatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    data = gpuback.datasets.load_digits()
    net = gpuback.Network(gpuback.mlp_spec([64, 16, 10]), backend="numpy", dtype="float32")
    start = time.perf_counter()
    net.fit(data.X_train, data.y_train, epochs=3, batch_size=8)  # 540 steps
    seconds = time.perf_counter() - start
    draws = terminal.getvalue().count("\r")
    assert draws >= 2  # tqdm's first and last
    # one each REDRAW_SECONDS, tqdm's first and its last two (close)
    assert draws <= seconds / training.REDRAW_SECONDS + 4, (draws, seconds)


class _FakeBar:
    def __init__(self) -> None:
        self.n, self.draws, self.postfix = 0, 0, {}

    def set_postfix(self, refresh: bool, **values) -> None:
        assert refresh is False  # drawn by the update that follows, once
        self.postfix = values

    def update(self, n: int) -> None:
        self.n += n
        self.draws += 1


def test_the_bar_reads_the_loss_only_when_it_redraws(monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr(training, "progress_clock", lambda: now[0])
    fake = _FakeBar()
    bar = training.ProgressBar(fake)
    tick = 1 / 1024  # a step about a millisecond: one second in all, in exact binary steps
    reads = [0]
    for step in range(1, 1025):
        now[0] = step * tick
        bar.advance(lambda step=step: reads.append(step) or (1, 0.5))
    gaps = [(b - a) * tick for a, b in itertools.pairwise(reads)]
    # each redraw as soon as REDRAW_SECONDS have passed since the last, and not before
    assert all(training.REDRAW_SECONDS <= g < training.REDRAW_SECONDS + tick for g in gaps)
    assert fake.draws == len(gaps) == 9  # in one second: at most ten
    assert fake.n == reads[-1] and fake.postfix == {"epoch": 1, "loss": "0.5000"}

