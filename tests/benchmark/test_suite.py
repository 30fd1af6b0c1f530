"""``gpuback bench`` in its short mode (CI has no PyTorch: gpuback's backends alone), and the
bookkeeping behind its table. No timing is asserted: speed is for the benchmark to report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import gpuback
from gpuback.benchmark import cpu_cases, timing
from gpuback.benchmark import suite as bench
from gpuback.cli.app import EXIT_USAGE, main
from gpuback.core.spec import mlp_spec, sparse_mlp_spec


def test_quick_bench_runs_every_kind_of_case_and_writes_json(tmp_path, capsys) -> None:
    path = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--cases", "small", "sparse99", "digits", "startup",
                 "scaling", "--backends",
                 "cpu", "numpy", "--no-torch", "--json", str(path)])
    assert code == 0
    out = capsys.readouterr().out
    results = json.loads(path.read_text())
    assert [r["case"] for r in results["results"]] == ["small", "sparse99", "digits", "startup",
                                                       "scaling"]
    assert results["gemm_gflops"]["cpu"] > 0
    for result in results["results"][:2]:
        names = [r["name"] for r in result["runs"]]
        # no PyTorch here; JAX's contender where installed, for the dense case only
        peers = ["jax.jit (cpu)"] if result["case"] == "small" and _has_jax() else []
        assert names == ["gpuback cpu", "gpuback numpy", *peers]
        for run in result["runs"][:2]:
            assert run["fwd_bwd_ms"] > 0 and run["step_ms"] > 0
            # the floor: per weight and sample 2 flops forward, 2 for the weight gradient and 2
            # backward unless the block's source is the input, at the measured GEMM rate;
            # weights counted by a Network's plan
            shape = bench.QUICK_SHAPES[result["case"]]  # a quick run's smaller cases
            net = gpuback.Network(shape.spec())
            params = sum(p.size for p in net.parameters().values())
            flops = sum(2 * shape.batch * int(np.prod(b.shape)) * (2 if b.src == "x" else 3)
                        for b in net.plan.blocks)
            floor_ms = flops / (results["gemm_gflops"]["cpu"] * 1e6)
            assert result["parameters"] == params
            assert run["floor_ms"] == pytest.approx(floor_ms, rel=1e-3, abs=1e-4)
            assert run["x_floor"] == pytest.approx(run["fwd_bwd_ms"] / floor_ms, rel=2e-2)
            assert set(run["ratio_to"]) == set(run["step_ratio_to"]) == set(peers)
            assert run["first_call_s"] >= 0
        assert f"{result['case']}:" in out
    for run in results["results"][2]["runs"]:  # both backends learn the digits
        assert run["seconds"] is not None and run["accuracy"] >= bench.TARGET_ACCURACY
    cold, cached = results["results"][3]["runs"]
    assert cold["seconds"] > 0 and cached["seconds"] > 0
    scaling = results["results"][4]
    assert len(scaling["runs"]) == (len(cpu_cases.SCALING_DENSITIES)
                                    * len(cpu_cases.QUICK_SCALING_BATCHES))
    per_edge = [r["ms"] * 1e6 / (r["edges"] * r["batch"]) for r in scaling["runs"]]
    assert [r["ns_per_edge_sample"] for r in scaling["runs"]] == pytest.approx(per_edge, rel=1e-2)
    assert scaling["spread"] == pytest.approx(max(per_edge) / min(per_edge), rel=2e-2)
    assert results["targets"] == []  # a quick run is not measured against targets
    assert results["quick"] is True


def _has_jax() -> bool:
    from gpuback.benchmark import jax_peer

    return jax_peer.version() is not None


def test_bench_json_on_stdout_is_the_whole_of_stdout(capsys) -> None:
    assert main(["bench", "--quick", "--cases", "small", "--backends", "numpy", "--no-torch",
                 "--json"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)  # one document, nothing else
    assert [r["case"] for r in results["results"]] == ["small"]
    assert "small: 64-64-64-10" in captured.err  # the table went to stderr


def test_quick_cases_are_the_full_cases_scaled_down() -> None:
    assert set(bench.QUICK_SHAPES) == set(bench.STEP_CASE_SHAPES)
    for name, full in bench.STEP_CASE_SHAPES.items():
        quick = bench.QUICK_SHAPES[name]
        assert quick.density == full.density
        assert (quick.sizes[0], quick.sizes[-1]) == (full.sizes[0], full.sizes[-1])
        assert all(q <= f for q, f in zip(quick.sizes, full.sizes, strict=True))
        assert quick.batch <= full.batch


def test_bench_rejects_unknown_cases_and_simulated_backends(capsys) -> None:
    assert main(["bench", "--cases", "huge"]) == EXIT_USAGE
    assert "--cases: unknown ['huge']" in capsys.readouterr().err
    assert main(["bench", "--backends", "cuda"]) == EXIT_USAGE  # the simulator, in this suite
    assert "simulator" in capsys.readouterr().err
    assert main(["bench", "--seconds", "0"]) == EXIT_USAGE
    assert main(["bench", "--json", "/no/such/dir/out.json"]) == EXIT_USAGE
    assert "--json: no directory '/no/such/dir'" in capsys.readouterr().err


def test_parameter_count_and_flops_follow_the_spec() -> None:
    dense = mlp_spec([784, 1024, 1024, 10])
    assert bench.parameter_count(dense) == (784 * 1024 + 1024 * 1024 + 1024 * 10
                                             + 1024 + 1024 + 10)
    sparse = sparse_mlp_spec([50, 40, 30, 5], density=0.1, seed=0)
    edges = [len(c["edges"][0]) for c in sparse["connections"][:2]]
    assert edges == [200, 120]  # round(0.1 * 50 * 40), round(0.1 * 40 * 30)
    assert bench.parameter_count(sparse) == 200 + 120 + 30 * 5 + 40 + 30 + 5


def test_targets_compare_the_cpu_backend_with_the_matching_contender_run() -> None:
    def result(case, ratios, steps, x_floor=None):
        return {"case": case, "runs": [{
            "name": "gpuback cpu", "x_floor": x_floor,
            "ratio_to": {f"{k} (cpu)": v for k, v in ratios.items()},
            "step_ratio_to": {f"{k} (cpu)": v for k, v in steps.items()}}]}

    checks = bench.targets([
        result("dense", {"torch.nn": 0.95}, {"torch.nn": 1.05}, x_floor=1.2),
        result("sparse95", {"sparseprop": 0.1, "torch.sparse.mm": 0.1},
               {"sparseprop": 0.7, "torch.sparse.mm": 0.15}),
        {"case": "scaling", "spread": 1.1},
        {"case": "startup", "runs": [{"name": "empty cache (compiles)", "seconds": 3.0},
                                     {"name": "cached", "seconds": 0.4}]}])
    met = {(c["case"], c["against"]): c["met"] for c in checks}
    assert met == {("dense", "torch.nn, fwd+bwd"): True, ("dense", "torch.nn, step"): False,
                   ("dense", "floor"): False,
                   ("sparse95", "sparseprop, step"): False,  # the step decides, not fwd+bwd
                   ("sparse95", "torch.sparse.mm, step"): True,
                   ("scaling", "spread of time per edge"): True,
                   ("startup", "empty cache (compiles)"): False, ("startup", "cached"): True}


def test_step_flops_leave_out_the_input_blocks_backward_product() -> None:
    spec = sparse_mlp_spec([50, 40, 30, 5], density=0.1, seed=0)  # 200 and 120 edges
    assert bench.step_flops(spec, 8) == 2 * 8 * (2 * 200 + 3 * 120 + 3 * 30 * 5)


def test_random_block_has_distinct_edges_sorted_by_destination() -> None:
    index = cpu_cases.random_block(300, 200, 0.02, seed=1)
    assert index.n_edges == round(0.02 * 300 * 200)
    pairs = index.dst * 300 + index.src
    assert np.all(np.diff(pairs) > 0)  # sorted, no repeats
    assert index.src.max() < 300 and index.dst.max() < 200
    dense = cpu_cases.random_block(7, 5, 1.0)
    assert dense.n_edges == 35


def test_time_call_warms_up_then_takes_the_median() -> None:
    calls = []
    ms = timing.time_call(lambda: calls.append(1), seconds=0.0, warm_up=0.0)
    assert len(calls) == 2 + 3 and math.isfinite(ms) and ms >= 0


def test_the_precision_column_times_each_backend_in_each_precision(tmp_path, capsys) -> None:
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--cases", "small", "--backends", "numpy", "--no-torch",
                 "--precision", "fp32", "bf16", "bf16", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    runs = json.loads(path.read_text())["results"][0]["runs"]
    assert [(r["name"], r["precision"]) for r in runs
            if r["name"].startswith("gpuback")] == [("gpuback numpy", "fp32"),
                                                    ("gpuback numpy bf16", "bf16")]
    assert "precision" in out and "gpuback numpy bf16" in out
    assert main(["bench", "--quick", "--cases", "small", "--precision", "fp8"]) == EXIT_USAGE


# A tiny sparse case for the PyTorch contenders: every one of them in a second or two.
TINY_SPARSE = bench.StepCase((20, 16, 12, 3), 8, density=0.2)


def test_gpuback_torch_is_a_contender_of_the_sparse_cases_with_its_cost_over_gpuback(
        tmp_path, capsys, monkeypatch) -> None:
    pytest.importorskip("torch", reason="the PyTorch contenders need PyTorch")
    monkeypatch.setitem(bench.QUICK_SHAPES, "sparse95", TINY_SPARSE)
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--cases", "sparse95", "--backends", "cpu",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    runs = {r["name"]: r for r in json.loads(path.read_text())["results"][0]["runs"]}
    torch_layer, own = runs["gpuback.torch (cpu)"], runs["gpuback cpu"]
    peers = {name for name in runs if name not in ("gpuback cpu", "gpuback.torch (cpu)")}
    assert {"torch.sparse.mm (cpu)", "torch masked dense (cpu)"} <= peers
    for run in runs.values():
        assert run["fwd_bwd_ms"] > 0 and run["step_ms"] > 0
    # gpuback.torch is measured against the peers, as gpuback's own step is, and against
    # that step; gpuback's own ratios stay the peers' alone
    for run in (torch_layer, own):
        assert set(run["ratio_to"]) == set(run["step_ratio_to"]) == peers
        for name in peers:
            assert run["step_ratio_to"][name] == pytest.approx(  # of the rounded times
                run["step_ms"] / runs[name]["step_ms"], rel=1e-2, abs=1e-4)
    assert torch_layer["ratio_to_gpuback"] == {
        "gpuback cpu": pytest.approx(torch_layer["fwd_bwd_ms"] / own["fwd_bwd_ms"], rel=1e-2)}
    assert torch_layer["step_ratio_to_gpuback"] == {
        "gpuback cpu": pytest.approx(torch_layer["step_ms"] / own["step_ms"], rel=1e-2)}
    assert "ratio_to_gpuback" not in own
    assert "  gpuback.torch (cpu) " in out
    assert "gpuback.torch (cpu) / gpuback cpu (the cost of going through PyTorch): " in out


def test_targets_of_gpuback_torch_read_its_step_ratios() -> None:
    run = {"name": "gpuback.torch (cpu)",
           "step_ratio_to": {"sparseprop (cpu)": 0.5, "torch.sparse.mm (cpu)": 0.3},
           "step_ratio_to_gpuback": {"gpuback cpu": 1.05}}
    checks = bench.targets([{"case": "sparse99", "runs": [run]}])
    assert {c["against"]: (c["ratio"], c["met"]) for c in checks} == {
        "gpuback.torch / sparseprop, step": (0.5, True),
        "gpuback.torch / torch.sparse.mm, step": (0.3, False),
        "gpuback.torch / gpuback cpu, step": (1.05, True)}


def test_gpuback_torch_model_trains_as_the_masked_dense_model_from_the_same_weights() -> None:
    torch = pytest.importorskip("torch", reason="the PyTorch contenders need PyTorch")
    from gpuback.benchmark import gpuback_torch_peer as bench_gpuback_torch
    from gpuback.benchmark import torch_peers as bench_torch

    spec = TINY_SPARSE.spec()
    sizes = [g["size"] for g in spec["groups"]]
    model = bench_gpuback_torch.model(spec)
    masked = bench_torch.MaskedDense(spec["connections"], sizes, "cpu")
    layers = [m for m in model if not isinstance(m, torch.nn.ReLU)]
    with torch.no_grad():  # the masked model's weights: the gpuback.torch model's
        for layer, (w, b, mask) in zip(layers, masked.layers, strict=True):
            dense = layer.to_dense() if mask is not None else layer
            w.copy_(dense.weight)
            b.copy_(dense.bias)
    X, y = bench_torch.batch_data(spec, TINY_SPARSE.batch)
    loss_fn = torch.nn.CrossEntropyLoss()

    def losses() -> list[float]:
        with torch.no_grad():
            return [float(loss_fn(m(X), y)) for m in (model, masked)]

    before = losses()
    assert before[0] == pytest.approx(before[1], rel=1e-5)
    # the gradients of one fwd_bwd: of every edge weight, its masked dense entry's
    bench_torch.steps(lambda: loss_fn(model(X), y), model.parameters(), "cpu")["fwd_bwd"]()
    bench_torch.steps(lambda: loss_fn(masked(X), y), masked.params, "cpu")["fwd_bwd"]()
    for layer, (w, b, mask) in zip(layers, masked.layers, strict=True):
        dw = w.grad if mask is None else w.grad[layer.edges[1], layer.edges[0]]
        torch.testing.assert_close(layer.weight.grad, dw, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(layer.bias.grad, b.grad, rtol=1e-5, atol=1e-7)
        if mask is not None:  # nothing leaks off the edges
            assert not (w.grad * (1 - mask)).any()
    # one SGD step with momentum each: the same new weights and the same lower loss
    bench_torch.steps(lambda: loss_fn(model(X), y), model.parameters(), "cpu")["step"]()
    bench_torch.steps(lambda: loss_fn(masked(X), y), masked.params, "cpu")["step"]()
    after = losses()
    assert after[0] < before[0]
    assert after[0] == pytest.approx(after[1], rel=1e-5)
    for layer, (w, _, mask) in zip(layers, masked.layers, strict=True):
        dense = layer.to_dense().weight if mask is not None else layer.weight
        torch.testing.assert_close(dense, w * mask if mask is not None else w, rtol=1e-5,
                                   atol=1e-7)
