"""Specs: JSON round trips, builders, and every kind of bad spec.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from helpers.random_specs import SPEC_CASES

import gpuback
from gpuback.core.spec import topological_order


@pytest.mark.parametrize(("case", "spec"), SPEC_CASES, ids=[c for c, _ in SPEC_CASES])
def test_spec_json_round_trip(case: str, spec: dict) -> None:
    net = gpuback.Network(spec, seed=7)
    text = json.dumps(net.spec)
    again = gpuback.Network(json.loads(text), seed=7)
    assert json.loads(text) == net.spec
    assert again.spec == net.spec
    for k, v in net.parameters().items():
        np.testing.assert_array_equal(again.parameters()[k], v)


def test_validation_is_idempotent_and_returns_a_copy() -> None:
    spec = copy.deepcopy(SPEC_CASES[0][1])
    first = gpuback.validate_spec(spec)
    assert gpuback.validate_spec(first) == first
    first["groups"][0]["size"] = 99
    assert spec["groups"][0]["size"] != 99
    net = gpuback.Network(spec)
    net.spec["loss"] = "changed"
    assert net.spec["loss"] == spec["loss"]


def test_numpy_edges_are_normalised_to_lists() -> None:
    spec = gpuback.mlp_spec([3, 2])
    spec["connections"][0] = {"src": "x", "dst": "y", "kind": "sparse",
                              "edges": np.array([[0, 2], [1, 1]], dtype=np.int32)}
    valid = gpuback.validate_spec(spec)
    assert valid["connections"][0]["edges"] == [[0, 2], [1, 1]]
    assert all(type(i) is int for row in valid["connections"][0]["edges"] for i in row)
    json.dumps(valid)


def test_resmlp_spec_is_a_stem_residual_blocks_and_a_head() -> None:
    spec = gpuback.resmlp_spec(7, 5, 3, 4, activation="silu")
    names = [g["name"] for g in spec["groups"]]
    assert names == ["x", "r0", "b1", "r1", "b2", "r2", "b3", "r3", "y"]
    blocks = [(c["src"], c["dst"], c["kind"]) for c in spec["connections"]]
    assert blocks[0] == ("x", "r0", "dense") and blocks[-1] == ("r3", "y", "dense")
    for i in (1, 2, 3):
        assert (f"r{i - 1}", f"b{i}", "dense") in blocks
        assert (f"r{i - 1}", f"r{i}", "identity") in blocks
        assert (f"b{i}", f"r{i}", "identity") in blocks
    groups = {g["name"]: g for g in spec["groups"]}
    assert all(groups[f"b{i}"] == {"name": f"b{i}", "size": 5, "activation": "silu",
                                   "norm": "layer", "dropout": 0.1} for i in (1, 2, 3))
    assert all("dropout" not in g for g in gpuback.resmlp_spec(7, 5, 3, 4, dropout=0)["groups"])
    assert groups["r2"]["activation"] == "identity" and groups["y"]["activation"] == "softmax"
    assert len(gpuback.resmlp_spec(7, 5, 0, 4)["groups"]) == 3  # stem and head alone
    # z_r1 = z_r0 + gelu(LN(W z_r0 + b)) + b_r1, computed here from the parameters
    net = gpuback.Network(gpuback.resmlp_spec(3, 4, 1, 2, loss="sum_of_squares"), seed=1)
    rng = np.random.default_rng(0)
    net.set_parameters({name: rng.normal(size=v.shape) for name, v in net.parameters().items()})
    p, X = net.parameters(), rng.normal(size=(5, 3))
    r0 = X @ p["x->r0"].T + p["r0"]
    a = r0 @ p["r0->b1"].T + p["b1"]
    xhat = (a - a.mean(axis=1, keepdims=True)) / np.sqrt(a.var(axis=1, keepdims=True) + 1e-5)
    u = p["b1.gain"] * xhat + p["b1.shift"]
    gelu = 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u**3)))
    r1 = r0 + gelu + p["r1"]
    np.testing.assert_allclose(net.forward(X, ["r1"])["r1"], r1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"norm": "batch"}, r"norm: expected one of \['layer'\] or None"),
    ({"activation": "softmax"}, "activation: expected one of"),
    ({"loss": "hinge"}, "loss: expected one of"),
    ({"width": 0}, "width"), ({"depth": -1}, "depth"),
    ({"dropout": 1.0}, r"dropout: expected a number in \[0, 1\)"),
])
def test_resmlp_spec_refuses_bad_arguments(kwargs: dict, match: str) -> None:
    arguments = {"n_in": 3, "width": 4, "depth": 1, "n_out": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        gpuback.resmlp_spec(**arguments)


def test_mlp_spec_builds_a_dense_chain() -> None:
    spec = gpuback.mlp_spec([784, 256, 256, 10], activation="relu", loss="cross_entropy")
    assert [g["name"] for g in spec["groups"]] == ["x", "h1", "h2", "y"]
    assert [g["size"] for g in spec["groups"]] == [784, 256, 256, 10]
    assert [g.get("activation") for g in spec["groups"]] == [None, "relu", "relu", "softmax"]
    assert [(c["src"], c["dst"], c["kind"]) for c in spec["connections"]] == [
        ("x", "h1", "dense"), ("h1", "h2", "dense"), ("h2", "y", "dense")]
    shapes = {k: v.shape for k, v in gpuback.Network(spec).parameters().items()}
    assert shapes == {"x->h1": (256, 784), "h1->h2": (256, 256), "h2->y": (10, 256),
                      "h1": (256,), "h2": (256,), "y": (10,)}


@pytest.mark.parametrize(("loss", "out"), [("sum_of_squares", "identity"),
                                           ("binary_cross_entropy", "sigmoid"),
                                           ("cross_entropy", "softmax"),
                                           ("poisson", "exp")])
def test_mlp_spec_pairs_output_activation_with_loss(loss: str, out: str) -> None:
    assert gpuback.mlp_spec([2, 3], loss=loss)["groups"][-1]["activation"] == out


def test_sparse_mlp_spec_density_and_reproducibility() -> None:
    sizes = [100, 80, 60, 10]
    spec = gpuback.sparse_mlp_spec(sizes, density=0.05, seed=3)
    kinds = [c["kind"] for c in spec["connections"]]
    assert kinds == ["sparse", "sparse", "dense"]
    for c, (n_src, n_dst) in zip(spec["connections"][:2], [(100, 80), (80, 60)], strict=True):
        src, dst = np.array(c["edges"])
        assert src.size == round(0.05 * n_src * n_dst)
        assert len(set(zip(src.tolist(), dst.tolist(), strict=True))) == src.size
        assert src.max() < n_src and dst.max() < n_dst
    assert gpuback.sparse_mlp_spec(sizes, density=0.05, seed=3) == spec
    assert gpuback.sparse_mlp_spec(sizes, density=0.05, seed=4) != spec
    assert gpuback.sparse_mlp_spec([5, 4, 2], sparse_output=True)["connections"][1]["kind"] \
        == "sparse"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"sizes": [5]}, "at least 2"),
    ({"sizes": [5, 0, 2]}, "positive integers"),
    ({"sizes": [5, 2.5, 2]}, "positive integers"),
    ({"sizes": [5, 3], "loss": "hinge"}, "loss"),
    ({"sizes": [5, 4, 3], "activation": "swish"}, "activation"),
    ({"sizes": [5, 3], "density": 0.0}, "density"),
    ({"sizes": [5, 3], "density": 1.5}, "density"),
])
def test_builders_reject_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gpuback.sparse_mlp_spec(**kwargs)


def _base() -> dict:
    return {
        "groups": [{"name": "x", "size": 4}, {"name": "h", "size": 3, "activation": "tanh"},
                   {"name": "y", "size": 2, "activation": "softmax"}],
        "connections": [{"src": "x", "dst": "h", "kind": "dense"},
                        {"src": "h", "dst": "y", "kind": "dense"},
                        {"src": "x", "dst": "y", "kind": "sparse", "edges": [[0, 3], [1, 0]]}],
        "input": "x", "output": "y", "loss": "cross_entropy",
    }


def _with(path: list, value) -> dict:
    spec = _base()
    target = spec
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return spec


_DELETE = object()


H_TO_X = {"src": "h", "dst": "x", "kind": "dense"}


EXTRA = {"name": "z", "size": 2, "activation": "relu"}


BAD_SPECS = [
    # (id, spec, exception, regex the message must match)
    ("not-a-dict", [1, 2], TypeError, "spec: expected a dict"),
    ("missing-key", _with(["loss"], _DELETE), ValueError, r"missing key\(s\) \['loss'\]"),
    ("unknown-key", {**_base(), "optimizer": "sgd"}, ValueError, "unknown key.*optimizer"),
    ("unknown-activation", _with(["groups", 1, "activation"], "swish"), ValueError,
     "group 'h': activation expected one of .* got 'swish'"),
    ("missing-activation", _with(["groups", 1, "activation"], _DELETE), ValueError,
     "group 'h': 'activation' is required"),
    ("input-activation", _with(["groups", 0, "activation"], "tanh"), ValueError,
     "group 'x': the input group takes no activation"),
    ("unknown-loss", _with(["loss"], "hinge"), ValueError, r"spec\['loss'\].*got 'hinge'"),
    ("softmax-hidden", _with(["groups", 1, "activation"], "softmax"), ValueError,
     "group 'h': softmax is allowed only on the output group"),
    ("ce-needs-softmax", _with(["groups", 2, "activation"], "sigmoid"), ValueError,
     "'cross_entropy' needs output activation 'softmax'.*has 'sigmoid'"),
    ("bce-needs-sigmoid", {**_base(), "loss": "binary_cross_entropy"}, ValueError,
     "'binary_cross_entropy' needs output activation 'sigmoid'.*has 'softmax'"),
    ("poisson-needs-exp", {**_base(), "loss": "poisson"}, ValueError,
     "'poisson' needs output activation 'exp'.*has 'softmax'"),
    ("sse-no-softmax", {**_base(), "loss": "sum_of_squares"}, ValueError,
     "'sum_of_squares' needs an elementwise output activation"),
    ("cycle", {**_base(), "groups": _base()["groups"] + [EXTRA],
               "connections": _base()["connections"] + [
                   {"src": "h", "dst": "z", "kind": "dense"},
                   {"src": "z", "dst": "h", "kind": "dense"}]},
     ValueError, r"cycle through \['h', 'z'\]"),
    ("self-loop", {**_base(), "connections": _base()["connections"] + [
        {"src": "h", "dst": "h", "kind": "dense"}]}, ValueError, "cycle"),
    ("input-receives", {**_base(), "connections": _base()["connections"] + [H_TO_X]},
     ValueError, "input group 'x' cannot receive"),
    ("unknown-src", _with(["connections", 0, "src"], "q"), ValueError,
     r"connections'\]\[0\]\['src'\]: unknown group 'q'"),
    ("unknown-dst", _with(["connections", 1, "dst"], "q"), ValueError,
     r"connections'\]\[1\]\['dst'\]: unknown group 'q'"),
    ("unknown-output", _with(["output"], "q"), ValueError, r"spec\['output'\]: unknown group"),
    ("output-is-input", _with(["output"], "x"), ValueError, "must differ from the input"),
    ("no-incoming", {**_base(), "groups": _base()["groups"] + [EXTRA],
                     "connections": _base()["connections"] + [
                         {"src": "z", "dst": "y", "kind": "dense"}]},
     ValueError, "group 'z': a non-input group needs at least one incoming connection"),
    ("output-unreachable", {**_base(), "groups": _base()["groups"] + [EXTRA],
                            "connections": _base()["connections"] + [
                                {"src": "h", "dst": "z", "kind": "dense"}]},
     ValueError, "group 'z': the output group 'y' cannot be reached from it"),
    ("duplicate-group", {**_base(), "groups": _base()["groups"] + [
        {"name": "h", "size": 2, "activation": "relu"}]}, ValueError,
     "duplicate group name 'h'"),
    ("arrow-in-name", _with(["groups", 1, "name"], "a->b"), ValueError, "must not contain '->'"),
    ("empty-name", _with(["groups", 1, "name"], ""), TypeError, "non-empty string"),
    ("zero-size", _with(["groups", 1, "size"], 0), ValueError, r"\['size'\]: expected an "
     "integer >= 1, got 0"),
    ("float-size", _with(["groups", 1, "size"], 3.0), TypeError, "expected an integer"),
    ("bool-size", _with(["groups", 1, "size"], True), TypeError, "expected an integer"),
    ("one-group", {**_base(), "groups": _base()["groups"][:1]}, ValueError,
     "at least 2 groups"),
    ("groups-not-list", _with(["groups"], "x,h,y"), TypeError, "expected a list"),
    ("unknown-kind", _with(["connections", 0, "kind"], "conv"), ValueError,
     r"\['kind'\]: expected one of \['dense', 'sparse', 'identity'\]"),
    ("identity-sizes", _with(["connections", 0, "kind"], "identity"), ValueError,
     r"identity connection needs groups of equal size, got 'x' of \d+ and 'h' of \d+"),
    ("duplicate-connection", {**_base(), "connections": _base()["connections"] + [
        {"src": "x", "dst": "h", "kind": "dense"}]}, ValueError,
     "duplicate connection 'x->h'"),
    ("dense-with-edges", _with(["connections", 0, "edges"], [[0], [0]]), ValueError,
     "dense connection takes no 'edges'"),
    ("unknown-norm", _with(["groups", 1, "norm"], "batch"), ValueError,
     r"group 'h': norm expected one of \['layer'\], got 'batch'"),
    ("norm-on-input", _with(["groups", 0, "norm"], "layer"), ValueError,
     "the input group takes no norm"),
    ("norm-name-taken", {**_base(), "groups": [
        {"name": "x", "size": 4}, {"name": "h", "size": 3, "activation": "tanh", "norm": "layer"},
        {"name": "h.gain", "size": 3, "activation": "tanh"},
        {"name": "y", "size": 2, "activation": "softmax"}]}, ValueError,
     r"group 'h.gain': its name is the parameter name of group 'h'"),
    ("identity-with-edges", _with(["connections", 2, "kind"], "identity"), ValueError,
     "an identity connection takes no 'edges'"),
    ("sparse-without-edges", _with(["connections", 2, "edges"], _DELETE), ValueError,
     "sparse connection needs 'edges'"),
    ("edges-shape", _with(["connections", 2, "edges"], [[0, 1, 2]]), ValueError,
     r"expected shape \(2, E\)"),
    ("edges-ragged", _with(["connections", 2, "edges"], [[0, 1], [0]]), ValueError,
     "equal length"),
    ("edges-empty", _with(["connections", 2, "edges"], [[], []]), ValueError,
     "expected at least one edge"),
    ("edges-float", _with(["connections", 2, "edges"], [[0.0, 1.5], [0, 1]]), TypeError,
     "integer unit indices"),
    ("src-index-out-of-range", _with(["connections", 2, "edges"], [[0, 4], [1, 0]]),
     ValueError, r"src index of edge 1 is 4, expected 0 <= index < 4"),
    ("dst-index-negative", _with(["connections", 2, "edges"], [[0, 3], [1, -1]]), ValueError,
     r"dst index of edge 1 is -1, expected 0 <= index < 2"),
    ("duplicate-edge", _with(["connections", 2, "edges"], [[0, 3, 0], [1, 0, 1]]), ValueError,
     r"duplicate edge \(0 -> 1\)"),
]


@pytest.mark.parametrize(("case", "spec", "exc", "match"), BAD_SPECS,
                         ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_is_rejected_with_a_clear_message(case, spec, exc, match) -> None:
    with pytest.raises(exc, match=match):
        gpuback.validate_spec(spec)
    with pytest.raises(exc, match=match):
        gpuback.Network(spec)


def test_the_base_spec_used_for_bad_cases_is_itself_valid() -> None:
    gpuback.Network(_base())


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
