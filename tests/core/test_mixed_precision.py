"""Mixed precision on every backend: ``Network(..., precision=P)``.

The numpy backend is the reference: products read operands rounded to P (ml_dtypes and
NumPy's float16), hidden z and every delta stored rounded, float32 everywhere else. Every
backend matches it within a tolerance per precision; the precision is real (the gradients
move away from float32's by a rounding's worth) and stays within error bounds of the
float64 gradients; checkpoints keep it; the digits train as well as in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
from gpuback.kernels.precision import CODES
from helpers.checkpoint_files import edit_json
from helpers.random_specs import SIM_CASES, SPEC_CASES, random_data
from helpers.tolerances import rel_error

import gpuback
from gpuback.checkpoint import files as checkpoint
from gpuback.datasets import loaders as datasets
from gpuback.optim import optimizers as optim

# The unit roundoff of each precision, 2^-(significand bits): tf32 and fp16 keep 10 mantissa
# bits (11 with the implicit one), bf16 keeps 7 (8).
UNIT_ROUNDOFF = {"tf32": 2.0**-11, "bf16": 2.0**-8, "fp16": 2.0**-11}
MIXED = tuple(UNIT_ROUNDOFF)
# Another backend against the reference, normwise, in units of u: both round the same
# float32 values, which differ by summation order only (~1e-6 relative); a value that lands
# on the other side of a rounding boundary moves by one ulp of P (2u relative to itself), and
# that can reach the largest entry: 4u leaves room for it, and a missed rounding (a whole
# rounding's error, on every entry) or a wrong one shows far above.
BACKEND_UNITS = 4.0
# Against float64, normwise, in units of u: each product reads operands each within u
# (relative) of their float32 values and the errors of up to four layers compound, scaled by
# the condition of the activations (tanh's saturation amplifies them); measured up to 33u
# over the random specs. 64u bounds them; fp32 itself would be at ~2^-24 / u.
FLOAT64_UNITS = 64.0
# Cases whose gradients are identically zero (a softmax over one class), where no relative
# error can tell precisions apart.
ZERO_GRADIENT_CASES = {"softmax-1"}


def _grads(spec: dict, backend: str, precision: str, dtype: str = "float32",
           batch: int = 9) -> tuple[float, dict[str, np.ndarray]]:
    X, T = random_data(spec, batch, np.random.default_rng(3))
    net = gpuback.Network(spec, backend=backend, dtype=dtype, seed=2, precision=precision)
    return net.loss_and_grads(X, T)


def _worst(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(rel_error(a[k], b[k]) for k in b)


# --- the op ---------------------------------------------------------------------------------

def _edge_values(rng: np.random.Generator) -> np.ndarray:
    """float32 values over every range the rounding treats apart: normals of every scale,
    fp16's subnormals and overflow, ties, zeros, inf and NaN."""
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65519.0, 65520.0,
                         6e-8, 3e-8, 2.0**-24, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8,
                         1.0 + 2.0**-11, 3.4e38, 1e-40], dtype=np.float32)
    scales = 10.0 ** rng.uniform(-9, 6, size=200)
    return np.concatenate([specials, (rng.normal(size=200) * scales).astype(np.float32)])


@pytest.mark.parametrize("precision", ["fp32", *MIXED])
def test_round_to_precision_is_the_reference_bit_for_bit(backend: str, precision: str) -> None:
    values = _edge_values(np.random.default_rng(7))[:216].reshape(8, 27)
    ops = gpuback.backends.get_backend(backend)
    on_device = ops.from_host(values, np.float32)
    ops.round_to_precision(on_device, CODES[precision])
    got = ops.to_host(on_device)
    expected = gpuback.precision.round_to(values, precision)
    assert got.shape == values.shape and got.dtype == np.float32
    nan = np.isnan(expected)
    assert (np.isnan(got) == nan).all()
    assert (got[~nan].view(np.uint32) == expected[~nan].view(np.uint32)).all()
    if precision != "fp32":  # something was rounded
        assert (got[~nan] != values[~nan]).any()


# --- the network ----------------------------------------------------------------------------

@pytest.mark.parametrize("precision", MIXED)
def test_every_backend_matches_the_reference_of_its_precision(backend: str, simulated: bool,
                                                              precision: str) -> None:
    cases = SIM_CASES if simulated else SPEC_CASES
    u = UNIT_ROUNDOFF[precision]
    for name, spec in cases:
        loss, grads = _grads(spec, backend, precision)
        ref_loss, ref_grads = _grads(spec, "numpy", precision)
        assert abs(loss - ref_loss) <= BACKEND_UNITS * u * max(abs(ref_loss), 1e-30), name
        assert _worst(grads, ref_grads) <= BACKEND_UNITS * u, name


@pytest.mark.parametrize("precision", MIXED)
def test_the_precision_is_real_and_within_its_error_bound(precision: str) -> None:
    """On the reference: the gradients are not float32's (the rounding happened) and stay
    within the bound of the float64 gradients."""
    u = UNIT_ROUNDOFF[precision]
    for name, spec in SPEC_CASES:
        if name in ZERO_GRADIENT_CASES:
            continue
        _, mixed = _grads(spec, "numpy", precision)
        _, single = _grads(spec, "numpy", "fp32")
        _, double = _grads(spec, "numpy", "fp32", dtype="float64")
        assert _worst(mixed, single) >= 0.1 * u, name  # float32 is ~2^-24 away
        assert _worst(mixed, double) <= FLOAT64_UNITS * u, name
        assert _worst(single, double) <= 2.0**-16, name  # the bound is P's, not float32's


def test_bf16_is_coarser_than_fp16_and_tf32() -> None:
    """Same network: bf16's 8-bit significand errs more than the 11-bit ones, which agree
    with each other here (the values stay inside fp16's range)."""
    spec = SPEC_CASES[1][1]  # dense-tanh
    _, double = _grads(spec, "numpy", "fp32", dtype="float64")
    errors = {p: _worst(_grads(spec, "numpy", p)[1], double) for p in MIXED}
    assert errors["bf16"] > errors["fp16"] and errors["bf16"] > errors["tf32"]
    assert errors["fp16"] == pytest.approx(errors["tf32"], rel=1e-6)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_fp16_overflow_is_fp16s() -> None:
    """Inputs beyond fp16's range (65504) become inf in fp16 but not in bf16 or tf32."""
    spec = gpuback.mlp_spec([2, 3, 2], activation="identity", loss="sum_of_squares")
    X = np.array([[7e4, 1.0]])
    for precision, finite in (("fp16", False), ("bf16", True), ("tf32", True)):
        net = gpuback.Network(spec, backend="numpy", dtype="float32", precision=precision)
        assert np.isfinite(net.forward(X)).all() == finite, precision


def test_the_master_copy_stays_float32_and_unrounded(backend: str, simulated: bool) -> None:
    spec = (SIM_CASES if simulated else SPEC_CASES)[0][1]
    X, T = random_data(spec, 9, np.random.default_rng(3))
    net = gpuback.Network(spec, backend=backend, dtype="float32", seed=2, precision="bf16")
    opt = optim.SGD(lr=1e-3)
    for _ in range(2):
        net.loss_and_grads(X, T, as_device=True)
        opt.step(net)
    params = net.parameters()
    assert all(p.dtype == np.float32 for p in params.values())
    weights = np.concatenate([params[k].ravel() for k in params if "->" in k])
    # an update of 1e-3 x a gradient leaves bits below bf16's 8 significand bits
    assert (gpuback.precision.round_to(weights, "bf16") != weights).any()


# --- arguments, checkpoints, the CLI ---------------------------------------------------------

def test_bad_precisions_are_refused() -> None:
    spec = gpuback.mlp_spec([2, 3, 2])
    with pytest.raises(ValueError, match="needs dtype='float32'"):
        gpuback.Network(spec, backend="numpy", dtype="float64", precision="bf16")
    with pytest.raises(ValueError, match="fp32"):
        gpuback.Network(spec, backend="numpy", dtype="float32", precision="half")
    with pytest.raises(TypeError):
        gpuback.Network(spec, backend="numpy", dtype="float32", precision=16)
    assert gpuback.Network(spec, backend="numpy").precision == "fp32"  # float64 is fine


def test_checkpoints_keep_the_precision(backend: str, other_backend: str, tmp_path) -> None:
    spec = gpuback.mlp_spec([3, 4, 2])
    net = gpuback.Network(spec, backend=backend, dtype="float32", precision="fp16", seed=1)
    net.save(str(tmp_path / "m"))
    again = gpuback.Network.load(str(tmp_path / "m"), backend=other_backend)
    assert again.precision == "fp16" and "precision='fp16'" in repr(again)
    X = np.random.default_rng(0).normal(size=(5, 3))
    assert rel_error(again.forward(X), net.forward(X)) <= 4 * UNIT_ROUNDOFF["fp16"]


def test_a_checkpoint_from_before_precision_loads_as_fp32(tmp_path) -> None:
    target = tmp_path / "m"
    gpuback.Network(gpuback.mlp_spec([3, 4, 2]), backend="numpy", dtype="float32",
                    precision="bf16").save(str(target))
    assert checkpoint.read(str(target)).precision == "bf16"
    edit_json(target, "network.json", lambda meta: meta.pop("precision"))
    assert checkpoint.read(str(target)).precision == "fp32"
    assert gpuback.Network.load(str(target), backend="numpy").precision == "fp32"


@pytest.mark.parametrize(("precision", "dtype"), [("fp8", "float32"), ("bf16", "float64")])
def test_a_checkpoint_with_a_bad_precision_is_refused(tmp_path, precision: str,
                                                      dtype: str) -> None:
    target = tmp_path / "m"
    gpuback.Network(gpuback.mlp_spec([3, 4, 2]), backend="numpy", dtype=dtype).save(str(target))
    edit_json(target, "network.json", lambda meta: meta.update(precision=precision))
    with pytest.raises(checkpoint.CheckpointError, match=r"network\.json: precision"):
        checkpoint.read(str(target))


# --- training --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("host_backend", ["numpy", "cpu"])
def test_digits_train_as_well_in_mixed_precision(host_backend: str) -> None:
    """The digits job (64-128-10 relu, Adam, batch 32) reaches 0.96 test accuracy in bf16 and
    fp16, within a point of float32."""
    d = datasets.load_digits()
    accuracy = {}
    for precision in ("fp32", "bf16", "fp16"):
        net = gpuback.Network(gpuback.mlp_spec([64, 128, 10]), backend=host_backend,
                              dtype="float32", precision=precision, seed=0)
        net.fit(d.X_train, d.y_train, epochs=20, batch_size=32,
                optimizer=optim.Adam(lr=3e-3), progress=False)
        accuracy[precision] = net.evaluate(d.X_test, d.y_test)["accuracy"]
    for precision in ("bf16", "fp16"):
        assert accuracy[precision] >= 0.96, accuracy
        assert abs(accuracy[precision] - accuracy["fp32"]) <= 0.01, accuracy
