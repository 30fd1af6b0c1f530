"""``gpuback explain`` and ``gpuback gradcheck`` on a model ``gpuback train`` saved: the
default group, a checkpoint given as ``--model`` or as SPEC, and the two excluding each
other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gpuback
from gpuback.cli.app import main
from gpuback.cli.exit_codes import EXIT_USAGE


def _only_json(text: str) -> dict:
    """The whole of ``text`` is one JSON document (json.loads refuses anything more)."""
    return json.loads(text)


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
