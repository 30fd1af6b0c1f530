"""Every kernel compiles for sm_80 and sm_90 with zero spills, and float32 kernels compute in
float32: no ``.f64`` PTX instruction outside the deliberate float64 accumulators of
``F64_ALLOWED``.

The report runs in a subprocess without ``NUMBA_ENABLE_CUDASIM``: this test process runs
under the simulator (conftest), whose ``compile_ptx`` is not the real compiler. Where NVVM
or ptxas is missing the report exits with ``EXIT_TOOLCHAIN``: the test skips, except in CI
(``CI=true``), which is meant to have both and fails instead.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import tempfile

import kernel_report
import pytest

REPORT = kernel_report.__file__

ARCHS = ("sm_80", "sm_90")
FAMILIES = ("activation", "sparse", "reduce", "loss", "optimizer", "metrics", "buffers", "clip",
            "identity", "layer_norm", "dropout", "sample_weight")
# float32 kernels allowed float64 instructions, and why (each is commented in the kernel).
F64_ALLOWED = {
    "activation.activation_delta": "bias-gradient partials over the batch summed in float64",
    "reduce.row_sum": "bias-gradient partials over the batch summed in float64",
    "sparse.edge_grad": "weight-gradient partials (a dot product over the batch) in float64",
    "metrics.accumulate_metrics": "the float64 running totals of loss and correct counts",
    "clip.global_norm": "the squares of the gradients summed in float64",
    "layer_norm.gain_grad": "gain-gradient partials over the batch summed in float64",
    "dropout.dropout_activation_delta": "bias-gradient partials over the batch summed in "
                                        "float64",
}
INSTALL = "or pip install '.[test,sim13]', which brings both"


def run_report(*args: str, simulator: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    # Run outside the source tree: the report of the gpuback that is installed.
    return subprocess.run([sys.executable, str(REPORT), *args], env=env,
                          cwd=tempfile.gettempdir(), capture_output=True, text=True,
                          timeout=600, check=False)


def expected_builds() -> set[tuple[str, str, str]]:
    """(family.kernel, dtype, arch) for every entry of every ``KERNELS`` table, read here."""
    package = importlib.import_module("gpuback.kernels")
    builds = set()
    families = set()
    for info in pkgutil.iter_modules(package.__path__):
        table = getattr(importlib.import_module(f"gpuback.kernels.{info.name}"), "KERNELS", None)
        if table is not None:
            families.add(info.name)
            builds |= {(f"{info.name}.{name}", dtype, arch) for name, per_dtype
                       in table.items() for dtype in per_dtype for arch in ARCHS}
    assert set(FAMILIES) <= families, f"kernel families missing: {set(FAMILIES) - families}"
    return builds


@pytest.fixture(scope="module")
def report() -> dict:
    done = run_report("--json")
    if done.returncode == kernel_report.EXIT_TOOLCHAIN:
        reason = f"{json.loads(done.stdout)['error']} ({INSTALL})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must have NVVM and ptxas: {reason}")
        pytest.skip(reason)
    assert done.stdout.strip(), f"exit {done.returncode}, no report: {done.stderr[-2000:]}"
    result = json.loads(done.stdout)
    result["returncode"] = done.returncode
    return result


@pytest.mark.slow
def test_every_kernel_and_dtype_builds_for_sm80_and_sm90(report: dict) -> None:
    built = {(r["kernel"], r["dtype"], r["arch"]) for r in report["rows"]}
    missing = expected_builds() - built
    assert not missing, f"not in the report: {sorted(missing)}"
    failed = [f"{r['kernel']} {r['dtype']} {r['arch']}: {r['error']}"
              for r in report["rows"] if r["error"]]
    assert not failed, "\n".join(failed)


def test_no_kernel_spills(report: dict) -> None:
    spilled = [f"{r['kernel']} {r['dtype']} {r['arch']}: {r['spill_stores']} bytes stored, "
               f"{r['spill_loads']} loaded" for r in report["rows"] if r["spill"]]
    assert not spilled, "\n".join(spilled)


def test_float32_kernels_compute_in_float32(report: dict) -> None:
    rows = [r for r in report["rows"] if r["dtype"] == "float32" and not r["error"]]
    assert rows
    stray = [f"{r['kernel']} {r['arch']}: {r['f64']} .f64 instructions, e.g. {r['f64_sample']}"
             for r in rows if r["f64"] and r["kernel"] not in F64_ALLOWED]
    assert not stray, "\n".join(stray)
    stale = {k for k in F64_ALLOWED if not any(r["f64"] for r in rows if r["kernel"] == k)}
    assert not stale, f"allowed .f64 but has none (remove from F64_ALLOWED): {sorted(stale)}"


def test_register_counts_are_reported(report: dict) -> None:
    assert all(r["registers"] > 0 for r in report["rows"] if not r["error"]), report["rows"]


def test_report_exit_status_is_zero(report: dict) -> None:
    assert report["ok"] and report["returncode"] == 0


def test_report_refuses_the_simulator() -> None:
    done = run_report(simulator=True)
    assert done.returncode == kernel_report.EXIT_SIMULATOR, done.stderr
    assert "simulator has no compiler" in done.stderr


def test_f64_instruction_count() -> None:
    ptx = """
\t.reg .f64 \t%fd<4>;
\t.param .f64 _param_1
\tld.param.f64 \t%fd1, [_param_1];
\tcvt.rn.f32.f64 \t%f1, %fd1;
\t@%p1 bra \t$L__BB0_2;
\t@!%p2 fma.rn.f64 \t%fd2, %fd1, %fd1, %fd1;  // float64 fma
\tadd.f32 \t%f2, %f1, %f1;
\tmov.b64 \t%rd1, %fd2;
$L__BB0_2:
\tst.shared.f64 \t[%rd2], %fd2;
\tsetp.gt.f64 \t%p3, %fd2, 0d0000000000000000;
// add.f64 in a comment
"""
    count, sample = kernel_report.count_f64(ptx, keep=2)
    assert count == 5
    assert sample == ["ld.param.f64 %fd1, [_param_1]", "cvt.rn.f32.f64 %f1, %fd1"]


def test_ptxas_output_parsing() -> None:
    output = """ptxas info    : Compiling entry function 'k' for 'sm_80'
ptxas info    : Function properties for helper
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Function properties for k
    24 bytes stack frame, 12 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 2048 bytes smem, 380 bytes cmem[0]
"""
    assert kernel_report.parse_ptxas(output) == {
        "registers": 255, "spill_stores": 20, "spill_loads": 16, "smem": 2048, "stack": 24}
