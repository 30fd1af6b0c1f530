"""``gpuback spec``, ``train --spec``, ``predict``, ``evaluate`` and ``OUT/history.jsonl``.

The commands run in-process through ``gpuback.cli.main`` (as tests/cli/test_app.py does); the
README example runs as a user types it, in a shell. Expected values come from the Python
API (``Network.load(...).forward``, ``gpuback.training.evaluate``), not from the commands.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO_ROOT

import gpuback
from gpuback import training
from gpuback.checkpoint import files as checkpoint
from gpuback.cli.app import main
from gpuback.cli.exit_codes import EXIT_INTERRUPTED, EXIT_USAGE
from gpuback.core.spec import validate_spec
from gpuback.datasets import loaders as datasets

FAST = ["--backend", "numpy", "--no-progress"]
SKIP_SIZES = ["64", "32", "32", "10"]
SKIP_EPOCHS = 8  # seed 0 reaches 0.955 test accuracy (0.955-0.975 over seeds 0-3)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


# --- gpuback spec -------------------------------------------------------------------------

def _write_spec(tmp_path: Path, *argv: str) -> dict:
    path = tmp_path / f"{argv[0]}.json"
    assert main(["spec", *argv, "--out", str(path)]) == 0
    return json.loads(path.read_text())


def test_spec_mlp(tmp_path) -> None:
    spec = _write_spec(tmp_path, "mlp", "--sizes", "5", "7", "3", "--activation", "tanh")
    assert validate_spec(spec) == spec
    assert [(g["name"], g["size"], g.get("activation")) for g in spec["groups"]] == \
        [("x", 5, None), ("h1", 7, "tanh"), ("y", 3, "softmax")]
    assert [(c["src"], c["dst"], c["kind"]) for c in spec["connections"]] == \
        [("x", "h1", "dense"), ("h1", "y", "dense")]


def test_spec_sparse_mlp_keeps_the_density_of_edges(tmp_path) -> None:
    spec = _write_spec(tmp_path, "sparse-mlp", "--sizes", "20", "30", "10", "4",
                       "--density", "0.1", "--loss", "sum_of_squares")
    assert validate_spec(spec) == spec and spec["loss"] == "sum_of_squares"
    assert spec["groups"][-1]["activation"] == "identity"
    kinds = [c["kind"] for c in spec["connections"]]
    assert kinds == ["sparse", "sparse", "dense"]  # the block into the output stays dense
    assert [len(c["edges"][0]) for c in spec["connections"][:2]] == [60, 30]  # 10% of 600, 300


def test_spec_skip_connects_every_group_to_the_output(tmp_path) -> None:
    spec = _write_spec(tmp_path, "skip", "--sizes", "6", "5", "4", "3", "2")
    assert validate_spec(spec) == spec
    blocks = {(c["src"], c["dst"]) for c in spec["connections"]}
    chain = {("x", "h1"), ("h1", "h2"), ("h2", "h3"), ("h3", "y")}
    assert blocks == chain | {("x", "y"), ("h1", "y"), ("h2", "y")}
    assert all(c["kind"] == "dense" for c in spec["connections"])


def test_spec_resmlp_is_the_residual_mlp_of_resmlp_spec(tmp_path, capsys) -> None:
    spec = _write_spec(tmp_path, "resmlp", "--sizes", "6", "5", "3", "--depth", "2")
    assert spec == gpuback.resmlp_spec(6, 5, 2, 3)  # layer norm and gelu by default
    plain = _write_spec(tmp_path, "resmlp", "--sizes", "6", "5", "3", "--depth", "3",
                        "--norm", "none", "--dropout", "0", "--activation", "silu", "--loss",
                        "sum_of_squares", "--overwrite")
    assert plain == gpuback.resmlp_spec(6, 5, 3, 3, norm=None, dropout=0.0, activation="silu",
                                        loss="sum_of_squares")
    assert not any("norm" in g or "dropout" in g for g in plain["groups"])
    assert main(["spec", "resmlp", "--sizes", "6", "5"]) == EXIT_USAGE
    assert "--sizes: expected 3 sizes for resmlp" in _one_line_error(capsys)


def test_spec_to_stdout_and_no_overwrite_without_asking(tmp_path, capsys) -> None:
    assert main(["spec", "mlp", "--sizes", "3", "2"]) == 0
    assert validate_spec(json.loads(capsys.readouterr().out))["groups"][0]["size"] == 3
    path = tmp_path / "s.json"
    path.write_text("mine")
    assert main(["spec", "mlp", "--sizes", "3", "2", "--out", str(path)]) == EXIT_USAGE
    assert "--overwrite" in _one_line_error(capsys) and path.read_text() == "mine"
    assert main(["spec", "mlp", "--sizes", "3", "2", "--out", str(path), "--overwrite"]) == 0
    assert validate_spec(json.loads(path.read_text()))["groups"][1]["size"] == 2
    assert main(["spec", "skip", "--sizes", "3", "2"]) == EXIT_USAGE  # no hidden group
    assert "--sizes" in _one_line_error(capsys)


# --- train --spec, predict, evaluate ------------------------------------------------------

@pytest.fixture(scope="module")
def skip_run(tmp_path_factory) -> tuple[Path, dict]:
    """A skip-connection spec trained on the embedded digits by the CLI: the run's
    directory and its JSON summary."""
    base = tmp_path_factory.mktemp("skip")
    spec = base / "skip.json"
    assert main(["spec", "skip", "--sizes", *SKIP_SIZES, "--out", str(spec)]) == 0
    out = base / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["train", "--spec", str(spec), "--epochs", str(SKIP_EPOCHS), "--json",
                     *FAST, "--out", str(out)])
    assert code == 0
    return out, json.loads(stdout.getvalue())


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """The embedded digits' test part as CSV files: with the label last, and without."""
    base = tmp_path_factory.mktemp("digits")
    split = datasets.load_digits()
    with_labels, without = base / "labelled.csv", base / "features.csv"
    np.savetxt(with_labels, np.column_stack([split.X_test, split.y_test]), delimiter=",",
               fmt="%.17g")
    np.savetxt(without, split.X_test, delimiter=",", fmt="%.17g")
    return with_labels, without, split.X_test, split.y_test


def test_train_spec_learns_the_digits_through_skip_connections(skip_run) -> None:
    out, summary = skip_run
    net = gpuback.Network.load(out / "model")
    assert {(c["src"], c["dst"]) for c in net.spec["connections"]} >= {("x", "y"), ("h1", "y")}
    assert net.epochs_trained == SKIP_EPOCHS
    split = datasets.load_digits()
    accuracy = np.mean(np.argmax(net.forward(split.X_test), axis=1) == split.y_test)
    assert accuracy > 0.93
    assert summary["test_accuracy"] == pytest.approx(accuracy)
    options = checkpoint.read(out / "model").metadata["train_options"]
    assert options["spec"].endswith("skip.json") and options["hidden"] == [32, 32]


@pytest.mark.parametrize("which", ["labelled", "features only"])
def test_predict_writes_the_networks_argmax_and_probabilities(which, skip_run, digits_csv,
                                                              tmp_path) -> None:
    out, _ = skip_run
    labelled, features, X, _ = digits_csv
    preds = tmp_path / "preds.csv"
    data = labelled if which == "labelled" else features
    assert main(["predict", "--model", str(out / "model"), "--data", str(data), "--out",
                 str(preds), "--backend", "numpy"]) == 0
    lines = preds.read_text().splitlines()
    assert lines[0] == "label," + ",".join(f"p{i}" for i in range(10))
    table = np.loadtxt(preds, delimiter=",", skiprows=1)
    probabilities = gpuback.Network.load(out / "model", backend="numpy").forward(X)
    assert table.shape == (len(X), 11)
    np.testing.assert_array_equal(table[:, 0], np.argmax(probabilities, axis=1))
    np.testing.assert_allclose(table[:, 1:], probabilities, rtol=1e-6, atol=1e-7)


def test_predict_to_stdout_and_on_the_runs_test_part(skip_run, digits_csv, capsys) -> None:
    out, _ = skip_run
    assert main(["predict", "--model", str(out / "model"), "--backend", "numpy"]) == 0
    text = capsys.readouterr().out
    default = np.loadtxt(text.splitlines()[1:], delimiter=",")
    assert main(["predict", "--model", str(out / "model"), "--data", str(digits_csv[0]),
                 "--backend", "numpy"]) == 0
    from_file = np.loadtxt(capsys.readouterr().out.splitlines()[1:], delimiter=",")
    np.testing.assert_array_equal(default[:, 0], from_file[:, 0])


def test_evaluate_matches_training_evaluate(skip_run, digits_csv, capsys) -> None:
    out, summary = skip_run
    labelled, _, X, y = digits_csv
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(labelled), "--json",
                 "--backend", "numpy"]) == 0
    report = json.loads(capsys.readouterr().out)  # the whole of stdout: one document
    net = gpuback.Network.load(out / "model", backend="numpy")
    expected = training.evaluate(net, X, y)
    assert report["accuracy"] == pytest.approx(expected["accuracy"])
    assert report["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert report["accuracy"] == pytest.approx(np.mean(np.argmax(net.forward(X), 1) == y))
    assert report["samples"] == len(y) and report["loss_function"] == "cross_entropy"
    # without --data: the run's own test part, so the train summary's test accuracy
    assert main(["evaluate", "--model", str(out / "model"), "--backend", "numpy"]) == 0
    line = capsys.readouterr().out
    assert f"accuracy {summary['test_accuracy']:.4f}" in line and "359 samples" in line


def test_evaluate_a_regression_model_from_an_npz_file(tmp_path, capsys) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    Y = np.column_stack([X[:, 0] - X[:, 1], X[:, 2]])
    spec = tmp_path / "reg.json"
    assert main(["spec", "mlp", "--sizes", "3", "8", "2", "--loss", "sum_of_squares",
                 "--activation", "tanh", "--out", str(spec)]) == 0
    np.savez(tmp_path / "reg.npz", X=X, y=Y)
    np.savez(tmp_path / "inputs.npz", X=X)
    assert main(["train", "--spec", str(spec), "--data", str(tmp_path / "reg.npz"), "--epochs",
                 "3", *FAST, "--out", str(tmp_path / "run")]) == 0
    model = str(tmp_path / "run" / "model")
    capsys.readouterr()
    assert main(["evaluate", "--model", model, "--data", str(tmp_path / "reg.npz"), "--json",
                 "--backend", "numpy"]) == 0
    report = json.loads(capsys.readouterr().out)
    net = gpuback.Network.load(model, backend="numpy")
    mean_sse = np.mean(0.5 * np.sum((net.forward(X) - Y) ** 2, axis=1))  # Bishop 5.11
    assert report["accuracy"] is None and report["loss"] == pytest.approx(mean_sse, rel=1e-5)
    assert main(["predict", "--model", model, "--data", str(tmp_path / "inputs.npz"),
                 "--backend", "numpy"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "y0,y1"
    np.testing.assert_allclose(np.loadtxt(text.splitlines()[1:], delimiter=","),
                               net.forward(X), rtol=1e-6, atol=1e-6)
    assert main(["evaluate", "--model", model, "--data", str(tmp_path / "inputs.npz")]) == \
        EXIT_USAGE  # no targets to evaluate against
    assert "no targets" in _one_line_error(capsys)


# --- history.jsonl ------------------------------------------------------------------------

SMALL = ["--hidden", "8", *FAST]


def test_history_has_a_line_per_epoch_and_resume_appends(tmp_path, capsys) -> None:
    out, unbroken = tmp_path / "run", tmp_path / "unbroken"
    assert main(["train", "--epochs", "5", "--json", *SMALL, "--out", str(unbroken)]) == 0
    assert len(_history(unbroken)) == json.loads(capsys.readouterr().out)["epochs"] == 5
    assert main(["train", "--epochs", "3", "--json", *SMALL, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    first = _history(out)
    assert [r["epoch"] for r in first] == [1, 2, 3] == list(range(1, summary["epochs"] + 1))
    assert summary["history"] == str(out / "history.jsonl")
    assert first[-1]["loss"] == pytest.approx(summary["train_loss"])
    assert all(set(r) >= {"loss", "accuracy", "val_loss", "val_accuracy",
                          "samples_per_second", "seconds"} for r in first)
    assert main(["train", "--epochs", "5", "--resume", *SMALL, "--out", str(out)]) == 0
    resumed = _history(out)
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4, 5]
    assert resumed[:3] == first
    # a resumed run is bitwise the unbroken one: so are its recorded losses
    for mine, theirs in zip(resumed, _history(unbroken), strict=True):
        assert (mine["loss"], mine["val_accuracy"]) == (theirs["loss"], theirs["val_accuracy"])
    # nothing to do: the history stays as it is
    assert main(["train", "--epochs", "5", "--resume", *SMALL, "--out", str(out)]) == 0
    assert _history(out) == resumed


def test_an_interrupted_run_leaves_no_duplicate_epochs(tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", *SMALL, "--out", str(out)]) == 0
    real_save = checkpoint.save

    def save_then_stop_at_4(net, path, optimizer=None, metadata=None):
        result = real_save(net, path, optimizer, metadata)
        if net.epochs_trained == 4:
            raise KeyboardInterrupt
        return result

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "save", save_then_stop_at_4)
        assert main(["train", "--epochs", "6", "--resume", *SMALL, "--out", str(out)]) == \
            EXIT_INTERRUPTED
    assert "holds epoch 4" in _one_line_error(capsys)
    after_stop = _history(out)
    # epochs 3 and 4 are in the checkpoint, and fit recorded their figures as they ended
    assert [r["epoch"] for r in after_stop] == [1, 2, 3, 4]
    assert [r.get("recorded", True) for r in after_stop] == [True] * 4
    assert all(isinstance(r["loss"], float) for r in after_stop)
    assert main(["train", "--epochs", "6", "--resume", *SMALL, "--out", str(out)]) == 0
    final = _history(out)
    assert [r["epoch"] for r in final] == [1, 2, 3, 4, 5, 6]
    assert final[:4] == after_stop and all(r["loss"] is not None for r in final[4:])


def test_resume_after_early_stopping_replaces_the_epochs_past_the_best(tmp_path,
                                                                       capsys) -> None:
    out = tmp_path / "run"
    argv = ["train", "--early-stopping", "1", "--lr", "0.05", "--json", *SMALL,
            "--out", str(out)]
    assert main([*argv, "--epochs", "30"]) == 0
    summary = json.loads(capsys.readouterr().out)
    history = _history(out)
    assert len(history) == summary["epochs"]  # every epoch run, past the best one too
    best = summary["epochs_trained"]
    assert best < summary["epochs"], "the case needs a run that stopped early"
    assert main([*argv, "--epochs", str(best + 2), "--resume"]) == 0
    resumed = _history(out)
    assert [r["epoch"] for r in resumed] == list(range(1, len(resumed) + 1))
    assert resumed[:best] == history[:best]


# --- bad input: exit 2, one line ----------------------------------------------------------

def test_a_spec_whose_sizes_do_not_match_the_data(tmp_path, capsys) -> None:
    spec = tmp_path / "wrong.json"
    spec.write_text(json.dumps(gpuback.mlp_spec([60, 8, 10])))
    assert main(["train", "--spec", str(spec), *FAST, "--out", str(tmp_path / "r")]) == \
        EXIT_USAGE
    line = _one_line_error(capsys)
    assert "--spec" in line and "60 units" in line and "64 features" in line
    assert not (tmp_path / "r" / "model").exists()


@pytest.mark.parametrize(("content", "names"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"groups": []}), "not a valid spec"),
    (json.dumps({**gpuback.mlp_spec([64, 8, 10]),
                 "connections": [{"src": "x", "dst": "h1", "kind": "dense"},
                                 {"src": "h1", "dst": "y", "kind": "dense"},
                                 {"src": "y", "dst": "h1", "kind": "dense"}]}), "cycle"),
    (None, "no such file"),
])
def test_bad_spec_files(content, names: str, tmp_path, capsys) -> None:
    spec = tmp_path / "bad.json"
    if content is not None:
        spec.write_text(content)
    assert main(["train", "--spec", str(spec), *FAST, "--out", str(tmp_path / "r")]) == \
        EXIT_USAGE
    line = _one_line_error(capsys)
    assert names in line and str(spec) in line


@pytest.mark.parametrize("extra", [["--hidden", "16"], ["--activation", "tanh"],
                                   ["--density", "0.5"], ["--loss", "sum_of_squares"]])
def test_spec_excludes_the_mlp_shape_options(extra, tmp_path, capsys) -> None:
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(gpuback.mlp_spec([64, 8, 10])))
    assert main(["train", "--spec", str(spec), *extra, *FAST, "--out", str(tmp_path / "r")]) \
        == EXIT_USAGE
    assert extra[0] in _one_line_error(capsys)


def test_bad_predict_and_evaluate_input(skip_run, digits_csv, tmp_path, capsys) -> None:
    out, _ = skip_run
    model = str(out / "model")
    _, features, X, _ = digits_csv
    narrow = tmp_path / "narrow.csv"
    np.savetxt(narrow, X[:, :60], delimiter=",")
    wrong_label = tmp_path / "label.csv"
    np.savetxt(wrong_label, np.column_stack([X[:5], [0, 1, 2, 3, 10]]), delimiter=",")
    taken = tmp_path / "taken.csv"
    taken.write_text("keep")
    cases = [
        (["predict", "--model", model, "--data", str(narrow)], ["60 columns", "64 inputs"]),
        (["evaluate", "--model", model, "--data", str(features)], ["no targets"]),
        (["evaluate", "--model", model, "--data", str(wrong_label)], ["0..9", "10"]),
        (["predict", "--model", model, "--out", str(taken)], ["--overwrite"]),
        (["predict", "--model", str(tmp_path / "none")], ["none"]),
        (["evaluate", "--model", model, "--data", str(tmp_path / "missing.csv")],
         ["missing.csv"]),
        (["predict", "--data", str(features)], ["--model"]),
    ]
    for argv, names in cases:
        assert main([*argv, "--backend", "numpy"]) == EXIT_USAGE, argv
        line = _one_line_error(capsys)
        assert all(n in line for n in names), (argv, line)
    assert taken.read_text() == "keep"


def test_predict_without_data_needs_a_model_trained_by_the_cli(tmp_path, capsys) -> None:
    gpuback.Network(gpuback.mlp_spec([4, 3]), seed=0).save(tmp_path / "m")
    assert main(["predict", "--model", str(tmp_path / "m")]) == EXIT_USAGE
    assert "--data" in _one_line_error(capsys)


# --- the README's example -----------------------------------------------------------------

README = REPO_ROOT / "README.md"
MARKER = "<!-- cli-example -->"


def example_commands(markdown: str) -> list[str] | None:
    """The commands of the ```bash block right after ``MARKER`` (None without one)."""
    found = re.search(re.escape(MARKER) + r"\s*```bash\n(.*?)```", markdown, re.S)
    if found is None:
        return None
    return [line for line in found.group(1).splitlines() if line.strip()]


@pytest.mark.slow
def test_the_readme_cli_example_runs(tmp_path) -> None:
    commands = example_commands(README.read_text())
    assert commands is not None, f"README.md has no {MARKER} block (its command-line section)"
    bin_dir = str(Path(sys.executable).parent)  # where the gpuback console script is
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    for command in commands:
        done = subprocess.run(["bash", "-ec", command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, (command, done.stderr)
    written = [re.search(r"--out (\S+)", c) for c in commands if c.startswith("gpuback predict")]
    assert written and all(written), "the example writes its predictions with --out"
    for found in written:
        assert found is not None  # (checked above)
        lines = (tmp_path / found.group(1)).read_text().splitlines()
        assert lines[0] == "label," + ",".join(f"p{i}" for i in range(10))
        assert len(lines) == 1 + 359  # a prediction per sample of the digits' test part


def test_resume_a_spec_run(tmp_path, capsys) -> None:
    spec, other = tmp_path / "skip.json", tmp_path / "other.json"
    assert main(["spec", "skip", "--sizes", "64", "8", "10", "--out", str(spec)]) == 0
    assert main(["spec", "skip", "--sizes", "64", "9", "10", "--out", str(other)]) == 0
    out = str(tmp_path / "run")
    assert main(["train", "--spec", str(spec), "--epochs", "2", *FAST, "--out", out]) == 0
    # the network comes from the checkpoint: --spec may repeat it, not change it
    assert main(["train", "--spec", str(other), "--epochs", "3", "--resume", *FAST,
                 "--out", out]) == EXIT_USAGE
    assert "not the network of the checkpoint" in _one_line_error(capsys)
    assert main(["train", "--spec", str(spec), "--epochs", "3", "--resume", *FAST,
                 "--out", out]) == 0
    assert main(["train", "--epochs", "4", "--resume", *FAST, "--out", out]) == 0
    assert "skip.json: DAG of 3 groups" in capsys.readouterr().out  # still named after it
    net = gpuback.Network.load(Path(out) / "model")
    assert net.epochs_trained == 4 and ("x", "y") in {(c["src"], c["dst"])
                                                       for c in net.spec["connections"]}
    assert [r["epoch"] for r in _history(Path(out))] == [1, 2, 3, 4]
