"""``fit(..., sample_weight=w)``: each step's loss is the weighted mean of its batch,
sum_n w_n E_n / sum_n w_n. Held to what that mean is: integer weights train as repeated
samples and zero weights as removed ones (one batch), a mini-batch run as its batches
trained one after another, and the first step's gradient to PyTorch's autograd of the
weighted mean."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.backend_params import backend_param

import gpuback
from gpuback import optim
from gpuback.lbfgs import fit_lbfgs

BACKENDS = [backend_param("numpy"), backend_param("cpu"), backend_param("cuda")]
LOSSES = [("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"),
          ("sum_of_squares", "identity")]


def network(backend: str, loss: str, output: str) -> gpuback.Network:
    spec = gpuback.mlp_spec([4, 6, 3], activation="tanh", loss=loss,
                            output_activation=output)
    return gpuback.Network(spec, backend=backend, dtype="float64", seed=2)


def problem(loss: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    if loss == "cross_entropy":
        return X, rng.integers(0, 3, size=n)
    if loss == "binary_cross_entropy":
        return X, rng.integers(0, 2, size=(n, 3)).astype(float)
    return X, rng.normal(size=(n, 3))


def train(net: gpuback.Network, X, T, batch_size: int, weights=None, epochs: int = 2):
    return net.fit(X, T, epochs=epochs, batch_size=batch_size, shuffle=False,
                   progress=False, optimizer=optim.SGD(lr=0.3), sample_weight=weights)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("loss", "output"), LOSSES)
def test_integer_weights_train_as_repeated_and_removed_samples(backend, loss, output) -> None:
    X, T = problem(loss, 13)
    counts = np.array([0, 1, 2, 3, 1, 0, 2, 1, 1, 3, 2, 0, 1])
    weighted, repeated = network(backend, loss, output), network(backend, loss, output)
    h_weighted = train(weighted, X, T, 13, counts.astype(float))
    rows = np.repeat(np.arange(13), counts)
    h_repeated = train(repeated, X[rows], T[rows], len(rows))
    for name, value in repeated.parameters().items():
        np.testing.assert_allclose(weighted.parameters()[name], value, rtol=1e-12,
                                   atol=1e-13, err_msg=name)
    np.testing.assert_allclose(h_weighted["loss"], h_repeated["loss"], rtol=1e-12)
    plain = network(backend, loss, output)
    train(plain, X, T, 13)
    assert not np.allclose(plain.parameters()["h1->y"], weighted.parameters()["h1->y"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_batch_is_its_own_weighted_mean(backend) -> None:
    """Mini-batches of 5 (the last of 2): the run equals its batches trained one after
    another, each as a full batch of its own weights; a batch of zero weights adds a zero
    gradient (plain SGD: it changes nothing)."""
    loss, output = "cross_entropy", "softmax"
    X, T = problem(loss, 17)
    weights = np.random.default_rng(1).uniform(0.0, 2.0, size=17)
    weights[5:10] = 0.0
    run = network(backend, loss, output)
    train(run, X, T, 5, weights, epochs=1)
    steps = network(backend, loss, output)
    optimizer = optim.SGD(lr=0.3)
    for start in (0, 10, 15):  # the batch of zeros, 5:10, moves nothing
        part = slice(start, start + 5)
        steps.fit(X[part], T[part], epochs=1, batch_size=5, shuffle=False, progress=False,
                  optimizer=optimizer, sample_weight=weights[part])
    for name, value in steps.parameters().items():
        np.testing.assert_allclose(run.parameters()[name], value, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(("loss", "output"), LOSSES)
def test_the_weighted_gradient_is_pytorchs(loss, output) -> None:
    torch = pytest.importorskip("torch")
    X, T = problem(loss, 9)
    weights = np.random.default_rng(3).uniform(0.0, 2.0, size=9)
    net = network("cpu", loss, output)
    start = net.parameters()
    train(net, X, T, 9, weights, epochs=1)
    lr = 0.3  # train's
    p = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    x = torch.tensor(X)
    h = torch.tanh(x @ p["x->h1"].T + p["h1"])
    a = h @ p["h1->y"].T + p["y"]
    if loss == "cross_entropy":
        per_sample = torch.nn.functional.cross_entropy(a, torch.tensor(T), reduction="none")
    elif loss == "binary_cross_entropy":
        per_sample = torch.nn.functional.binary_cross_entropy_with_logits(
            a, torch.tensor(T), reduction="none").sum(dim=1)
    else:
        per_sample = 0.5 * ((a - torch.tensor(T)) ** 2).sum(dim=1)
    w = torch.tensor(weights)
    ((w * per_sample).sum() / w.sum()).backward()
    for name, value in p.items():
        expected = (value - lr * value.grad).detach().numpy()
        np.testing.assert_allclose(net.parameters()[name], expected, rtol=1e-10, atol=1e-12,
                                   err_msg=name)


def test_each_epoch_begins_with_its_order() -> None:
    seen = []

    class Orders(gpuback.training.Callback):
        def on_epoch_begin(self, epoch, order) -> None:
            seen.append((epoch, order.copy()))

    net = network("numpy", "cross_entropy", "softmax")
    X, T = problem("cross_entropy", 11)
    net.fit(X, T, epochs=2, batch_size=4, seed=3, progress=False, callbacks=[Orders()])
    assert [epoch for epoch, _ in seen] == [1, 2]
    for _, order in seen:
        assert sorted(order.tolist()) == list(range(11))
    assert not np.array_equal(seen[0][1], seen[1][1])


def test_lbfgs_takes_the_weighted_mean() -> None:
    pytest.importorskip("scipy")
    X, T = problem("sum_of_squares", 12)
    counts = np.array([1, 0, 2, 1, 3, 1, 0, 1, 2, 1, 1, 1])
    rows = np.repeat(np.arange(12), counts)
    weighted, repeated = (network("numpy", "sum_of_squares", "identity") for _ in range(2))
    a = fit_lbfgs(weighted, X, T, max_iter=5, l2=0.3, chunk_size=5,
                                sample_weight=counts)
    b = fit_lbfgs(repeated, X[rows], T[rows], max_iter=5, l2=0.3)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-10)
    for name, value in repeated.parameters().items():
        np.testing.assert_allclose(weighted.parameters()[name], value, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("weights", "error", "match"), [
    (np.ones(5), ValueError, "expected a 1-D array of 6 weights, one per sample; got shape"),
    (np.ones((6, 1)), ValueError, r"got shape \(6, 1\)"),
    (np.array([1.0, 2.0, -0.5, 1.0, 1.0, 1.0]), ValueError, "non-negative weights, got -0.5 "
                                                            "at index 2"),
    (np.array([1.0, np.nan, 1.0, 1.0, 1.0, 1.0]), ValueError, "expected finite values"),
    (np.zeros(6), ValueError, "every weight is zero"),
    (np.ones(6, dtype=bool), TypeError, "numeric"),
    ("heavy", TypeError, "numeric"),
])
def test_bad_sample_weights_are_refused_by_name(weights, error, match) -> None:
    net = network("numpy", "cross_entropy", "softmax")
    X, T = problem("cross_entropy", 6)
    with pytest.raises(error, match=match) as caught:
        net.fit(X, T, epochs=1, progress=False, sample_weight=weights)
    assert "sample_weight" in str(caught.value)
