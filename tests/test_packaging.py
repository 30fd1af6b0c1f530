"""The package as installed: device-code subpackage, public names, README and CI in step."""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re
import subprocess
import sys

import pytest

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


def test_every_backend_exports_the_op_set_with_the_reference_signatures() -> None:
    from gpuback.backends import _BACKENDS, OP_SET, get_backend

    reference = get_backend("numpy")
    public = {n for n in dir(reference) if not n.startswith("_")}
    ops = {n for n in public if callable(getattr(reference, n)) and
           getattr(getattr(reference, n), "__module__", None) == reference.__name__}
    assert ops | {"name"} == set(OP_SET)  # the list and the reference agree
    for backend_name, path in _BACKENDS.items():  # available on this machine or not
        module = importlib.import_module(path)
        for op in OP_SET:
            assert hasattr(module, op), f"backend {backend_name!r} lacks op {op!r}"
            if callable(getattr(reference, op)):  # same parameters; array types may differ
                assert _parameters(getattr(module, op)) == _parameters(getattr(reference, op)), \
                    f"{backend_name}.{op}"


def _parameters(function) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_the_readme_python_examples_run(capsys, tmp_path, monkeypatch) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.+?)```", readme, re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)  # the training example writes run/model
    namespace: dict = {}
    for code in blocks:  # in order: later blocks use names from earlier ones
        exec(compile(code, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "PASSED" in out and "'accuracy'" in out
    assert namespace["opt_again"].steps == namespace["opt"].steps



def _pip_resolves(extras: str) -> subprocess.CompletedProcess[str]:
    """``pip install --dry-run`` of this checkout with ``extras``: resolves, installs nothing."""
    return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                           "--ignore-installed", "--no-input", f"{ROOT}[{extras}]"],
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("extras", ["test,sim12,cuda12", "test,cuda12", "test,sim13,cuda13"])
def test_documented_extras_resolve(extras: str) -> None:
    """Each documented combination of extras is installable (CI installs `.[test,sim13]`
    itself); a test extra that pinned one CUDA major version once made `.[test,cuda12]`
    unresolvable."""
    done = _pip_resolves(extras)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_mixing_cuda_major_versions_does_not_resolve() -> None:
    """Two CUDA major versions in one environment break CuPy: pip must refuse them."""
    done = _pip_resolves("test,sim13,cuda12")
    assert done.returncode != 0 and "conflict" in done.stderr.lower(), done.stderr[-2000:]
