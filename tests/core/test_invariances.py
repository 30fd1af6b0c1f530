"""Invariances that tie the engine's pieces to each other and to Bishop eq. 5.55/5.56, on
every backend (the ``backend`` fixture, tests/conftest.py; smaller cases when simulated)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.backend_params import backend_cases
from helpers.networks import randomise_biases
from helpers.random_specs import SIM_CASES, SPEC_CASES, random_data
from helpers.tolerances import DISTINCT, TOLERANCES, rel_error

import gpuback
from gpuback.diagnostics.explanation import DEMO_SPEC

DTYPES = ["float64", "float32"]
DAGS = [c for c in SPEC_CASES if c[0].startswith("dag")]
SIM_DAGS = [c for c in SIM_CASES if c[0].startswith("dag")]


def _assert_close(a, b, dtype: str, what: str) -> None:
    err = rel_error(a, b)
    assert err <= TOLERANCES[dtype]["invariance"], f"{what}: relative error {err:.3e}"


# --- a sparse block holding every edge is the dense block --------------------------------

def _dense_and_full_sparse(rng: np.random.Generator):
    dense = {
        "groups": [{"name": "x", "size": 5}, {"name": "h", "size": 4, "activation": "tanh"},
                   {"name": "y", "size": 3, "activation": "softmax"}],
        "connections": [{"src": "x", "dst": "h", "kind": "dense"},
                        {"src": "h", "dst": "y", "kind": "dense"},
                        {"src": "x", "dst": "y", "kind": "dense"}],
        "input": "x", "output": "y", "loss": "cross_entropy",
    }
    sparse = {**dense, "connections": []}
    for c in dense["connections"]:
        n_src = next(g["size"] for g in dense["groups"] if g["name"] == c["src"])
        n_dst = next(g["size"] for g in dense["groups"] if g["name"] == c["dst"])
        flat = rng.permutation(n_src * n_dst)  # every edge, in a random order
        sparse["connections"].append({"src": c["src"], "dst": c["dst"], "kind": "sparse",
                                      "edges": [(flat % n_src).tolist(),
                                                (flat // n_src).tolist()]})
    return dense, sparse


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_block_with_every_edge_equals_dense_block(backend: str, simulated: bool,
                                                         dtype: str) -> None:
    rng = np.random.default_rng(0)
    dense_spec, sparse_spec = _dense_and_full_sparse(rng)
    dense = gpuback.Network(dense_spec, backend=backend, dtype=dtype, seed=1)
    randomise_biases(dense, rng)
    sparse = gpuback.Network(sparse_spec, backend=backend, dtype=dtype)
    params = dense.parameters()
    edges = {f"{c['src']}->{c['dst']}": c["edges"] for c in sparse_spec["connections"]}
    sparse.set_parameters({k: (params[k][edges[k][1], edges[k][0]] if k in edges else v)
                           for k, v in params.items()})
    X, T = random_data(dense_spec, 3 if simulated else 7, rng, labels=True)

    _assert_close(sparse.forward(X), dense.forward(X), dtype, "forward")
    loss_s, grads_s = sparse.loss_and_grads(X, T)
    loss_d, grads_d = dense.loss_and_grads(X, T)
    _assert_close(loss_s, loss_d, dtype, "loss")
    for k, g in grads_d.items():
        expected = g[edges[k][1], edges[k][0]] if k in edges else g
        _assert_close(grads_s[k], expected, dtype, k)


# --- splitting a batch gives the same gradient sum ---------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("backend", "case", "spec"), backend_cases(DAGS, SIM_DAGS),
                         indirect=["backend"])
def test_split_batch_gives_the_same_gradient_sum(backend: str, simulated: bool, case: str,
                                                 spec: dict, dtype: str) -> None:
    rng = np.random.default_rng(1)
    net = gpuback.Network(spec, backend=backend, dtype=dtype)
    randomise_biases(net, rng)
    n, n_a = (5, 2) if simulated else (11, 4)
    n_b = n - n_a
    X, T = random_data(spec, n, rng)
    loss, grads = net.loss_and_grads(X, T)
    loss_a, grads_a = net.loss_and_grads(X[:n_a], T[:n_a])
    loss_b, grads_b = net.loss_and_grads(X[n_a:], T[n_a:])
    # every loss is a mean over the batch, so sums are mean * size
    _assert_close(n_a * loss_a + n_b * loss_b, n * loss, dtype, "loss sum")
    for k in grads:
        _assert_close(n_a * grads_a[k] + n_b * grads_b[k], n * grads[k], dtype, k)


# --- listing order does not matter -------------------------------------------------------

def test_order_of_groups_and_connections_in_the_spec_does_not_matter(backend: str,
                                                                     simulated: bool) -> None:
    spec = dict(SIM_CASES)["dag-2"] if simulated else dict(SPEC_CASES)["dag-3"]
    rng = np.random.default_rng(2)
    shuffled = {**spec,
                "groups": [spec["groups"][i] for i in rng.permutation(len(spec["groups"]))],
                "connections": [spec["connections"][i]
                                for i in rng.permutation(len(spec["connections"]))]}
    a = gpuback.Network(spec, backend=backend)
    randomise_biases(a, rng)
    b = gpuback.Network(shuffled, backend=backend)
    b.set_parameters(a.parameters())
    X, T = random_data(spec, 3 if simulated else 5, rng)
    _assert_close(b.forward(X), a.forward(X), "float64", "forward")
    loss_a, grads_a = a.loss_and_grads(X, T)
    loss_b, grads_b = b.loss_and_grads(X, T)
    _assert_close(loss_b, loss_a, "float64", "loss")
    for k in grads_a:
        _assert_close(grads_b[k], grads_a[k], "float64", k)


# --- the seed question: a unit feeding several groups gets the sum (5.55, 5.56) ----------

def test_unit_feeding_several_groups_receives_the_sum_of_all_contributions(backend: str) -> None:
    rng = np.random.default_rng(3)
    # h feeds g1 (dense), g2 (sparse) and, skipping a layer, y itself.
    net = gpuback.Network(DEMO_SPEC, backend=backend)
    randomise_biases(net, rng)
    p = net.parameters()
    x, t = rng.normal(size=(1, 3)), rng.normal(size=(1, 2))
    _, grads = net.loss_and_grads(x, t)
    # With one sample, a group's bias gradient is its delta vector (dE/db_k = delta_k).
    delta_g1, delta_g2, delta_y = grads["g1"], grads["g2"], grads["y"]
    src, dst = DEMO_SPEC["connections"][2]["edges"]
    via_g1 = p["h->g1"].T @ delta_g1
    via_g2 = np.zeros(4)
    np.add.at(via_g2, src, p["h->g2"] * delta_g2[dst])
    via_y = p["h->y"].T @ delta_y
    h_prime = 1.0 - np.tanh(p["x->h"] @ x[0] + p["h"]) ** 2
    delta_h = grads["h"]

    tol = TOLERANCES["float64"]["invariance"]
    assert rel_error(delta_h, h_prime * (via_g1 + via_g2 + via_y)) <= tol
    # and no single path, nor any pair, accounts for it
    for partial in (via_g1, via_g2, via_y, via_g1 + via_g2, via_g1 + via_y, via_g2 + via_y):
        assert rel_error(delta_h, h_prime * partial) > DISTINCT
    # the weight gradient into h is then delta_h z_x^T (5.53)
    assert rel_error(grads["x->h"], np.outer(delta_h, x[0])) <= tol
