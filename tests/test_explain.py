"""``explain``: Bishop 5.56's full sum matches dE/da_j measured on a_j; single paths do not."""

from __future__ import annotations

import numpy as np
import pytest

import gpuback
from gpuback.explain import DEMO_SPEC, explain


@pytest.mark.parametrize("unit", range(4))
def test_full_sum_matches_and_single_paths_do_not(unit: int) -> None:
    result = explain(unit=unit, seed=unit)
    assert len(result.per_group) >= 2  # the unit really feeds several later groups
    full = result.h_prime * result.total
    assert result.relative_error(full) <= 1e-6
    assert result.relative_error(result.backprop_delta) <= 1e-6
    assert full == pytest.approx(result.backprop_delta, rel=1e-12)
    for name, partial in result.per_group.items():
        assert result.relative_error(result.h_prime * partial) > 1e-3, name
    text = str(result)
    assert "sum over every k" in text and "One path alone is not enough" in text


def test_explain_a_given_network_and_sample() -> None:
    net = gpuback.Network(DEMO_SPEC, seed=3)
    result = explain(net, group="g1", unit=1, x=[0.5, -1.0, 2.0], t=[[0.1, -0.3]])
    assert [t.group for t in result.terms] == ["y", "y"]
    assert result.relative_error(result.h_prime * result.total) <= 1e-6


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"group": "x"}, "expected a hidden group"),
    ({"group": "y"}, "expected a hidden group"),
    ({"group": "nope"}, "expected a hidden group"),
    ({"unit": 4}, r"unit: expected an integer in \[0, 4\)"),
    ({"unit": -1}, "unit"),
])
def test_explain_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        explain(**kwargs)


def test_explain_a_float32_network_on_a_float64_copy() -> None:
    rng = np.random.default_rng(5)
    net = gpuback.Network(DEMO_SPEC, dtype="float32", seed=5)
    net.set_parameters({g["name"]: rng.normal(scale=0.5, size=g["size"])
                        for g in DEMO_SPEC["groups"][1:]})
    result = explain(net, unit=2, seed=5)
    # float32 finite differences with eps 1e-5 would be off by about 1e-2
    assert result.relative_error(result.h_prime * result.total) <= 1e-6


def test_explain_rejects_what_is_not_a_network() -> None:
    with pytest.raises(TypeError, match=r"net: expected a gpuback\.Network"):
        explain("h")
