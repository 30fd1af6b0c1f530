"""The ``gpuback`` command: exit codes, messages, outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import gpuback
from gpuback.cli import EXIT_FAILED, EXIT_USAGE, main


def test_train_on_the_embedded_digits(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["train", "--epochs", "3", "--json", "--no-progress", "--backend", "numpy",
                 "--out", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert {"test_accuracy", "test_loss", "epochs", "seconds", "backend"} <= set(summary)
    assert summary["epochs"] == 3 and summary["backend"] == "numpy"
    assert 0.8 < summary["test_accuracy"] <= 1.0
    net = gpuback.Network.load(out / "model")
    assert net.epochs_trained == 3
    split = gpuback.datasets.load_digits()
    assert net.evaluate(split.X_test, split.y_test)["accuracy"] == \
        pytest.approx(summary["test_accuracy"])


def test_train_on_a_csv_file_with_a_sparse_network(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 5))
    y = (X[:, 0] > 0).astype(int)
    np.savetxt(tmp_path / "data.csv", np.column_stack([X, y]), delimiter=",")
    code = main(["train", "--data", str(tmp_path / "data.csv"), "--hidden", "16", "8",
                 "--density", "0.5", "--optimizer", "sgd", "--lr", "0.05", "--schedule",
                 "cosine", "--epochs", "4", "--json", "--no-progress", "--backend", "numpy",
                 "--out", str(tmp_path / "run")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 4
    spec = gpuback.Network.load(tmp_path / "run" / "model").spec
    assert [c["kind"] for c in spec["connections"]] == ["sparse", "sparse", "dense"]


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--data", "/no/such/file.csv"], "no such file"),
    (["train", "--density", "0"], "--density"),
    (["train", "--backend", "tpu"], "backend: expected one of"),
    (["train", "--activation", "swish"], "activation"),
    (["train", "--epochs", "0"], "epochs"),
    (["gradcheck", "/no/such/spec.json"], "No such file"),
    (["explain", "--unit", "9"], "unit: expected an integer in"),
    (["explain", "--model", "/no/such/model"], "no checkpoint directory"),
])
def test_errors_are_one_line_without_traceback(argv, message: str, capsys, tmp_path) -> None:
    code = main([*argv, "--out", str(tmp_path)] if argv[0] == "train" else argv)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["train", "--epochs", "many"], ["frobnicate"], [],
                                  ["train", "--optimizer", "lbfgs"]])
def test_bad_arguments_are_one_line_too(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == EXIT_USAGE
    assert len(err.strip().splitlines()) == 1 and "error:" in err


def test_malformed_data_file(tmp_path, capsys) -> None:
    (tmp_path / "bad.csv").write_text("1,2,0\n3,x,1\n")
    assert main(["train", "--data", str(tmp_path / "bad.csv"), "--out", str(tmp_path)]) == \
        EXIT_USAGE
    err = capsys.readouterr().err
    assert "bad.csv" in err and len(err.strip().splitlines()) == 1


def test_gradcheck_passes_by_default_and_fails_with_an_impossible_tolerance(capsys) -> None:
    assert main(["gradcheck"]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert main(["gradcheck", "--tol", "1e-30"]) == EXIT_FAILED
    assert "FAILED" in capsys.readouterr().out


def test_gradcheck_of_a_spec_file(tmp_path, capsys) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(gpuback.sparse_mlp_spec([4, 6, 3], density=0.5)))
    assert main(["gradcheck", str(path), "--mode", "direction"]) == 0
    path.write_text("{not json")
    assert main(["gradcheck", str(path)]) == EXIT_USAGE
    assert "not valid JSON" in capsys.readouterr().err


def test_explain_prints_the_terms_and_the_check(capsys) -> None:
    assert main(["explain", "--unit", "2"]) == 0
    out = capsys.readouterr().out
    assert "Unit j = h[2]" in out and "sum over every k" in out and "only via" in out


def test_explain_a_saved_model(tmp_path, capsys) -> None:
    from gpuback.explain import DEMO_SPEC

    gpuback.Network(DEMO_SPEC, dtype="float32", seed=4).save(tmp_path / "m")
    assert main(["explain", "--model", str(tmp_path / "m"), "--group", "g2"]) == 0
    assert "Unit j = g2[0]" in capsys.readouterr().out


def test_info(capsys) -> None:
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backends"]["numpy"]["usable"]
    assert main(["info"]) == 0
    assert "numpy" in capsys.readouterr().out


def test_the_installed_console_script_runs() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "gpuback")
    done = subprocess.run([script, "info"], capture_output=True, text=True, timeout=120,
                          cwd=tempfile.gettempdir(), check=False)
    assert done.returncode == 0, done.stderr
    assert "numpy" in done.stdout
