"""``gpuback bench`` in its short mode (CI has no PyTorch: gpuback's backends alone), and the
bookkeeping behind its table. No timing is asserted: speed is for the benchmark to report."""

from __future__ import annotations

import json
import math

import pytest

import gpuback
from gpuback import bench
from gpuback.cli import EXIT_USAGE, main
from gpuback.spec import mlp_spec, sparse_mlp_spec


def test_quick_bench_runs_every_kind_of_case_and_writes_json(tmp_path, capsys) -> None:
    path = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--cases", "small", "sparse99", "digits", "startup",
                 "--backends",
                 "cpu", "numpy", "--no-torch", "--json", str(path)])
    assert code == 0
    out = capsys.readouterr().out
    results = json.loads(path.read_text())
    assert [r["case"] for r in results["results"]] == ["small", "sparse99", "digits", "startup"]
    assert results["gemm_gflops"]["cpu"] > 0
    for result in results["results"][:2]:
        assert [r["name"] for r in result["runs"]] == ["gpuback cpu", "gpuback numpy"]
        for run in result["runs"]:
            assert run["fwd_bwd_ms"] > 0 and run["step_ms"] > 0
            # the floor: 6 flops per parameter and sample (2 forward, 2 backward, 2 for the
            # weight gradient) at the measured GEMM rate; parameters counted by a Network
            shape = bench.QUICK_SHAPES[result["case"]]  # a quick run's smaller cases
            params = sum(p.size for p in gpuback.Network(shape.spec()).parameters().values())
            floor_ms = 6 * shape.batch * params / (results["gemm_gflops"]["cpu"] * 1e6)
            assert result["parameters"] == params
            assert run["floor_ms"] == pytest.approx(floor_ms, rel=1e-3, abs=1e-4)
            assert run["x_floor"] == pytest.approx(run["fwd_bwd_ms"] / floor_ms, rel=2e-2)
            assert run["ratio_to"] == {}  # no PyTorch here
        assert f"{result['case']}:" in out
    for run in results["results"][2]["runs"]:  # both backends learn the digits
        assert run["seconds"] is not None and run["accuracy"] >= bench.TARGET_ACCURACY
    cold, cached = results["results"][3]["runs"]
    assert cold["seconds"] > 0 and cached["seconds"] > 0
    assert results["targets"] == []  # nothing to compare against
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


def test_targets_compare_the_cpu_backend_with_the_matching_torch_run() -> None:
    def result(case, ratios, x_floor=None):
        return {"case": case, "runs": [{"name": "gpuback cpu", "x_floor": x_floor,
                                        "ratio_to": {f"{k} (cpu)": v for k, v in ratios.items()}}]}

    checks = bench.targets([result("dense", {"torch.nn": 0.9}, x_floor=1.4),
                            result("sparse95", {"torch.sparse.mm": 0.3,
                                                "torch masked dense": 0.5})])
    met = {(c["case"], c["against"]): c["met"] for c in checks}
    assert met == {("dense", "torch.nn"): True, ("dense", "floor"): False,
                   ("sparse95", "torch.sparse.mm"): True,
                   ("sparse95", "torch masked dense"): False}


def test_time_call_warms_up_then_takes_the_median() -> None:
    calls = []
    ms = bench.time_call(lambda: calls.append(1), seconds=0.0, warm_up=0.0)
    assert len(calls) == 2 + 3 and math.isfinite(ms) and ms >= 0
