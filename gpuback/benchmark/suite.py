"""``gpuback bench``: training-step speed of every backend here, against PyTorch, in one run.

Cases (float32; hidden ReLU, softmax + cross-entropy output):

* ``dense``: MLP 784-1024-1024-10, batch 256;
* ``sparse95`` / ``sparse99``: 784-4096-4096-10, both hidden blocks sparse with random
  edges (95% / 99% of the weights absent), the output block dense, batch 256;
* ``wide98``: 1024-8192-8192-10, the hidden blocks 98% sparse, batch 128;
* ``small``: MLP 64-64-64-10, batch 32 (per-step overhead);
* ``resmlp``: the residual MLP of ``resmlp_spec``, 784 -> 4 blocks of 1024 (layer norm,
  GELU, dropout 0.1, identity connections) -> 10, batch 256; its PyTorch peer is the same
  network written as ``x + Dropout(GELU(LayerNorm(Linear(x))))`` blocks;
* ``digits``: seconds of training (Adam, batch 32, 64-128-10) until the test accuracy
  on the embedded digits reaches 95%;
* ``startup``: a new process's import and first training step on the cpu backend, with
  an empty Numba cache (every kernel it uses compiled) and then with the cache filled;
* ``scaling``: the cpu backend's time per edge and sample of one sparse block's share of
  a training step (forward gather, then the fused backward: edge gradients and the
  accumulation into its source's deltas), 16384 x 16384 units at densities 0.1%, 1% and
  4% (10^5 to 10^7 edges), batch 32, 256 and 1024.

For each step case every contender is timed for ``fwd_bwd`` (forward + backward: for
gpuback ``Network.loss_and_grads``) and ``step`` (that plus an SGD-with-momentum
update). The first call of each mode is timed on its own (``first_call_s``: where the
compiling contenders compile), then each is warmed up (buffers, and long enough for
another library's thread pool to stop spinning) and called repeatedly for ``seconds``;
the median is reported. The contenders are PyTorch's eager (``bench_torch``); on the
dense cases the same model under ``torch.compile`` (``bench_torch_compile``) and the same
network in JAX when it is installed (``bench_jax``); on the sparse cases SparseProp's when
it is installed (``bench_sparseprop``) and gpuback's own kernels inside a PyTorch model,
``gpuback.torch.SparseLinear`` layers (``bench_gpuback_torch``: "gpuback.torch"). The
PyTorch ones are trained by ``torch.optim.SGD``, JAX's by the same update inside its
jitted step. A peer whose first call fails is left out, its error in ``failed``. The
floor of a case is its FLOPs as the step really works them, 2 x batch for every weight in
the forward product and in the weight gradient, and again for the backward product of
every block whose source is not the input (inputs need no delta), over the float32 GEMM
rate measured in the same run (the best of NumPy's BLAS and PyTorch). Ratios are gpuback's
time (its own step, or gpuback.torch's) over a peer's, on the same device; gpuback.torch's
time over gpuback's own step on the same kernels (the cpu backend's for CPU tensors) is
the cost of going through PyTorch: autograd, the layers' transposes, PyTorch's optimiser.
"""

from __future__ import annotations

import functools
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import available_backends, backend_for_device, describe, get_backend
from ..core.spec import mlp_spec, resmlp_spec, sparse_mlp_spec
from ..datasets import loaders as datasets
from ..network import Network
from ..optim import optimizers as optim
from . import gpuback_torch_peer as bench_gpuback_torch
from . import jax_peer as bench_jax
from . import sparseprop_peer as bench_sparseprop
from . import torch_compile_peer as bench_torch_compile
from . import torch_peers as bench_torch
from .cpu_cases import bench_scaling, bench_startup
from .timing import settle, time_call

STEP_CASES = ("dense", "sparse95", "sparse99", "wide98", "small", "resmlp")
CASES = (*STEP_CASES, "digits", "startup", "scaling")
TARGET_ACCURACY = 0.95
MAX_EPOCHS = 40


@dataclass(frozen=True)
class StepCase:
    sizes: tuple[int, ...]
    batch: int
    density: float | None = None  # of the hidden blocks; None: dense
    residual: bool = False  # sizes (n_in, width, depth, n_out) of a resmlp_spec

    def spec(self) -> dict:
        if self.residual:
            n_in, width, depth, n_out = self.sizes
            return resmlp_spec(n_in, width, depth, n_out)
        if self.density is None:
            return mlp_spec(self.sizes)
        return sparse_mlp_spec(self.sizes, density=self.density, seed=0)


STEP_CASE_SHAPES = {
    "dense": StepCase((784, 1024, 1024, 10), 256),
    "sparse95": StepCase((784, 4096, 4096, 10), 256, density=0.05),
    "sparse99": StepCase((784, 4096, 4096, 10), 256, density=0.01),
    "wide98": StepCase((1024, 8192, 8192, 10), 128, density=0.02),
    "small": StepCase((64, 64, 64, 10), 32),
    "resmlp": StepCase((784, 1024, 4, 10), 256, residual=True),
}
# ``--quick``: a smoke check of every contender and case, seconds in all: hidden layers an
# eighth as wide, smaller batches, one untimed and QUICK_CALLS timed calls a mode, no
# settling, one digits run
QUICK_SHAPES = {
    "dense": StepCase((784, 128, 128, 10), 32),
    "sparse95": StepCase((784, 512, 512, 10), 32, density=0.05),
    "sparse99": StepCase((784, 512, 512, 10), 32, density=0.01),
    "wide98": StepCase((1024, 1024, 1024, 10), 32, density=0.02),
    "small": StepCase((64, 64, 64, 10), 32),
    "resmlp": StepCase((784, 128, 2, 10), 32, residual=True),
}

# Targets of the cpu backend, each: case, contender, mode, largest time ratio.
CPU_TARGETS = (("dense", "torch.nn", "fwd_bwd", 1.0), ("dense", "torch.nn", "step", 1.0),
               ("sparse95", bench_sparseprop.LABEL, "step", 0.5),
               ("sparse95", "torch.sparse.mm", "step", 1 / 5),
               ("sparse99", bench_sparseprop.LABEL, "step", 0.5),
               ("sparse99", "torch.sparse.mm", "step", 1 / 10),
               ("wide98", bench_sparseprop.LABEL, "step", 0.5),
               ("small", "torch.nn", "step", 0.3),
               ("resmlp", "torch.nn", "step", 1.0))
# Targets of gpuback.torch on CPU tensors, each: case, the contender its step time is over
# (a peer, or gpuback's own step on the same kernels), largest step time ratio.
TORCH_LAYER_TARGETS = (("sparse95", bench_sparseprop.LABEL, 0.6),
                       ("sparse95", "torch.sparse.mm", 0.25),
                       ("sparse95", "gpuback cpu", 1.1),
                       ("sparse99", bench_sparseprop.LABEL, 0.6),
                       ("sparse99", "torch.sparse.mm", 0.25),
                       ("sparse99", "gpuback cpu", 1.1))
DENSE_FLOOR_TARGET = 1.15
SCALING_SPREAD_TARGET = 1.2  # largest over smallest time per edge and sample
STARTUP_TARGETS = {"empty cache (compiles)": 2.5, "cached": 0.5}  # seconds


def _device_of(backend: str) -> str:
    """Where ``backend``'s arrays live, as PyTorch names devices: its peer's device."""
    return get_backend(backend).device


def gemm_gflops(devices: Sequence[str], seconds: float, quick: bool = False) -> dict[str, float]:
    """Float32 GEMM rate per device: the best of NumPy (CPU) and PyTorch, in GFLOP/s."""
    m, k, n = 1024, 1024, 256
    flops = 2 * m * k * n
    rng = np.random.default_rng(0)
    a = rng.normal(size=(m, k)).astype(np.float32)
    b = rng.normal(size=(k, n)).astype(np.float32)
    rates = {"cpu": flops / time_call(lambda: a @ b, seconds, quick=quick) / 1e6}
    if bench_torch.version() is not None:
        for device in bench_torch.devices():
            ms = time_call(bench_torch.gemm(device, m, k, n), seconds, quick=quick)
            rates[device] = max(rates.get(device, 0.0), flops / ms / 1e6)
    return {d: round(rates[d], 1) for d in devices if d in rates}


def gpuback_steps(spec: dict, batch: int, backend: str,
                  precision: str = "fp32") -> dict[str, Callable[[], Any]]:
    net = Network(spec, backend=backend, dtype="float32", seed=0, precision=precision)
    rng = np.random.default_rng(0)
    ops = get_backend(backend)  # the data lives where the backend works, as torch's does
    X = ops.from_host(rng.normal(size=(batch, spec["groups"][0]["size"])), np.float32)
    y = ops.from_host(rng.integers(0, spec["groups"][-1]["size"], size=batch), np.int64)
    opt = optim.SGD(lr=bench_torch.SGD_LR, momentum=bench_torch.SGD_MOMENTUM)

    def fwd_bwd() -> None:  # a training pass: with dropout where the network has it
        net.loss_and_grads(X, y, as_device=True, training=True)

    def step() -> None:
        _, grads = net.loss_and_grads(X, y, as_device=True, training=True)
        opt.step(net)
        ops.to_host(grads[spec["output"]])  # on a GPU: waits for the update (stream order)

    return {"fwd_bwd": fwd_bwd, "step": step}


def _block_weights(spec: dict) -> list[tuple[dict, int]]:
    """Each connection of a (validated) spec with its number of weights (none for an
    identity connection)."""
    sizes = {g["name"]: g["size"] for g in spec["groups"]}
    counts = {"dense": lambda c: sizes[c["src"]] * sizes[c["dst"]],
              "sparse": lambda c: len(c["edges"][0]), "identity": lambda c: 0}
    return [(c, counts[c["kind"]](c)) for c in spec["connections"]]


def parameter_count(spec: dict) -> int:
    """Weights, biases and layer-norm gains and shifts of a (validated) spec, counted from
    the spec alone."""
    biases = sum(g["size"] * (3 if "norm" in g else 1) for g in spec["groups"]
                 if g["name"] != spec["input"])
    return sum(n for _, n in _block_weights(spec)) + biases


def step_flops(spec: dict, batch: int) -> int:
    """FLOPs of a training step as it is really worked (a validated spec): 2 x batch per
    weight for the forward product (5.48), 2 x batch for its gradient (5.53), and 2 x batch
    for the backward product (5.56) of every block whose source is not the input."""
    return sum(2 * batch * n * (2 if c["src"] == spec["input"] else 3)
               for c, n in _block_weights(spec))


def gpuback_label(backend: str, precision: str) -> str:
    """A gpuback contender's name: ``gpuback cpu``, or ``gpuback cpu bf16`` below fp32."""
    return f"gpuback {backend}" + ("" if precision == "fp32" else f" {precision}")


def bench_step_case(name: str, backends: Sequence[str], torch_devices: Sequence[str],
                    gflops: dict[str, float], seconds: float, quick: bool = False,
                    precisions: Sequence[str] = ("fp32",),
                    jax_device: str | None = None) -> dict[str, Any]:
    """Every contender's ms per fwd_bwd and per step on one case, with ratios and floor
    (``quick``: on the case's ``QUICK_SHAPES``, timed as ``time_call`` says), and the
    seconds of its first call of each mode (where the compiling contenders compile); a
    gpuback contender per backend and precision (the peers compute in float32); JAX's on
    ``jax_device`` (None: left out). A peer whose first call fails is left out, with its
    error in ``failed``."""
    case = (QUICK_SHAPES if quick else STEP_CASE_SHAPES)[name]
    spec = case.spec()
    params = parameter_count(spec)
    flops = step_flops(spec, case.batch)
    contenders = {gpuback_label(b, p): (_device_of(b), p,
                                        gpuback_steps(spec, case.batch, b, p))
                  for b in backends for p in precisions}
    ours = set(contenders)
    via_torch: dict[str, str] = {}  # gpuback.torch's runs: gpuback's own on the same kernels
    for device in torch_devices:
        for label, steps in bench_gpuback_torch.contenders(spec, case.batch, device).items():
            contenders[f"{label} ({device})"] = (device, "fp32", steps)
            via_torch[f"{label} ({device})"] = gpuback_label(backend_for_device(device).name,
                                                             "fp32")
    for device in torch_devices:
        for peer in (bench_torch, bench_torch_compile):
            for label, steps in peer.contenders(spec, case.batch, device).items():
                contenders[f"{label} ({device})"] = (device, "fp32", steps)
    if jax_device is not None:
        for label, steps in bench_jax.contenders(spec, case.batch).items():
            contenders[f"{label} ({jax_device})"] = (jax_device, "fp32", steps)
    if torch_devices:  # SparseProp runs on PyTorch's CPU tensors
        for label, steps in bench_sparseprop.contenders(spec, case.batch).items():
            contenders[f"{label} (cpu)"] = ("cpu", "fp32", steps)
    runs, failed = [], []
    for label, (device, precision, steps) in contenders.items():
        run: dict[str, Any] = {"name": label, "device": device, "precision": precision}
        try:
            run["first_call_s"] = round(sum(_seconds_of(fn) for fn in steps.values()), 3)
        except Exception as error:  # a peer that cannot run here (say, no C++ compiler)
            if label in ours or label in via_torch:
                raise
            failed.append({"name": label, "error": _first_line(error)})
            continue
        for mode, fn in steps.items():
            run[f"{mode}_ms"] = round(time_call(fn, seconds, quick=quick), 4)
        run["samples_per_s"] = round(case.batch / (run["fwd_bwd_ms"] * 1e-3), 1)
        floor_ms = flops / (gflops[device] * 1e6) if device in gflops else None
        run["floor_ms"] = None if floor_ms is None else round(floor_ms, 4)
        run["x_floor"] = None if floor_ms is None else round(run["fwd_bwd_ms"] / floor_ms, 3)
        runs.append(run)
    by_name = {run["name"]: run for run in runs}
    for run in runs:
        if run["name"] in ours or run["name"] in via_torch:
            others = [other for other in runs if other["name"] not in ours
                      and other["name"] not in via_torch and other["device"] == run["device"]]
            run["ratio_to"] = {o["name"]: round(run["fwd_bwd_ms"] / o["fwd_bwd_ms"], 4)
                               for o in others}
            run["step_ratio_to"] = {o["name"]: round(run["step_ms"] / o["step_ms"], 4)
                                    for o in others}
        own = by_name.get(via_torch.get(run["name"], ""))
        if own is not None:  # gpuback.torch over gpuback's own step: the cost of PyTorch
            run["ratio_to_gpuback"] = {own["name"]: round(run["fwd_bwd_ms"] / own["fwd_bwd_ms"],
                                                          4)}
            run["step_ratio_to_gpuback"] = {own["name"]: round(run["step_ms"] / own["step_ms"],
                                                               4)}
    return {"case": name, "sizes": list(case.sizes), "batch": case.batch,
            "density": case.density, "parameters": params, "flops": flops, "runs": runs,
            "failed": failed}


def _seconds_of(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _first_line(error: BaseException) -> str:
    """``Type: first line of the message``: enough to say why a peer cannot run."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def bench_digits(backends: Sequence[str], torch_devices: Sequence[str],
                 repeats: int = 3, quick: bool = False) -> dict[str, Any]:
    """Seconds of training (and epochs) until the digits test accuracy reaches 95%: the
    median of ``repeats`` runs from the same initial weights, after one untimed run
    (``quick``: one run, untimed run and settling left out)."""
    data = datasets.load_digits(test_fraction=0.2, seed=0)
    spec = mlp_spec([data.n_features, 128, data.n_outputs])

    def gpuback_trainer(backend: str) -> tuple[Callable[[], None], Callable[[], float]]:
        net = Network(spec, backend=backend, dtype="float32", seed=0)
        opt = optim.Adam(lr=3e-3)

        def train_epoch() -> None:
            net.fit(data.X_train, data.y_train, epochs=1, batch_size=32, optimizer=opt,
                    progress=False)

        def accuracy() -> float:
            return float(net.evaluate(data.X_test, data.y_test)["accuracy"] or 0.0)

        return train_epoch, accuracy

    trainers = {f"gpuback {b}": functools.partial(gpuback_trainer, b) for b in backends}
    trainers |= {f"torch.nn ({d})": functools.partial(bench_torch.digits_trainer, data, d)
                 for d in torch_devices}
    runs = []
    for name, make in trainers.items():
        if quick:
            runs.append(_time_to_accuracy(name, *make(), settled=False))
            continue
        _time_to_accuracy(name, *make())  # compiles, allocates, warms caches
        tries = [_time_to_accuracy(name, *make()) for _ in range(repeats)]
        tries.sort(key=lambda r: math.inf if r["seconds"] is None else r["seconds"])
        runs.append(tries[len(tries) // 2])
    return {"case": "digits", "target_accuracy": TARGET_ACCURACY, "runs": runs}


def _time_to_accuracy(name: str, train_epoch: Callable[[], None],
                      accuracy: Callable[[], float], settled: bool = True) -> dict[str, Any]:
    if settled:
        settle()
    seconds = 0.0
    for epoch in range(1, MAX_EPOCHS + 1):
        start = time.perf_counter()
        train_epoch()
        reached = accuracy()
        seconds += time.perf_counter() - start
        if reached >= TARGET_ACCURACY:
            return {"name": name, "seconds": round(seconds, 3), "epochs": epoch,
                    "accuracy": round(reached, 4)}
    return {"name": name, "seconds": None, "epochs": MAX_EPOCHS, "accuracy": round(reached, 4)}


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cpu backend's targets, where both sides were measured: value and whether met."""
    by_case = {r["case"]: r for r in results}
    checks = []

    def check(case: str, against: str, ratio: float, limit: float) -> None:
        checks.append({"case": case, "against": against, "ratio": ratio,
                       "at_most": round(limit, 4), "met": ratio <= limit})

    for case, contender, mode, limit in CPU_TARGETS:
        run = _run(by_case.get(case), "gpuback cpu")
        key = "ratio_to" if mode == "fwd_bwd" else "step_ratio_to"
        ratio = None if run is None else run.get(key, {}).get(f"{contender} (cpu)")
        if ratio is not None:
            check(case, f"{contender}, {'fwd+bwd' if mode == 'fwd_bwd' else 'step'}", ratio,
                  limit)
    for case, contender, limit in TORCH_LAYER_TARGETS:
        run = _run(by_case.get(case), f"{bench_gpuback_torch.LABEL} (cpu)") or {}
        ratio = (run.get("step_ratio_to_gpuback", {}).get(contender)
                 if contender == gpuback_label("cpu", "fp32")
                 else run.get("step_ratio_to", {}).get(f"{contender} (cpu)"))
        if ratio is not None:
            check(case, f"{bench_gpuback_torch.LABEL} / {contender}, step", ratio, limit)
    run = _run(by_case.get("dense"), "gpuback cpu")
    if run is not None and run["x_floor"] is not None:
        check("dense", "floor", run["x_floor"], DENSE_FLOOR_TARGET)
    if "scaling" in by_case:
        check("scaling", "spread of time per edge", by_case["scaling"]["spread"],
              SCALING_SPREAD_TARGET)
    for run in by_case.get("startup", {}).get("runs", []):
        check("startup", run["name"], run["seconds"], STARTUP_TARGETS[run["name"]])
    return checks


def _run(result: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if result is None:
        return None
    return next((r for r in result["runs"] if r["name"] == name), None)


def machine() -> dict[str, Any]:
    return {"cpu": _cpu_name(), "cores": describe("cpu").get("cores"),
            "python": platform.python_version(), "numpy": np.__version__,
            "torch": bench_torch.version(), "jax": bench_jax.version(),
            "torch_threads": bench_torch.threads() if bench_torch.version() else None}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(cases: Sequence[str] = CASES, backends: Sequence[str] | None = None,
        seconds: float = 1.0, use_torch: bool = True,
        report: Callable[[str], None] = print, quick: bool = False,
        precisions: Sequence[str] = ("fp32",)) -> dict[str, Any]:
    """Run the benchmark; ``report`` receives each table line as it is measured.
    ``quick``: a smoke check in seconds (``QUICK_SHAPES``, ``time_call``'s quick mode), whose
    numbers say that every contender runs, not how fast. ``precisions``: the step cases
    time each gpuback backend in each of them (``Network(precision=...)``)."""
    backends = (available_backends(include_simulated=False) if backends is None
                else list(backends))
    torch_devices = bench_torch.devices() if use_torch and bench_torch.version() else []
    devices = sorted({_device_of(b) for b in backends} | set(torch_devices))
    info = machine()
    gflops = gemm_gflops(devices, seconds, quick)
    torch = (f"PyTorch {info['torch']} ({info['torch_threads']} threads)" if info["torch"]
             else "PyTorch not installed")
    jax = f"JAX {info['jax']}" if info["jax"] else "JAX not installed"
    report(f"machine: {info['cpu']}, {info['cores']} cores; NumPy {info['numpy']}; {torch}; "
           f"{jax}")
    if quick:
        report("quick run: smaller cases, 3 timed calls each; a smoke check, not a measurement")
    report("float32 GEMM rate: " + ", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in gflops.items()))
    sparse_cases = [c for c in cases if c in STEP_CASES and STEP_CASE_SHAPES[c].density]
    if sparse_cases and bench_sparseprop.version() is None:
        report(bench_sparseprop.absent_reason())
    elif sparse_cases and not torch_devices:
        report("SparseProp runs on PyTorch, left out here (--no-torch)")
    jax_device = _jax_device(cases, devices, report)
    results = []
    for name in cases:
        if name == "digits":
            result = bench_digits(backends, torch_devices, quick=quick)
        elif name == "startup":
            result = bench_startup()
        elif name == "scaling":
            result = bench_scaling(seconds, quick)
        else:
            result = bench_step_case(name, backends, torch_devices, gflops, seconds, quick,
                                     precisions, jax_device)
        results.append(result)
        for line in format_result(result):
            report(line)
    checks = [] if quick else targets(results)
    for check in checks:
        report(f"target {check['case']}, {check['against']}: {check['ratio']:.3g} "
               f"(at most {check['at_most']:.3g}) {'met' if check['met'] else 'NOT met'}")
    return {"machine": info, "gemm_gflops": gflops, "seconds": seconds, "quick": quick,
            "results": results, "targets": checks}


def _jax_device(cases: Sequence[str], devices: Sequence[str],
                report: Callable[[str], None]) -> str | None:
    """The device JAX's contender runs on (its default one) when some case is dense, JAX is
    installed and a gpuback backend is timed on that device; else None, said in ``report``."""
    if not any(c in STEP_CASES and STEP_CASE_SHAPES[c].density is None for c in cases):
        return None
    if bench_jax.version() is None:
        report(bench_jax.absent_reason())
        return None
    device = bench_jax.device()
    if device not in devices:
        report(f"JAX runs on {device} here, where no gpuback backend is timed: left out")
        return None
    return device


def format_result(result: dict[str, Any]) -> list[str]:
    """Table lines for one case."""
    if result["case"] == "scaling":
        lines = [f"\nscaling: one sparse block {result['units']} x {result['units']}, forward "
                 f"and fused backward (gpuback cpu); spread {result['spread']:.2f}",
                 f"  {'density':>8} {'edges':>11} {'batch':>6} {'ms':>10} {'ns/edge/sample':>15}"]
        lines += [f"  {r['density']:>8.3%} {r['edges']:>11,} {r['batch']:>6} {r['ms']:>10.3f} "
                  f"{r['ns_per_edge_sample']:>15.4f}" for r in result["runs"]]
        return lines
    if result["case"] == "startup":
        return ["\nstartup: new process, import gpuback to the end of the first cpu step",
                *(f"  {r['name']:<28} {r['seconds']:.2f} s" for r in result["runs"])]
    if result["case"] == "digits":
        lines = [f"\ndigits: seconds of training to {TARGET_ACCURACY:.0%} test accuracy"]
        for r in result["runs"]:
            took = (f"{r['seconds']:.2f} s, {r['epochs']} epochs" if r["seconds"] is not None
                    else f"not reached in {r['epochs']} epochs ({r['accuracy']:.3f})")
            lines.append(f"  {r['name']:<28} {took}")
        return lines
    density = "" if result["density"] is None else f", density {result['density']}"
    lines = [f"\n{result['case']}: {'-'.join(map(str, result['sizes']))}{density}, batch "
             f"{result['batch']}, {result['parameters']:,} parameters",
             f"  {'contender':<28} {'precision':>9} {'fwd+bwd ms':>11} {'+SGD ms':>9} "
             f"{'samples/s':>10} {'x floor':>8} {'1st calls s':>11}  time ratio (fwd+bwd, "
             f"step) to each contender"]
    for r in result["runs"]:
        floor = "" if r["x_floor"] is None else f"{r['x_floor']:.2f}"
        steps = r.get("step_ratio_to", {})
        ratios = ", ".join(f"{v:.3g}/{steps[k]:.3g} {k}" for k, v in r.get("ratio_to", {}).items())
        lines.append(f"  {r['name']:<28} {r['precision']:>9} {r['fwd_bwd_ms']:>11.3f} "
                     f"{r['step_ms']:>9.3f} {r['samples_per_s']:>10.0f} {floor:>8} "
                     f"{r['first_call_s']:>11.2f}  {ratios}")
    lines += [f"  {f['name']}: does not run here ({f['error']}), left out"
              for f in result.get("failed", [])]
    for r in result["runs"]:
        steps = r.get("step_ratio_to_gpuback", {})
        for k, v in r.get("ratio_to_gpuback", {}).items():
            lines.append(f"  {r['name']} / {k} (the cost of going through PyTorch): "
                         f"{v:.3g}/{steps[k]:.3g} (fwd+bwd, step)")
    return lines
