"""Rounding to tf32, bf16 and fp16: the integer bit arithmetic of
``gpuback.kernels.precision`` (compiled for the cpu backend with Numba, and for CUDA under the
simulator and to PTX) equals the NumPy reference ``gpuback.precision.round_to`` bit for bit,
and the reference equals ml_dtypes' bfloat16, NumPy's float16, and an independent float64
construction of round-to-nearest-even (``np.round`` on the scaled value) for all three.

The values: every bf16 and every fp16 value, the midpoints between neighbours (the ties, with
an even and an odd neighbour below) and one float32 ulp either side of each, the overflow and
underflow thresholds, NaNs (quiet, signalling, payloads only in dropped bits), infs, signed
zeros, float32 subnormals, and a million random bit patterns with their tie variants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import kernel_report
import ml_dtypes
import numpy as np
import pytest
from gpuback.kernels import precision as kp
from numba import njit

from gpuback.backends.precision import (
    PRECISIONS,
    check_precision,
    round_to,
    storage_dtype,
    unit_roundoff,
)

ROUNDED = ("tf32", "bf16", "fp16")
# Significand bits and smallest normal exponent of each format: x = m 2^e, 1 <= |m| < 2.
FORMAT = {"tf32": (11, -126, 127), "bf16": (8, -126, 127), "fp16": (11, -14, 15)}

CPU = kp.compile_for(njit(inline="always"))
round_code = CPU.round_code
round_tf32, round_bf16, round_fp16 = CPU.round_tf32, CPU.round_bf16, CPU.round_fp16


@njit(nogil=True)
def round_range(lo, hi, code, x):
    """The cpu backend's form: a range of a 1-D float32 array, in place."""
    for i in range(lo, hi):
        x[i] = round_code(code, x[i])


@njit
def each(function_code, x):
    """Each named scalar function (not the dispatch) over an array."""
    out = np.empty_like(x)
    for i in range(x.size):
        if function_code == kp.TF32:
            out[i] = round_tf32(x[i])
        elif function_code == kp.BF16:
            out[i] = round_bf16(x[i])
        else:
            out[i] = round_fp16(x[i])
    return out


def f32(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def bits_of(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


SPECIAL_BITS = [
    0x00000000, 0x80000000,                          # signed zeros
    0x7F800000, 0xFF800000,                          # infs
    0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,  # quiet, signalling (payload in low bits)
    0x7F801000, 0x7F808000, 0x7FFFFFFF, 0x7FA00000,  # payloads: tf32-dropped, bf16-dropped
    0x00000001, 0x80000001, 0x007FFFFF, 0x00008000,  # float32 subnormals (bf16 ties among them)
    0x00018000, 0x00001000, 0x00003000, 0x00007FFF,
    0x00800000, 0x7F7FFFFF, 0xFF7FFFFF,              # smallest normal, float32 max
    0x7F7F8000, 0x7F7F7FFF, 0x7F7EFFFF, 0x7F7E8000,  # bf16: overflow tie, below it, even tie
    0x7F7FF000, 0x7F7FEFFF, 0x7F7FE000,              # tf32: overflow tie, below it, max
    0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001,  # fp16: 65504, below 65520, 65520, above
    0x477FD000, 0x47800000, 0x38800000, 0x387FFFFF,  # fp16: even tie, 65536, 2^-14 and below
    0x33000000, 0x33000001, 0x32FFFFFF, 0x33C00000,  # fp16: 2^-25 (tie to 0), 3 * 2^-25
    0x337FFFFF, 0x33800000, 0x38000000, 0x38801000,
]


def neighbours(values: np.ndarray) -> np.ndarray:
    """float32 values, each with the float32 just below and just above it."""
    values = values[np.isfinite(values)]
    with np.errstate(over="ignore"):
        return np.concatenate([values, np.nextafter(values, np.float32(-np.inf)),
                               np.nextafter(values, np.float32(np.inf))])


def format_values(precision: str) -> np.ndarray:
    """Every value of the 16-bit format (bf16, fp16) as float32, and the midpoints between
    neighbours of one sign (including 0 and the step past the largest finite value)."""
    words = np.arange(2**16, dtype=np.uint16)
    if precision == "bf16":
        values = (words.astype(np.uint32) << 16).view(np.float32)
    else:
        values = words.view(np.float16).astype(np.float32)
    finite = values[np.isfinite(values) & (values >= 0)].astype(np.float64)
    finite = np.unique(np.concatenate([finite, [2.0 ** (FORMAT[precision][2] + 1)]]))
    middles = (finite[:-1] + finite[1:]) / 2  # exact in float32: one bit more than the format
    middles = np.concatenate([middles, -middles]).astype(np.float32)
    return np.concatenate([values, neighbours(middles)])


def tie_variants(bits: np.ndarray) -> np.ndarray:
    """For each pattern, the exact tie of each rounding (tf32: bit 12; bf16: bit 15) with
    nothing below it, and one ulp either side."""
    out = [bits]
    for drop in (13, 16):
        tie = (bits & np.uint32(0xFFFFFFFF ^ ((1 << drop) - 1))) | np.uint32(1 << (drop - 1))
        out += [tie, tie - np.uint32(1), tie + np.uint32(1)]
    return np.concatenate(out)


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    rng = np.random.default_rng(20240612)
    random_bits = rng.integers(0, 2**32, size=1_000_000, dtype=np.uint32)
    random_bits[:1000] &= np.uint32(0x807FFFFF)  # float32 subnormals and zeros
    random_bits[1000:2000] |= np.uint32(0x7F800000)  # infs and NaNs
    parts = [f32(SPECIAL_BITS), format_values("bf16"), format_values("fp16"),
             f32(random_bits), f32(tie_variants(random_bits[:200_000]))]
    # Around every fp16 binade edge and the fp16 subnormal range, densely.
    parts.append(np.linspace(-2.0**-13, 2.0**-13, 20_001, dtype=np.float32))
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def reference(values: np.ndarray) -> dict[str, np.ndarray]:
    return {p: round_to(values, p) for p in ROUNDED}


def independent_round(x: np.ndarray, precision: str) -> np.ndarray:
    """Round-to-nearest-even computed in float64 with ``np.frexp`` and ``np.round`` (half to
    even), no bit tricks: the quantum is 2^(e - p + 1) for x = m 2^e, 1 <= |m| < 2, e clamped
    at the smallest normal exponent (the subnormal spacing); results at or above
    2^(emax + 1) overflow to inf. Finite x only."""
    p, emin, emax = FORMAT[precision]
    wide = x.astype(np.float64)
    _, e = np.frexp(wide)  # wide = f 2^e with 0.5 <= |f| < 1: exponent e - 1 for 1 <= |m| < 2
    quantum = np.ldexp(1.0, np.maximum(e - 1, emin) - p + 1)
    rounded = np.round(wide / quantum) * quantum  # exact: the scaling is by powers of two
    rounded = np.where(np.abs(rounded) >= 2.0 ** (emax + 1), np.copysign(np.inf, wide), rounded)
    return np.copysign(rounded, wide).astype(np.float32)  # zeros keep their sign


def assert_same_bits(got: np.ndarray, want: np.ndarray, x: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(bits_of(got) != bits_of(want))
    assert bad.size == 0, (
        f"{what}: {bad.size} of {x.size} differ, e.g. "
        + ", ".join(f"x={int(bits_of(x)[i]):#010x} got {int(bits_of(got)[i]):#010x} "
                    f"want {int(bits_of(want)[i]):#010x}" for i in bad[:4]))


def assert_same_values(got: np.ndarray, want: np.ndarray, x: np.ndarray, what: str) -> None:
    """Equal bits where ``want`` is a number (so signed zeros count), NaN where it is NaN."""
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN-ness differs"
    assert_same_bits(got[~nan], want[~nan], x[~nan], what)


# --- the reference against ml_dtypes, NumPy's float16 and an independent construction ------

def test_the_values_cover_the_cases(values: np.ndarray) -> None:
    bits = bits_of(values)
    assert np.isnan(values).sum() > 1000 and np.isposinf(values).any()
    assert np.isneginf(values).any()
    assert ((bits & 0x7F800000) == 0).sum() > 1000  # float32 subnormals and zeros
    assert (bits == 0x80000000).any() and (bits == 0).any()
    assert values.size > 2_000_000


@pytest.mark.parametrize(("precision", "cast"), [("bf16", ml_dtypes.bfloat16),
                                                 ("fp16", np.float16)])
def test_reference_is_the_library_cast(values, reference, precision: str, cast) -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        expected = values.astype(cast).astype(np.float32)
    assert_same_values(reference[precision], expected, values, precision)


@pytest.mark.parametrize("precision", ROUNDED)
def test_reference_is_round_to_nearest_even(values, reference, precision: str) -> None:
    finite = np.isfinite(values)
    expected = independent_round(values[finite], precision)
    assert_same_bits(reference[precision][finite], expected, values[finite], precision)


@pytest.mark.parametrize("precision", ROUNDED)
def test_reference_keeps_infs_and_nans(values, reference, precision: str) -> None:
    got = reference[precision]
    inf = np.isinf(values)
    assert_same_bits(got[inf], values[inf], values[inf], precision)
    nan = np.isnan(values)
    out = bits_of(got[nan])
    assert np.isnan(got[nan]).all()
    assert ((out & 0x00400000) != 0).all(), "not quiet"
    drop = 16 if precision == "bf16" else 13  # payload bits the format has no room for
    kept = (bits_of(values[nan]) >> np.uint32(drop)) << np.uint32(drop)
    assert np.array_equal(out, kept | np.uint32(0x00400000)), "sign or kept payload lost"


@pytest.mark.parametrize("precision", ROUNDED)
def test_rounded_values_are_representable_and_fixed(values, reference, precision) -> None:
    """Rounding twice changes nothing; a bf16/fp16 result survives the trip through its
    storage dtype; a tf32 one has its low 13 mantissa bits clear."""
    got = reference[precision]
    assert_same_bits(round_to(got, precision), got, values, f"{precision} twice")
    finite = got[np.isfinite(got)]
    if precision == "tf32":
        assert not (bits_of(finite) & 0x1FFF).any()
    else:
        kept = finite.astype(storage_dtype(precision)).astype(np.float32)
        assert_same_bits(kept, finite, finite, f"{precision} storage")


@pytest.mark.parametrize("precision", ROUNDED)
def test_one_rounding_errs_by_at_most_the_unit_roundoff(values, reference, precision) -> None:
    _, emin, emax = FORMAT[precision]
    with np.errstate(invalid="ignore"):  # NaN payloads
        x = values.astype(np.float64)
        got = reference[precision].astype(np.float64)
    normal = np.isfinite(got) & (np.abs(x) >= 2.0**emin) & (np.abs(got) < 2.0 ** (emax + 1))
    error = np.abs(got[normal] - x[normal]) / np.abs(x[normal])
    assert error.max() <= unit_roundoff(precision)
    assert error.max() > unit_roundoff(precision) / 2  # the bound is attained near ties


def test_unit_roundoff_is_half_the_machine_epsilon() -> None:
    assert 2 * unit_roundoff("fp32") == np.finfo(np.float32).eps
    assert 2 * unit_roundoff("fp16") == np.finfo(np.float16).eps
    assert 2 * unit_roundoff("bf16") == float(ml_dtypes.finfo(ml_dtypes.bfloat16).eps)
    assert 2 * unit_roundoff("tf32") == 2.0**-10
    for p in ROUNDED:  # 1 + u is the tie above 1: it rounds to the even 1; a hair more, up
        u = unit_roundoff(p)
        assert round_to(np.float32([1 + u]), p)[0] == 1.0
        above = np.nextafter(np.float32(1 + u), np.float32(2))
        assert round_to(np.float32([above]), p)[0] == np.float32(1 + 2 * u)


def test_fp32_is_the_identity() -> None:
    x = np.float32([1.0000001, np.nan, -0.0])
    assert round_to(x, "fp32") is x
    y = np.arange(3.0)
    assert round_to(y, "fp32") is y


def test_round_to_keeps_shape_and_needs_float32() -> None:
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)[:, ::2]
    got = round_to(x, "bf16")
    assert got.shape == (3, 2) and got.dtype == np.float32
    np.testing.assert_array_equal(got, x.astype(ml_dtypes.bfloat16).astype(np.float32))
    with pytest.raises(TypeError, match=r"x: .*float32.*float64"):
        round_to(np.ones(3), "fp16")


def test_check_precision() -> None:
    for p in PRECISIONS:
        assert check_precision(p, "float32") == p
    assert check_precision("fp32", np.float64) == "fp32"
    for p in ROUNDED:
        with pytest.raises(ValueError, match=rf"precision '{p}' needs dtype='float32' \(the "
                                             r"master copy\), got 'float64'"):
            check_precision(p, "float64")
    with pytest.raises(ValueError, match="fp32, tf32, bf16, fp16; got 'half'"):
        check_precision("half")
    with pytest.raises(TypeError, match="precision must be a string"):
        check_precision(16)


def test_storage_dtype() -> None:
    assert storage_dtype("bf16") == np.dtype(ml_dtypes.bfloat16)
    assert storage_dtype("fp16") == np.float16
    assert storage_dtype("tf32") == np.float32
    assert storage_dtype("fp32") == np.float32
    assert storage_dtype("fp32", "float64") == np.float64
    with pytest.raises(ValueError, match="needs dtype='float32'"):
        storage_dtype("bf16", "float64")


def test_codes_match_the_precisions() -> None:
    assert kp.CODES == {"fp32": 0, "tf32": 1, "bf16": 2, "fp16": 3}
    assert tuple(kp.CODES) == PRECISIONS


# --- the bit arithmetic, compiled for the CPU, against the reference ---------------------

@pytest.mark.parametrize("precision", ROUNDED)
def test_cpu_range_kernel_equals_the_reference(values, reference, precision: str) -> None:
    got = values.copy()
    half = got.size // 2  # two ranges, as the cpu backend's threads would split it
    round_range(0, half, kp.CODES[precision], got)
    round_range(half, got.size, kp.CODES[precision], got)
    assert_same_bits(got, reference[precision], values, precision)


@pytest.mark.parametrize("precision", ROUNDED)
def test_cpu_scalar_functions_equal_the_reference(values, reference, precision: str) -> None:
    assert_same_bits(each(kp.CODES[precision], values), reference[precision], values, precision)


def signed_bits(x):
    """The compiled CUDA path's reinterpretation (libdevice float_as_int: an int32), on the
    CPU: the sign-extended int32 made unsigned."""
    return np.int64(np.float32(x).view(np.int32)) & 0xFFFFFFFF


def signed_float(u):
    """libdevice int_as_float's side: truncate to int32, reinterpret."""
    return np.int32(u).view(np.float32)


SIGNED = kp.compile_for(njit(inline="always"), signed_bits, signed_float).round_code


@njit
def each_signed(code, x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = SIGNED(code, x[i])
    return out


@pytest.mark.parametrize("precision", ROUNDED)
def test_int32_reinterpretation_gives_the_same_bits(values, reference, precision) -> None:
    """``cuda_functions`` reinterprets through int32 (no GPU here to run it compiled): the
    same conversions compiled for the CPU give the reference's bits, negative words too."""
    got = each_signed(kp.CODES[precision], values)
    assert_same_bits(got, reference[precision], values, precision)


def test_cpu_fp32_code_is_the_identity(values) -> None:
    got = values.copy()
    round_range(0, got.size, kp.FP32, got)
    assert_same_bits(got, values, values, "fp32")


# --- CUDA under the simulator, and compiled to PTX -----------------------------------------

def simulator_sample(values: np.ndarray) -> np.ndarray:
    """A few thousand values: every special pattern, and a sample of the rest."""
    rng = np.random.default_rng(5)
    picked = rng.choice(values.size, size=1500, replace=False)
    return np.concatenate([f32(SPECIAL_BITS), neighbours(f32(SPECIAL_BITS)), values[picked]])


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("precision", PRECISIONS)
def test_cuda_kernel_equals_the_reference_in_the_simulator(values, precision: str) -> None:
    """The kernel source as the cuda backend would launch it (conftest sets the
    simulator; a GPU run of the compiled libdevice path is for ``pytest -m gpu`` later)."""
    from numba import config, cuda

    assert config.ENABLE_CUDASIM
    function, signature = kp.cuda_round_kernel()
    kernel = cuda.jit(signature)(function)
    x = simulator_sample(values)
    device = cuda.to_device(x)
    threads = 128
    kernel[(x.size + threads - 1) // threads, threads](kp.CODES[precision], device)
    want = x if precision == "fp32" else round_to(x, precision)
    assert_same_bits(device.copy_to_host(), want, x, precision)


PTX_PROBE = """
import json
from numba import cuda
import kernel_report
from gpuback.kernels import precision
function, signature = precision.cuda_round_kernel()
ptx, _ = cuda.compile_ptx(function, signature, cc=(8, 0))
f64, sample = kernel_report.count_f64(ptx)
try:
    ptxas, _ = kernel_report.find_ptxas()
    counts = kernel_report.assemble(ptxas, ptx, 80)
except kernel_report.ToolchainMissingError:
    counts = None
print("PROBE " + json.dumps({"f64": f64, "sample": sample, "counts": counts}))
"""


@pytest.mark.slow
def test_cuda_kernel_compiles_for_sm80_in_float32() -> None:
    """Compiled by NVVM (a subprocess without the simulator): no ``.f64`` instruction, and
    with ptxas present, no spills."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = str(Path(kernel_report.__file__).parent)  # bench/
    done = subprocess.run([sys.executable, "-c", PTX_PROBE], env=env, cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode and ("NVVM" in done.stderr or "libnvvm" in done.stderr.lower()):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must have NVVM: {done.stderr[-500:]}")
        pytest.skip("NVVM is not installed (pip install '.[test,sim13]')")
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(t for t in done.stdout.splitlines() if t.startswith("PROBE "))
    probe = json.loads(line[len("PROBE "):])
    assert probe["f64"] == 0, probe["sample"]
    if probe["counts"] is not None:
        assert probe["counts"]["spill_stores"] == probe["counts"]["spill_loads"] == 0
        assert probe["counts"]["registers"] > 0
    assert kernel_report.count_f64("\tadd.f64 %fd1, %fd2, %fd3;")[0] == 1  # the counter counts
