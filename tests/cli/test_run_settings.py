"""What ``train``, ``predict`` and ``evaluate`` share: a train run's settings as its checkpoint
records them (``gpuback.cli.run_settings``) and the data they name (``gpuback.cli.run_data``),
and the rule that keeps it so: no command module imports another."""

from __future__ import annotations

import ast

import numpy as np
import pytest
from helpers import REPO_ROOT

import gpuback
from gpuback.cli import run_data, run_settings
from gpuback.cli.failures import UsageError
from gpuback.cli.run_settings import MODEL_OPTIONS, RUN_OPTIONS, TRAIN_DEFAULTS
from gpuback.datasets import loaders as datasets


def test_a_run_records_its_run_and_model_options_and_its_spec_only_if_any() -> None:
    opts = {**TRAIN_DEFAULTS, "out": "somewhere"}
    recorded = run_settings.recorded_options(opts)
    assert set(recorded) == {*RUN_OPTIONS, *MODEL_OPTIONS}  # not --out, nor a spec of None
    recorded = run_settings.recorded_options({**opts, "spec": "/abs/net.json"})
    assert recorded["spec"] == "/abs/net.json"


def test_run_options_take_the_recorded_run_options_and_the_defaults_for_the_rest() -> None:
    options = run_settings.run_options({"seed": 3, "lr": 1.0, "unknown": 1})
    assert options == {**TRAIN_DEFAULTS, "seed": 3}  # lr defines the model, not the run


def test_saved_settings_of_a_checkpoint_the_python_api_wrote_are_empty(tmp_path) -> None:
    net = gpuback.Network(gpuback.mlp_spec([4, 3, 2]), backend="numpy")
    net.save(tmp_path / "api")
    assert run_settings.saved_settings(tmp_path / "api") == {}
    net.save(tmp_path / "cli", metadata={run_settings.RUN_METADATA: {"seed": 5}})
    assert run_settings.saved_settings(tmp_path / "cli") == {"seed": 5}


def test_the_test_part_of_a_run_is_the_one_train_held_out() -> None:
    X, y, source = run_data.run_test_part({"seed": 4, "test_fraction": 0.3}, "cross_entropy")
    held_out = datasets.load_digits(test_fraction=0.3, seed=4)
    assert np.array_equal(X, held_out.X_test) and np.array_equal(y, held_out.y_test)
    assert source == "the test part of embedded UCI digits (8x8)"
    X, _, source = run_data.run_test_part({"seed": 4, "test_fraction": 0.3}, "cross_entropy",
                                          scale=2.0)
    assert np.array_equal(X, held_out.X_test / 2.0)


def test_early_stopping_holds_a_validation_part_out_of_the_training_part() -> None:
    plain = run_data.load_data(dict(TRAIN_DEFAULTS))
    assert plain.watched == "test" and plain.validation[1] is plain.split.y_test
    held = run_data.load_data({**TRAIN_DEFAULTS, "early_stopping": 3})
    assert held.watched == "validation"
    assert len(held.split.y_train) + len(held.validation[1]) == len(plain.split.y_train)
    assert np.array_equal(held.split.y_test, plain.split.y_test)


def test_the_embedded_digits_hold_labels_only() -> None:
    with pytest.raises(UsageError, match="--loss sum_of_squares: the embedded digits"):
        run_data.read_data({**TRAIN_DEFAULTS, "loss": "sum_of_squares"})


# the command families of gpuback/cli, each a module or modules named after it
COMMANDS = {"train": ("train", "train_options", "train_setup"), "predict": ("predict",),
            "spec": ("spec",), "diagnose": ("diagnose",), "bench": ("bench",)}


def _cli_imports(module: str) -> set[str]:
    """The modules of gpuback/cli that ``module`` imports (relative imports, anywhere)."""
    tree = ast.parse((REPO_ROOT / "gpuback" / "cli" / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [a.name for a in node.names])
    return found


def test_no_command_imports_another_and_shared_modules_import_none() -> None:
    owner = {module: family for family, modules in COMMANDS.items() for module in modules}
    wrong = []
    for path in sorted((REPO_ROOT / "gpuback" / "cli").glob("*.py")):
        module = path.stem
        if module in ("__init__", "app"):  # the dispatch imports every command
            continue
        for imported in _cli_imports(module):
            if imported in owner and owner[imported] != owner.get(module):
                wrong.append(f"{module} -> {imported}")
    assert wrong == []
