"""Registers, spills and shared memory of every CUDA kernel, measured without a GPU.

Each kernel of each ``gpuback.kernels`` family (``KERNELS`` table), for each dtype it is
launched with, is compiled to PTX by ``numba.cuda.compile_ptx`` (NVVM, from the
``numba-cuda[cu13]`` extra) and assembled by ``ptxas -v`` (from the ``nvidia-cuda-nvcc``
wheel) for compute capability 8.0 and 9.0, or the ``--arch`` list. Run it as
``python bench/kernel_report.py [--json] [--arch 80 90]``; the tests import it (with
``bench/`` on their path) to compile every kernel.

The ``f64`` column counts the PTX instructions of a build that operate on float64
(``count_f64``): in a float32 kernel each one is either a deliberate float64 accumulator or
a float64 constant or parameter that slipped in.

Exit status: 0 when every kernel compiles with zero spill bytes, 1 otherwise,
``EXIT_TOOLCHAIN`` when NVVM or ptxas is not installed, ``EXIT_SIMULATOR`` under
``NUMBA_ENABLE_CUDASIM=1`` (the simulator has no compiler).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ARCHS = (80, 90)
EXIT_FAILED = 1
EXIT_TOOLCHAIN = 3
EXIT_SIMULATOR = 4
NVVM_PACKAGE = "numba-cuda[cu13]"
PTXAS_PACKAGE = "nvidia-cuda-nvcc>=13"
# Where the ptxas wheels put it inside the ``nvidia`` namespace package: nvidia-cuda-nvcc 13.x,
# then the 12.x layouts (nvidia-cuda-nvcc-cu12).
WHEEL_PTXAS = ("cu13/bin", "cu12/bin", "cuda_nvcc/bin")


class ToolchainMissingError(RuntimeError):
    """NVVM (numba-cuda) or ptxas is not installed."""


class SimulatorActiveError(RuntimeError):
    """``NUMBA_ENABLE_CUDASIM`` is set: ``compile_ptx`` would be the simulator's stand-in."""


@dataclass
class Row:
    """One kernel, dtype and architecture, as ptxas reports it (``error`` if it did not build)."""

    kernel: str
    dtype: str
    arch: str
    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    smem: int = 0
    stack: int = 0
    f64: int = 0
    f64_sample: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def spill(self) -> int:
        """Spill bytes, stores plus loads."""
        return self.spill_stores + self.spill_loads

    @property
    def ok(self) -> bool:
        """Compiled and assembled, with no spills."""
        return self.error is None and self.spill == 0


def simulator_active() -> bool:
    """Whether Numba would run CUDA in its simulator (read as Numba reads it: a nonzero int)."""
    value = os.environ.get("NUMBA_ENABLE_CUDASIM", "").strip()
    try:
        return int(value or 0) != 0
    except ValueError:
        return False


def find_ptxas() -> tuple[Path, str]:
    """ptxas from a pip wheel under the ``nvidia`` package, else from PATH; and where from."""
    spec = importlib.util.find_spec("nvidia")
    exe = "ptxas.exe" if os.name == "nt" else "ptxas"
    for root in (spec.submodule_search_locations or []) if spec else []:
        for sub in WHEEL_PTXAS:
            path = Path(root) / sub / exe
            if path.is_file() and os.access(path, os.X_OK):
                return path, "pip wheel"
    found = shutil.which("ptxas")
    if found:
        return Path(found), "PATH"
    raise ToolchainMissingError(f"ptxas not found (no nvidia wheel has it, none on PATH): "
                                f"pip install '{PTXAS_PACKAGE}'")


def tool_version(text: str) -> str:
    """``13.5.37`` from the 'Cuda compilation tools, release 13.5, V13.5.37' line of a
    ptxas --version or PTX header; the text itself if there is no such line."""
    match = re.search(r"release [\d.]+, V([\d.]+)", text)
    return match.group(1) if match else text.strip()


def kernel_tables() -> dict[str, dict[str, tuple[Callable[..., Any], Any]]]:
    """``{"family.kernel": {dtype: (python function, signature)}}`` over every
    ``gpuback.kernels`` module that has a ``KERNELS`` table."""
    package = importlib.import_module("gpuback.kernels")
    tables = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"gpuback.kernels.{info.name}")
        for name, entry in getattr(module, "KERNELS", {}).items():
            tables[f"{info.name}.{name}"] = entry
    return tables


def _probe(out):  # pragma: no cover - compiled, never run
    out[0] = 1.0


def load_compiler() -> tuple[Callable[..., tuple[str, Any]], str]:
    """``numba.cuda.compile_ptx`` and the NVVM release, after one trivial compile proves it."""
    if simulator_active():
        raise SimulatorActiveError("NUMBA_ENABLE_CUDASIM is set: the Numba simulator has no "
                                   "compiler (its compile_ptx is a stand-in). Unset it to run "
                                   "this report.")
    try:
        from numba import config, cuda
    except ImportError as exc:
        raise ToolchainMissingError(f"Numba is not installed ({exc}): "
                                    f"pip install '{NVVM_PACKAGE}'") from exc
    simulated = config.ENABLE_CUDASIM  # type: ignore[attr-defined]
    if simulated or getattr(cuda, "compile_ptx", None) is None:
        raise SimulatorActiveError("numba.cuda is the Numba simulator in this process; it has "
                                   "no compiler. Run this report in a process without "
                                   "NUMBA_ENABLE_CUDASIM.")
    try:
        ptx, _ = cuda.compile_ptx(_probe, "void(float32[::1])", cc=(8, 0))
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise ToolchainMissingError(f"NVVM/NVRTC cannot compile a trivial kernel ({detail}): "
                                    f"pip install '{NVVM_PACKAGE}'") from exc
    return cuda.compile_ptx, tool_version(ptx[:1000])


# A PTX instruction line: an optional guard predicate (@%p1, @!%p1), then the opcode with its
# dotted modifiers and types (add.rn.f64, cvt.rn.f32.f64, ld.global.nc.f64, setp.gt.f64, ...).
_INSTRUCTION = re.compile(r"^\s*(?:@!?%\w+\s+)?([a-z][\w.]*)")


def count_f64(ptx: str, keep: int = 3) -> tuple[int, list[str]]:
    """How many PTX instructions have ``f64`` among the dotted parts of their opcode, and the
    first ``keep`` of them.

    That counts float64 arithmetic (``add.f64``, ``fma.rn.f64``, ``div.rn.f64``), compares
    and selects (``setp.*.f64``, ``selp.f64``), moves and constants (``mov.f64``), loads and
    stores (``ld.param.f64`` of a float64 kernel parameter, ``ld.global.f64``,
    ``st.shared.f64``), atomics (``atom.*.f64``) and every conversion to or from float64
    (``cvt.f64.f32``, ``cvt.rn.f32.f64``, ``cvt.rn.f64.s64``). Directives (``.reg .f64``,
    ``.param .f64``), labels and comments are not instructions, and untyped bit moves
    (``mov.b64``) are not counted: a float64 value cannot be computed without one of the
    counted instructions.
    """
    found = []
    for line in ptx.splitlines():
        text = line.split("//", 1)[0]
        match = _INSTRUCTION.match(text)
        if match and "f64" in match.group(1).split("."):
            found.append(" ".join(text.split()).rstrip(";")[:80])
    return len(found), found[:keep]


def parse_ptxas(output: str) -> dict[str, int]:
    """Registers, spill store/load bytes, shared memory and stack frame from ``ptxas -v``.

    Spills are summed over every function ptxas lists (a non-inlined callee's spills count);
    registers, shared memory and stack frame are the largest listed.
    """
    found = {"registers": 0, "spill_stores": 0, "spill_loads": 0, "smem": 0, "stack": 0}
    for stack, stores, loads in re.findall(
            r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", output):
        found["stack"] = max(found["stack"], int(stack))
        found["spill_stores"] += int(stores)
        found["spill_loads"] += int(loads)
    for line in re.findall(r"Used \d+ registers.*", output):
        registers = re.search(r"Used (\d+)", line)
        assert registers is not None  # the line was found by this very pattern
        found["registers"] = max(found["registers"], int(registers[1]))
        smem = re.search(r"(\d+) bytes smem", line)
        found["smem"] = max(found["smem"], int(smem[1]) if smem else 0)
    if not found["registers"]:
        raise ValueError(f"no register count in ptxas output: {output.strip()[-300:]!r}")
    return found


def assemble(ptxas: Path, ptx: str, arch: int) -> dict[str, int]:
    """Assemble PTX for ``sm_<arch>`` with ``ptxas -v`` into a temporary file; its counts."""
    with tempfile.TemporaryDirectory(prefix="gpuback-ptxas-") as tmp:
        source = Path(tmp) / "kernel.ptx"
        source.write_text(ptx)
        done = subprocess.run([str(ptxas), "-v", f"-arch=sm_{arch}", str(source),
                               "-o", str(Path(tmp) / "kernel.cubin")],
                              capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    if done.returncode:
        raise RuntimeError(f"ptxas exit {done.returncode}: {output.strip()[-300:]}")
    return parse_ptxas(output)


def build_report(archs: Sequence[int] = ARCHS) -> dict[str, Any]:
    """Compile and assemble every kernel, dtype and arch: ``{"toolchain", "rows", "ok"}``.

    Raises ``SimulatorActiveError`` or ``ToolchainMissingError`` before compiling anything.
    """
    start = time.perf_counter()
    missing = []
    try:
        compile_ptx, nvvm = load_compiler()
    except ToolchainMissingError as exc:
        missing.append(str(exc))
    try:
        ptxas, source = find_ptxas()
    except ToolchainMissingError as exc:
        missing.append(str(exc))
    if missing:
        raise ToolchainMissingError("; ".join(missing))
    version = subprocess.run([str(ptxas), "--version"], capture_output=True, text=True,
                             check=False).stdout
    rows = []
    for kernel, builds in kernel_tables().items():
        for dtype, (function, signature) in builds.items():
            for arch in archs:
                row = Row(kernel, dtype, f"sm_{arch}")
                try:
                    ptx, _ = compile_ptx(function, signature, cc=divmod(arch, 10))
                    row.f64, row.f64_sample = count_f64(ptx)
                    for key, value in assemble(ptxas, ptx, arch).items():
                        setattr(row, key, value)
                except Exception as exc:  # reported per row; the exit status says it failed
                    message = " ".join(str(exc).split())[-300:]
                    row.error = f"{type(exc).__name__}: {message}"
                rows.append(row)
    import numba

    toolchain = {"numba": numba.__version__, "numba_cuda": _version("numba-cuda"),
                 "nvvm": nvvm, "ptxas": str(ptxas), "ptxas_from": source,
                 "ptxas_version": tool_version(version)}
    if _release(toolchain["ptxas_version"]) < _release(nvvm):
        toolchain["note"] = (f"ptxas {toolchain['ptxas_version']} is older than NVVM {nvvm} and "
                             f"may reject its PTX: pip install '{PTXAS_PACKAGE}'")
    return {"toolchain": toolchain, "archs": [f"sm_{a}" for a in archs],
            "rows": [{**asdict(r), "spill": r.spill, "ok": r.ok} for r in rows],
            "ok": all(r.ok for r in rows), "seconds": round(time.perf_counter() - start, 1)}


def _release(version: str) -> tuple[int, ...]:
    """``(13, 5)`` from ``13.5.37``; ``()`` if it is not a version number."""
    parts = version.split(".")[:2]
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else ()


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table and a summary line."""
    header = ("kernel", "dtype", "arch", "regs", "spill (st+ld)", "smem", "stack", "f64",
              "status")
    lines = []
    for r in report["rows"]:
        spill = f"{r['spill']} ({r['spill_stores']}+{r['spill_loads']})" if r["spill"] else "0"
        status = "ok" if r["ok"] else (f"FAILED {r['error']}" if r["error"] else "SPILLS")
        counts = ("-",) * 5 if r["error"] else (str(r["registers"]), spill, str(r["smem"]),
                                                str(r["stack"]), str(r["f64"]))
        lines.append((r["kernel"], r["dtype"], r["arch"], *counts, status))
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header) - 1)]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
           for row in [header, *lines]]
    out.insert(1, "-" * len(out[0]))
    t = report["toolchain"]
    failed = sum(r["error"] is not None for r in report["rows"])
    spilled = sum(r["error"] is None and r["spill"] > 0 for r in report["rows"])
    out.append(f"ptxas {t['ptxas_version']} ({t['ptxas_from']}: {t['ptxas']}); "
               f"NVVM {t['nvvm']}; numba-cuda {t['numba_cuda']}")
    if "note" in t:
        out.append(f"note: {t['note']}")
    float32 = {r["kernel"] for r in report["rows"] if r["dtype"] == "float32"}
    with_f64 = sorted({r["kernel"] for r in report["rows"]
                       if r["dtype"] == "float32" and r["f64"]})
    out.append(f"{'OK' if report['ok'] else 'FAIL'}: {len(report['rows'])} builds "
               f"({len({r['kernel'] for r in report['rows']})} kernels, "
               f"{', '.join(report['archs'])}), {failed} failed to compile, {spilled} spill; "
               f"{len(with_f64)} of {len(float32)} float32 kernels have .f64 instructions"
               f"{' (' + ', '.join(with_f64) + ')' if with_f64 else ''}; "
               f"{report['seconds']} s")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the table (or ``--json``); the exit status says whether all passed."""
    parser = argparse.ArgumentParser(prog="python -m gpuback.kernel_report",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--arch", type=int, nargs="+", default=list(ARCHS), metavar="CC",
                        help="compute capabilities as major*10+minor (default: 80 90)")
    args = parser.parse_args(argv)
    try:
        report = build_report(args.arch)
    except (SimulatorActiveError, ToolchainMissingError) as exc:
        print(f"kernel_report: {exc}", file=sys.stderr)
        if args.json:
            missing = isinstance(exc, ToolchainMissingError)
            print(json.dumps({"error": str(exc), "toolchain_missing": missing, "rows": []}))
        return EXIT_SIMULATOR if isinstance(exc, SimulatorActiveError) else EXIT_TOOLCHAIN
    print(json.dumps(report, indent=1) if args.json else format_table(report))
    return 0 if report["ok"] else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
