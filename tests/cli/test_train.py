"""``gpuback train`` beyond the digits: every loss (regression, multi-label, counts, several
target columns), the options a loss cannot take, resuming with the loss kept, and early stopping
on a validation part held out of the training data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gpuback
from gpuback.cli.app import main
from gpuback.cli.exit_codes import EXIT_USAGE

TINY = ["--hidden", "8", "--epochs", "2", "--backend", "numpy", "--no-progress"]


def _only_json(text: str) -> dict:
    """The whole of ``text`` is one JSON document (json.loads refuses anything more)."""
    return json.loads(text)


def _digits_test() -> tuple[np.ndarray, np.ndarray]:
    data = gpuback.datasets.load_digits()
    return data.X_test.astype(np.float32), data.y_test


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


def _counts_csv(path: Path, n: int = 300, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts with rate e^(0.8 x0 - 0.5 x1 + 0.2), minus ``shift``; the targets and
    the rates."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 3))
    rate = np.exp(0.8 * X[:, 0] - 0.5 * X[:, 1] + 0.2)
    y = rng.poisson(rate).astype(np.float64)
    np.savetxt(path, np.c_[X, y - shift], delimiter=",")
    return y, rate


def test_counts_with_poisson(tmp_path: Path, capsys) -> None:
    y, rate = _counts_csv(tmp_path / "c.csv")
    assert main(["train", "--data", str(tmp_path / "c.csv"), "--loss", "poisson", "--hidden",
                 "16", "--epochs", "40", "--lr", "0.01", "--backend", "numpy", "--no-progress",
                 "--json", "--out", str(tmp_path / "out")]) == 0
    summary = _only_json(capsys.readouterr().out)
    assert summary["loss"] == "poisson" and summary["test_accuracy"] is None

    def deviance(mean: np.ndarray | float) -> float:  # half the Poisson deviance, per sample
        t_log_t = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
        return float(np.mean(t_log_t - y * np.log(mean) - y + mean))

    # near the true rates' deviance (0.52), far below the constant mean's (1.39)
    assert summary["test_loss"] < 0.5 * deviance(y.mean())
    assert summary["test_loss"] < 1.5 * deviance(rate)
    net = gpuback.Network.load(tmp_path / "out" / "model", backend="numpy")
    assert net.plan.loss == "poisson" and net.spec["groups"][-1]["activation"] == "exp"


def test_poisson_refuses_negative_targets(tmp_path: Path, capsys) -> None:
    _counts_csv(tmp_path / "c.csv")
    _counts_csv(tmp_path / "neg.csv", shift=1.0)
    assert main(["train", "--data", str(tmp_path / "neg.csv"), "--loss", "poisson", *TINY,
                 "--out", str(tmp_path / "o")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "targets must be >= 0 (Poisson counts or rates); found -1.0 at sample" in err
    assert main(["train", "--data", str(tmp_path / "c.csv"), "--loss", "poisson", *TINY,
                 "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "o" / "model"), "--data",
                 str(tmp_path / "neg.csv")]) == EXIT_USAGE
    assert "targets must be >= 0 and finite; found -1.0 at sample" in capsys.readouterr().err


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
