"""gpuback.torch.SparseLinear on CPU tensors: gradients, the dense masked reference, conversions,
state dicts, mixed precision, torch.compile and bad input.

The reference is written here with PyTorch's own ops: a dense weight that is zero off the
edges, applied as ``x @ W.T + b``, differentiated by PyTorch's autograd (the gradient of an
edge weight is the gradient of its dense entry).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.compile_graphs import compiled_graphs
from helpers.tolerances import TOLERANCES, rel_error

from gpuback.precision import round_to

torch = pytest.importorskip("torch", reason="gpuback.torch needs PyTorch "
                                            "(pip install 'gpuback[torch]')")
nn = torch.nn

from gpuback.torch import SparseLinear  # noqa: E402  (needs torch)

TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}
# (in, out, density, leading shape of the input): odd sizes, batch 1, (..., in) inputs
SHAPES = [(17, 3, 0.3, (5,)), (1, 1, 1.0, (1,)), (64, 33, 0.05, (2, 7)), (3, 257, 0.5, (4,))]


def reference(layer, x):
    """``x @ W.T + b`` with W dense and zero off the layer's edges: (output, dW entries on the
    edges, db, dx) for the loss sum(output * probe), by PyTorch's autograd."""
    dense = torch.zeros(layer.out_features, layer.in_features, dtype=layer.weight.dtype)
    dense[layer.edges[1], layer.edges[0]] = layer.weight.detach()
    dense.requires_grad_(True)
    bias = None if layer.bias is None else layer.bias.detach().clone().requires_grad_(True)
    x = x.detach().clone().requires_grad_(True)
    out = x @ dense.T + (0 if bias is None else bias)
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * probe).sum().backward()
    return (out.detach(), dense.grad[layer.edges[1], layer.edges[0]],
            None if bias is None else bias.grad, x.grad)


def gpuback_pass(layer, x):
    x = x.detach().clone().requires_grad_(True)
    layer.zero_grad()
    out = layer(x)
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * probe).sum().backward()
    return (out.detach(), layer.weight.grad, None if layer.bias is None else layer.bias.grad,
            x.grad)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("bias", [True, False])
def test_matches_the_dense_masked_reference(dtype, shape, bias) -> None:
    n_in, n_out, density, lead = shape
    layer = SparseLinear(n_in, n_out, density=density, bias=bias, seed=3,
                         dtype=TORCH_DTYPE[dtype])
    x = torch.randn(*lead, n_in, dtype=TORCH_DTYPE[dtype],
                    generator=torch.Generator().manual_seed(1))
    ours, theirs = gpuback_pass(layer, x), reference(layer, x)
    assert ours[0].shape == (*lead, n_out)
    for name, a, b in zip(("output", "dW", "db", "dx"), ours, theirs, strict=True):
        if b is None:
            assert a is None, name
            continue
        tol = TOLERANCES[dtype]["independent_forward" if name == "output" else
                                "independent_grad"]
        assert rel_error(a.numpy(), b.numpy()) <= tol, name


def _model_pass(model, x):
    """The outputs and every parameter's gradient of sum(model(x)^2)."""
    model.zero_grad()
    out = model(x)
    (out**2).sum().backward()
    return [out.detach()] + [p.grad.clone() for p in model.parameters()]


def test_gradcheck_in_float64() -> None:
    layer = SparseLinear(11, 6, density=0.4, seed=2, dtype=torch.float64)
    x = torch.randn(2, 3, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: layer(x), (x, layer.weight, layer.bias))


def test_chained_layers_take_each_others_transposed_outputs() -> None:
    """A SparseLinear's output is a transposed view of its feature-major result; the next one
    reads it as it is: gradients through two layers and a ReLU match PyTorch's."""
    first = SparseLinear(9, 8, density=0.5, seed=0, dtype=torch.float64)
    second = SparseLinear(8, 4, density=0.5, seed=1, dtype=torch.float64)
    x = torch.randn(6, 9, dtype=torch.float64, requires_grad=True)
    assert not first(x).is_contiguous()
    assert torch.autograd.gradcheck(lambda x: second(torch.relu(first(x))), (x,))


def test_cpu_results_are_bitwise_reproducible() -> None:
    layer = SparseLinear(40, 30, density=0.2, seed=4)
    x = torch.randn(16, 40)
    first, second = gpuback_pass(layer, x), gpuback_pass(layer, x)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_random_edges_are_distinct_in_range_and_the_same_for_a_seed() -> None:
    layer = SparseLinear(30, 20, density=0.1, seed=7)
    assert layer.n_edges == 60
    src, dst = layer.edges.numpy()
    assert src.min() >= 0 and src.max() < 30 and dst.min() >= 0 and dst.max() < 20
    assert len(set(zip(src.tolist(), dst.tolist(), strict=True))) == 60
    again = SparseLinear(30, 20, density=0.1, seed=7)
    assert torch.equal(layer.edges, again.edges) and torch.equal(layer.weight, again.weight)
    assert not torch.equal(layer.edges, SparseLinear(30, 20, density=0.1, seed=8).edges)


def test_initial_values_follow_nn_linear_with_the_mean_fan_in() -> None:
    layer = SparseLinear(100, 50, density=0.04, seed=0, dtype=torch.float64)
    bound = 1 / np.sqrt(layer.n_edges / 50)
    for values in (layer.weight, layer.bias):
        assert values.abs().max() <= bound
        assert values.abs().max() > 0.8 * bound  # spread over the interval, not concentrated


def test_explicit_edges_in_any_order() -> None:
    edges = [[4, 0, 2, 4], [1, 1, 0, 0]]  # (input, output) pairs, unsorted
    layer = SparseLinear(5, 2, edges=edges, dtype=torch.float64)
    assert layer.edges.tolist() == edges
    x = torch.randn(3, 5, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        layer.bias.zero_()
    expected = torch.stack([3 * x[:, 2] + 4 * x[:, 4], x[:, 4] + 2 * x[:, 0]], dim=1)
    assert torch.allclose(layer(x), expected, rtol=0, atol=1e-14)


def test_from_dense_by_magnitude_mask_and_nonzeros() -> None:
    linear = nn.Linear(6, 4, dtype=torch.float64)
    kept = SparseLinear.from_dense(linear, density=0.25)
    assert kept.n_edges == 6
    dense = linear.weight.detach().abs()
    smallest_kept = dense[kept.edges[1], kept.edges[0]].min()
    dropped = torch.ones_like(dense, dtype=torch.bool)
    dropped[kept.edges[1], kept.edges[0]] = False
    assert dense[dropped].max() <= smallest_kept
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[1, 2] = mask[3, 0] = True
    masked = SparseLinear.from_dense(linear, mask=mask)
    assert sorted(zip(*masked.edges.tolist(), strict=True)) == [(0, 3), (2, 1)]
    assert torch.equal(masked.bias, linear.bias.detach())
    with torch.no_grad():
        linear.weight.mul_(mask)
    x = torch.randn(5, 6, dtype=torch.float64)
    nonzeros = SparseLinear.from_dense(linear)
    assert nonzeros.n_edges == 2
    assert torch.allclose(nonzeros(x), linear(x), rtol=0, atol=1e-14)
    assert torch.allclose(nonzeros.to_dense()(x), linear(x), rtol=0, atol=1e-14)


def test_state_dict_round_trip_moves_the_edges() -> None:
    source = SparseLinear(12, 9, density=0.25, seed=1, dtype=torch.float64)
    target = SparseLinear(12, 9, density=0.25, seed=2, dtype=torch.float64)
    x = torch.randn(4, 12, dtype=torch.float64)
    target(x)  # its own edges' index built and cached
    target.load_state_dict(source.state_dict())
    assert torch.equal(target.edges, source.edges)
    assert torch.equal(target(x), source(x))


def test_mixed_precision_rounds_the_operands_and_sums_in_float32() -> None:
    layer = SparseLinear(24, 10, density=0.3, seed=5)
    x = torch.randn(8, 24)
    dense = torch.zeros(10, 24)
    dense[layer.edges[1], layer.edges[0]] = layer.weight.detach()
    expected = torch.from_numpy(round_to(x.numpy(), "bf16")) @ \
        torch.from_numpy(round_to(dense.numpy(), "bf16")).T + layer.bias.detach()
    for out in (layer(x.to(torch.bfloat16)), _autocast(layer, x)):
        assert out.dtype == torch.bfloat16
        # one rounding of a float32 sum of rounded products: within bf16's unit roundoff
        error = (out.detach().float() - expected).abs()
        assert (error <= 2.0**-8 * expected.abs() + 1e-6).all()
    x16 = x.to(torch.bfloat16).requires_grad_(True)
    layer(x16).float().sum().backward()
    assert x16.grad.dtype == torch.bfloat16 and layer.weight.grad.dtype == torch.float32


def _autocast(layer, x):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return layer(x)


def test_an_empty_batch_gives_an_empty_output() -> None:
    layer = SparseLinear(5, 3, density=0.5)
    assert layer(torch.zeros(0, 5)).shape == (0, 3)


def test_under_torch_compile_with_a_graph_break() -> None:
    layer = SparseLinear(10, 6, density=0.5, seed=0, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(8, 10, dtype=torch.float64), nn.ReLU(), layer, nn.Tanh(),
                          nn.Linear(6, 2, dtype=torch.float64))
    x = torch.randn(4, 8, dtype=torch.float64)
    eager = _model_pass(model, x)
    compiled, graphs = compiled_graphs(model)
    for a, b in zip(_model_pass(compiled, x), eager, strict=True):
        assert rel_error(a.numpy(), b.numpy()) <= TOLERANCES["float64"]["invariance"]
    assert len(graphs) >= 2  # the layers before the SparseLinear, and those after it


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({}, ValueError, "exactly one of density"),
    ({"density": 0.5, "edges": [[0], [0]]}, ValueError, "exactly one of density"),
    ({"density": 0.0}, ValueError, "density"),
    ({"edges": [[0, 4], [0, 1]]}, ValueError, "input feature 4"),
    ({"edges": [[0, 1], [0, 3]]}, ValueError, "output feature 3"),
    ({"edges": [[1, 1], [2, 2]]}, ValueError, "appears 2 times"),
    ({"edges": [[0.5], [1]]}, TypeError, "integers"),
    ({"edges": [[0, 1, 2]]}, ValueError, r"shape \(2, E\)"),
    ({"edges": np.zeros((2, 0), dtype=np.int64)}, ValueError, "at least one edge"),
    ({"density": 0.5, "dtype": torch.float16}, TypeError, "dtype"),
    ({"density": 0.5, "bias": "yes"}, TypeError, "bias"),
])
def test_bad_construction_is_refused(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        SparseLinear(4, 3, **kwargs)


def test_bad_inputs_are_refused() -> None:
    layer = SparseLinear(4, 3, density=0.5)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        layer(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="float32"):
        layer(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        layer(np.zeros((2, 4), dtype=np.float32))
    wide = SparseLinear(4, 3, density=0.5, dtype=torch.float64)
    with pytest.raises(TypeError, match="float32 layer"):
        wide(torch.zeros(2, 4, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="mask"):
        SparseLinear.from_dense(nn.Linear(4, 3), mask=torch.ones(3, 3))
    with pytest.raises(TypeError, match=r"float32 or torch\.float64, got torch\.bfloat16"):
        SparseLinear.from_dense(nn.Linear(4, 3, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="no weight is kept"):
        SparseLinear.from_dense(nn.Linear(4, 3), mask=torch.zeros(3, 4))
