"""The package as installed: device-code subpackage, public names, README and CI in step."""

from __future__ import annotations

import importlib
import pathlib
import re

import gpuback

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_kernels_ship_inside_the_package() -> None:
    kernels = importlib.import_module("gpuback.kernels")
    assert kernels.__doc__ and "Numba CUDA kernels" in kernels.__doc__


def test_public_api_names() -> None:
    for name in ("Network", "gradcheck", "mlp_spec", "sparse_mlp_spec", "validate_spec",
                 "available_backends", "__version__"):
        assert hasattr(gpuback, name), name
    assert "numpy" in gpuback.available_backends()


def test_ci_runs_the_exact_test_command_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert match, "README.md must show the test command after a <!-- test-command --> marker"
    command = match.group(1).strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines(), f"{command!r} is not a line of .ci/run"
