"""The package as installed: device-code subpackage, public names, README and CI in step."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys

import pytest
from helpers import REPO_ROOT
from helpers.backend_params import backend_param, state

import gpuback
from gpuback.backends import backend_names

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


# On a simulated backend (~70 us a simulated thread) the README's examples run smaller: each
# text here must be in the README (so an edit there cannot silently drop a shrink), and the
# digits are cut to their first 64 training and 32 test samples.
SIMULATED_README = {
    "print(gpuback.gradcheck(net, X, labels))":
        'print(gpuback.gradcheck(net, X, labels, mode="direction"))',  # not 2,442 entries
    "gpuback.mlp_spec([64, 128, 10])": "gpuback.mlp_spec([64, 8, 10])",
    "epochs=20": "epochs=1",
}


def _with_default_backend(monkeypatch, name: str) -> None:
    """Make ``name`` the default ``backend`` of ``Network(...)`` and ``Network.load``, the
    README's calls that name no backend."""
    for function in (gpuback.Network.__init__, gpuback.Network.load.__func__):
        with_defaults = [p.name for p in inspect.signature(function).parameters.values()
                         if p.default is not p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
        defaults = list(function.__defaults__)
        defaults[with_defaults.index("backend")] = name
        monkeypatch.setattr(function, "__defaults__", tuple(defaults))


NEEDS = re.compile(r"# needs: (\S+)")  # a block's first line: the optional package it needs


def _runs_here(block: str) -> bool:
    """Whether a README block runs in this environment: one whose first line is ``# needs:
    PACKAGE`` (an optional extra, PyTorch for the interop example) runs where that package
    imports, and in CI (``CI=true``, which installs every extra) it must."""
    needs = NEEDS.match(block)
    if needs is None or importlib.util.find_spec(needs.group(1)) is not None:
        return True
    assert os.environ.get("CI") != "true", f"CI runs every README example: {needs.group(1)} " \
        "is not installed"
    return False


def _readme_backends() -> list:
    """Every backend; the simulated one (the README's training at simulator speed, over a
    minute) is in the slow set."""
    params = []
    for name in backend_names():
        param = backend_param(name)
        slow = [pytest.mark.slow] if state(name).simulated else []
        params.append(pytest.param(*param.values, marks=[*param.marks, *slow], id=param.id))
    return params


@pytest.mark.parametrize("backend", _readme_backends(), indirect=True)
def test_the_readme_python_examples_run(backend: str, simulated: bool, capsys, tmp_path,
                                        monkeypatch) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = [block for block in re.findall(r"```python\n(.+?)```", readme, re.S)
              if _runs_here(block)]
    assert len(blocks) >= 3
    code = "\n".join(blocks)  # in order: later blocks use names from earlier ones
    assert 'backend="numpy"' in code
    code = code.replace('backend="numpy"', f"backend={backend!r}")
    _with_default_backend(monkeypatch, backend)
    if simulated:
        for text, smaller in SIMULATED_README.items():
            assert text in code, f"README.md no longer has {text!r}: update SIMULATED_README"
            code = code.replace(text, smaller)
        digits = gpuback.datasets.load_digits

        def few_digits(*args, **kwargs):
            d = digits(*args, **kwargs)
            return dataclasses.replace(d, X_train=d.X_train[:64], y_train=d.y_train[:64],
                                       X_test=d.X_test[:32], y_test=d.y_test[:32])

        monkeypatch.setattr(gpuback.datasets, "load_digits", few_digits)
    monkeypatch.chdir(tmp_path)  # the training example writes run/model
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "PASSED" in out and "'accuracy'" in out
    assert namespace["opt_again"].steps == namespace["opt"].steps
    # the examples ran on the backend under test
    assert namespace["net"].backend == namespace["again"].backend == backend


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
