"""The float32 reference accumulates its sums in float64 and rounds once (see the module
docstring of ``gpuback.backends.numpy_backend``), so a float32 comparison of another backend
with it measures that backend, not the reference.

Each case is built so that a float32 accumulation loses many bits and the float64 answer is
exact or nearly so: long batches (2^16 samples) or wide layers (2^16 units) of float32 values
that use every mantissa bit, arranged so that partial sums grow large and then cancel, or so
that many small terms follow a large one. The float32 result is compared with the same
computation in float64 (a float64 network, or the same op on float64 copies): it must be that
value rounded to float32, within ``ROUNDED_ONCE_ULPS`` units in the last place of float32.
Summing in float32 misses these by hundreds of ulps or more.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuback
from gpuback.backends import numpy_backend
from gpuback.core.plan import SparseIndex

LONG = 1 << 16
# Rounding once is within 0.5 ulp; float64's own rounding over 2^16 terms, and the host's
# float64 mean of per-sample float32 losses, add far less than another 1.5 ulps.
ROUNDED_ONCE_ULPS = 2.0


def ulps_off(got, exact) -> float:
    """The largest |got - exact| in units in the last place of float32 at ``exact``."""
    got = np.asarray(got, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return float(np.max(np.abs(got - exact) / ulp))


def assert_rounded_once(got, exact, what: str) -> None:
    off = ulps_off(got, exact)
    assert off <= ROUNDED_ONCE_ULPS, (
        f"{what}: {off:.3g} float32 ulps from the float64 result "
        f"(rounding a float64 sum once is within {ROUNDED_ONCE_ULPS})")


def cancelling(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """float32 values in +-[1, 2) using all 24 mantissa bits, positive in the first half of
    the last axis and negative in the second: partial sums along it grow to ~0.75 n and then
    cancel to O(sqrt(n)). Any float64 sum of them (or of them times powers of two) is exact."""
    k = rng.integers(0, 1 << 23, size=shape)
    values = 1.0 + k * 2.0**-23
    values[..., shape[-1] // 2:] *= -1
    return values.astype(np.float32)


def powers_of_two(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Inputs in {0.5, 1, 2}: products with them are exact in float32 and float64 alike."""
    return rng.choice(np.array([0.5, 1.0, 2.0]), size=shape)


def networks(spec: dict) -> tuple[gpuback.Network, gpuback.Network]:
    """The same network in float32 and float64, every parameter zero: the outputs are the
    biases exactly, so both see bit-identical output deltas (5.54)."""
    pair = []
    for dtype in ("float32", "float64"):
        net = gpuback.Network(spec, backend="numpy", dtype=dtype)
        net.set_parameters({k: np.zeros_like(v) for k, v in net.parameters().items()})
        pair.append(net)
    return pair[0], pair[1]


def mean_loss(net: gpuback.Network, X: np.ndarray, T: np.ndarray) -> float:
    """The mean of the per-sample losses (the host sums the float32 losses in float64)."""
    return net.loss_and_grads(X, T)[0]


# --- gradients summed over a long batch (5.53) ---------------------------------------------

def test_dense_weight_and_bias_gradients_over_a_long_batch() -> None:
    """With y = 0, delta = -t / N (5.54): dE/db = -sum_n t_n / N and dE/dW = Delta @ X.T."""
    rng = np.random.default_rng(0)
    spec = gpuback.mlp_spec([2, 3], loss="sum_of_squares")
    net32, net64 = networks(spec)
    X, T = powers_of_two(rng, LONG, 2), cancelling(rng, 3, LONG).T
    _, grads32 = net32.loss_and_grads(X, T)
    _, grads64 = net64.loss_and_grads(X, T)
    assert set(grads32) == {"x->y", "y"}
    for name in grads32:
        assert grads32[name].dtype == np.float32
        assert_rounded_once(grads32[name], grads64[name], f"gradient of {name}")


def test_sparse_weight_gradient_over_a_long_batch() -> None:
    rng = np.random.default_rng(1)
    edges = [[0, 1, 1, 0, 1], [0, 0, 1, 2, 2]]  # (sources, destinations)
    spec = {"groups": [{"name": "x", "size": 2},
                       {"name": "y", "size": 3, "activation": "identity"}],
            "connections": [{"src": "x", "dst": "y", "kind": "sparse", "edges": edges}],
            "input": "x", "output": "y", "loss": "sum_of_squares"}
    net32, net64 = networks(spec)
    X, T = powers_of_two(rng, LONG, 2), cancelling(rng, 3, LONG).T
    _, grads32 = net32.loss_and_grads(X, T)
    _, grads64 = net64.loss_and_grads(X, T)
    for name in ("x->y", "y"):
        assert_rounded_once(grads32[name], grads64[name], f"gradient of {name}")


@pytest.mark.parametrize("op", ["bias_grad", "activation_delta"])
def test_bias_gradient_ops_over_a_long_batch(op: str) -> None:
    """dE/db_k = sum over the batch of delta_k, alone and fused with h'(a) = 1 (5.56)."""
    rng = np.random.default_rng(2)
    delta = cancelling(rng, 3, LONG)
    results = {}
    for dtype in (np.float32, np.float64):
        acc, db = delta.astype(dtype), np.zeros(3, dtype=dtype)
        if op == "bias_grad":
            numpy_backend.bias_grad(acc, db)
        else:
            a = np.ones_like(acc)
            numpy_backend.activation_delta("identity", a, a, acc, db)
        results[dtype] = db
    assert_rounded_once(results[np.float32], results[np.float64], op)


# --- sparse gathers over many edges (5.48, 5.56) -------------------------------------------

@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("op", ["sparse_forward", "sparse_backward"])
def test_sparse_gathers_over_many_edges(op: str, accumulate: bool) -> None:
    """Every one of 2^16 units connected to each of 2 units: a_k = sum_j w_kj z_j (5.48) over
    2^16 edges into one unit, or sum_k w_kj delta_k (5.56) over 2^16 edges out of one."""
    rng = np.random.default_rng(3)
    many, few, batch = LONG, 2, 2
    wide, narrow = np.tile(np.arange(many), few), np.repeat(np.arange(few), many)
    w = cancelling(rng, few, many).reshape(-1)
    results = {}
    for dtype in (np.float32, np.float64):
        x = powers_of_two(np.random.default_rng(4), many, batch).astype(dtype)
        out = np.full((few, batch), 0.25, dtype=dtype)
        if op == "sparse_forward":  # edges from the many sources into the few
            index = SparseIndex.from_edges([wide.tolist(), narrow.tolist()], many, few)
            numpy_backend.sparse_forward(w.astype(dtype), index, x, out, accumulate)
        else:  # edges from the few sources out to the many
            index = SparseIndex.from_edges([narrow.tolist(), wide.tolist()], few, many)
            numpy_backend.sparse_backward(w.astype(dtype), index, x, out, accumulate)
        results[dtype] = out
    assert_rounded_once(results[np.float32], results[np.float64], op)


# --- per-sample losses over a wide output layer (5.54) and softmax ----------------------------

@pytest.mark.parametrize("loss", ["sum_of_squares", "binary_cross_entropy", "poisson"])
def test_loss_over_many_outputs(loss: str) -> None:
    """E_n sums 2^16 positive terms, one per output unit: unit 0's is ~2^13 (sum of squares,
    Poisson) or 2^14 (binary cross-entropy), every other one below half an ulp of that, so a
    float32 sum that starts from unit 0 drops them all (about 20, 40 and 20 in all)."""
    rng = np.random.default_rng(5)
    spec = gpuback.mlp_spec([1, LONG], loss=loss)
    net32, net64 = networks(spec)
    if loss == "sum_of_squares":  # y = 0: E_n = 1/2 sum_k t_k^2
        T = rng.uniform(0.02, 0.03, size=(2, LONG))
        T[:, 0] = 128.0
    elif loss == "binary_cross_entropy":  # y = sigmoid(b): E_n = sum_k softplus(b_k) - t_k b_k
        bias = rng.uniform(-8.0, -7.5, size=LONG).astype(np.float32)
        bias[0] = 2.0**14
        for net in (net32, net64):
            net.set_parameters({"y": bias})
        T = rng.uniform(0.0, 1e-5, size=(2, LONG))
    else:  # y = e^b: E_n = sum_k t_k log(t_k / y_k) - t_k + y_k, e^9 ~ 2^13 for unit 0
        bias = rng.uniform(-9.0, -8.5, size=LONG).astype(np.float32)
        bias[0] = 9.0
        for net in (net32, net64):
            net.set_parameters({"y": bias})
        T = rng.uniform(0.0, 1e-5, size=(2, LONG))
        T[:, 0] = 0.0
    X, T = np.ones((2, 1)), T.astype(np.float32)
    assert_rounded_once(mean_loss(net32, X, T), mean_loss(net64, X, T), f"{loss} loss")


def test_softmax_and_cross_entropy_over_many_classes() -> None:
    """Unit 0 has a = 0, the other 2^16 - 1 have a in [-18, -17], each e^(a - max) below half
    an ulp of 1: a float32 sum that starts from unit 0 drops them all (the true sum is
    ~1.0027), and with them the whole loss of a sample labelled 0."""
    rng = np.random.default_rng(6)
    spec = gpuback.mlp_spec([1, LONG], loss="cross_entropy")
    net32, net64 = networks(spec)
    bias = rng.uniform(-18, -17, size=LONG).astype(np.float32)
    bias[0] = 0.0
    for net in (net32, net64):
        net.set_parameters({"y": bias})
    X, labels = np.ones((2, 1)), np.array([0, 5])
    assert_rounded_once(net32.forward(X), net64.forward(X), "softmax outputs")
    assert_rounded_once(mean_loss(net32, X, labels), mean_loss(net64, X, labels),
                        "cross-entropy loss")


def test_metrics_total_over_a_long_batch() -> None:
    """accumulate_metrics adds the batch's float32 losses into float64 totals (as the cpu and
    cuda backends do)."""
    rng = np.random.default_rng(7)
    losses = np.abs(cancelling(rng, LONG))
    totals, status = np.array([0.5, 0.0]), np.zeros(2, dtype=np.int64)
    numpy_backend.accumulate_metrics(losses, np.ones(LONG, dtype=np.float32), totals, status, 1)
    assert totals[0] == 0.5 + np.sum(losses, dtype=np.float64)  # exact: see ``cancelling``
    assert totals[1] == LONG
    assert status.tolist() == [0, 0]
