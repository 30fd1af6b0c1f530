"""The compiling peers of ``gpuback bench`` (JAX, torch.compile) train the network the other
contenders train: the same loss and gradients as the PyTorch model from the same weights,
and the same SGD step; a peer that cannot run here is reported and left out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpuback.benchmark import suite as bench
from gpuback.benchmark import torch_peers as bench_torch
from gpuback.cli.app import main
from gpuback.core.spec import mlp_spec, resmlp_spec, sparse_mlp_spec

SPECS = {"mlp": mlp_spec([12, 9, 7, 4]),
         "resmlp": resmlp_spec(12, 8, 2, 4, dropout=0.0)}


def _torch_model(torch, spec, params):
    """The torch.nn contender's network with ``params`` (NumPy, in its parameters' order)."""
    model = bench_torch.dense_model(spec)
    with torch.no_grad():
        for p, value in zip(model.parameters(), params, strict=True):
            p.copy_(torch.from_numpy(value))
    return model


@pytest.mark.parametrize("name", SPECS)
def test_jax_network_is_the_pytorch_network_in_loss_gradients_and_sgd_step(name) -> None:
    torch = pytest.importorskip("torch", reason="the check runs the PyTorch network")
    jax = pytest.importorskip("jax", reason="the JAX contender needs JAX")
    from gpuback.benchmark import jax_peer

    spec = SPECS[name]
    params = jax_peer.init_params(spec, seed=3)
    model = _torch_model(torch, spec, params)
    X, y = bench_torch.batch_arrays(spec, 16, seed=1)
    loss_fn = torch.nn.CrossEntropyLoss()
    torch_loss = loss_fn(model(torch.from_numpy(X)), torch.from_numpy(y))
    torch_loss.backward()
    fwd_bwd, step = jax_peer.train_functions(jax_peer.loss_function(spec), X, y, seed=0)
    value, grads = fwd_bwd([jax.numpy.asarray(p) for p in params], 1)
    assert float(value) == pytest.approx(torch_loss.item(), rel=1e-5)
    for g, p in zip(grads, model.parameters(), strict=True):
        np.testing.assert_allclose(np.asarray(g), p.grad.numpy(), rtol=1e-4, atol=1e-6)
    # two SGD steps with momentum, as torch.optim.SGD takes them
    opt = torch.optim.SGD(model.parameters(), lr=bench_torch.SGD_LR,
                          momentum=bench_torch.SGD_MOMENTUM)
    state = ([jax.numpy.asarray(p) for p in params],
             [jax.numpy.zeros(p.shape) for p in params])
    for count in (1, 2):
        opt.zero_grad()
        loss_fn(model(torch.from_numpy(X)), torch.from_numpy(y)).backward()
        opt.step()
        new_params, velocity, _ = step(*state, count)
        state = (new_params, velocity)
    for q, p in zip(state[0], model.parameters(), strict=True):
        np.testing.assert_allclose(np.asarray(q), p.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_jax_dropout_draws_a_new_mask_each_step_and_none_outside_training() -> None:
    jax = pytest.importorskip("jax", reason="the JAX contender needs JAX")
    from gpuback.benchmark import jax_peer

    spec = resmlp_spec(12, 64, 2, 4, dropout=0.5)
    params = [jax.numpy.asarray(p) for p in jax_peer.init_params(spec)]
    loss = jax_peer.loss_function(spec)
    X, y = bench_torch.batch_arrays(spec, 16)
    key = jax.random.PRNGKey(0)
    train = [float(loss(params, X, y, jax.random.fold_in(key, i), True)) for i in (1, 2)]
    evaluate = [float(loss(params, X, y, jax.random.fold_in(key, i), False)) for i in (1, 2)]
    assert train[0] != train[1]
    assert evaluate[0] == evaluate[1] not in train


def test_the_compiling_peers_write_only_networks_of_dense_blocks() -> None:
    from gpuback.benchmark import jax_peer

    sparse = sparse_mlp_spec([12, 9, 4], density=0.3, seed=0)
    assert jax_peer.init_params(sparse) is None and jax_peer.loss_function(sparse) is None
    assert bench_torch.has_sparse_chain(sparse)
    assert not any(bench_torch.has_sparse_chain(spec) for spec in SPECS.values())
    shapes = [p.shape for p in jax_peer.init_params(SPECS["resmlp"])]
    assert shapes == [(8, 12), (8,), *[(8, 8), (8,), (8,), (8,)] * 2, (4, 8), (4,)]


def test_a_peer_that_fails_on_its_first_call_is_reported_and_left_out(
        tmp_path, capsys, monkeypatch) -> None:
    def failing(spec, batch, seed=0):
        def fail() -> None:
            raise RuntimeError("no C++ compiler\nmore detail")

        return {"broken": {"fwd_bwd": fail, "step": fail}}

    monkeypatch.setattr(bench.bench_jax, "contenders", failing)
    monkeypatch.setattr(bench.bench_jax, "version", lambda: "0")
    monkeypatch.setattr(bench.bench_jax, "device", lambda: "cpu")
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--cases", "small", "--backends", "numpy", "--no-torch",
                 "--json", str(path)]) == 0
    result = json.loads(path.read_text())["results"][0]
    assert [r["name"] for r in result["runs"]] == ["gpuback numpy"]
    assert result["runs"][0]["ratio_to"] == {}
    assert result["failed"] == [{"name": "broken (cpu)",
                                 "error": "RuntimeError: no C++ compiler"}]
    assert "broken (cpu): does not run here (RuntimeError: no C++ compiler), left out" in \
        capsys.readouterr().out


def test_a_gpuback_contender_that_fails_stops_the_bench(monkeypatch) -> None:
    def failing(*args, **kwargs):
        def fail() -> None:
            raise RuntimeError("a bug")

        return {"fwd_bwd": fail, "step": fail}

    monkeypatch.setattr(bench, "gpuback_steps", failing)
    with pytest.raises(RuntimeError, match="a bug"):
        bench.bench_step_case("small", ["numpy"], [], {}, 0.0, quick=True)


@pytest.mark.slow  # Inductor compiles C++ for the forward and backward: 10-30 s
def test_torch_compile_trains_the_torch_nn_network() -> None:
    torch = pytest.importorskip("torch", reason="torch.compile needs PyTorch")
    from gpuback.benchmark import torch_compile_peer

    spec = SPECS["resmlp"]
    compiled = torch_compile_peer.model(spec, "cpu", seed=4)
    torch.manual_seed(4)  # the torch.nn contender's weights, as it draws them
    eager = bench_torch.dense_model(spec)
    X, y = bench_torch.batch_data(spec, 16)
    loss_fn = torch.nn.CrossEntropyLoss()
    opts = [torch.optim.SGD(m.parameters(), lr=bench_torch.SGD_LR,
                            momentum=bench_torch.SGD_MOMENTUM) for m in (compiled, eager)]
    for _ in range(2):
        losses = []
        for m, opt in zip((compiled, eager), opts, strict=True):
            opt.zero_grad()
            loss = loss_fn(m(X), y)
            loss.backward()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
        for p, q in zip(compiled.parameters(), eager.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
        for opt in opts:
            opt.step()
