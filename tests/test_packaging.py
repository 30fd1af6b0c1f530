"""The package as installed: device-code subpackage, public names, README and CI in step."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys

import pytest
from helpers import REPO_ROOT

import gpuback

ROOT = REPO_ROOT


def test_kernels_ship_inside_the_package() -> None:
    kernels = importlib.import_module("gpuback.kernels")
    assert kernels.__doc__ and "Numba CUDA kernels" in kernels.__doc__


def test_public_api_names() -> None:
    for name in ("Network", "gradcheck", "mlp_spec", "sparse_mlp_spec", "validate_spec",
                 "available_backends", "__version__"):
        assert hasattr(gpuback, name), name
    assert "numpy" in gpuback.available_backends()


def test_ci_runs_the_exact_test_commands_from_the_readme() -> None:
    """README.md shows two test commands (the main suite, then the slow set); .ci/run runs
    each exactly as shown, in that order, and the two together select every test."""
    readme = (ROOT / "README.md").read_text()
    commands = [c.strip() for c in
                re.findall(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)]
    assert len(commands) == 2, "README.md must show two test commands, each after a " \
        "<!-- test-command --> marker"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci, f"{command!r} is not a line of .ci/run"
    assert ci.index(commands[0]) < ci.index(commands[1])
    assert '-m "not slow"' in commands[0] and commands[1].endswith("-m slow")


def _pip_resolves(extras: str) -> subprocess.CompletedProcess[str]:
    """``pip install --dry-run`` of this checkout with ``extras``: resolves, installs nothing."""
    return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                           "--ignore-installed", "--no-input", f"{ROOT}[{extras}]"],
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("extras", ["test,sim12,cuda12", "test,cuda12", "test,sim13,cuda13"])
def test_documented_extras_resolve(extras: str) -> None:
    """Each documented combination of extras is installable (CI installs `.[test,sim13,sklearn]`
    itself); a test extra that pinned one CUDA major version once made `.[test,cuda12]`
    unresolvable."""
    done = _pip_resolves(extras)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_mixing_cuda_major_versions_does_not_resolve() -> None:
    """Two CUDA major versions in one environment break CuPy: pip must refuse them."""
    done = _pip_resolves("test,sim13,cuda12")
    assert done.returncode != 0 and "conflict" in done.stderr.lower(), done.stderr[-2000:]


# The optional packages whose tests skip without them (tests/interop/test_convert.py,
# tests/training/test_lbfgs.py, tests/sklearn/: pytest.importorskip) and whose checks skip
# inside scikit-learn's suite (pandas); CI installs them all (.ci/run), so there none of those
# skips may happen.
CI_OPTIONAL = ("torch", "scipy", "sklearn", "pandas", "mpi4py")


@pytest.mark.skipif(os.environ.get("CI") != "true",
                    reason="the check of CI's environment (CI=true); elsewhere these "
                           "packages are optional")
@pytest.mark.parametrize("package", CI_OPTIONAL)
def test_ci_has_every_optional_package_the_tests_use(package: str) -> None:
    assert importlib.util.find_spec(package) is not None, f"CI must install {package}"
