"""gpuback.interop: to_torch and from_torch, both ways, on every backend.

The reference for every output is the other side: ``net.forward`` for ``to_torch``,
``module(X)`` for ``from_torch``. The gradients of the torch modules come from PyTorch's
autograd of a loss written here from its definition (Bishop 5.11, 5.21, 5.24, as means over
the batch; Poisson from ``torch.nn.functional.poisson_nll_loss``), independent of gpuback's
backprop, and are compared with ``net.loss_and_grads``.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers.networks import network
from helpers.random_specs import (
    ELEMENTWISE,
    chain_spec,
    random_dag_spec,
    random_data,
    random_residual_spec,
)
from helpers.tolerances import TOLERANCES, rel_error

import gpuback
from gpuback.core.spec import weight_name
from gpuback.interop import INSTALL_HINT, from_torch, to_torch

torch = pytest.importorskip("torch", reason="gpuback.interop needs PyTorch "
                                            "(pip install 'gpuback[torch]')")
nn = torch.nn

from gpuback.interop.modules import Exp, GroupNetwork, Softplus  # noqa: E402  (needs torch)

BATCH = 5
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


def tol(dtype: str) -> float:
    return TOLERANCES[dtype]["invariance"]


def host(t) -> np.ndarray:
    """A NumPy copy of a tensor (on the cuda backend on a GPU, to_torch's are CUDA tensors)."""
    return t.detach().cpu().numpy()


def on_module(module, X: np.ndarray, dtype: str = "float64"):
    """``X`` as a tensor of ``dtype`` on the device of the module's parameters."""
    return torch.tensor(X, dtype=TORCH_DTYPE[dtype], device=next(module.parameters()).device)


def outputs(module, X: np.ndarray, dtype: str) -> np.ndarray:
    with torch.no_grad():
        return host(module(on_module(module, X, dtype)))


def torch_loss(loss: str, y, T: np.ndarray):
    """The mean over the batch of each loss, from its definition, on the outputs y."""
    t = torch.tensor(T, dtype=y.dtype, device=y.device)
    if loss == "sum_of_squares":
        per_sample = 0.5 * ((y - t) ** 2).sum(dim=1)
    elif loss == "binary_cross_entropy":
        per_sample = -(t * torch.log(y) + (1 - t) * torch.log(1 - y)).sum(dim=1)
    elif loss == "poisson":  # y - t log y per element, plus t log t - t: t log(t / y) - t + y
        nll = nn.functional.poisson_nll_loss(torch.log(y), t, log_input=True, full=False,
                                             reduction="none")
        per_sample = (nll + torch.special.xlogy(t, t) - t).sum(dim=1)
    else:
        per_sample = -(t * torch.log(y)).sum(dim=1)
    return per_sample.mean()


def torch_named_parameters(module, net: gpuback.Network) -> dict:
    """gpuback parameter name -> the module's parameter, read from the module's structure."""
    if isinstance(module, GroupNetwork):
        return module.gpuback_parameters()
    plan = net.plan
    linears = [m for m in module if isinstance(m, nn.Linear)]
    norms = iter(m for m in module if isinstance(m, nn.LayerNorm))
    named = {}
    for previous, g, linear in zip(plan.order, plan.computed, linears, strict=False):
        named[weight_name(previous, g)] = linear.weight
        named[g] = linear.bias
        if plan.groups[g].norm is not None:
            norm = next(norms)
            named[f"{g}.gain"], named[f"{g}.shift"] = norm.weight, norm.bias
    return named


def dag_specs() -> list[dict]:
    """Small random DAGs (sparse blocks, skip connections, every loss: seed % 3), and two with
    identity (residual) connections."""
    return [random_dag_spec(seed, n_hidden=3, sizes=(1, 3, 5)) for seed in range(3)] + \
        [random_residual_spec(seed, n_hidden=3) for seed in range(2)]


# --- gpuback -> torch --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_plain_mlp_becomes_an_nn_sequential_with_the_same_outputs(backend, dtype, rng):
    net = network(gpuback.mlp_spec([3, 4, 2], activation="relu"), backend, dtype)
    model = to_torch(net)
    assert type(model) is nn.Sequential
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear, nn.Softmax]
    assert [(m.in_features, m.out_features) for m in model[::2]] == [(3, 4), (4, 2)]
    assert all(p.dtype == TORCH_DTYPE[dtype] and p.requires_grad for p in model.parameters())
    params = net.parameters()
    np.testing.assert_array_equal(host(model[0].weight), params["x->h1"])
    np.testing.assert_array_equal(host(model[2].bias), params["y"])
    X = rng.normal(size=(BATCH, 3))
    assert rel_error(outputs(model, X, dtype), net.forward(X)) < tol(dtype)


@pytest.mark.parametrize("activation", ELEMENTWISE)
def test_every_activation_maps_to_a_module_with_the_same_formula(backend, activation, rng):
    # hidden and output: a sum-of-squares chain takes any elementwise output activation
    spec = chain_spec([3, 4, 2], activation, "sum_of_squares", output_activation=activation)
    net = network(spec, backend)
    model = to_torch(net)
    X = 3 * rng.normal(size=(BATCH, 3))  # reaching both sides of every kink and the tails
    assert rel_error(outputs(model, X, "float64"), net.forward(X)) < tol("float64")


def test_exp_converts_both_ways_as_its_own_module(backend, rng):
    """PyTorch has no exp module: ``to_torch`` writes ``gpuback.interop.modules.Exp``, and
    ``from_torch`` reads it back as exp (the Poisson loss's output, its default loss)."""
    net = network(chain_spec([3, 4, 2], "exp", "poisson"), backend)
    model = to_torch(net)
    assert [type(m) for m in model] == [nn.Linear, Exp, nn.Linear, Exp]
    X = rng.normal(size=(BATCH, 3))
    assert rel_error(outputs(model, X, "float64"), net.forward(X)) < tol("float64")
    again = from_torch(model, backend=backend)
    assert again.spec == net.spec
    assert rel_error(again.forward(X), net.forward(X)) < tol("float64")


def test_softplus_matches_far_beyond_torchs_threshold():
    a = torch.tensor([-800.0, -30.0, 0.0, 25.0, 800.0], dtype=torch.float64)
    expected = np.logaddexp(a.numpy(), 0.0)
    np.testing.assert_allclose(Softplus()(a).numpy(), expected, rtol=1e-15)


@pytest.mark.parametrize("case", range(3))
def test_a_sparse_dag_with_skips_becomes_a_module_with_the_same_wiring(backend, case, rng):
    spec = dag_specs()[case]
    kinds = {c["kind"] for c in spec["connections"]}
    fed_twice = [g["name"] for g in spec["groups"]
                 if sum(c["dst"] == g["name"] for c in spec["connections"]) > 1]
    assert "sparse" in kinds and fed_twice, "the case should have sparse blocks and skips"
    net = network(spec, backend)
    model = to_torch(net)
    assert isinstance(model, GroupNetwork)
    assert set(model.gpuback_parameters()) == set(net.parameters())
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(host(model.gpuback_parameters()[name]), value)
    X = rng.normal(size=(BATCH, net.plan.n_in))
    assert rel_error(outputs(model, X, "float64"), net.forward(X)) < tol("float64")


def test_a_group_network_saves_and_trains_as_any_torch_module(rng):
    net = network(dag_specs()[0], "numpy")
    model = to_torch(net)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    X = rng.normal(size=(BATCH, net.plan.n_in))
    np.testing.assert_array_equal(outputs(loaded, X, "float64"), outputs(model, X, "float64"))
    sparse = next(c for c in net.spec["connections"] if c["kind"] == "sparse")
    w = model.gpuback_parameters()[weight_name(sparse["src"], sparse["dst"])]
    before = w.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (model(on_module(model, X)) ** 2).sum().backward()
    opt.step()
    assert not torch.equal(w.detach(), before)  # the edge weights train


def test_a_chain_with_a_sparse_block_is_not_a_sequential(rng):
    spec = chain_spec([3, 4, 2], "tanh", "cross_entropy", kind="sparse", seed=3)
    net = network(spec, "numpy")
    model = to_torch(net)
    assert isinstance(model, GroupNetwork)
    X = rng.normal(size=(BATCH, 3))
    assert rel_error(outputs(model, X, "float64"), net.forward(X)) < tol("float64")


def gradient_cases() -> list:
    cases = [pytest.param(chain_spec([3, 4, 3, 2], "tanh", loss), "Sequential", id=f"mlp-{loss}")
             for loss in gpuback.LOSSES]
    cases += [pytest.param(spec, "GroupNetwork", id=f"dag-{i}-{spec['loss']}")
              for i, spec in enumerate(dag_specs())]
    return cases


@pytest.mark.parametrize(("spec", "kind"), gradient_cases())
def test_torch_autograd_gives_the_gradients_of_loss_and_grads(backend, spec, kind, rng):
    net = network(spec, backend)
    model = to_torch(net).eval()  # eval(): no dropout, as loss_and_grads by default
    assert type(model).__name__ == kind
    X, T = random_data(spec, BATCH, rng)
    loss, grads = net.loss_and_grads(X, T)
    torch_value = torch_loss(spec["loss"], model(on_module(model, X)), T)
    torch_value.backward()
    assert abs(float(torch_value.detach()) - loss) <= tol("float64") * abs(loss)
    named = torch_named_parameters(model, net)
    assert set(named) == set(grads)
    for name, grad in grads.items():
        assert rel_error(host(named[name].grad), grad) < tol("float64"), name


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_autograd_under_gpubacks_masks_gives_the_training_gradients(backend, seed, rng,
                                                                          monkeypatch):
    """A residual DAG with layer norm and dropout in training: PyTorch's autograd through
    ``GroupNetwork``, its dropout replaced by gpuback's masks from ``trace``, gives
    ``loss_and_grads(..., training=True)``'s loss and every gradient."""
    spec = random_residual_spec(seed, n_hidden=3)
    net = network(spec, backend)
    X, T = random_data(spec, BATCH, rng)
    trace = net.trace(X, T, training=True, step=3)
    loss, grads = net.loss_and_grads(X, T, training=True, step=3)
    assert trace.mask  # the spec has dropout
    model = to_torch(net).train()
    masks = iter([torch.tensor(trace.mask[g]) for g in net.plan.dropped])

    def gpubacks_dropout(z, p, training):
        assert training
        return z * next(masks).to(z) / (1.0 - p)

    monkeypatch.setattr(torch.nn.functional, "dropout", gpubacks_dropout)
    value = torch_loss(spec["loss"], model(on_module(model, X)), T)
    value.backward()
    assert next(masks, None) is None  # every mask used, once
    assert abs(float(value.detach()) - loss) <= tol("float64") * abs(loss)
    for name, grad in grads.items():
        tensor = model.gpuback_parameters()[name]
        assert rel_error(host(tensor.grad), grad) < tol("float64"), name


def test_the_module_does_not_alias_a_host_networks_buffers(backend, rng):
    net = network(gpuback.mlp_spec([3, 4, 2]), backend)
    model = to_torch(net)
    before = net.parameters()["x->h1"].copy()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    if isinstance(net.flat_parameters, np.ndarray):  # host memory: copies
        np.testing.assert_array_equal(net.parameters()["x->h1"], before)
    else:  # device memory: shared by DLPack (the documented zero-copy path)
        np.testing.assert_array_equal(net.parameters()["x->h1"], before + 1.0)


def test_to_torch_draws_nothing_from_torchs_random_generator():
    net = network(gpuback.mlp_spec([3, 4, 2]), "numpy")
    state = torch.get_rng_state()
    to_torch(net)
    assert torch.equal(torch.get_rng_state(), state)


def test_to_torch_refuses_what_is_not_a_network():
    with pytest.raises(TypeError, match=r"net: expected a gpuback\.Network"):
        to_torch(nn.Linear(2, 2))


# --- torch -> gpuback --------------------------------------------------------------------------

def hand_built(dtype=torch.float64) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 5), nn.Tanh(),
        nn.Linear(5, 4, bias=False), nn.LeakyReLU(0.01),
        nn.Linear(4, 4),  # followed by a Linear: identity
        nn.Linear(4, 3), nn.Softplus(),
        nn.Linear(3, 4), nn.GELU(approximate="tanh"),
        nn.Linear(4, 3), nn.ReLU(),
        nn.Linear(3, 3), nn.SiLU(),
        nn.Linear(3, 2), nn.Sigmoid(),
    ).to(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_from_torch_of_a_hand_built_sequential_has_the_same_outputs(backend, dtype, rng):
    model = hand_built(TORCH_DTYPE[dtype])
    net = from_torch(model, backend=backend)
    assert net.backend == backend and net.dtype == dtype
    spec = net.spec
    assert [g.get("activation") for g in spec["groups"]] == [
        None, "tanh", "leaky_relu", "identity", "softplus", "gelu", "relu", "silu", "sigmoid"]
    assert [g["size"] for g in spec["groups"]] == [3, 5, 4, 4, 3, 4, 3, 3, 2]
    assert spec["loss"] == "binary_cross_entropy"  # the loss paired with a sigmoid output
    np.testing.assert_array_equal(net.parameters()["h2"], np.zeros(4))  # no bias: zero
    X = rng.normal(size=(BATCH, 3))
    assert rel_error(net.forward(X), outputs(model, X, dtype)) < tol(dtype)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_converts_both_ways_with_its_gain_and_shift(backend, affine, rng):
    """Linear -> nn.LayerNorm -> activation is a layer-normalised group: the LayerNorm's
    weight and bias are the group's gain and shift (one and zero without affine)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7, elementwise_affine=affine),
                          nn.SiLU(), nn.Linear(7, 3), nn.LayerNorm(3), nn.Softmax(dim=-1))
    model = model.double()
    with torch.no_grad():
        for norm in (model[1], model[4]):
            if norm.weight is not None:
                norm.weight.normal_()
                norm.bias.normal_()
    net = from_torch(model, backend=backend)
    assert [g.get("norm") for g in net.spec["groups"]] == [None, "layer", "layer"]
    params = net.parameters()
    if not affine:
        np.testing.assert_array_equal(params["h1.gain"], np.ones(7))
        np.testing.assert_array_equal(params["h1.shift"], np.zeros(7))
    else:
        np.testing.assert_array_equal(params["h1.gain"], host(model[1].weight))
    X = rng.normal(size=(BATCH, 5))
    assert rel_error(net.forward(X), outputs(model, X, "float64")) < tol("float64")
    back = to_torch(net)
    assert [type(m) for m in back] == [nn.Linear, nn.LayerNorm, nn.SiLU, nn.Linear,
                                       nn.LayerNorm, nn.Softmax]
    assert rel_error(outputs(back, X, "float64"), net.forward(X)) < tol("float64")
    T = rng.dirichlet(np.ones(3), size=BATCH)
    loss, grads = net.loss_and_grads(X, T)
    value = torch_loss("cross_entropy", back(on_module(back, X)), T)
    value.backward()
    assert abs(float(value.detach()) - loss) <= tol("float64") * abs(loss)
    for name, tensor in (("h1.gain", back[1].weight), ("h1.shift", back[1].bias),
                         ("y.gain", back[4].weight), ("x->h1", back[0].weight),
                         ("h1", back[0].bias)):
        assert rel_error(host(tensor.grad), grads[name]) < tol("float64"), name


def test_from_torch_takes_the_dtype_asked_for(rng):
    model = hand_built(torch.float64)
    net = from_torch(model, backend="numpy", dtype="float32")
    assert net.dtype == "float32"
    X = rng.normal(size=(BATCH, 3))
    assert rel_error(net.forward(X), outputs(model, X, "float64")) < tol("float32")


def test_to_torch_of_from_torch_gives_the_module_back(backend, rng):
    model = hand_built()
    again = to_torch(from_torch(model, backend=backend))
    assert type(again) is nn.Sequential
    linears = [m for m in model if isinstance(m, nn.Linear)]
    linears_again = [m for m in again if isinstance(m, nn.Linear)]
    assert len(again) == 2 * len(linears)  # an nn.Identity after the Linear that had none
    assert type(again[5]) is nn.Identity
    for a, b in zip(linears, linears_again, strict=True):
        np.testing.assert_array_equal(host(b.weight), host(a.weight))
        expected_bias = np.zeros(a.out_features) if a.bias is None else host(a.bias)
        np.testing.assert_array_equal(host(b.bias), expected_bias)
    X = rng.normal(size=(BATCH, 3))
    assert rel_error(outputs(again, X, "float64"), outputs(model, X, "float64")) \
        < tol("float64")


@pytest.mark.parametrize("spec", [
    pytest.param(chain_spec([3, 4, 2], "relu", "sum_of_squares", output_activation="sigmoid"),
                 id="mlp-sigmoid-sse"),
    *[pytest.param(spec, id=f"dag-{i}") for i, spec in enumerate(dag_specs())]])
def test_from_torch_of_to_torch_gives_the_network_back(backend, spec, rng):
    net = network(spec, backend)
    again = from_torch(to_torch(net), backend=backend)
    if isinstance(to_torch(net), GroupNetwork):
        assert again.spec == net.spec
    assert again.spec["loss"] == spec["loss"]  # kept, even where not the canonical pairing
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(again.parameters()[name], value)
    X = rng.normal(size=(BATCH, net.plan.n_in))
    assert rel_error(again.forward(X), net.forward(X)) < tol("float64")


@pytest.mark.parametrize(("last", "expected"), [
    ([], "sum_of_squares"), ([nn.Identity()], "sum_of_squares"), ([nn.Tanh()], "sum_of_squares"),
    ([nn.Sigmoid()], "binary_cross_entropy"), ([nn.Softmax(dim=1)], "cross_entropy"),
    ([Exp()], "poisson")])
def test_the_default_loss_follows_the_output_activation(last, expected):
    net = from_torch(nn.Sequential(nn.Linear(2, 3), *last).double(), backend="numpy")
    assert net.spec["loss"] == expected


def test_an_explicit_loss_is_used_and_checked():
    model = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid()).double()
    assert from_torch(model, backend="numpy", loss="sum_of_squares").spec["loss"] \
        == "sum_of_squares"
    with pytest.raises(ValueError, match="cross_entropy"):
        from_torch(model, backend="numpy", loss="cross_entropy")  # needs a softmax output
    with pytest.raises(ValueError, match="loss: expected one of"):
        from_torch(model, backend="numpy", loss="hinge")


def test_a_lone_linear_is_a_network():
    linear = nn.Linear(3, 2).double()
    net = from_torch(linear, backend="numpy")
    X = np.arange(6.0).reshape(2, 3)
    assert rel_error(net.forward(X), outputs(linear, X, "float64")) < tol("float64")


@pytest.mark.parametrize(("modules", "message"), [
    ([nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)], r"module\[1\]: BatchNorm1d"),
    ([nn.Linear(2, 3), nn.ReLU(), nn.Dropout(0.5)], r"module\[2\]: nn.Dropout after the last "
                                                    "layer"),
    ([nn.Dropout(0.5), nn.Linear(2, 3)], r"module\[0\]: nn.Dropout is supported only after"),
    ([nn.Linear(2, 3), nn.Dropout(0.5), nn.Dropout(0.5), nn.Linear(3, 2)],
     r"module\[2\]: nn.Dropout is supported only after a layer .*, once"),
    ([nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 2)], r"module\[1\]: nn.GELU\(approximate='none'"),
    ([nn.Linear(2, 3), nn.LeakyReLU(0.2)], r"module\[1\]: nn.LeakyReLU\(negative_slope=0.2"),
    ([nn.Linear(2, 3), nn.Softplus(beta=2.0)], r"module\[1\]: nn.Softplus\(beta=2.0"),
    ([nn.Linear(2, 3), nn.Softmax(dim=0)], r"module\[1\]: nn.Softmax\(dim=0"),
    ([nn.Linear(2, 3), nn.Softmax(dim=1), nn.Linear(3, 2)], r"module\[1\]: nn.Softmax is "
                                                            "supported only as the last"),
    ([nn.ReLU(), nn.Linear(2, 3)], r"module\[0\]: ReLU follows no nn.Linear"),
    ([nn.Linear(2, 3), nn.ReLU(), nn.Tanh()], r"module\[2\]: Tanh follows another activation"),
    ([nn.Linear(2, 3), nn.Conv1d(1, 1, 1)], r"module\[1\]: Conv1d is not supported"),
    ([nn.Linear(2, 3), type("MyReLU", (nn.ReLU,), {})()], r"module\[1\]: MyReLU"),
    ([nn.LayerNorm(2), nn.Linear(2, 3)], r"module\[0\]: nn.LayerNorm is supported only "
                                         "straight after an nn.Linear"),
    ([nn.Linear(2, 3), nn.ReLU(), nn.LayerNorm(3)], r"module\[2\]: nn.LayerNorm is supported"),
    ([nn.Linear(2, 3), nn.LayerNorm(3), nn.LayerNorm(3)], r"module\[2\]: nn.LayerNorm is"),
    ([nn.Linear(2, 3), nn.LayerNorm(3, eps=1e-6)], r"module\[1\]: nn.LayerNorm\(eps=1e-06\)"),
    ([nn.Linear(2, 6), nn.LayerNorm((2, 3))], r"module\[1\]: nn.LayerNorm\(2, 3\) must "
                                              "normalise the 6 features"),
])
def test_unsupported_modules_are_named_with_their_position(modules, message):
    with pytest.raises(TypeError, match=message):
        from_torch(nn.Sequential(*modules).double(), backend="numpy")


def test_other_bad_modules_are_refused():
    with pytest.raises(TypeError, match=r"module: expected an nn\.Sequential"):
        from_torch(nn.ReLU(), backend="numpy")
    with pytest.raises(ValueError, match=r"empty nn\.Sequential"):
        from_torch(nn.Sequential(), backend="numpy")
    with pytest.raises(ValueError, match=r"module\[2\]: nn.Linear takes 4 features, but the "
                                         "layer before it gives 3"):
        from_torch(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(4, 2)).double(),
                   backend="numpy")
    with pytest.raises(ValueError, match="all float32 or all float64"):
        from_torch(nn.Sequential(nn.Linear(2, 3)).half(), backend="numpy")


# --- torch is optional -------------------------------------------------------------------------

def test_without_torch_each_function_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    net = network(gpuback.mlp_spec([2, 2]), "numpy")
    for call in (lambda: to_torch(net), lambda: from_torch(object())):
        with pytest.raises(ImportError, match=f"needs PyTorch.*{re.escape(INSTALL_HINT)}"):
            call()


def test_importing_gpuback_interop_does_not_import_torch():
    code = "import sys, gpuback, gpuback.interop; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
