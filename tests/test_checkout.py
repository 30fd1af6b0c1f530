"""A source checkout works in place and as an editable install, ``gpuback.kernels`` included.

``kernels/`` sits at the top of the repository and ships as ``gpuback.kernels``
(pyproject's ``package-dir``). Run uninstalled from a checkout, ``gpuback/`` has no
``kernels`` inside, and ``gpuback/__init__.py`` (``_alias_checkout_kernels``) registers the
top-level ``kernels/`` under that name. Each case here runs in a subprocess on a copy of
the checkout in ``tmp_path`` (the repository is left alone, and the copy is what gets
imported, not the installed package this test session runs on):

* a script in the checkout's root, ``python script.py``: README.md's first Python example;
* ``python -m pytest`` in the checkout's root, on a small test file written into the copy;
* the same script in an environment with the dependencies only (no gpuback installed), with
  and without the alias: without it, ``gpuback.kernels`` does not exist;
* an editable install (``pip install -e``) into a fresh virtual environment, imported from
  another directory; with the alias switched off as well (the install's own mapping).

The fresh environments reuse this one's dependencies without copying them: a ``.pth`` file
adds a directory of links to everything installed here except gpuback itself (this test run's
gpuback, editable or not, must not be what they import).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO_ROOT as ROOT
from helpers.checkout import copy_checkout
from packaging.version import Version

ALIAS_CALL = "_alias_checkout_kernels()  # before anything imports gpuback.kernels"
MISSING_KERNELS = "ModuleNotFoundError: No module named 'gpuback.kernels'"

# Appended to README.md's first example: the float32 network on backend="auto" computes what
# the float64 NumPy one does, and where gpuback and its kernels were imported from.
SCRIPT_CHECKS = """
import json
import gpuback.kernels.activation
np.testing.assert_allclose(gpu.forward(X.astype(np.float32)), y, rtol=1e-4, atol=1e-6)
print("IMPORTED " + json.dumps({"gpuback": gpuback.__file__, "kernels": gpuback.kernels.__file__,
                                "activation": gpuback.kernels.activation.__file__,
                                "auto": gpu.backend}))
"""

# Written into the copy's tests/ and run there by `python -m pytest`.
IN_PLACE_TEST = '''"""Written by tests/test_checkout.py into a copy of the checkout."""
import json
from pathlib import Path

import numpy as np

import gpuback
import gpuback.kernels.activation

CHECKOUT = Path(__file__).resolve().parents[1]


def test_gpuback_and_its_kernels_come_from_this_checkout():
    imported = {"gpuback": gpuback.__file__, "kernels": gpuback.kernels.__file__,
                "activation": gpuback.kernels.activation.__file__}
    print("IMPORTED " + json.dumps(imported))
    assert Path(imported["gpuback"]).resolve() == CHECKOUT / "gpuback" / "__init__.py"
    assert Path(imported["kernels"]).resolve() == CHECKOUT / "kernels" / "__init__.py"


def test_a_forward_pass():
    net = gpuback.Network(gpuback.mlp_spec([4, 3, 2]), backend="numpy", seed=0)
    assert net.forward(np.zeros((2, 4))).shape == (2, 2)
'''

# Run by the editable install's interpreter from another directory.
EDITABLE_CHECK = """
import importlib.metadata, json
import numpy as np
import gpuback
import gpuback.kernels.activation
spec = gpuback.mlp_spec([6, 5, 3], loss="cross_entropy")
X = np.random.default_rng(1).normal(size=(4, 6))
ref = gpuback.Network(spec, backend="numpy", dtype="float64", seed=0)
auto = gpuback.Network(spec, backend="auto", dtype="float32")
auto.set_parameters(ref.parameters())
np.testing.assert_allclose(auto.forward(X.astype(np.float32)), ref.forward(X), rtol=1e-4,
                           atol=1e-6)
print("IMPORTED " + json.dumps({
    "gpuback": gpuback.__file__, "kernels": gpuback.kernels.__file__,
    "activation": gpuback.kernels.activation.__file__, "auto": auto.backend,
    "direct_url": json.loads(importlib.metadata.distribution("gpuback")
                             .read_text("direct_url.json"))}))
"""


def switch_off_the_alias(checkout: Path) -> None:
    init = checkout / "gpuback" / "__init__.py"
    source = init.read_text()
    assert source.count(ALIAS_CALL) == 1
    init.write_text(source.replace(ALIAS_CALL, "pass  # switched off by tests/test_checkout.py"))


def readme_first_example() -> str:
    blocks = re.findall(r"```python\n(.+?)```", (ROOT / "README.md").read_text(), re.S)
    first = blocks[0]
    for text in ('gpu = gpuback.Network(spec, dtype="float32")', "forward(", "loss_and_grads(",
                 "gradcheck(", "gpuback.info()"):
        assert text in first, f"README.md's first Python example no longer has {text!r}"
    return first


def write_script(checkout: Path) -> Path:
    script = checkout / "script.py"
    script.write_text(readme_first_example() + SCRIPT_CHECKS)
    return script


def run(args: list, cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    """``args`` in ``cwd``, as a user would start it: no PYTHONPATH, and without the CUDA
    simulator that this test run's conftest switches on."""
    drop = {"PYTHONPATH", "PYTHONSAFEPATH", "NUMBA_ENABLE_CUDASIM"}
    env = {key: value for key, value in os.environ.items() if key not in drop}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def imported(done: subprocess.CompletedProcess[str]) -> dict:
    """What a subprocess reported on its ``IMPORTED {json}`` line (it must have succeeded)."""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("IMPORTED ")]
    assert len(lines) == 1, done.stdout[-3000:]
    return json.loads(lines[0].removeprefix("IMPORTED "))


def assert_from(checkout: Path, paths: dict) -> None:
    """gpuback and gpuback.kernels (and its activation module) are ``checkout``'s files."""
    assert Path(paths["gpuback"]).resolve() == checkout / "gpuback" / "__init__.py", paths
    assert Path(paths["kernels"]).resolve() == checkout / "kernels" / "__init__.py", paths
    assert Path(paths["activation"]).resolve() == checkout / "kernels" / "activation.py", paths


def _is_gpuback(name: str) -> bool:
    """An installed gpuback: the package, its metadata, an editable install's finder/.pth."""
    name = name.lower()
    return name.startswith("gpuback") or (name.startswith("__editable__") and "gpuback" in name)


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory) -> Path:
    """A directory of links to everything this environment has installed, gpuback left out."""
    links = tmp_path_factory.mktemp("dependencies")
    sites = dict.fromkeys(Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib"))
    for site in sites:
        for entry in sorted(site.iterdir()) if site.is_dir() else ():
            if not _is_gpuback(entry.name) and entry.name != "__pycache__" \
                    and not (links / entry.name).exists():
                (links / entry.name).symlink_to(entry)
    assert (links / "numpy").exists() and (links / "numba").exists()
    return links


def fresh_venv(path: Path, dependencies: Path) -> Path:
    """A new virtual environment that sees ``dependencies`` (site.addsitedir: their own .pth
    files run, as they do here); its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   capture_output=True, timeout=120)
    python = path / ("Scripts" if os.name == "nt" else "bin") / "python"
    done = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               cwd=path)
    site = Path(done.stdout.strip())
    assert done.returncode == 0 and site.is_dir(), done.stderr
    (site / "_test_checkout_dependencies.pth").write_text(
        f"import site; site.addsitedir({str(dependencies)!r})\n")
    alone = run([python, "-c", "import gpuback"], cwd=path)
    assert "No module named 'gpuback'" in alone.stderr, "the fresh venv sees a gpuback"
    return python


@pytest.mark.slow
def test_a_script_in_the_checkout_root_runs_the_checkout(tmp_path) -> None:
    """`python script.py` in the checkout's root: README.md's first example runs, on the
    checkout's gpuback and kernels/ (not on the installed gpuback this test run has)."""
    checkout = copy_checkout(tmp_path / "checkout")
    script = write_script(checkout)
    done = run([sys.executable, script.name], cwd=checkout)
    assert_from(checkout, imported(done))
    assert "PASSED" in done.stdout  # the gradcheck
    assert "'numpy': {'usable': True" in done.stdout  # gpuback.info()["backends"]


@pytest.mark.slow
def test_python_m_pytest_in_the_checkout_root(tmp_path) -> None:
    """`python -m pytest` in the checkout's root imports the checkout (its conftest too)."""
    checkout = copy_checkout(tmp_path / "checkout", tests=True)
    (checkout / "tests" / "test_in_place.py").write_text(IN_PLACE_TEST)
    done = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s",
                "tests/test_in_place.py"], cwd=checkout)
    assert_from(checkout, imported(done))
    assert re.search(r"\b2 passed\b", done.stdout), done.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("alias", [True, False], ids=["alias", "alias-off"])
def test_a_checkout_with_only_the_dependencies_installed(tmp_path, dependencies,
                                                         alias: bool) -> None:
    """Nothing installed but the dependencies: the checkout's root script runs with
    _checkout's alias and fails without it, for want of gpuback.kernels (why it exists)."""
    checkout = copy_checkout(tmp_path / "checkout")
    script = write_script(checkout)
    python = fresh_venv(tmp_path / "venv", dependencies)
    if not alias:
        switch_off_the_alias(checkout)
    done = run([python, script.name], cwd=checkout)
    if alias:
        assert_from(checkout, imported(done))
    else:
        assert done.returncode != 0 and MISSING_KERNELS in done.stderr, done.stderr[-3000:]


def _build_isolation() -> list[str]:
    """pip's option for building gpuback here: with this environment's setuptools where it
    can (the license expression in pyproject.toml needs setuptools 77), else in pip's
    isolated build environment, which fetches setuptools from the package index."""
    try:
        usable = Version(importlib.metadata.version("setuptools")) >= Version("77")
    except importlib.metadata.PackageNotFoundError:
        usable = False
    return ["--no-build-isolation"] if usable else []


@pytest.mark.slow
def test_an_editable_install_imports_the_checkout_from_anywhere(tmp_path,
                                                                dependencies) -> None:
    """`pip install -e` of the checkout into a fresh venv, imported from another directory:
    gpuback and gpuback.kernels are the checkout's files, and stay so with _checkout's alias
    switched off (the editable install maps gpuback.kernels to kernels/ itself)."""
    checkout = copy_checkout(tmp_path / "checkout")
    python = fresh_venv(tmp_path / "venv", dependencies)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    install = run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
                   "--no-input", "--no-deps", *_build_isolation(), "--editable", checkout],
                  cwd=elsewhere, timeout=600)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    report = imported(run([python, "-c", EDITABLE_CHECK], cwd=elsewhere))
    assert_from(checkout, report)
    assert report["direct_url"]["dir_info"] == {"editable": True}
    assert report["direct_url"]["url"] == checkout.as_uri()
    console = run([python.parent / "gpuback", "info", "--json"], cwd=elsewhere)
    assert console.returncode == 0, console.stderr[-3000:]
    assert json.loads(console.stdout)["backends"]["numpy"]["usable"]

    switch_off_the_alias(checkout)  # the install is editable: this takes effect at once
    assert_from(checkout, imported(run([python, "-c", EDITABLE_CHECK], cwd=elsewhere)))
