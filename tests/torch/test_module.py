"""gpuback.torch.Module: a gpuback network inside PyTorch, on every backend.

The reference for the outputs is ``net.forward``; for the gradients (of every parameter and
of the input) PyTorch's autograd through ``to_torch(net)``'s ``GroupNetwork``, the same
network written with PyTorch's ops, independent of gpuback's backprop.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.compile_graphs import compiled_graphs
from helpers.networks import network
from helpers.random_specs import chain_spec, random_dag_spec, random_residual_spec
from helpers.tolerances import TOLERANCES, rel_error

import gpuback

torch = pytest.importorskip("torch", reason="gpuback.torch needs PyTorch "
                                            "(pip install 'gpuback[torch]')")
nn = torch.nn

from gpuback.interop import to_torch  # noqa: E402  (needs torch)
from gpuback.interop.modules import GroupNetwork  # noqa: E402
from gpuback.torch import Module  # noqa: E402

TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}
BATCH = 5


def no_dropout(spec: dict) -> dict:
    for g in spec["groups"]:
        g.pop("dropout", None)
    return spec


SPECS = {
    "mlp-softmax": chain_spec([4, 6, 3], "tanh", "cross_entropy"),
    "mlp-sigmoid": chain_spec([3, 5, 2], "relu", "binary_cross_entropy"),
    "sparse-chain": chain_spec([5, 5, 3, 3], "softplus", "sum_of_squares", kind="sparse",
                               output_activation="gelu", seed=1),
    "dag": random_dag_spec(2, n_hidden=3, sizes=(1, 3, 5)),
    "residual": no_dropout(random_residual_spec(0, n_hidden=3)),
}


def probe_loss(y):
    """A loss that weighs every output differently: sum(y * probe)."""
    probe = torch.linspace(-1.0, 2.0, y.numel(), dtype=y.dtype).reshape(y.shape)
    return (y * probe.to(y.device)).sum()


def gradients(module, X: np.ndarray, dtype: str):
    """The outputs, the input's gradient and every gpuback-named parameter's gradient of
    ``probe_loss`` through ``module``."""
    module.zero_grad()
    x = torch.tensor(X, dtype=TORCH_DTYPE[dtype], requires_grad=True)
    y = module(x)
    probe_loss(y).backward()
    named = module.gpuback_parameters()
    return y.detach().numpy(), x.grad.numpy(), {n: p.grad.numpy() for n, p in named.items()}


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_outputs_and_gradients_match_pytorchs_autograd(backend, name, dtype) -> None:
    net = network(SPECS[name], backend, dtype)
    X = np.random.default_rng(3).normal(size=(BATCH, net.plan.n_in))
    twin = GroupNetwork(net.spec, {k: torch.tensor(v) for k, v in net.parameters().items()})
    y, dx, grads = gradients(Module(net), X, dtype)
    y_ref, dx_ref, grads_ref = gradients(twin, X, dtype)
    assert rel_error(y, net.forward(X)) <= TOLERANCES[dtype]["invariance"]
    assert rel_error(y, y_ref) <= TOLERANCES[dtype]["independent_forward"]
    assert rel_error(dx, dx_ref) <= TOLERANCES[dtype]["independent_grad"]
    assert grads.keys() == grads_ref.keys() == net.parameters().keys()
    for key in grads:
        assert rel_error(grads[key], grads_ref[key]) <= TOLERANCES[dtype]["independent_grad"], key


def test_gradcheck_in_float64() -> None:
    net = network(SPECS["dag"], "cpu")
    module = Module(net)
    x = torch.randn(3, net.plan.n_in, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *p: module(x), (x, *module.parameters()))


def test_parameters_are_the_networks_buffers(backend) -> None:
    net = network(chain_spec([3, 4, 2], "tanh", "sum_of_squares"), backend)
    module = Module(net)
    named = module.gpuback_parameters()
    with torch.no_grad():
        named["x->h1"].mul_(2.0)
    before = {k: v.copy() for k, v in net.parameters().items()}
    np.testing.assert_array_equal(before["x->h1"], named["x->h1"].detach().numpy())
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    probe_loss(module(torch.randn(4, 3, dtype=torch.float64))).backward()
    optimizer.step()
    after = net.parameters()
    for key, param in named.items():
        np.testing.assert_array_equal(after[key], param.detach().numpy())
        assert not np.array_equal(after[key], before[key]), key


def test_state_dicts_move_between_module_and_group_network() -> None:
    net = network(SPECS["residual"], "cpu")
    other = network(SPECS["residual"], "cpu", seed=5)
    twin = to_torch(net)
    module = Module(other)
    module.load_state_dict(twin.state_dict(), strict=False)  # the twin also has edge buffers
    for key, value in net.parameters().items():
        np.testing.assert_array_equal(other.parameters()[key], value)


def test_two_forwards_then_one_backward() -> None:
    """The first forward's values survive the second's: the gradient of the sum is the sum
    of the gradients."""
    net = network(SPECS["dag"], "cpu")
    module = Module(net)
    rng = np.random.default_rng(0)
    X1, X2 = rng.normal(size=(4, net.plan.n_in)), rng.normal(size=(3, net.plan.n_in))
    separate = [gradients(module, X, "float64")[2] for X in (X1, X2)]
    module.zero_grad()
    loss = probe_loss(module(torch.tensor(X1))) + probe_loss(module(torch.tensor(X2)))
    loss.backward()
    for key, param in module.gpuback_parameters().items():
        expected = separate[0][key] + separate[1][key]
        assert rel_error(param.grad.numpy(), expected) <= TOLERANCES["float64"]["invariance"]


def test_a_retained_graph_after_another_forward_is_refused() -> None:
    module = Module(network(SPECS["mlp-softmax"], "cpu"))
    x = torch.randn(2, 4, dtype=torch.float64)
    loss = probe_loss(module(x))
    loss.backward(retain_graph=True)
    first = [p.grad.clone() for p in module.parameters()]
    loss.backward(retain_graph=True)  # no forward between: the same gradients again
    for a, p in zip(first, module.parameters(), strict=True):
        assert torch.allclose(p.grad, 2 * a, rtol=1e-12, atol=0)
    module(x)
    with pytest.raises(RuntimeError, match="run the forward pass again"):
        loss.backward()


def test_dropout_draws_gpubacks_masks_in_training_mode_only() -> None:
    spec = chain_spec([4, 8, 3], "relu", "cross_entropy")
    spec["groups"][1]["dropout"] = 0.5
    net = network(spec, "cpu")
    module = Module(net)
    X = np.random.default_rng(1).normal(size=(6, 4))
    for step in range(2):
        y = module(torch.tensor(X)).detach().numpy()
        expected = net.trace(X, training=True, step=step).z["y"]
        assert rel_error(y, expected) <= TOLERANCES["float64"]["invariance"]
    assert module.steps == 2
    module.eval()
    np.testing.assert_allclose(module(torch.tensor(X)).detach().numpy(), net.forward(X),
                               rtol=1e-14, atol=0)
    assert module.steps == 2


def test_trains_inside_a_pytorch_model_with_a_scheduler_and_clipping() -> None:
    net = network(chain_spec([6, 8, 3], "tanh", "sum_of_squares"), "cpu")
    model = nn.Sequential(nn.Linear(5, 6, dtype=torch.float64), nn.ReLU(), Module(net))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    rng = np.random.default_rng(0)
    X, T = torch.tensor(rng.normal(size=(32, 5))), torch.tensor(rng.normal(size=(32, 3)))
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = ((model(X) - T) ** 2).mean()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert model[0].weight.grad is not None  # the gradient reached the layer before


def test_low_precision_inputs_are_cast_to_the_networks_dtype() -> None:
    net = network(chain_spec([3, 4, 2], "tanh", "sum_of_squares"), "cpu", "float32")
    module = Module(net)
    x = torch.randn(5, 3).to(torch.bfloat16).requires_grad_(True)
    y = module(x)
    assert y.dtype == torch.float32
    np.testing.assert_array_equal(y.detach().numpy(), net.forward(x.detach().float().numpy()))
    y.sum().backward()
    assert x.grad.dtype == torch.bfloat16


def test_a_mixed_precision_network_sees_pytorchs_writes() -> None:
    """Below fp32 the products read a rounded copy of the parameters; a PyTorch write of the
    master is seen by the next forward pass."""
    net = network(chain_spec([3, 4, 2], "tanh", "sum_of_squares"), "cpu", "float32")
    net16 = gpuback.Network(net.spec, backend="cpu", dtype="float32", precision="bf16")
    module = Module(net16)
    X = np.random.default_rng(0).normal(size=(4, 3))
    module(torch.tensor(X, dtype=torch.float32))
    module.load_state_dict(Module(net).state_dict())
    y = module(torch.tensor(X, dtype=torch.float32)).detach().numpy()
    net16.set_parameters(net.parameters())
    np.testing.assert_array_equal(y, net16.forward(X))


def test_inputs_of_shape_dots_n_in() -> None:
    net = network(SPECS["mlp-sigmoid"], "cpu")
    X = np.random.default_rng(0).normal(size=(2, 3, 3))
    y = Module(net)(torch.tensor(X)).detach().numpy()
    assert y.shape == (2, 3, 2)
    np.testing.assert_allclose(y.reshape(6, 2), net.forward(X.reshape(6, 3)), rtol=1e-14)


def test_under_torch_compile_with_a_graph_break() -> None:
    net = network(SPECS["residual"], "cpu")
    model = nn.Sequential(nn.Linear(4, net.plan.n_in, dtype=torch.float64), Module(net),
                          nn.Tanh())
    x = torch.randn(3, 4, dtype=torch.float64)
    eager = model(x).detach()
    compiled, graphs = compiled_graphs(model)
    assert rel_error(compiled(x).detach().numpy(), eager.numpy()) <= \
        TOLERANCES["float64"]["invariance"]
    assert len(graphs) >= 2  # before the Module, and after it


def test_bad_use_is_refused() -> None:
    net = network(SPECS["mlp-softmax"], "cpu")
    module = Module(net)
    with pytest.raises(TypeError, match=r"gpuback\.Network"):
        Module(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        module(torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="float64"):
        module(torch.zeros(2, 4, dtype=torch.float32))
    with pytest.raises(TypeError, match="floating-point"):
        module(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least one sample"):
        module(torch.zeros(0, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="build the network"):
        module.float()
    assert module.to("cpu") is module and module.double() is module
