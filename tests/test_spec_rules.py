"""Spec rules the bad-spec table of test_spec.py does not pin down: tie-breaking in the
topological order, which duplicate edge an error names, the builders' arguments."""

from __future__ import annotations

import numpy as np
import pytest

import gpuback
from gpuback.core.spec import topological_order


def test_topological_order_breaks_ties_in_listed_order_not_by_name() -> None:
    # c, b and a all become ready together once x is placed; they are listed c, b, a,
    # which is neither alphabetical nor the order of the connections.
    connections = [{"src": "x", "dst": n} for n in ("a", "b", "c")]
    connections += [{"src": n, "dst": "y"} for n in ("a", "b", "c")]
    assert topological_order(["x", "c", "b", "a", "y"], connections) == ["x", "c", "b", "a", "y"]
    assert topological_order(["c", "x", "y", "a", "b"], connections) == ["x", "c", "a", "b", "y"]


def test_topological_order_follows_the_edges_not_the_listing() -> None:
    connections = [{"src": "x", "dst": "h2"}, {"src": "h2", "dst": "h1"},
                   {"src": "h1", "dst": "y"}]
    assert topological_order(["y", "h1", "h2", "x"], connections) == ["x", "h2", "h1", "y"]


def test_cycle_message_leaves_out_groups_hanging_below_the_cycle() -> None:
    # h <-> z is the cycle; w hangs below it (fed by z, feeding y) and is not on it.
    connections = [{"src": "x", "dst": "h"}, {"src": "h", "dst": "z"},
                   {"src": "z", "dst": "h"}, {"src": "z", "dst": "w"},
                   {"src": "w", "dst": "y"}]
    with pytest.raises(ValueError, match=r"cycle through \['h', 'z'\]$"):
        topological_order(["x", "h", "z", "w", "y"], connections)


def _sparse_spec(edges: list[list[int]]) -> dict:
    return {"groups": [{"name": "x", "size": 3},
                       {"name": "y", "size": 3, "activation": "sigmoid"}],
            "connections": [{"src": "x", "dst": "y", "kind": "sparse", "edges": edges}],
            "input": "x", "output": "y", "loss": "binary_cross_entropy"}


@pytest.mark.parametrize(("edges", "named"), [
    # the only repeated edge is (1 -> 1); (0 -> 0), lower, appears once
    ([[0, 1, 1], [0, 1, 1]], r"\(1 -> 1\)"),
    # (0 -> 0) and (0 -> 1) are both repeated: the lower pair is named
    ([[0, 0, 0, 0], [0, 1, 0, 1]], r"\(0 -> 0\)"),
    # (0 -> 2) repeats first in edge order, but (0 -> 1) is the lower pair
    ([[0, 0, 2, 0, 0], [2, 1, 0, 2, 1]], r"\(0 -> 1\)"),
])
def test_duplicate_edge_error_names_the_lowest_repeated_pair(edges: list, named: str) -> None:
    with pytest.raises(ValueError, match=r"\['edges'\]: duplicate edge " + named):
        gpuback.validate_spec(_sparse_spec(edges))


def test_edges_that_differ_only_in_destination_are_distinct() -> None:
    edges = [[0, 0, 0, 1, 2], [0, 1, 2, 0, 0]]
    assert gpuback.validate_spec(_sparse_spec(edges))["connections"][0]["edges"] == edges


def test_input_receiving_a_connection_names_its_source() -> None:
    spec = {"groups": [{"name": "x", "size": 2}, {"name": "h", "size": 2, "activation": "tanh"},
                       {"name": "y", "size": 2, "activation": "softmax"}],
            "connections": [{"src": "x", "dst": "h", "kind": "dense"},
                            {"src": "h", "dst": "y", "kind": "dense"},
                            {"src": "h", "dst": "x", "kind": "dense"}],
            "input": "x", "output": "y", "loss": "cross_entropy"}
    with pytest.raises(ValueError,
                       match=r"input group 'x' cannot receive a connection \(from 'h'\)"):
        gpuback.validate_spec(spec)


@pytest.mark.parametrize("build", [gpuback.mlp_spec, gpuback.sparse_mlp_spec])
def test_builders_use_the_output_activation_given(build) -> None:
    spec = build([4, 3, 2], loss="sum_of_squares", output_activation="tanh")
    assert spec["groups"][-1]["activation"] == "tanh"
    assert spec["groups"][1]["activation"] == "relu"


def test_sparse_mlp_spec_density_one_keeps_every_edge() -> None:
    spec = gpuback.sparse_mlp_spec([3, 4, 2], density=1.0, sparse_output=True)
    for c, (n_src, n_dst) in zip(spec["connections"], [(3, 4), (4, 2)], strict=True):
        pairs = set(zip(*c["edges"], strict=True))
        assert pairs == {(j, k) for j in range(n_src) for k in range(n_dst)}


def test_sparse_mlp_spec_keeps_at_least_one_edge() -> None:
    # density * 3 * 2 = 0.06 rounds to no edge; a block keeps one
    spec = gpuback.sparse_mlp_spec([3, 2, 2], density=0.01)
    src, dst = spec["connections"][0]["edges"]
    assert len(src) == len(dst) == 1


def test_sparse_mlp_spec_default_seed_is_zero() -> None:
    sizes = [30, 20, 5]
    assert gpuback.sparse_mlp_spec(sizes) == gpuback.sparse_mlp_spec(sizes, seed=0)
    assert gpuback.sparse_mlp_spec(sizes) != gpuback.sparse_mlp_spec(sizes, seed=1)


def test_sparse_mlp_spec_edges_are_distinct_and_in_range() -> None:
    spec = gpuback.sparse_mlp_spec([9, 7, 3], density=0.5, seed=2)
    src, dst = np.array(spec["connections"][0]["edges"])
    assert src.size == round(0.5 * 9 * 7)
    assert len(set(zip(src.tolist(), dst.tolist(), strict=True))) == src.size
    assert src.min() >= 0 and src.max() < 9 and dst.min() >= 0 and dst.max() < 7


def _valid() -> dict:
    return {"groups": [{"name": "x", "size": 4}, {"name": "h", "size": 3, "activation": "tanh"},
                       {"name": "y", "size": 2, "activation": "softmax"}],
            "connections": [{"src": "x", "dst": "h", "kind": "dense"},
                            {"src": "h", "dst": "y", "kind": "dense"},
                            {"src": "x", "dst": "y", "kind": "sparse",
                             "edges": [[0, 3], [1, 0]]}],
            "input": "x", "output": "y", "loss": "cross_entropy"}


def _edit(**changes) -> dict:
    spec = _valid()
    spec.update(changes)
    return spec


def _missing(key: str) -> dict:
    spec = _valid()
    del spec[key]
    return spec


# Each message must say where (the exact field path), what was expected and what was given.
MESSAGES = [
    ("not-a-dict", 42, TypeError, r"^spec: expected a dict, got int$"),
    ("missing-key", _missing("input"), ValueError, r"^spec: missing key\(s\) \['input'\]$"),
    ("input-not-str", _edit(input=3), TypeError,
     r"^spec\['input'\]: expected a group name \(str\), got 3$"),
    ("input-unknown", _edit(input="q"), ValueError,
     r"^spec\['input'\]: unknown group 'q', known groups are \['x', 'h', 'y'\]$"),
    ("groups-not-list", _edit(groups=5), TypeError,
     r"^spec\['groups'\]: expected a list of dicts, got int$"),
    ("group-not-dict", _edit(groups=[{"name": "x", "size": 4}, "h"]), TypeError,
     r"^spec\['groups'\]\[1\]: expected a dict, got str$"),
    ("group-missing-size", _edit(groups=[{"name": "x", "size": 4}, {"name": "y"}]), ValueError,
     r"^spec\['groups'\]\[1\]: missing key\(s\) \['size'\]$"),
    ("connections-dict", _edit(connections={"src": "x", "dst": "h", "kind": "dense"}),
     TypeError, r"^spec\['connections'\]: expected a list of dicts, got dict$"),
    ("connections-str", _edit(connections="x->h"), TypeError,
     r"^spec\['connections'\]: expected a list of dicts, got str$"),
    ("connection-not-dict", _edit(connections=[["x", "h"]]), TypeError,
     r"^spec\['connections'\]\[0\]: expected a dict, got list$"),
    ("connection-missing-kind", _edit(connections=[{"src": "x", "dst": "h"}]), ValueError,
     r"^spec\['connections'\]\[0\]: missing key\(s\) \['kind'\]$"),
    ("duplicate-connection",
     _edit(connections=[*_valid()["connections"], {"src": "h", "dst": "y", "kind": "dense"}]),
     ValueError, r"^spec\['connections'\]\[3\]: duplicate connection 'h->y'; "
                 r"merge them into one block$"),
    ("sparse-without-edges",
     _edit(connections=[*_valid()["connections"][:2], {"src": "x", "dst": "y", "kind": "sparse"}]),
     ValueError, r"^spec\['connections'\]\[2\]: a sparse connection needs 'edges': "
                 r"\[\[src unit indices\], \[dst unit indices\]\]$"),
    ("empty-edges",
     _edit(connections=[*_valid()["connections"][:2],
                        {"src": "x", "dst": "y", "kind": "sparse", "edges": [[], []]}]),
     ValueError, r"^spec\['connections'\]\[2\]\['edges'\]: expected at least one edge, got none$"),
]


@pytest.mark.parametrize(("case", "spec", "exc", "match"), MESSAGES, ids=[m[0] for m in MESSAGES])
def test_error_message_names_field_expectation_and_value(case, spec, exc, match) -> None:
    with pytest.raises(exc, match=match):
        gpuback.validate_spec(spec)


def test_the_valid_spec_behind_the_messages_is_valid() -> None:
    assert gpuback.validate_spec(_valid())["connections"][2]["edges"] == [[0, 3], [1, 0]]
