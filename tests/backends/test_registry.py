"""The registry is the one door to a backend: the op set is the ``Backend`` protocol, every
backend module exports it with the protocol's signatures, and nothing outside
``gpuback/backends`` imports a backend module or asks which backend it runs on."""

from __future__ import annotations

import ast
import inspect
import json
import pathlib

import numpy as np
import pytest
from helpers import REPO_ROOT

from gpuback.backends import OP_SET, backend_module, backend_names, get_backend
from gpuback.backends.protocol import Backend

PACKAGE = REPO_ROOT / "gpuback"
BACKEND_MODULES = {p.stem for p in (PACKAGE / "backends").glob("*.py")} - {"__init__"}
# what the rest of gpuback may take from gpuback/backends: the registry, the protocol's
# types, and the facts every backend shares: the precisions, the device counters, and where
# an MPI launcher placed the process
ALLOWED = {"gpuback.backends", "gpuback.backends.protocol", "gpuback.backends.status",
           "gpuback.backends.precision", "gpuback.backends.counters",
           "gpuback.backends.launcher"}


def _protocol_members() -> dict[str, inspect.Signature | None]:
    members: dict[str, inspect.Signature | None] = dict.fromkeys(Backend.__annotations__)
    for name, value in vars(Backend).items():
        if callable(value) and not name.startswith("_"):
            members[name] = inspect.signature(value)
    return members


def test_the_op_set_is_the_protocol() -> None:
    assert set(_protocol_members()) == set(OP_SET)
    assert len(OP_SET) == len(set(OP_SET))


@pytest.mark.parametrize("name", backend_names())
def test_every_backend_exports_the_op_set_with_the_protocol_signatures(name: str) -> None:
    module = backend_module(name)  # usable on this machine or not
    for op, signature in _protocol_members().items():
        assert hasattr(module, op), f"backend {name!r} lacks op {op!r}"
        if signature is None:  # a constant
            assert isinstance(getattr(module, op), str), f"{name}.{op}"
            continue
        expected = [(p.name, p.kind, p.default) for p in signature.parameters.values()][1:]
        found = [(p.name, p.kind, p.default)
                 for p in inspect.signature(getattr(module, op)).parameters.values()]
        assert found == expected, f"{name}.{op}: parameters {found}, protocol {expected}"
    assert module.name == name and module.device in ("cpu", "cuda")


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
    """(module imported, line) for every import in ``path`` outside ``if TYPE_CHECKING``,
    relative imports resolved; ``from package import name`` counts as importing
    ``package.name`` when that is a module."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                 and ast.unparse(node.test) == "TYPE_CHECKING" for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                as_path = PACKAGE.parent / pathlib.Path(*candidate.split("."))
                is_module = as_path.with_suffix(".py").exists() or as_path.is_dir()
                found.append((candidate if is_module else base, node.lineno))
    return found


def _orchestration() -> list[pathlib.Path]:
    """Every module of gpuback outside its backends."""
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if "backends" not in p.relative_to(PACKAGE).parts)


def test_only_the_registry_imports_backend_modules() -> None:
    offenders = [f"{path.relative_to(PACKAGE)}:{line} imports {module}"
                 for path in _orchestration()
                 for module, line in _imports(path)
                 if module.startswith("gpuback.backends.") and module not in ALLOWED]
    assert not offenders, offenders


def test_no_module_outside_the_backends_asks_which_backend_it_runs_on() -> None:
    names = set(backend_names())
    offenders = []
    for path in _orchestration():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            constants = {o.value for o in operands if isinstance(o, ast.Constant)}
            constants |= {e.value for o in operands if isinstance(o, (ast.Tuple, ast.Set,
                                                                        ast.List))
                          for e in o.elts if isinstance(e, ast.Constant)}
            asked = [ast.unparse(o) for o in operands if isinstance(o, (ast.Name, ast.Attribute))]
            if constants & names and any(a.endswith(("backend", ".name")) for a in asked):
                offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, offenders


def test_the_package_has_no_import_cycle() -> None:
    """network <-> checkpoint was one; function-level imports count too."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        graph[name] = {m for m, _ in _imports(path) if m.startswith("gpuback")
                       and m != name and m != "gpuback"}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle = [*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])


# --- the value and staging ops, on every backend usable here --------------------------------

def test_host_values_are_not_device_arrays_and_check_on_numpy(backend: str) -> None:
    ops = get_backend(backend)
    for value in ([[1.0, 2.0]], np.ones((2, 2)), 3.0):
        assert not ops.is_device_array(value)
        arr = ops.as_array(value)
        assert isinstance(arr, np.ndarray) and not ops.is_device_array(arr)
        assert ops.array_namespace(arr) is np
    with pytest.raises(ValueError):
        ops.as_array([[1.0], [1.0, 2.0]])  # ragged


def test_backend_buffers_are_recognised_where_they_live(backend: str) -> None:
    ops = get_backend(backend)
    buffer = ops.from_host(np.arange(6.0).reshape(2, 3), np.float64)
    on_device = ops.device == "cuda"
    assert ops.is_device_array(buffer) == on_device
    assert ops.as_array(buffer) is buffer if on_device else True
    xp = ops.array_namespace(buffer)
    assert float(xp.sum(buffer)) == 15.0


def test_staging_buffers_and_events(backend: str) -> None:
    ops = get_backend(backend)
    pinned = ops.pinned_empty((3, 4), np.float32)
    assert pinned.shape == (3, 4) and pinned.dtype == np.float32
    pinned[...] = 2.0
    staged = ops.zeros((3, 4), np.float32)
    ops.copy_into(staged, pinned)
    event = ops.record_event()
    ops.wait_for(event)
    np.testing.assert_array_equal(ops.to_host(staged), np.full((3, 4), 2.0, np.float32))


def test_device_collectives_are_the_backends_own_only_on_a_gpu(backend: str) -> None:
    """Host arrays (the host backends, the simulator's stand-ins) are summed by MPI where
    it reads them: no collectives of the backend's own, asked of no communicator."""
    ops = get_backend(backend)
    if ops.device == "cuda" and not ops.status().simulated:
        pytest.skip("on a GPU the NCCL collectives need an MPI job: "
                    "tests/distributed/test_data_parallel.py")
    assert ops.device_collectives(None) is None


@pytest.mark.parametrize("name", backend_names())
def test_describe_is_plain_data(name: str) -> None:
    details = backend_module(name).describe()
    assert isinstance(details, dict)
    json.dumps(details)  # plain data: what gpuback info --json prints
