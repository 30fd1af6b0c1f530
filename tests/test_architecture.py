"""The package's import graph: no circle, and every import runs down the layers.

Every import of every module is read from its source (``ast``): at module level, under
``if TYPE_CHECKING:``, inside functions and methods, and the module names given to
``importlib.import_module`` as string literals (f-strings stand for every module of the
package they name). ``kernels/`` is read as ``gpuback.kernels``, as it is installed. An
import of ``a.b.c`` runs the ``__init__`` of ``a.b`` first, so it is an edge to each
package on the way (the ones the importer is not itself inside) as well as to the module.
The tests fail on any circle among modules, on any circle among the subpackages, and on
any import that climbs the layers of ``LAYERS`` (the architecture ``gpuback/__init__.py``
describes), ``gpuback.kernels`` importing the rest of gpuback among them.
"""

from __future__ import annotations

import ast
import graphlib
from functools import cache
from pathlib import Path

import pytest
from helpers import REPO_ROOT

ROOT = REPO_ROOT

# Lowest first. A module may import from its own layer's package and from the layers below;
# the packages of one layer do not import each other. "gpuback" is the package's __init__
# and the public import paths beside it.
LAYERS: list[set[str]] = [
    {"kernels"},
    {"backends"},
    {"core"},
    {"optim", "datasets"},
    {"checkpoint", "distributed"},
    {"training"},
    {"network"},
    {"torch"},
    {"diagnostics", "benchmark", "sklearn", "interop"},
    {"cli"},
    {"precision", "loss_scale", "memory", "profile", "lbfgs", "explain"},
    {"gpuback", "__main__"},
]


def _module_files() -> dict[str, Path]:
    """Every module of the package by its installed name."""
    files = {}
    for path in sorted((ROOT / "gpuback").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted((ROOT / "kernels").rglob("*.py")):
        parts = ("gpuback", *path.relative_to(ROOT).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The gpuback modules ``tree`` imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            names.update(submodules)
            if len(submodules) < len(node.names):  # a name read from the package itself
                names.add(base)
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            names.update(_import_module_names(node.args[0], tree, known))
    return {name for name in names if name in known}


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or \
        (isinstance(func, ast.Name) and func.id == "import_module")


def _import_module_names(arg: ast.expr, tree: ast.AST, known: set[str]) -> set[str]:
    """The modules an ``import_module`` argument can name: a literal; for an f-string every
    module under its literal prefix; for any other expression (a name looked up in a table,
    as the backend registry does) every module name written as a string in the module."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return {arg.value}
    if isinstance(arg, ast.JoinedStr) and arg.values and \
            isinstance(arg.values[0], ast.Constant) and isinstance(arg.values[0].value, str):
        prefix = arg.values[0].value
        return {name for name in known if name.startswith(prefix) and name != prefix}
    written = {node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and node.value in known}
    assert written, f"import_module of a name the graph cannot see: {ast.dump(arg)}"
    return written


@cache
def import_graph() -> dict[str, set[str]]:
    """module -> the gpuback modules importing it runs (the packages on the way included)."""
    files = _module_files()
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        here = module if is_package else module.rpartition(".")[0]
        edges = set()
        for name in _imported(ast.parse(path.read_text()), module, is_package, known):
            edges.add(name)
            parts = name.split(".")
            for end in range(1, len(parts)):
                step = ".".join(parts[:end])
                # a package the importer is inside has begun its __init__ already; a name
                # read from it (``from .. import x``) is an edge to it all the same
                if step in known and not (here == step or here.startswith(step + ".")):
                    edges.add(step)
        edges.discard(module)
        graph[module] = edges
    return graph


def _package(module: str) -> str:
    """The subpackage (or top-level module) of gpuback that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gpuback"


def _layer(package: str) -> int:
    for rank, layer in enumerate(LAYERS):
        if package in layer:
            return rank
    raise AssertionError(f"gpuback.{package} has no place in LAYERS")


def test_the_graph_sees_every_kind_of_import() -> None:
    """The reader is not blind: an import inside a function, one under TYPE_CHECKING and an
    ``importlib.import_module`` name are edges."""
    graph = import_graph()
    assert "gpuback.backends.cuda.backend" in graph["gpuback.backends"]  # import_module
    tree = ast.parse("import typing\nif typing.TYPE_CHECKING:\n    from .b import x\n"
                     "def f():\n    from .c import y\n")
    found = _imported(tree, "pkg.a", False, {"pkg.b", "pkg.c"})
    assert found == {"pkg.b", "pkg.c"}
    # a name read from the package the module is in: an edge to the package's __init__
    assert _imported(ast.parse("from . import b, VERSION"), "pkg.a", False,
                     {"pkg", "pkg.b"}) == {"pkg", "pkg.b"}


def test_every_module_is_in_a_layer() -> None:
    for module in import_graph():
        _layer(_package(module))


def test_no_module_imports_in_a_circle() -> None:
    sorter = graphlib.TopologicalSorter(import_graph())
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import circle: {' -> '.join(error.args[1])}")


def test_no_subpackage_imports_in_a_circle() -> None:
    packages: dict[str, set[str]] = {}
    for module, edges in import_graph().items():
        packages.setdefault(_package(module), set()).update(
            _package(e) for e in edges if _package(e) != _package(module))
    try:
        graphlib.TopologicalSorter(packages).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"subpackage circle: {' -> '.join(error.args[1])}")


def test_imports_run_down_the_layers() -> None:
    """A module imports its own package and the layers below, never a layer above or a
    sibling package of its own layer; ``gpuback.kernels`` imports nothing else of gpuback."""
    wrong = []
    for module, edges in sorted(import_graph().items()):
        package = _package(module)
        for edge in sorted(edges):
            target = _package(edge)
            if target != package and _layer(target) >= _layer(package):
                wrong.append(f"{module} -> {edge}")
    assert wrong == []


def test_the_top_level_stays_small() -> None:
    """At most ten modules side by side at gpuback's top level, none over 600 lines
    anywhere."""
    flat = sorted(p.name for p in (ROOT / "gpuback").glob("*.py"))
    assert len(flat) <= 10, flat
    long = {str(p.relative_to(ROOT)): n for p in [*(ROOT / "gpuback").rglob("*.py"),
                                                 *(ROOT / "kernels").rglob("*.py")]
            if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}


def test_every_package_says_what_it_exports() -> None:
    """Each package of gpuback has an ``__all__``, and every name in it is there."""
    import importlib

    for init in sorted((ROOT / "gpuback").rglob("__init__.py")):
        name = ".".join(init.relative_to(ROOT).parent.parts)
        package = importlib.import_module(name)
        assert isinstance(getattr(package, "__all__", None), list), name
        missing = [n for n in package.__all__ if not hasattr(package, n)]
        assert missing == [], (name, missing)
