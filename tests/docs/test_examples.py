"""Every code block of README.md and the documentation site runs as shown.

A page's ``python`` blocks run in order in one namespace, in an empty directory, on every
backend that is not simulated (a call that names no backend gets the backend under test);
README.md's also on the simulated cuda backend, smaller, in the slow set. ``bash`` blocks
run command by command in an empty directory (slow set), their ``pip install`` lines are
resolved without installing, their ``pytest`` lines are lines of ``.ci/run``, which runs
them. ``json`` blocks parse. Every fence names one of those languages or ``text``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT
from helpers.backend_params import backend_param, state
from helpers.doc_blocks import (
    LANGUAGES,
    Block,
    blocks,
    commands,
    kind,
    pages,
    runs_here,
    with_default_backend,
)

import gpuback
from gpuback.backends import backend_names

README = REPO_ROOT / "README.md"


def _name(page: Path) -> str:
    return str(page.relative_to(REPO_ROOT))


def _pages_with(language: str) -> list[Path]:
    return [page for page in pages() if any(b.language == language for b in blocks(page))]


def test_every_block_says_what_it_is() -> None:
    found = [block for page in pages() for block in blocks(page)]
    assert len(found) >= 40
    for block in found:
        assert block.language in LANGUAGES, \
            f"{block.where}: a fence names one of {LANGUAGES}, not {block.language!r}"
    text_blocks = [block for block in found if block.language == "text"]
    for block in text_blocks:  # a command shown as text would never be run
        for line in block.code.splitlines():
            assert not line.startswith(("gpuback ", "pip install", "$ ")), \
                f"{block.where}: a command in a text block; make it a bash block"


def _host_backends() -> list:
    """Every backend that is not simulated (the simulator's threads make a page's training
    take minutes: README.md's examples are its simulated run)."""
    return [backend_param(name) for name in backend_names() if not state(name).simulated]


def _run_python(page_blocks: list[Block], where: str) -> dict:
    code = "\n".join(block.code for block in page_blocks if runs_here(block))
    namespace: dict = {"__name__": "__main__"}
    exec(compile(code, where, "exec"), namespace)
    return namespace


@pytest.mark.parametrize("page", [p for p in _pages_with("python") if p != README], ids=_name)
@pytest.mark.parametrize("backend", _host_backends(), indirect=True)
def test_a_pages_python_blocks_run(page: Path, backend: str, tmp_path, monkeypatch) -> None:
    with_default_backend(monkeypatch, backend)
    monkeypatch.chdir(tmp_path)
    _run_python([b for b in blocks(page) if b.language == "python"], _name(page))


# On a simulated backend (~70 us a simulated thread) README.md's examples run smaller: each
# text here must be in the README (so an edit there cannot silently drop a shrink), and the
# digits are cut to their first 64 training and 32 test samples.
SIMULATED_README = {
    "gpuback.mlp_spec([64, 128, 10])": "gpuback.mlp_spec([64, 8, 10])",
    "epochs=20": "epochs=1",
}


def _readme_backends() -> list:
    """Every backend; the simulated one (README.md's training at simulator speed) is in the
    slow set."""
    params = []
    for name in backend_names():
        param = backend_param(name)
        slow = [pytest.mark.slow] if state(name).simulated else []
        params.append(pytest.param(*param.values, marks=[*param.marks, *slow], id=param.id))
    return params


@pytest.mark.parametrize("backend", _readme_backends(), indirect=True)
def test_the_readme_python_examples_run(backend: str, simulated: bool, capsys, tmp_path,
                                        monkeypatch) -> None:
    readme_blocks = [b for b in blocks(README) if b.language == "python"]
    assert readme_blocks
    with_default_backend(monkeypatch, backend)
    if simulated:
        shrunk = []
        for block in readme_blocks:
            code = block.code
            for text, smaller in SIMULATED_README.items():
                code = code.replace(text, smaller)
            shrunk.append(dataclasses.replace(block, code=code))
        assert all(any(text in b.code for b in readme_blocks) for text in SIMULATED_README), \
            "README.md no longer has a text of SIMULATED_README: update it"
        readme_blocks = shrunk
        digits = gpuback.datasets.load_digits

        def few_digits(*args, **kwargs):
            d = digits(*args, **kwargs)
            return dataclasses.replace(d, X_train=d.X_train[:64], y_train=d.y_train[:64],
                                       X_test=d.X_test[:32], y_test=d.y_test[:32])

        monkeypatch.setattr(gpuback.datasets, "load_digits", few_digits)
    monkeypatch.chdir(tmp_path)
    namespace = _run_python(readme_blocks, "README.md")
    assert "'accuracy'" in capsys.readouterr().out
    assert namespace["net"].backend == backend  # the example ran on the backend under test


def _bash_pages() -> list[Path]:
    return _pages_with("bash")


@pytest.mark.slow
@pytest.mark.parametrize("page", _bash_pages(), ids=_name)
def test_a_pages_commands_run(page: Path, tmp_path) -> None:
    bin_dir = str(Path(sys.executable).parent)  # where the gpuback console script is
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    ran = 0
    for block in (b for b in blocks(page) if b.language == "bash"):
        for command in commands(block):
            what = kind(command)
            if what == "ci":
                assert any(line.strip().endswith(command) for line in ci), \
                    f"{block.where}: {command!r} is not run by .ci/run"
            elif what == "run":
                done = subprocess.run(["bash", "-ec", command], cwd=tmp_path, env=env,
                                      capture_output=True, text=True, check=False, timeout=600)
                assert done.returncode == 0, (block.where, command, done.stderr[-2000:])
                ran += 1
    assert ran or all(kind(c) != "run" for b in blocks(page) if b.language == "bash"
                      for c in commands(b))


def _pip_commands() -> list[str]:
    found = {c for page in _bash_pages() for b in blocks(page) if b.language == "bash"
             for c in commands(b) if kind(c) == "resolve"}
    return sorted(found)


@pytest.mark.slow
@pytest.mark.parametrize("command", _pip_commands())
def test_the_documented_installs_resolve(command: str) -> None:
    """``pip install X`` as the docs write it (a checkout's ``.`` or the ``gpuback`` name,
    taken as this checkout), resolved with ``--dry-run``: every extra and package exists."""
    argv = command.split()[2:]
    assert argv, command
    target = argv[-1].strip("'\"")
    if target.startswith("gpuback"):  # the package: this checkout
        target = str(REPO_ROOT) + target.removeprefix("gpuback")
    elif target.startswith("."):  # a checkout's root
        target = str(REPO_ROOT) + target.removeprefix(".")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                           "--ignore-installed", "--no-input", *argv[:-1], target],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, (command, done.stderr[-2000:])


@pytest.mark.parametrize("page", _pages_with("json"), ids=_name)
def test_a_pages_json_blocks_parse(page: Path) -> None:
    for block in (b for b in blocks(page) if b.language == "json"):
        value = json.loads(block.code)
        if isinstance(value, dict) and "groups" in value:
            gpuback.validate_spec(value)  # a spec shown is a valid one
