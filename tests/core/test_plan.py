"""The compiled plan: sparse index arrays, blocks, groups and the backward pass's write order.

Every expectation is rebuilt here another way: the CSR/CSC segments by scanning the COO
lists, the accumulator flags by walking a small graph by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuback
from gpuback.core.plan import SparseIndex, compile_plan
from gpuback.core.spec import validate_spec


def _random_edges(rng: np.random.Generator, n_src: int, n_dst: int, n_edges: int,
                  used_src: int, used_dst: int) -> list[list[int]]:
    """``n_edges`` distinct edges in random (unsorted) order, touching only the first
    ``used_src`` source and ``used_dst`` destination units: the last units get none."""
    flat = rng.choice(used_src * used_dst, size=n_edges, replace=False)
    return [(flat % used_src).tolist(), (flat // used_src).tolist()]


def test_sparse_index_segments_list_each_units_edges_in_edge_order() -> None:
    # Many edges per unit and a shuffled edge order: an unstable sort would list a unit's
    # edges in some other order, and units past the last used one must still get a segment.
    rng = np.random.default_rng(5)
    n_src, n_dst = 40, 50
    edges = _random_edges(rng, n_src, n_dst, 1500, used_src=37, used_dst=48)
    index = SparseIndex.from_edges(edges, n_src, n_dst)
    src, dst = np.array(edges[0]), np.array(edges[1])
    np.testing.assert_array_equal(index.src, src)
    np.testing.assert_array_equal(index.dst, dst)
    assert index.n_edges == 1500
    assert index.dst_ptr.shape == (n_dst + 1,)
    assert index.src_ptr.shape == (n_src + 1,)
    for k in range(n_dst):
        segment = index.dst_edges[index.dst_ptr[k]:index.dst_ptr[k + 1]]
        assert segment.tolist() == [e for e in range(1500) if dst[e] == k], k
    for j in range(n_src):
        segment = index.src_edges[index.src_ptr[j]:index.src_ptr[j + 1]]
        assert segment.tolist() == [e for e in range(1500) if src[e] == j], j


def test_sparse_index_hand_worked_example() -> None:
    # edges 0: 2->1, 1: 0->1, 2: 2->0; source unit 1 and destination unit 2 have none.
    index = SparseIndex.from_edges([[2, 0, 2], [1, 1, 0]], n_src=3, n_dst=3)
    assert index.dst_ptr.tolist() == [0, 1, 3, 3]
    assert index.dst_edges.tolist() == [2, 0, 1]
    assert index.src_ptr.tolist() == [0, 1, 1, 3]
    assert index.src_edges.tolist() == [1, 0, 2]


@pytest.mark.parametrize("make", [lambda e: e, lambda e: np.array(e, dtype=np.int32)],
                         ids=["lists", "int32-array"])
def test_sparse_index_arrays_are_int64(make) -> None:
    # The module's contract: every index array is a host int64 array, whatever integer
    # edges it was built from.
    index = SparseIndex.from_edges(make([[0, 1, 1], [2, 0, 1]]), n_src=2, n_dst=3)
    for name in ("src", "dst", "dst_ptr", "dst_edges", "src_ptr", "src_edges"):
        assert getattr(index, name).dtype == np.int64, name


def _dag_spec() -> dict:
    return gpuback.validate_spec({
        "groups": [{"name": "x", "size": 4}, {"name": "a", "size": 3, "activation": "tanh"},
                   {"name": "b", "size": 5, "activation": "relu"},
                   {"name": "y", "size": 2, "activation": "softmax"}],
        "connections": [{"src": "x", "dst": "a", "kind": "dense"},
                        {"src": "a", "dst": "b", "kind": "sparse",
                         "edges": [[0, 2, 1], [4, 0, 4]]},
                        {"src": "a", "dst": "y", "kind": "dense"},
                        {"src": "b", "dst": "y", "kind": "dense"}],
        "input": "x", "output": "y", "loss": "cross_entropy",
    })


def test_blocks_shapes_and_indices() -> None:
    plan = compile_plan(_dag_spec())
    by_name = {b.name: b for b in plan.blocks}
    assert list(by_name) == ["x->a", "a->b", "a->y", "b->y"]
    assert by_name["x->a"].shape == (3, 4)  # (n_dst, n_src)
    assert by_name["a->y"].shape == (2, 3)
    assert by_name["a->b"].shape == (3,)  # one weight per edge
    for name in ("x->a", "a->y", "b->y"):
        assert by_name[name].kind == "dense"
        assert by_name[name].index is None
    sparse = by_name["a->b"]
    assert sparse.kind == "sparse" and isinstance(sparse.index, SparseIndex)
    assert sparse.index.src.tolist() == [0, 2, 1] and sparse.index.dst.tolist() == [4, 0, 4]
    assert (sparse.src, sparse.dst) == ("a", "b")


def test_groups_know_their_name_size_activation_and_incoming_blocks() -> None:
    plan = compile_plan(_dag_spec())
    assert plan.order == ("x", "a", "b", "y")
    assert plan.computed == ("a", "b", "y")
    assert (plan.input, plan.output, plan.loss) == ("x", "y", "cross_entropy")
    assert (plan.n_in, plan.n_out) == (4, 2)
    expected = {"x": (4, "identity", []), "a": (3, "tanh", ["x->a"]), "b": (5, "relu", ["a->b"]),
                "y": (2, "softmax", ["a->y", "b->y"])}
    for name, (size, activation, incoming) in expected.items():
        group = plan.groups[name]
        assert group.name == name
        assert (group.size, group.activation) == (size, activation)
        assert [b.name for b in group.incoming] == incoming
    assert plan.parameter_shapes() == {"x->a": (3, 4), "a->b": (3,), "a->y": (2, 3),
                                       "b->y": (2, 5), "a": (3,), "b": (5,), "y": (2,)}


def test_first_writer_of_each_accumulator_walked_by_hand() -> None:
    # Backward visits y (incoming a->y, then b->y), then b (a->b), then a (x->a).
    # a's accumulator is first written by a->y, b's by b->y, x's by x->a; a->b adds.
    plan = compile_plan(_dag_spec())
    flags = {b.name: b.first_into_src_accumulator for b in plan.blocks}
    assert flags == {"x->a": True, "a->b": False, "a->y": True, "b->y": True}


def test_an_identity_block_has_no_parameter_and_takes_its_turn_as_first_writer() -> None:
    spec = validate_spec({
        "groups": [{"name": "x", "size": 4}, {"name": "a", "size": 3, "activation": "tanh"},
                   {"name": "r", "size": 3, "activation": "relu"},
                   {"name": "y", "size": 2, "activation": "softmax"}],
        "connections": [{"src": "x", "dst": "a", "kind": "dense"},
                        {"src": "a", "dst": "r", "kind": "identity"},
                        {"src": "a", "dst": "y", "kind": "dense"},
                        {"src": "r", "dst": "y", "kind": "dense"}],
        "input": "x", "output": "y", "loss": "cross_entropy"})
    plan = compile_plan(spec)
    assert [b.name for b in plan.blocks] == ["x->a", "a->y", "r->y"]
    assert [(b.name, b.kind, b.shape) for b in plan.connections if b.kind == "identity"] == \
        [("a->r", "identity", ())]
    assert [b.name for b in plan.groups["r"].incoming] == ["a->r"]
    assert "a->r" not in plan.parameter_shapes()
    # backward visits y (a->y first writes a), then r: a->r adds into a's accumulator
    flags = {b.name: b.first_into_src_accumulator for b in plan.connections}
    assert flags == {"x->a": True, "a->r": False, "a->y": True, "r->y": True}
