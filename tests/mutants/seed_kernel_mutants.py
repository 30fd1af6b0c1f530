"""Hand-seeded mutants of the Numba kernels, each run against the tests meant to catch it.

mutmut cannot rewrite Numba kernels (it mutates Python through trampolines that ``@njit``
and ``@cuda.jit`` cannot compile), so the device code is mutation-tested here by hand: a
list of mutants, each an exact snippet of one file, its replacement, and the tests that
should fail with it. For every mutant the script

1. copies the repository (without .git, __pycache__, build outputs and mutants/) into a
   temporary directory and replaces the snippet there (it must occur exactly once);
2. runs ``python -m pytest <tests> -x -q -p no:cacheprovider`` in the copy, with
   PYTHONPATH = the copy (so ``gpuback`` is the copy's, and ``gpuback/__init__.py`` makes
   the copy's ``kernels/`` ``gpuback.kernels``) and NUMBA_CACHE_DIR inside the copy (no
   compiled kernel of the real tree is reused);
3. records ``caught`` (pytest exit status 1: a test failed), ``survived`` (0: every test
   passed) or ``error`` (anything else: a snippet not found, nothing collected, a crash,
   a timeout).

Before the mutants it checks, in an unmutated copy, that the copy's modules are the ones
imported and that every mutant's tests pass there (a test that fails anyway would count a
mutant as caught); ``canary`` breaks every kernel and must be caught. It prints a markdown
table and exits 1 if a mutant survived, 2 on an error.

    python tests/mutants/seed_kernel_mutants.py            # every mutant
    python tests/mutants/seed_kernel_mutants.py --only cuda-adam-grid-stride-step --keep
    python tests/mutants/seed_kernel_mutants.py --check    # snippets only, runs no tests

Not a test module (its name does not start with ``test_``): pytest does not collect it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IGNORED = shutil.ignore_patterns(".git", "__pycache__", "mutants", "build", "dist", "*.egg-info",
                                 ".pytest_cache", ".ruff_cache", ".mypy_cache", ".benchmarks",
                                 ".venv", ".numba_cache", "gpuback-run")
TIMEOUT_S = 600
CUDA_OPS = "tests/backends/test_cuda_ops.py::test_op_matches_reference"
CPU_OPS = "tests/backends/test_cpu_backend.py::test_cpu_op_matches_reference"
CPU_SPLIT = "tests/backends/test_cpu_backend.py::test_cpu_op_split_over_cores_matches_reference"
LAUNCH = "tests/backends/test_cuda_launch_limits.py"
GAPS = "tests/kernels/test_mutant_gaps.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str
    file: str  # relative to the repository root
    original: str  # must occur exactly once in the file
    replacement: str
    tests: tuple[str, ...]  # pytest arguments: node ids, and -k expressions
    description: str


def k(*words: str) -> tuple[str, str]:
    """A -k expression: every word must be in the test id."""
    return ("-k", " and ".join(words))


MUTANTS = [
    # --- CUDA kernels (kernels/*.py), run in the simulator --------------------------------
    Mutant("canary", "breaks everything", "kernels/scalar.py",
           "zero, one, half, three = real(0.0), real(1.0), real(0.5), real(3.0)",
           "zero, one, half, three = real(0.0), real(2.0), real(0.5), real(3.0)",
           (CPU_OPS, CUDA_OPS, *k("bias_activation-sigmoid-3x5")),
           "one = 2 in every shared device function: proves the copy's kernels/ is what runs"),
    Mutant("cuda-edge-grad-src-dst-swapped", "wrong index", "kernels/sparse.py",
           "                j = src[e]\n                k = dst[e]\n                n = lane\n",
           "                j = dst[e]\n                k = src[e]\n                n = lane\n",
           (CUDA_OPS, *k("sparse_weight_grad")),
           "edge_grad reads z at the destination and delta at the source"),
    Mutant("cuda-scatter-add-src-dst-swapped", "wrong index", "kernels/sparse.py",
           "cuda.atomic.add(acc, (j, n), we * delta[k, n])",
           "cuda.atomic.add(acc, (k, n), we * delta[j, n])",
           (CUDA_OPS, *k("sparse_backward", "det0")),
           "the scatter-add adds into the destination unit's row, reading the source's delta"),
    Mutant("cuda-gather-ignores-accumulate", "missing accumulate", "kernels/sparse.py",
           "total = out[r, n] if accumulate else zero",
           "total = zero",
           (CUDA_OPS, *k("sparse_forward", "acc1")),
           "the gather overwrites its output when asked to add to it"),
    Mutant("cuda-activation-delta-assigns", "missing accumulate", "kernels/activation.py",
           "total += float64(value)",
           "total = float64(value)",
           (CUDA_OPS, GAPS, *k("activation_delta")),
           "each lane's bias-gradient partial keeps only its last sample (= for +=)"),
    Mutant("cuda-edge-grad-assigns", "missing accumulate", "kernels/sparse.py",
           "total += float64(delta[k, n] * z[j, n])",
           "total = float64(delta[k, n] * z[j, n])",
           (CUDA_OPS, GAPS, *k("sparse_weight_grad")),
           "each lane's weight-gradient partial keeps only its last sample (= for +=)"),
    Mutant("cuda-row-sum-assigns", "missing accumulate", "kernels/reduce.py",
           "total += float64(x[r, n])",
           "total = float64(x[r, n])",
           (CUDA_OPS, GAPS, *k("bias_grad")),
           "each lane's row-sum partial keeps only its last sample (= for +=)"),
    Mutant("cuda-row-sum-skips-last-partial-block", "reduction skips a partial block",
           "kernels/reduce.py",
           "        while first < x.shape[0]:",
           "        while first + cuda.blockDim.y <= x.shape[0]:",
           (CUDA_OPS, *k("bias_grad")),
           "row_sum leaves out the last block of rows when it is not full"),
    Mutant("cuda-block-sum-drops-last-step", "reduction skips a step", "kernels/device.py",
           "    while width > 0:\n        if lane < width:\n"
           "            partial[base + lane] += partial[base + lane + width]",
           "    while width > 1:\n        if lane < width:\n"
           "            partial[base + lane] += partial[base + lane + width]",
           (CUDA_OPS, *k("bias_grad")),
           "the shared-memory tree sum stops before adding its last two partials"),
    Mutant("cuda-bce-delta-sign", "wrong loss-gradient sign", "kernels/loss.py",
           "                matches += bce_match(y[k, n], t[k, n])\n"
           "                delta[k, n] = (y[k, n] - t[k, n]) * inv_batch",
           "                matches += bce_match(y[k, n], t[k, n])\n"
           "                delta[k, n] = (t[k, n] - y[k, n]) * inv_batch",
           (CUDA_OPS, *k("loss_and_output_delta-bce")),
           "binary cross-entropy output delta t - y instead of y - t (5.54)"),
    Mutant("cuda-ce-labels-delta-sign", "wrong loss-gradient sign", "kernels/loss.py",
           "delta[k, n] = (y[k, n] - (one if k == label else zero)) * inv_batch",
           "delta[k, n] = ((one if k == label else zero) - y[k, n]) * inv_batch",
           (CUDA_OPS, *k("loss_and_output_delta-ce-labels")),
           "cross-entropy (class labels) output delta t - y instead of y - t (5.54)"),
    Mutant("cuda-metrics-total-assigns", "missing accumulate", "kernels/metrics.py",
           "            totals[0] += total",
           "            totals[0] = total",
           (CUDA_OPS, *k("accumulate_metrics")),
           "accumulate_metrics overwrites the running loss total instead of adding to it"),
    Mutant("cuda-adam-grid-stride-step", "wrong grid-stride step", "kernels/optimizer.py",
           "                         correction1, correction2, i)\n"
           "            write_rounded(param, rounded, code, i)\n            i += stride",
           "                         correction1, correction2, i)\n"
           "            write_rounded(param, rounded, code, i)\n            i += 2 * stride",
           (CUDA_OPS, GAPS, *k("adam_update")),
           "the Adam kernel strides twice the grid: every other grid-sized chunk is skipped"),
    Mutant("cuda-loss-sample-stride", "wrong grid-stride step", "kernels/loss.py",
           "            cuda.syncthreads()  # slot 0 read before the next sample\n"
           "            n += cuda.gridDim.x",
           "            cuda.syncthreads()  # slot 0 read before the next sample\n"
           "            n += 2 * cuda.gridDim.x",
           (CUDA_OPS, GAPS, *k("loss_and_output_delta-sos")),
           "the sum-of-squares kernel's blocks stride over samples by twice the grid"),
    Mutant("cuda-check-finite-stride", "wrong grid-stride step", "kernels/metrics.py",
           "            i += stride",
           "            i += 2 * stride",
           (CUDA_OPS, GAPS, *k("check_finite")),
           "the finiteness check strides twice the grid: a NaN or Inf can go unseen"),
    Mutant("cuda-grid-2d-row-stride", "wrong grid-stride step", "kernels/device.py",
           "return row, cuda.gridDim.x * cuda.blockDim.y, sample",
           "return row, cuda.gridDim.x * cuda.blockDim.x, sample",
           (CUDA_OPS, GAPS, *k("bias_activation")),
           "2-D grid-stride loops step over rows by the block's x size instead of its y size"),
    # --- shared device functions (kernels/scalar.py: the CUDA and the CPU kernels) --------
    Mutant("tanh-derivative", "wrong derivative", "kernels/scalar.py",
           "            return one - z * z",
           "            return one - z",
           (CPU_OPS, *k("activation_delta-tanh")),
           "tanh'(a) = 1 - z instead of 1 - z^2"),
    Mutant("gelu-derivative-drops-factor", "wrong derivative", "kernels/scalar.py",
           "(one + three * gelu_k * a * a)",
           "(one + gelu_k * a * a)",
           (CUDA_OPS, *k("activation_delta-gelu")),
           "GELU's derivative loses the 3 of d/da (a + k a^3)"),
    Mutant("silu-derivative-sign", "wrong derivative", "kernels/scalar.py",
           "return s * (one + a * (one - s))",
           "return s * (one + a * s)",
           (CPU_OPS, *k("activation_delta-silu")),
           "SiLU's derivative s (1 + a s) instead of s (1 + a (1 - s))"),
    Mutant("exp-derivative", "wrong derivative", "kernels/scalar.py",
           "        if code == EXP:  # d/da e^a = e^a = z\n            return z",
           "        if code == EXP:  # d/da e^a = e^a = z\n            return one + a",
           (CPU_OPS, *k("activation_delta-exp")),
           "exp's derivative 1 + a, its linearisation at 0, instead of e^a = z"),
    Mutant("poisson-far-branch-drops-t", "wrong loss", "kernels/scalar.py",
           "return exp_or_inf(a) - t * (one + r)",
           "return exp_or_inf(a) - t * r",
           (CPU_OPS, *k("loss_and_output_delta-poisson")),
           "the Poisson deviance where y > e t loses its -t term"),
    Mutant("cuda-poisson-delta-sign", "wrong loss-gradient sign", "kernels/loss.py",
           "                local += poisson_term(a[k, n], t[k, n])\n"
           "                delta[k, n] = (y[k, n] - t[k, n]) * inv_batch",
           "                local += poisson_term(a[k, n], t[k, n])\n"
           "                delta[k, n] = (t[k, n] - y[k, n]) * inv_batch",
           (CUDA_OPS, *k("loss_and_output_delta-poisson")),
           "Poisson output delta t - y instead of y - t (5.54)"),
    Mutant("cuda-identity-ignores-accumulate", "missing accumulate", "kernels/identity.py",
           "dst[k, n] = dst[k, n] + src[k, n]",
           "dst[k, n] = src[k, n]",
           (CUDA_OPS, *k("add_into", "acc1")),
           "an identity connection overwrites the sum it should add to"),
    Mutant("cuda-layer-norm-variance-not-centred", "wrong statistic", "kernels/layer_norm.py",
           "centred = a[k, n] - mean\n",
           "centred = a[k, n]\n",
           (CUDA_OPS, *k("layer_norm", "not backward")),
           "layer norm's variance taken about 0 instead of about the mean"),
    Mutant("cuda-layer-norm-backward-drops-variance-term", "wrong derivative",
           "kernels/layer_norm.py",
           "r * (gain[k] * delta[k, n] - mean - xhat[k, n] * mean_moment)",
           "r * (gain[k] * delta[k, n] - mean)",
           (CUDA_OPS, *k("layer_norm_backward")),
           "layer norm's backward forgets the path through the variance"),
    Mutant("cuda-dropout-ignores-first-sample", "wrong index", "kernels/dropout.py",
           "h = mix_on_device((first_sample + uint64(n)) ^ unit_key)",
           "h = mix_on_device(uint64(n) ^ unit_key)",
           (CUDA_OPS, *k("dropout")),
           "dropout's mask keyed by the row in the pass, not in the global batch"),
    Mutant("cuda-dropout-delta-ignores-mask", "missing mask", "kernels/dropout.py",
           "masked = acc[j, n] * scale if kept else zero",
           "masked = acc[j, n] * scale",
           (CUDA_OPS, *k("dropout_activation_delta")),
           "the backward of dropout scales every delta, dropped units' too"),
    Mutant("adam-drops-second-moment-correction", "Adam bias correction",
           "kernels/scalar.py",
           "math.sqrt(second / correction2)",
           "math.sqrt(second)",
           ("tests/optim/test_optimizers.py::test_optimizer_kernels_match_numpy",
            *k("cpu", "adam")),
           "Adam uses v instead of v_hat = v / (1 - beta2^t)"),
    Mutant("adam-drops-first-moment-correction", "Adam bias correction",
           "kernels/scalar.py",
           "(first / correction1)",
           "first",
           (CUDA_OPS, *k("adam_update", "status0")),
           "Adam uses m instead of m_hat = m / (1 - beta1^t)"),
    # --- CPU kernels (gpuback/backends/cpu/kernels.py) ----------------------------------------
    Mutant("cpu-gather-assigns", "missing accumulate", "gpuback/backends/cpu/kernels.py",
           "                row[s] += we * src[s]",
           "                row[s] = we * src[s]",
           (CPU_OPS, *k("sparse_forward")),
           "the CPU gather keeps only a row's last edge (= for +=)"),
    Mutant("cpu-gather-ignores-accumulate-flag", "missing accumulate",
           "gpuback/backends/cpu/kernels.py",
           "        if not accumulate:\n            row[:] = 0.0",
           "        if False:\n            row[:] = 0.0",
           (CPU_OPS, *k("sparse_backward", "acc0")),
           "the CPU gather always adds to its output, also when told to overwrite it"),
    Mutant("cpu-row-sum-range-off-by-one", "off-by-one range", "gpuback/backends/cpu/kernels.py",
           "    for r in range(lo, hi):\n        total = 0.0\n        for n in range(x.shape[1]):",
           "    for r in range(lo, hi - 1):\n        total = 0.0\n"
           "        for n in range(x.shape[1]):",
           (CPU_OPS, *k("bias_grad")),
           "row_sum stops one row short of its range"),
    Mutant("cpu-take-batch-ignores-start", "wrong index", "gpuback/backends/cpu/kernels.py",
           "        row = source[order[start + i]]",
           "        row = source[order[i]]",
           (CPU_OPS, *k("take_batch")),
           "the CPU mini-batch gather reads the epoch order from 0, not from start"),
    # --- CPU range splits (gpuback/backends/cpu/threads.py) --------------------------------
    Mutant("cpu-split-drops-last-range", "off-by-one range split",
           "gpuback/backends/cpu/threads.py",
           "run_ranges(lambda lo, hi: kernel(lo, hi, *args), "
           "[n * i // parts for i in range(parts + 1)])",
           "run_ranges(lambda lo, hi: kernel(lo, hi, *args), "
           "[n * i // parts for i in range(parts)] + [n - 1])",
           (CPU_SPLIT, *k("bias_grad")),
           "run_split's last range ends at n - 1"),
    Mutant("cpu-balanced-bounds-off-by-one", "off-by-one range split",
           "gpuback/backends/cpu/threads.py",
           "    return [0, *np.searchsorted(ptr, targets).tolist(), n_rows]",
           "    return [0, *np.searchsorted(ptr, targets).tolist(), n_rows - 1]",
           (CPU_SPLIT, *k("sparse_forward")),
           "the edge-balanced split of a sparse gather drops the last row"),
    Mutant("cpu-product-split-drops-last-range", "off-by-one range split",
           "gpuback/backends/cpu/products.py",
           "(n * i // parts, n * (i + 1) // parts) for i in range(parts))]",
           "(n * i // parts, n * (i + 1) // parts) for i in range(parts - 1))]",
           (CPU_SPLIT, *k("dense")),
           "the split of a BLAS product leaves out its last block of rows or columns"),
    # --- CUDA launch grids (gpuback/backends/cuda/launch.py) ----------------------------------
    Mutant("launch-floor-not-ceil", "floor instead of ceil", "gpuback/backends/cuda/launch.py",
           "return max(1, min(-(-int(items) // per_block), limit))",
           "return max(1, min(int(items) // per_block, limit))",
           (f"{LAUNCH}::test_the_sparse95_block_needed_more_than_65535_rows_of_blocks",),
           "blocks = items // per_block: the grid no longer gives every item its own thread"),
    Mutant("launch-grid-y-over-limit", "grid over a hardware limit",
           "gpuback/backends/cuda/launch.py",
           "_blocks(samples, bx, MAX_GRID_YZ)",
           "_blocks(samples, bx, MAX_GRID_X)",
           (f"{LAUNCH}::test_launch_functions_at_any_size",),
           "gridDim.y capped at 2^31 - 1 instead of 65,535"),
]


@dataclass
class Result:
    mutant: Mutant
    outcome: str  # caught, survived, error
    seconds: float
    detail: str


def copy_repository(source: Path, into: Path) -> Path:
    dest = into / "repo"
    shutil.copytree(source, dest, ignore=IGNORED)
    return dest


def apply(mutant: Mutant, root: Path) -> None:
    path = root / mutant.file
    text = path.read_text()
    count = text.count(mutant.original)
    if count != 1:
        raise ValueError(f"{mutant.name}: the snippet occurs {count} times in {mutant.file}")
    path.write_text(text.replace(mutant.original, mutant.replacement))


def environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    env["NUMBA_CACHE_DIR"] = str(root / ".numba_cache")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def pytest(root: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(command, cwd=root, env=environment(root), capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False)


def summary(output: str) -> str:
    """pytest's last line ("1 failed, 3 passed in 2.1s"), or its last non-empty line."""
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else ""


def run_mutant(mutant: Mutant, source: Path, keep: bool) -> Result:
    start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix=f"mutant-{mutant.name}-"))
    try:
        root = copy_repository(source, workdir)
        apply(mutant, root)
        done = pytest(root, mutant.tests)
        outcome = {0: "survived", 1: "caught"}.get(done.returncode, "error")
        detail = f"exit {done.returncode}: {summary(done.stdout + done.stderr)}"
        if outcome == "caught":
            failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.MULTILINE)
            detail = (failed[0] if failed else "") + f" ({summary(done.stdout)})"
    except subprocess.TimeoutExpired:
        outcome, detail = "error", f"timed out after {TIMEOUT_S} s"
    except (OSError, ValueError) as error:
        outcome, detail = "error", str(error)
    finally:
        if keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return Result(mutant, outcome, time.perf_counter() - start, detail)


IMPORT_CHECK = """
import importlib
for name in ("gpuback", "gpuback.kernels", "gpuback.kernels.sparse",
             "gpuback.backends.cpu.kernels"):
    print(importlib.import_module(name).__file__)
"""


def check_unmutated(source: Path, selections: list[tuple[str, ...]]) -> list[str]:
    """Problems with the unmutated copy: modules imported from elsewhere, failing tests."""
    problems = []
    workdir = Path(tempfile.mkdtemp(prefix="mutant-baseline-"))
    try:
        root = copy_repository(source, workdir)
        done = subprocess.run([sys.executable, "-c", IMPORT_CHECK], cwd=root,
                              env=environment(root), capture_output=True, text=True, check=False)
        files = done.stdout.split()
        if done.returncode != 0 or len(files) != 4:
            problems.append(f"import check failed: {done.stderr.strip()[-500:]}")
        for file in files:
            if not Path(file).resolve().is_relative_to(root.resolve()):
                problems.append(f"the copy imports {file}, not its own module")
        for tests in selections:
            done = pytest(root, tests)
            if done.returncode != 0 or not re.search(r"\d+ passed", done.stdout):
                problems.append(f"unmutated copy: {' '.join(tests)}: exit {done.returncode}: "
                                f"{summary(done.stdout + done.stderr)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return problems


def table(results: list[Result]) -> str:
    rows = ["| # | mutant | kind | file | description | tests run | result | caught by | s |",
            "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        m = r.mutant
        tests = " ".join(f"`{t}`" if t != "-k" else "-k" for t in m.tests)
        caught_by = f"`{r.detail.split(' (')[0]}`" if r.outcome == "caught" else r.detail
        rows.append(f"| {i} | {m.name} | {m.kind} | `{m.file}` | {m.description} | {tests} | "
                    f"**{r.outcome}** | {caught_by} | {r.seconds:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=REPO,
                        help="the tree to copy (default: this checkout)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutants only")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--keep", action="store_true", help="keep each mutated copy")
    parser.add_argument("--check", action="store_true",
                        help="only check that every snippet occurs once; run no tests")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the unmutated copy's import check and test run")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--without-gap-tests", action="store_true",
                        help=f"leave {GAPS} out of every selection (what the suite caught "
                             "before the gap tests were written)")
    args = parser.parse_args(argv)
    source = args.source.resolve()

    names = [m.name for m in MUTANTS]
    assert len(set(names)) == len(names), "mutant names must be unique"
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.without_gap_tests:
        mutants = [replace(m, tests=tuple(t for t in m.tests if t != GAPS)) for m in mutants]
    unknown = set(args.only or ()) - set(names)
    if unknown:
        parser.error(f"unknown mutants: {sorted(unknown)}")
    bad = []
    for m in mutants:
        count = (source / m.file).read_text().count(m.original)
        if count != 1:
            bad.append(f"{m.name}: snippet occurs {count} times in {m.file}")
    if bad or args.check:
        print("\n".join(bad) or f"{len(mutants)} snippets, each found once")
        return 2 if bad else 0

    started = time.perf_counter()
    if not args.no_baseline:
        selections = list(dict.fromkeys(m.tests for m in mutants))
        problems = check_unmutated(source, selections)
        if problems:
            print("The unmutated copy is not a valid baseline:\n  " + "\n  ".join(problems))
            return 2
        print(f"baseline: the copy imports its own modules; {len(selections)} test selections "
              f"pass unmutated ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = []
        for result in pool.map(lambda m: run_mutant(m, source, args.keep), mutants):
            print(f"{result.outcome:9} {result.seconds:5.0f} s  {result.mutant.name}",
                  file=sys.stderr)
            results.append(result)
    elapsed = time.perf_counter() - started
    counts = {o: sum(r.outcome == o for r in results) for o in ("caught", "survived", "error")}
    text = (table(results) + f"\n\n{counts['caught']} caught, {counts['survived']} survived, "
            f"{counts['error']} errors, of {len(results)} mutants; {elapsed:.0f} s in all "
            f"(baseline included), {max(1, args.jobs)} at a time.\n")
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if counts["error"]:
        return 2
    return 1 if counts["survived"] else 0


if __name__ == "__main__":
    sys.exit(main())
