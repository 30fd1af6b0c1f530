"""``gpuback bench`` in its short mode (CI has no PyTorch: gpuback's backends alone), and the
bookkeeping behind its table. No timing is asserted: speed is for the benchmark to report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import gpuback
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
        assert [r["name"] for r in result["runs"]] == ["gpuback cpu", "gpuback numpy"]
        for run in result["runs"]:
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
            assert run["ratio_to"] == {}  # no PyTorch here
        assert f"{result['case']}:" in out
    for run in results["results"][2]["runs"]:  # both backends learn the digits
        assert run["seconds"] is not None and run["accuracy"] >= bench.TARGET_ACCURACY
    cold, cached = results["results"][3]["runs"]
    assert cold["seconds"] > 0 and cached["seconds"] > 0
    scaling = results["results"][4]
    assert len(scaling["runs"]) == len(bench.SCALING_DENSITIES) * len(bench.QUICK_SCALING_BATCHES)
    per_edge = [r["ms"] * 1e6 / (r["edges"] * r["batch"]) for r in scaling["runs"]]
    assert [r["ns_per_edge_sample"] for r in scaling["runs"]] == pytest.approx(per_edge, rel=1e-2)
    assert scaling["spread"] == pytest.approx(max(per_edge) / min(per_edge), rel=2e-2)
    assert results["targets"] == []  # a quick run is not measured against targets
    assert results["quick"] is True


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
        result("dense", {"torch.nn": 0.85}, {"torch.nn": 0.95}, x_floor=1.2),
        result("sparse95", {"sparseprop": 0.1, "torch.sparse.mm": 0.1},
               {"sparseprop": 0.7, "torch.sparse.mm": 0.15}),
        {"case": "scaling", "spread": 1.1},
        {"case": "startup", "runs": [{"name": "empty cache (compiles)", "seconds": 2.0},
                                     {"name": "cached", "seconds": 0.2}]}])
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
    index = bench.random_block(300, 200, 0.02, seed=1)
    assert index.n_edges == round(0.02 * 300 * 200)
    pairs = index.dst * 300 + index.src
    assert np.all(np.diff(pairs) > 0)  # sorted, no repeats
    assert index.src.max() < 300 and index.dst.max() < 200
    dense = bench.random_block(7, 5, 1.0)
    assert dense.n_edges == 35


def test_time_call_warms_up_then_takes_the_median() -> None:
    calls = []
    ms = bench.time_call(lambda: calls.append(1), seconds=0.0, warm_up=0.0)
    assert len(calls) == 2 + 3 and math.isfinite(ms) and ms >= 0


def test_the_precision_column_times_each_backend_in_each_precision(tmp_path, capsys) -> None:
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--cases", "small", "--backends", "numpy", "--no-torch",
                 "--precision", "fp32", "bf16", "bf16", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    runs = json.loads(path.read_text())["results"][0]["runs"]
    assert [(r["name"], r["precision"]) for r in runs] == [("gpuback numpy", "fp32"),
                                                           ("gpuback numpy bf16", "bf16")]
    assert "precision" in out and "gpuback numpy bf16" in out
    assert main(["bench", "--quick", "--cases", "small", "--precision", "fp8"]) == EXIT_USAGE
