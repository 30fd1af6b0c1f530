"""Facts in README.md and the documentation site that cannot drift from the code: the API
reference covers every public module, the extras and dependencies are pyproject.toml's, every
module, name and repository path the text mentions exists, the layout names every package,
and the text speaks of the product (no tracker numbers, no missing files)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT
from helpers.doc_blocks import cli_reference, pages

import gpuback

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra brings tomli there
    import tomli as tomllib

DOCS = REPO_ROOT / "docs"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
OPTIONAL = {"torch", "sklearn", "scipy", "mpi4py", "cupy", "matplotlib"}


def _public_modules() -> list[str]:
    """``gpuback``'s public modules: the package, its subpackages and its flat modules."""
    return ["gpuback", *sorted(f"gpuback.{m.name}" for m in pkgutil.iter_modules(gpuback.__path__)
                               if not m.name.startswith("_") and m.name != "kernels")]


def _directives() -> dict[str, Path]:
    """``::: module`` of the API reference -> its page."""
    found = {}
    for page in sorted((DOCS / "reference" / "api").glob("*.md")):
        for name in re.findall(r"^::: (\S+)$", page.read_text(), re.M):
            found[name] = page
    return found


def test_the_api_reference_covers_every_public_module() -> None:
    directives = _directives()
    missing = [m for m in _public_modules() if m not in directives]
    assert not missing, f"no page of docs/reference/api documents {missing}"
    for name in directives:
        importlib.import_module(name)  # and each names a module that exists
    index = (DOCS / "reference" / "api" / "index.md").read_text()
    for page in set(directives.values()):
        assert f"]({page.name})" in index, f"reference/api/index.md does not link {page.name}"


def test_every_page_is_in_the_navigation() -> None:
    nav = (REPO_ROOT / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        assert str(page.relative_to(DOCS)) in nav, f"mkdocs.yml's nav lacks {page}"


def test_the_cli_reference_page_is_written_from_the_parser() -> None:
    hook = cli_reference()
    page = (DOCS / "reference" / "cli.md").read_text()
    assert hook.MARKER in page
    assert "| `--" not in page, "options are written by the hook, not by hand"
    # the hook fills the marker and leaves other pages alone
    assert hook.MARKER not in hook.on_page_markdown(page, None, None, None)
    assert hook.on_page_markdown("# x\n", None, None, None) == "# x\n"


def _table(page: Path, header: str) -> list[list[str]]:
    """The rows of the table whose header row starts with ``header``."""
    lines = page.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]


def test_the_extras_table_is_pyprojects() -> None:
    rows = _table(DOCS / "getting-started.md", "| extra |")
    documented: dict[str, str] = {}
    for row in rows:
        for extra in re.findall(r"`([\w-]+)`", row[0]):
            documented[extra] = row[1]
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(documented) == set(extras), "the extras table and pyproject.toml differ"
    for extra, requirements in extras.items():
        for requirement in requirements:
            name = _requirement_name(requirement)
            assert name in documented[extra], f"extra {extra}: the table omits {name}"


def test_the_runtime_dependencies_are_named() -> None:
    text = (DOCS / "getting-started.md").read_text()
    section = text.split("## What gpuback needs", 1)[1].split("\n## ", 1)[0]
    for requirement in PYPROJECT["project"]["dependencies"]:
        name = _requirement_name(requirement)
        assert f"`{name}`" in section, f"getting-started.md omits the dependency {name}"


def _text_of_the_product() -> list[Path]:
    sources = [p for folder in ("gpuback", "kernels", "bench", "tests")
               for p in (REPO_ROOT / folder).rglob("*.py")]
    return [*pages(), REPO_ROOT / "tests" / "README.md", REPO_ROOT / "CHANGELOG.md",
            *sorted(sources)]


DOTTED = re.compile(r"`(gpuback(?:\.\w+)+)")


def _resolve(dotted: str) -> None:
    """Import the longest module prefix of ``dotted`` and get the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in OPTIONAL and \
                    os.environ.get("CI") != "true":
                return  # an optional extra missing here; CI has every one
            if exc.name and dotted.startswith(exc.name):  # a prefix that is no module
                continue
            raise
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_name_the_docs_mention_exists(page: Path) -> None:
    for dotted in sorted(set(DOTTED.findall(page.read_text()))):
        try:
            _resolve(dotted)
        except (ImportError, AttributeError) as exc:
            pytest.fail(f"{page.name} mentions {dotted}, which does not exist: {exc}")


REPO_PATH = re.compile(r"`((?:gpuback|kernels|tests|bench|docs|\.ci)/[\w./-]*\w)")


@pytest.mark.parametrize("page", [*pages(), REPO_ROOT / "tests" / "README.md"],
                         ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_repository_path_the_docs_mention_exists(page: Path) -> None:
    for path in sorted(set(REPO_PATH.findall(page.read_text()))):
        path = path.split("::")[0]
        assert (REPO_ROOT / path).exists() or (page.parent / path).exists(), \
            f"{page.name} mentions {path}, which does not exist"


def test_the_layout_names_every_package_and_module() -> None:
    layout = (DOCS / "contributing.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`gpuback/([\w/]+?)(?:\.py|/)?`", layout))
    # kernels/ sits beside gpuback/ in a checkout and inside it once installed
    here = {m.name for m in pkgutil.iter_modules(gpuback.__path__)} - {"__main__", "kernels"}
    assert "`kernels/`" in layout, "the layout omits kernels/"
    assert here - named == set(), f"the layout omits {sorted(here - named)}"
    for name in named:
        assert (REPO_ROOT / "gpuback" / name).exists() or \
            (REPO_ROOT / "gpuback" / f"{name}.py").exists(), name


# Words of how the work was organised, not of the product: tracker numbers and files the
# repository does not hold.
HISTORY = re.compile(r"(?<![\w/&#-])#\d{1,4}\b|\b[Ii]ssues? \d+\b|DESIGN\.md")


def test_the_text_speaks_of_the_product() -> None:
    for path in _text_of_the_product():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if path.name == "test_reference.py" and "HISTORY" in line:
                continue
            found = HISTORY.search(line)
            assert found is None, f"{path.relative_to(REPO_ROOT)}:{number}: {found[0]!r}"


def test_the_license_file_is_pyprojects() -> None:
    license_text = (REPO_ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"] == "MIT"
    assert license_text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in license_text


def test_the_readme_is_short_and_points_into_the_site() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 170
    for page in ("getting-started.md", "guide/", "reference/api/", "performance.md"):
        assert f"docs/{page}" in readme, f"README.md does not link docs/{page}"


def _parsers() -> dict[str, set[str]]:
    """Each command of ``gpuback`` (``"train"``, ``"spec skip"``, ...) -> its option flags."""
    import argparse

    from gpuback.cli.app import build_parser

    found: dict[str, set[str]] = {}

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        flags: set[str] = set()
        for action in parser._actions:  # noqa: SLF001
            flags.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                for sub, subparser in action.choices.items():
                    walk(f"{name} {sub}".strip(), subparser)
        found[name] = flags

    walk("", build_parser())
    return found


# Flags of the other programs the pages show (pip, pytest, mkdocs, mpiexec, mutmut): a flag
# outside gpuback's parsers and the scripts' must be one of these.
OTHER_FLAGS = {"--dry-run", "--no-build-isolation", "--strict", "--site-dir", "--quiet",
               "--max-children", "--import-mode", "--ignore-installed", "--no-input",
               "--oversubscribe"}


def _script_flags() -> set[str]:
    """The flags of the scripts in bench/ and tests/mutants/."""
    scripts = [*(REPO_ROOT / "bench").glob("*.py"), *(REPO_ROOT / "tests" / "mutants").glob("*.py")]
    return {flag for script in scripts
            for flag in re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", script.read_text())}


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_option_the_docs_mention_exists(page: Path) -> None:
    parsers = _parsers()
    every = set().union(*parsers.values()) | _script_flags()
    # text blocks are output and diagrams (``x --dense--> h``), not command lines
    text = re.sub(r"```text\n.*?```", "", page.read_text(), flags=re.S)
    for flag in sorted(set(FLAG.findall(text))):
        assert flag in every or flag in OTHER_FLAGS, \
            f"{page.name} mentions {flag}, which no gpuback command has"
    # a command line shown in full gives each flag to the command that has it
    for line in re.findall(r"^gpuback ([a-z-]+(?: [a-z-]+)?)(.*)$", text, re.M):
        words, rest = line
        command = words if words in parsers else words.split()[0]
        if command not in parsers:
            continue
        for flag in FLAG.findall(rest):
            assert flag in parsers[command], f"{page.name}: gpuback {command} has no {flag}"
