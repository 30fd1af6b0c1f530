"""A PyTorch model built from PyTorch's and gpuback's modules trains end to end in PyTorch.

The model: ``nn.Linear(64, 96)``, ReLU, ``gpuback.torch.SparseLinear(96, 96)`` (density
0.25), ReLU, and ``gpuback.torch.Module`` of a gpuback MLP 96 -> 64 -> 10 (ReLU hidden
units, identity outputs), under ``nn.CrossEntropyLoss`` and ``torch.optim.AdamW``, on the
embedded handwritten digits. Its twin is the same model written with PyTorch's ops alone,
from the same initial weights: the sparse layer as ``SparseLinear.to_dense()``'s
``nn.Linear`` with its weight multiplied by the fixed 0/1 mask of the edges in every forward
pass (so it stays sparse), the gpuback network as ``gpuback.interop.to_torch(net)`` (copies
of its parameters), differentiated by PyTorch's autograd. Both train on the same batches in
the same order (a seeded ``torch.Generator``).

Checked: the first step's loss and every parameter's gradient agree (float32), so do the
losses after that step, and over seeds 0-4 the mixed model reaches the twin's test accuracy.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers.tolerances import TOLERANCES, rel_error

import gpuback
from gpuback import datasets

torch = pytest.importorskip("torch", reason="gpuback.torch needs PyTorch "
                                            "(pip install 'gpuback[torch]')")
nn = torch.nn

from gpuback.interop import to_torch  # noqa: E402  (needs torch)
from gpuback.torch import Module, SparseLinear  # noqa: E402

N_IN, WIDTH, DENSITY, HEAD = 64, 96, 0.25, [96, 64, 10]
EPOCHS, BATCH, LR = 6, 64, 2e-3
SEEDS = range(5)
# Measured (seeds 0-4, this configuration): both models 0.930-0.942 on the 359 test digits,
# the same on every seed.
MIN_ACCURACY, MARGIN = 0.9, 0.01
TOL = TOLERANCES["float32"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """PyTorch on one thread while these run: products of 64 samples by at most 96 features
    gain nothing from more, and on a busy machine (pytest -n auto) its waiting threads made
    a run of these tests ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class MaskedLinear(nn.Module):
    """``linear`` with its weight multiplied by a fixed 0/1 ``mask`` in every forward pass:
    the entries off the mask get no gradient and stay zero (AdamW's decay keeps a zero)."""

    def __init__(self, linear: nn.Linear, mask: torch.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.linear.weight * self.mask, self.linear.bias)


def models(seed: int) -> tuple[nn.Sequential, nn.Sequential, gpuback.Network]:
    """The mixed model, its torch-ops twin (the same initial weights), and the gpuback
    network inside the mixed model."""
    torch.manual_seed(seed)
    first = nn.Linear(N_IN, WIDTH)
    sparse = SparseLinear(WIDTH, WIDTH, density=DENSITY, seed=seed)
    net = gpuback.Network(gpuback.mlp_spec(HEAD, activation="relu", loss="sum_of_squares",
                                           output_activation="identity"),
                          backend="cpu", dtype="float32", seed=seed)
    mask = torch.zeros(WIDTH, WIDTH)
    mask[sparse.edges[1], sparse.edges[0]] = 1.0
    twin = nn.Sequential(copy.deepcopy(first), nn.ReLU(), MaskedLinear(sparse.to_dense(), mask),
                         nn.ReLU(), to_torch(net))
    mixed = nn.Sequential(first, nn.ReLU(), sparse, nn.ReLU(), Module(net))
    return mixed, twin, net


def paired_gradients(mixed: nn.Sequential, twin: nn.Sequential, net: gpuback.Network
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (the gradient of a parameter of the mixed model, of the same one in the
    twin): a sparse layer's edge weights against the dense weight's entries on the edges,
    the gpuback network's parameters (by gpuback's names) against to_torch's."""

    def grad(param: torch.Tensor) -> np.ndarray:
        assert param.grad is not None
        return param.grad.numpy()

    sparse, masked = mixed[2], twin[2].linear
    pairs = {"first.weight": (grad(mixed[0].weight), grad(twin[0].weight)),
             "first.bias": (grad(mixed[0].bias), grad(twin[0].bias)),
             "sparse.weight": (grad(sparse.weight),
                               grad(masked.weight)[sparse.edges[1], sparse.edges[0]]),
             "sparse.bias": (grad(sparse.bias), grad(masked.bias))}
    named = mixed[4].gpuback_parameters()
    linears = [m for m in twin[4] if isinstance(m, nn.Linear)]
    for g, linear in zip(net.plan.computed, linears, strict=True):
        (block,) = net.plan.groups[g].incoming
        pairs[block.name] = (grad(named[block.name]), grad(linear.weight))
        pairs[g] = (grad(named[g]), grad(linear.bias))
    return pairs


def tensors(data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.tensor(data.X_train, dtype=torch.float32), torch.tensor(data.y_train),
            torch.tensor(data.X_test, dtype=torch.float32))


def train(model: nn.Module, data, seed: int) -> float:
    """``model`` trained ``EPOCHS`` epochs of batches of ``BATCH`` by AdamW on the digits'
    training part, the order from a ``torch.Generator`` seeded with ``seed``; then its
    accuracy on the test part."""
    X, y, X_test = tensors(data)
    order = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(EPOCHS):
        permutation = torch.randperm(len(y), generator=order)
        for start in range(0, len(y), BATCH):
            rows = permutation[start:start + BATCH]
            optimizer.zero_grad()
            loss_fn(model(X[rows]), y[rows]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(X_test).argmax(dim=1).numpy()
    return float((predicted == data.y_test).mean())


def test_the_first_step_has_the_twins_loss_and_gradients() -> None:
    data = datasets.load_digits()
    X, y, _ = tensors(data)
    rows = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:BATCH]
    mixed, twin, net = models(0)
    before = net.parameters()
    loss_fn = nn.CrossEntropyLoss()
    losses = {}
    for name, model in (("mixed", mixed), ("twin", twin)):
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
        optimizer.zero_grad()
        loss = loss_fn(model(X[rows]), y[rows])
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            losses[name] = (loss.item(), loss_fn(model(X[rows]), y[rows]).item())

    assert losses["mixed"][1] < losses["mixed"][0]  # the step went downhill
    assert rel_error(losses["mixed"][0], losses["twin"][0]) <= TOL["independent_forward"]
    assert rel_error(losses["mixed"][1], losses["twin"][1]) <= TOL["independent_forward"]
    pairs = paired_gradients(mixed, twin, net)
    assert len(pairs) == 4 + 4  # two torch-side layers, two gpuback layers: weight and bias
    for name, (ours, theirs) in pairs.items():
        assert rel_error(ours, theirs) <= TOL["independent_grad"], name
    # the twin's dense layer stays sparse: no gradient reaches its entries off the edges
    assert (twin[2].linear.weight.grad * (1 - twin[2].mask) == 0).all()
    # the Module's parameters are the network's own buffers: the step moved the network
    named = mixed[4].gpuback_parameters()
    for name, value in net.parameters().items():
        assert not np.array_equal(value, before[name]), name
        np.testing.assert_array_equal(value, named[name].detach().numpy())


def test_the_mixed_model_learns_the_digits_as_well_as_its_torch_twin() -> None:
    data = datasets.load_digits()
    ours, theirs = [], []
    for seed in SEEDS:
        mixed, twin, _ = models(seed)
        ours.append(train(mixed, data, seed))
        theirs.append(train(twin, data, seed))
    assert min(ours) >= MIN_ACCURACY, (ours, theirs)
    assert np.mean(ours) >= np.mean(theirs) - MARGIN, (ours, theirs)
