"""``explain``: Bishop 5.56's full sum matches dE/da_j measured on a_j; single paths do not.
On every backend (the ``backend`` fixture, tests/conftest.py): explain runs on a float64
copy of the network on its own backend, through ``Network.trace`` and ``Network.loss``."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tolerances import DISTINCT, TOLERANCES, rel_error

import gpuback
from gpuback.diagnostics.explanation import DEMO_SPEC, explain

TOL = TOLERANCES["float64"]


@pytest.mark.parametrize("unit", range(4))
def test_full_sum_matches_and_single_paths_do_not(backend: str, unit: int) -> None:
    result = explain(unit=unit, seed=unit, backend=backend)
    assert len(result.per_group) >= 2  # the unit really feeds several later groups
    full = result.h_prime * result.total
    assert result.relative_error(full) <= TOL["explain"]
    assert result.relative_error(result.backprop_delta) <= TOL["explain"]
    assert full == pytest.approx(result.backprop_delta, rel=TOL["invariance"])
    for name, partial in result.per_group.items():
        assert result.relative_error(result.h_prime * partial) > DISTINCT, name
    text = str(result)
    assert "sum over every k" in text and "One path alone is not enough" in text
    # every number of the explanation is the reference backend's
    reference = explain(unit=unit, seed=unit, backend="numpy")
    assert [(t.group, t.unit) for t in result.terms] == \
        [(t.group, t.unit) for t in reference.terms]
    for what in ("a", "h_prime", "backprop_delta", "total"):
        assert rel_error(getattr(result, what), getattr(reference, what)) <= TOL["backend"], what
    assert rel_error([t.delta for t in result.terms],
                     [t.delta for t in reference.terms]) <= TOL["backend"]


def test_explain_a_given_network_and_sample(backend: str) -> None:
    net = gpuback.Network(DEMO_SPEC, backend=backend, seed=3)
    result = explain(net, group="g1", unit=1, x=[0.5, -1.0, 2.0], t=[[0.1, -0.3]])
    assert [t.group for t in result.terms] == ["y", "y"]
    assert result.relative_error(result.h_prime * result.total) <= TOL["explain"]


def test_a_target_row_is_one_sample_as_the_input_row_is(backend: str) -> None:
    """x and t are one sample's: a flat row each, or each as a batch of one, the same
    explanation; a class label as a number or a batch of one label."""
    net = gpuback.Network(DEMO_SPEC, backend=backend, seed=3)
    flat = explain(net, group="g1", unit=1, x=[0.5, -1.0, 2.0], t=[0.1, -0.3])
    batch = explain(net, group="g1", unit=1, x=[[0.5, -1.0, 2.0]], t=[[0.1, -0.3]])
    assert flat.as_dict() == batch.as_dict()
    labels = gpuback.Network(gpuback.mlp_spec([3, 4, 2], activation="tanh"), backend=backend)
    one = explain(labels, group="h1", x=[0.5, -1.0, 2.0], t=1)
    assert one.total == explain(labels, group="h1", x=[0.5, -1.0, 2.0], t=[1]).total
    assert one.total != explain(labels, group="h1", x=[0.5, -1.0, 2.0], t=0).total


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"group": "x"}, "expected a hidden group"),
    ({"group": "y"}, "expected a hidden group"),
    ({"group": "nope"}, "expected a hidden group"),
    ({"unit": 4}, r"unit: expected an integer in \[0, 4\)"),
    ({"unit": -1}, "unit"),
])
def test_explain_rejects_bad_arguments(backend: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        explain(backend=backend, **kwargs)


def test_explain_a_float32_network_on_a_float64_copy(backend: str) -> None:
    rng = np.random.default_rng(5)
    net = gpuback.Network(DEMO_SPEC, backend=backend, dtype="float32", seed=5)
    net.set_parameters({g["name"]: rng.normal(scale=0.5, size=g["size"])
                        for g in DEMO_SPEC["groups"][1:]})
    result = explain(net, unit=2, seed=5)
    # float32 finite differences with eps 1e-5 would be off by about 1e-2
    assert result.relative_error(result.h_prime * result.total) <= TOL["explain"]
    assert net.dtype == "float32"  # the copy was explained, not the network changed


def test_explain_rejects_what_is_not_a_network() -> None:
    with pytest.raises(TypeError, match=r"net: expected a gpuback\.Network"):
        explain("h")


def test_an_identity_connection_is_a_term_of_weight_one(backend: str) -> None:
    """A residual connection h -> r adds delta_r[j] itself to unit j's sum (5.56, W = I)."""
    spec = {"groups": [{"name": "x", "size": 3}, {"name": "h", "size": 4, "activation": "tanh"},
                       {"name": "r", "size": 4, "activation": "gelu"},
                       {"name": "s", "size": 4, "activation": "silu"},
                       {"name": "y", "size": 2, "activation": "identity"}],
            "connections": [{"src": "x", "dst": "h", "kind": "dense"},
                            {"src": "h", "dst": "r", "kind": "dense"},
                            {"src": "h", "dst": "s", "kind": "identity"},
                            {"src": "r", "dst": "y", "kind": "dense"},
                            {"src": "s", "dst": "y", "kind": "dense"}],
            "input": "x", "output": "y", "loss": "sum_of_squares"}
    net = gpuback.Network(spec, backend=backend, seed=2)
    result = explain(net, group="h", unit=2, x=[0.3, -0.7, 1.1], t=[[0.2, -0.4]])
    identity_terms = [t for t in result.terms if t.group == "s"]
    assert [(t.unit, t.weight) for t in identity_terms] == [(2, 1.0)]
    assert result.relative_error(result.h_prime * result.total) <= TOL["explain"]
    assert result.relative_error(result.h_prime * result.per_group["s"]) > DISTINCT


def test_a_layer_normalised_unit_sums_over_its_own_group(backend: str) -> None:
    """For a unit of a normalised group the terms are the group's units i, du_i/da_j times
    dE/du_i (5.55 inside the group): their sum is delta_j, and no consumer group alone is."""
    spec = {"groups": [{"name": "x", "size": 3},
                       {"name": "h", "size": 4, "activation": "tanh", "norm": "layer"},
                       {"name": "g", "size": 3, "activation": "gelu"},
                       {"name": "y", "size": 2, "activation": "identity"}],
            "connections": [{"src": "x", "dst": "h", "kind": "dense"},
                            {"src": "h", "dst": "g", "kind": "dense"},
                            {"src": "h", "dst": "y", "kind": "dense"},
                            {"src": "g", "dst": "y", "kind": "dense"}],
            "input": "x", "output": "y", "loss": "sum_of_squares"}
    net = gpuback.Network(spec, backend=backend, seed=4)
    rng = np.random.default_rng(0)
    net.set_parameters({k: v + rng.normal(scale=0.4, size=v.shape)
                        for k, v in net.parameters().items()})
    result = explain(net, group="h", unit=1, x=[0.3, -0.7, 1.1], t=[[0.2, -0.4]])
    assert result.within_group and result.h_prime == 1.0
    assert [(t.group, t.unit) for t in result.terms] == [("h", i) for i in range(4)]
    assert result.relative_error(result.total) <= TOL["explain"]
    assert result.relative_error(result.backprop_delta) <= TOL["explain"]
    assert sorted(result.per_group) == ["g", "y"]
    assert sum(result.per_group.values()) == pytest.approx(result.total, rel=1e-12)
    for name, partial in result.per_group.items():
        assert result.relative_error(partial) > DISTINCT, name
    # the within-group terms are needed: the diagonal term alone is not delta_j
    diagonal = next(t for t in result.terms if t.unit == 1)
    assert result.relative_error(diagonal.weight * diagonal.delta) > DISTINCT
    assert "sum over every i" in str(result) and "One consumer group alone" in str(result)
