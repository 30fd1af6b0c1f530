"""gpuback.torch on the cuda backend: CUDA tensors' memory handed to the CUDA kernels.

Under the Numba simulator there are no CUDA tensors: a stand-in presents host memory through
``__cuda_array_interface__`` (version 2, no stream: what a CUDA tensor of PyTorch presents),
and the same dispatch (``gpuback.torch.tensors.backend_array``, then
``gpuback.torch.sparse_passes`` on the cuda backend) runs the simulated kernels on that memory
in place; the results are held to the cpu backend's. The tests with real CUDA tensors are
marked ``gpu``.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.backend_params import backend_param
from helpers.tolerances import TOLERANCES, rel_error

from gpuback.backends import get_backend
from gpuback.backends.protocol import SparseIndex
from gpuback.core.spec import random_edges

torch = pytest.importorskip("torch", reason="gpuback.torch needs PyTorch "
                                            "(pip install 'gpuback[torch]')")

from gpuback.torch import Module, SparseLinear, sparse_passes  # noqa: E402  (needs torch)
from gpuback.torch.tensors import backend_array  # noqa: E402

N_IN, N_OUT, BATCH = 7, 5, 3


class CudaTensorStandIn:
    """Memory that presents itself as a CUDA tensor does; under the simulator, device
    memory is host memory, so it is a NumPy array's."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.ascontiguousarray(array)

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.array.shape, "typestr": self.array.dtype.str,
                "data": (self.array.ctypes.data, False), "strides": None, "version": 2}


def block_pass(backend: str, arrays: dict, index: SparseIndex, deterministic: bool) -> None:
    """A SparseLinear's forward and backward, as its autograd function runs them, on backend
    arrays made by ``backend_array`` from ``arrays`` (stand-ins or NumPy arrays)."""
    ops = get_backend(backend)
    view = {k: backend_array(v) if backend == "cuda" else v for k, v in arrays.items()}
    prepared = ops.prepare_index(index, deterministic)
    sparse_passes.forward(ops, view["w"], prepared, view["b"], view["z"], view["out"])
    ops.bias_grad(view["delta"], view["db"])
    sparse_passes.backward(ops, view["w"], prepared, view["delta"], view["z"], view["dw"],
                           view["dz"])


@pytest.mark.parametrize("deterministic", [True, False], ids=["gather", "scatter-add"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", [backend_param("cuda")], indirect=True)
def test_the_cuda_dispatch_runs_on_the_tensors_memory(backend, simulated, dtype,
                                                      deterministic) -> None:
    if not simulated:
        pytest.skip("the stand-ins are host memory: simulator only (the gpu tests below "
                    "run real CUDA tensors)")
    rng = np.random.default_rng(0)
    index = SparseIndex.from_edges(random_edges(N_IN, N_OUT, 0.4, rng), N_IN, N_OUT)
    host = {"w": rng.normal(size=index.n_edges), "b": rng.normal(size=N_OUT),
            "z": rng.normal(size=(N_IN, BATCH)), "delta": rng.normal(size=(N_OUT, BATCH)),
            "out": np.zeros((N_OUT, BATCH)), "db": np.zeros(N_OUT),
            "dw": np.zeros(index.n_edges), "dz": np.zeros((N_IN, BATCH))}
    host = {k: v.astype(dtype) for k, v in host.items()}
    stand_ins = {k: CudaTensorStandIn(v.copy()) for k, v in host.items()}
    assert np.shares_memory(backend_array(stand_ins["out"]), stand_ins["out"].array)
    block_pass("cuda", stand_ins, index, deterministic)
    block_pass("cpu", host, index, True)
    for key in ("out", "db", "dw", "dz"):  # written in place, into the stand-ins' memory
        assert np.any(stand_ins[key].array != 0), key
        assert rel_error(stand_ins[key].array, host[key]) <= TOLERANCES[dtype]["backend"], key


def test_a_module_over_a_simulated_cuda_network_runs_its_kernels() -> None:
    """The cuda backend's network inside PyTorch (its parameters host memory under the
    simulator): forward and every gradient equal the cpu backend's network's."""
    import gpuback

    if not get_backend("cuda").status().simulated:
        pytest.skip("a real GPU: the gpu test below covers the cuda backend")
    spec = gpuback.sparse_mlp_spec([4, 5, 3], density=0.5, seed=1)
    modules = [Module(gpuback.Network(spec, backend=b, seed=2)) for b in ("cuda", "cpu")]
    x = torch.randn(3, 4, dtype=torch.float64)
    results = []
    for module in modules:
        xi = x.clone().requires_grad_(True)
        (module(xi) * torch.arange(9.0, dtype=torch.float64).reshape(3, 3)).sum().backward()
        results.append([module(x).detach(), xi.grad] + [p.grad for p in module.parameters()])
    for a, b in zip(*results, strict=True):
        assert rel_error(a.numpy(), b.numpy()) <= TOLERANCES["float64"]["backend"]


@pytest.mark.gpu
@pytest.mark.parametrize("deterministic", [True, False], ids=["gather", "scatter-add"])
def test_sparse_linear_on_cuda_tensors_matches_the_cpu(deterministic) -> None:
    layer = SparseLinear(300, 200, density=0.05, seed=0, dtype=torch.float64,
                         deterministic=deterministic)
    x = torch.randn(64, 300, dtype=torch.float64)
    results = []
    for device in ("cpu", "cuda"):
        layer.to(device)
        layer.zero_grad()
        xi = x.to(device).requires_grad_(True)
        out = layer(xi)
        (out * out).sum().backward()
        results.append([t.detach().cpu() for t in (out, xi.grad, layer.weight.grad,
                                                   layer.bias.grad)])
    for a, b in zip(*results, strict=True):
        assert rel_error(a.numpy(), b.numpy()) <= TOLERANCES["float64"]["backend"]


@pytest.mark.gpu
def test_module_of_a_cuda_network_holds_cuda_parameters() -> None:
    import gpuback

    spec = gpuback.resmlp_spec(8, 16, 2, 4, dropout=0.0)
    cuda_module = Module(gpuback.Network(spec, backend="cuda", seed=0))
    cpu_module = Module(gpuback.Network(spec, backend="cpu", seed=0))
    assert next(cuda_module.parameters()).device.type == "cuda"
    x = torch.randn(32, 8, dtype=torch.float64)
    grads = []
    for module, device in ((cuda_module, "cuda"), (cpu_module, "cpu")):
        (module(x.to(device)) ** 2).sum().backward()
        grads.append([p.grad.detach().cpu() for p in module.parameters()])
    for a, b in zip(*grads, strict=True):
        assert rel_error(a.numpy(), b.numpy()) <= TOLERANCES["float64"]["backend"]
