"""The code blocks of README.md and docs/: what each page shows, and how a test runs it.

Every fence names its language, one of ``LANGUAGES``: ``python`` blocks run (a page's blocks
in order, in one namespace), ``bash`` blocks are commands (run, or for ``pip install`` and
``pytest`` checked as ``COMMAND_KINDS`` says), ``json`` blocks parse, ``text`` blocks (output,
listings, formulas) are shown only.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path

import gpuback

from . import REPO_ROOT

LANGUAGES = ("python", "bash", "json", "text")
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\n`]*)\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
                   re.S | re.M)
NEEDS = re.compile(r"# needs: (\S+)")  # a python block's first line: the package it needs
# the commands a bash block may hold: run them, or check them another way
COMMAND_KINDS = {"gpuback": "run", "python": "run", "mpiexec": "run",
                 "pip": "resolve",      # `pip install ...`: resolved with --dry-run
                 "pytest": "ci"}        # the test commands: lines of .ci/run, which runs them


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO_ROOT)}:{self.line}"


def pages() -> list[Path]:
    """README.md and every page of the site."""
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, in order."""
    text = page.read_text()
    return [Block(page, text.count("\n", 0, found.start()) + 1, found["lang"].strip(),
                  _dedent(found["code"], found["indent"]))
            for found in FENCE.finditer(text)]


def _dedent(code: str, indent: str) -> str:
    return "".join(line.removeprefix(indent) for line in code.splitlines(keepends=True))


def runs_here(block: Block) -> bool:
    """Whether a python block runs in this environment: one whose first line is ``# needs:
    PACKAGE`` (an optional extra) runs where that package imports, and in CI (``CI=true``,
    which installs every extra) it must."""
    needs = NEEDS.match(block.code)
    if needs is None or importlib.util.find_spec(needs.group(1)) is not None:
        return True
    assert os.environ.get("CI") != "true", \
        f"{block.where}: CI runs every example, but {needs.group(1)} is not installed"
    return False


def commands(block: Block) -> list[str]:
    """A bash block's commands: its lines without comments, split at ``&&``."""
    found = []
    for line in block.code.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            found += [part.strip() for part in line.split("&&")]
    return found


def kind(command: str) -> str:
    """What a test does with ``command`` (``COMMAND_KINDS``); an AssertionError for any
    other program."""
    program = command.split()[0]
    assert program in COMMAND_KINDS, \
        f"{command!r}: a documented command must start with one of {sorted(COMMAND_KINDS)}"
    return COMMAND_KINDS[program]


def with_default_backend(monkeypatch, name: str) -> None:
    """Make ``name`` the default ``backend`` of ``Network(...)`` and ``Network.load``: the
    examples' calls that name no backend run on it."""
    for function in (gpuback.Network.__init__, gpuback.Network.load.__func__):
        with_defaults = [p.name for p in inspect.signature(function).parameters.values()
                         if p.default is not p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
        defaults = list(function.__defaults__)
        defaults[with_defaults.index("backend")] = name
        monkeypatch.setattr(function, "__defaults__", tuple(defaults))


def cli_reference():
    """The MkDocs hook that writes the command-line reference (``docs/hooks/``), imported."""
    path = REPO_ROOT / "docs" / "hooks" / "cli_reference.py"
    spec = importlib.util.spec_from_file_location("docs_cli_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
