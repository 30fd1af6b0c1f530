"""The ``gpuback`` command: exit codes, messages, outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from helpers import REPO_ROOT
from helpers.doc_blocks import cli_reference

import gpuback
from gpuback.checkpoint import files as checkpoint
from gpuback.cli import app as cli
from gpuback.cli import train as train_command
from gpuback.cli.app import main
from gpuback.cli.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from gpuback.cli.run_settings import TRAIN_DEFAULTS
from gpuback.optim import optimizers as optim


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
    (["train", "--backend", "tpu"], "argument --backend: invalid choice: 'tpu'"),
    (["train", "--activation", "swish"], "argument --activation"),
    (["train", "--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
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
    assert main(argv) == EXIT_USAGE  # main returns the exit code: no SystemExit to catch
    err = capsys.readouterr().err
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
    from gpuback.diagnostics.explanation import DEMO_SPEC

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


SMALL = ["--hidden", "16", "--backend", "numpy", "--no-progress"]


def _weights(model) -> dict[str, np.ndarray]:
    return gpuback.Network.load(model).parameters()


def _assert_same_weights(a, b) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k


def test_clip_grad_norm_clips_and_a_resumed_run_keeps_it(tmp_path) -> None:
    """--clip-grad-norm is a run option: a resumed run goes on clipping at the checkpoint's
    threshold and gives bitwise the unbroken run; a run without it trains otherwise."""
    clip = ["--clip-grad-norm", "0.05"]
    whole, parts, plain = tmp_path / "whole", tmp_path / "parts", tmp_path / "plain"
    assert main(["train", "--epochs", "2", *clip, *SMALL, "--out", str(whole)]) == 0
    assert main(["train", "--epochs", "1", *clip, *SMALL, "--out", str(parts)]) == 0
    assert main(["train", "--epochs", "2", "--resume", *SMALL, "--out", str(parts)]) == 0
    _assert_same_weights(whole / "model", parts / "model")
    assert main(["train", "--epochs", "2", *SMALL, "--out", str(plain)]) == 0
    clipped, unclipped = _weights(whole / "model"), _weights(plain / "model")
    assert any(not np.array_equal(clipped[k], unclipped[k]) for k in clipped)


def test_a_checkpoint_is_not_replaced_without_overwrite(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", *SMALL, "--out", str(out)]) == 0
    before = _weights(out / "model")
    assert main(["train", "--epochs", "2", *SMALL, "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--resume" in err and "--overwrite" in err
    # the bad run of the issue: refused without --overwrite; with it, it diverges in its
    # first epoch and the good model stays
    assert main(["train", "--lr", "1e6", *SMALL, "--out", str(out)]) == EXIT_USAGE
    capsys.readouterr()
    assert main(["train", "--lr", "1e6", "--overwrite", *SMALL, "--out", str(out)]) == \
        EXIT_FAILED
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "diverged" in err and "earlier one" in err
    assert gpuback.Network.load(out / "model").epochs_trained == 2
    for k, v in _weights(out / "model").items():
        assert np.array_equal(v, before[k]), k
    # --overwrite with a good run replaces it
    assert main(["train", "--epochs", "1", "--overwrite", *SMALL, "--out", str(out)]) == 0
    assert gpuback.Network.load(out / "model").epochs_trained == 1


def _stop_at_step(monkeypatch, step: int) -> None:
    """Ctrl-C at the ``step``-th optimiser step of the process (in the middle of an epoch)."""
    calls = {"n": 0}
    real = optim.Optimizer.step

    def step_then_maybe_stop(self, net, status=None):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return real(self, net, status)

    monkeypatch.setattr(optim.Optimizer, "step", step_then_maybe_stop)


def _stop_after_saving(monkeypatch, epochs: int) -> None:
    """Ctrl-C just after the checkpoint of epoch ``epochs`` reached the disk, inside save."""
    real = checkpoint.save

    def save_then_maybe_stop(net, path, optimizer=None, metadata=None):
        result = real(net, path, optimizer, metadata)
        if net.epochs_trained == epochs:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(checkpoint, "save", save_then_maybe_stop)


RUNS = {  # the options of a run, and those its resumption repeats (none: from the checkpoint)
    "adam": (["--epochs", "6"], ["--epochs", "6"]),
    "sgd-cosine-seed": (["--epochs", "6", "--optimizer", "sgd", "--lr", "0.05", "--schedule",
                         "cosine", "--seed", "3", "--batch-size", "48", "--test-fraction",
                         "0.3", "--density", "0.5"], []),
}


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("where", ["in an epoch", "after a save"])
def test_resume_after_ctrl_c_gives_bitwise_the_unbroken_run(run: str, where: str, tmp_path,
                                                            capsys, monkeypatch) -> None:
    options, resume_options = RUNS[run]
    assert main(["train", *options, *SMALL, "--out", str(tmp_path / "unbroken")]) == 0
    broken = tmp_path / "broken"
    with monkeypatch.context() as patch:
        if where == "in an epoch":  # epoch 4's third step
            steps = -(-round(1797 * (0.7 if "--seed" in options else 0.8)) //
                      (48 if "--seed" in options else 32))
            _stop_at_step(patch, 3 * steps + 3)
        else:
            _stop_after_saving(patch, 3)
        capsys.readouterr()
        assert main(["train", *options, *SMALL, "--out", str(broken)]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    # either way epoch 4 is the first the disk does not hold
    assert f"interrupted at epoch 4; the checkpoint in {broken / 'model'} holds epoch 3" in err
    assert gpuback.Network.load(broken / "model").epochs_trained == 3
    assert main(["train", *resume_options, "--resume", *SMALL, "--out", str(broken)]) == 0
    assert "resuming" in capsys.readouterr().out
    _assert_same_weights(tmp_path / "unbroken" / "model", broken / "model")
    nets = [gpuback.Network.load(d / "model") for d in (tmp_path / "unbroken", broken)]
    states = [checkpoint.load_optimizer(d / "model", n).state_dict()
              for d, n in zip((tmp_path / "unbroken", broken), nets, strict=True)]
    assert states[0]["steps"] == states[1]["steps"]
    for name, buffers in states[0]["buffers"].items():
        for buf, value in buffers.items():
            assert np.array_equal(states[1]["buffers"][name][buf], value), (name, buf)
    # and once there, nothing is left to do
    assert main(["train", *resume_options, "--resume", *SMALL, "--out", str(broken)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert nets[1].epochs_trained == 6


@pytest.mark.parametrize("option", [
    ["--hidden", "32"], ["--activation", "tanh"], ["--dtype", "float64"],
    ["--optimizer", "sgd"], ["--lr", "0.1"], ["--momentum", "0.5"], ["--weight-decay", "0.1"],
    ["--schedule", "cosine"], ["--density", "0.5"],
])
def test_resume_refuses_options_that_change_the_network_or_optimiser(option, tmp_path,
                                                                      capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", *SMALL, "--out", str(out)]) == 0
    before = _weights(out / "model")
    capsys.readouterr()
    assert main(["train", "--epochs", "2", "--resume", *SMALL, *option, "--out", str(out)]) \
        == EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"gpuback train: error: {option[0]} {option[1]}: the checkpoint")
    for k, v in _weights(out / "model").items():
        assert np.array_equal(v, before[k]), k
    # the checkpoint's own values may be repeated
    assert main(["train", "--epochs", "2", "--resume", *SMALL, "--lr", "0.003",
                 "--optimizer", "adam", "--out", str(out)]) == 0


def test_resume_checks_the_data_and_the_schedule(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--schedule", "cosine", *SMALL, "--out",
                 str(out)]) == 0
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "other.csv", np.column_stack([rng.normal(size=(40, 5)),
                                                         np.arange(40) % 10]), delimiter=",")
    capsys.readouterr()
    assert main(["train", "--epochs", "3", "--resume", "--data", str(tmp_path / "other.csv"),
                 *SMALL, "--out", str(out)]) == EXIT_USAGE
    assert "5 features" in capsys.readouterr().err
    # the cosine schedule was made for 2 epochs: a third would train at learning rate 0
    assert main(["train", "--epochs", "3", "--resume", *SMALL, "--out", str(out)]) == \
        EXIT_USAGE
    assert "cosine schedule ends after 2 epochs" in capsys.readouterr().err


def test_resume_a_checkpoint_written_by_the_python_api(tmp_path, capsys) -> None:
    split = gpuback.datasets.load_digits()
    net = gpuback.Network(gpuback.mlp_spec([64, 16, 10]), backend="numpy", dtype="float32",
                          seed=1)
    opt = optim.Adam(lr=1e-2)
    net.fit(split.X_train, split.y_train, epochs=1, optimizer=opt, progress=False)
    net.save(tmp_path / "bare" / "model")  # no optimiser: nothing to resume from
    assert main(["train", "--resume", *SMALL, "--out", str(tmp_path / "bare")]) == EXIT_USAGE
    assert "holds no optimiser state" in capsys.readouterr().err
    net.save(tmp_path / "run" / "model", opt)  # no run options in its metadata: defaults apply
    assert main(["train", "--resume", "--epochs", "2", *SMALL, "--out",
                 str(tmp_path / "run")]) == 0
    assert "resuming" in capsys.readouterr().out
    net.fit(split.X_train, split.y_train, epochs=1, optimizer=opt, progress=False)
    for k, v in _weights(tmp_path / "run" / "model").items():
        assert np.array_equal(v, net.parameters()[k]), k


def test_samples_per_second_is_total_samples_over_total_time(tmp_path, capsys,
                                                             monkeypatch) -> None:
    times = iter([100.0, 110.0])  # the run's start and end: 10 s
    monkeypatch.setattr(train_command, "_clock", lambda: next(times))
    assert main(["train", "--epochs", "3", *SMALL, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    n_train = len(gpuback.datasets.load_digits().y_train)
    assert f"(10.0 s, {3 * n_train / 10:.0f} samples/s)" in out


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_pixels_are_scaled_to_0_1_unless_told_otherwise(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, size=(60, 4, 4)), rng.integers(0, 3, size=60)
    _write_idx(tmp_path / "train-images-idx3-ubyte", images)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    np.savez(tmp_path / "same.npz", X=images.reshape(60, 16) / 255.0, y=labels)
    np.savez(tmp_path / "raw.npz", X=images.reshape(60, 16).astype(float), y=labels)
    runs = {"idx": ["--data", str(tmp_path / "train-images-idx3-ubyte")],
            "npz": ["--data", str(tmp_path / "same.npz")],
            "idx-1": ["--data", str(tmp_path / "train-images-idx3-ubyte"), "--scale", "1"],
            "raw": ["--data", str(tmp_path / "raw.npz")],
            "raw-255": ["--data", str(tmp_path / "raw.npz"), "--scale", "255"]}
    for name, argv in runs.items():
        assert main(["train", "--epochs", "2", *argv, *SMALL, "--out",
                     str(tmp_path / name)]) == 0, name
    assert "divided by 255" in capsys.readouterr().out
    _assert_same_weights(tmp_path / "idx" / "model", tmp_path / "npz" / "model")
    _assert_same_weights(tmp_path / "idx" / "model", tmp_path / "raw-255" / "model")
    _assert_same_weights(tmp_path / "idx-1" / "model", tmp_path / "raw" / "model")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions  # noqa: SLF001
               if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions  # noqa: SLF001
            if not isinstance(a, argparse._HelpAction)]  # noqa: SLF001


def _default(command: str, action: argparse.Action):
    """An option's default (train's are in TRAIN_DEFAULTS: its parser's are None)."""
    if action.default is None and command == "train":
        return TRAIN_DEFAULTS.get(action.dest)
    return None if isinstance(action.default, bool) else action.default


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def test_every_option_has_help_with_its_default_and_allowed_values() -> None:
    commands = _subcommands()
    assert set(commands) == {"train", "predict", "evaluate", "spec", "gradcheck", "explain",
                             "bench", "info"}
    for command, parser in commands.items():
        for action in _options(parser):
            name = f"{command} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, name
            text = action.help % {**vars(action), "prog": parser.prog}
            assert "default: " in text, name  # flags: "default: off"
            default = _default(command, action)
            if default is not None:
                assert f"default: {_shown(default)})" in text, name
            for choice in action.choices or ():
                assert str(choice) in text, (name, choice)
            if getattr(action.type, "allowed", None):
                assert action.type.allowed in text, name


def _reference_rows() -> dict[str, list[list[str]]]:
    """Each command's option rows in the command-line reference the docs build writes."""
    markdown = cli_reference().cli_markdown()
    rows: dict[str, list[list[str]]] = {}
    for section in markdown.split("## `gpuback ")[1:]:
        command = section.split("`", 1)[0]
        rows[command] = [[c.strip() for c in line.strip().strip("|").split(" | ")]
                         for line in section.splitlines() if line.startswith("| `")]
    return rows


def test_the_cli_reference_lists_every_option_with_its_default() -> None:
    rows = _reference_rows()
    commands = _subcommands()
    assert set(commands) <= set(rows)
    for command, parser in commands.items():
        for action in _options(parser):
            flag = action.option_strings[0] if action.option_strings else \
                (action.metavar or action.dest.upper())
            row = next((r for r in rows[command] if r[0] == f"`{flag}`"
                        or r[0].startswith(f"`{flag} ") or r[0].startswith(f"`{flag},")),
                       None)
            assert row is not None, f"the CLI reference has no row for {command} {flag}"
            default = _default(command, action)
            if default is not None:
                assert row[1] == _shown(default), (command, flag, row)
            for choice in action.choices or ():
                assert str(choice) in row[2], (command, flag, choice)
    for shape in ("mlp", "sparse-mlp", "skip"):  # the nested commands have their sections
        assert any(r[0].startswith("`--sizes") for r in rows[f"spec {shape}"]), shape


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"gpuback {gpuback.__version__}"
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert f'version = "{gpuback.__version__}"' in pyproject
