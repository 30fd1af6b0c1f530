"""Bad data, bad parameters and bad constructor arguments: clear errors, never deep crashes."""

from __future__ import annotations

import numpy as np
import pytest

import gpuback
from gpuback.core.checks import check_bool, check_int, check_real, is_integer, is_real

NAN = float("nan")


def test_a_bool_is_neither_a_count_nor_a_number() -> None:
    """The argument checks of every module: Python and NumPy integers are integers and real
    numbers, a bool (Python's or NumPy's) is neither, and NaN and infinities are not real
    numbers a check accepts."""
    for integer in (0, 7, np.int64(7), np.uint8(3)):
        assert is_integer(integer) and is_real(integer)
    for other in (True, np.bool_(False), 1.0, "1", None):
        assert not is_integer(other)
    assert is_integer(3, 3, 3) and not is_integer(2, 3) and not is_integer(4, None, 3)
    for real in (0.5, np.float32(0.5), -2):
        assert is_real(real)
    for other in (True, np.bool_(True), NAN, np.inf, -np.inf, "0.5", None, 1j):
        assert not is_real(other)
    assert check_int("n", np.int64(4), 1) == 4 and type(check_int("n", np.int64(4), 1)) is int
    assert check_bool("flag", np.bool_(True)) is True
    assert check_real("rate", np.float32(0.5), 0, 1) == 0.5


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: check_int("n", True, 1), TypeError, r"^n: expected an integer, got True \(bool\)$"),
    (lambda: check_int("n", 0, 1), ValueError, r"^n: expected an integer >= 1, got 0$"),
    (lambda: check_real("r", "1", 0), TypeError, r"^r: expected a real number, got '1' \(str\)$"),
    (lambda: check_real("r", -1, 0), ValueError, r"^r: expected a finite number >= 0, got -1$"),
    (lambda: check_real("r", 0, 0, low_open=True), ValueError,
     r"^r: expected a finite number > 0, got 0$"),
    (lambda: check_real("r", np.inf, 0), ValueError, r"^r: expected a finite number >= 0"),
    (lambda: check_real("r", 1, 0, 1), ValueError, r"^r: expected a number in \[0, 1\), got 1$"),
    (lambda: check_real("r", NAN, 0, 1, high_open=False), ValueError,
     r"^r: expected a number in \[0, 1\], got nan$"),
    (lambda: check_bool("flag", 1), TypeError, r"^flag: expected True or False, got 1$"),
])
def test_argument_checks_name_the_argument_and_what_was_expected(call, exc, match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def _ce_net() -> gpuback.Network:
    return gpuback.Network(gpuback.mlp_spec([4, 3, 2], activation="tanh"))


def _net(loss: str) -> gpuback.Network:
    return gpuback.Network(gpuback.mlp_spec([4, 3, 2], activation="tanh", loss=loss))


GOOD_X = np.zeros((3, 4))

BAD_X = [
    ("wrong-width", np.zeros((3, 5)), ValueError, r"X: expected shape \(batch, 4\), got \(3, 5\)"),
    ("ndim-1", np.zeros(4), ValueError, "X: expected a 2-D array.*got ndim 1"),
    ("ndim-3", np.zeros((2, 3, 4)), ValueError, "X: expected a 2-D array.*got ndim 3"),
    ("empty-batch", np.zeros((0, 4)), ValueError, "X: expected at least one sample"),
    ("nan", np.array([[0.0, NAN, 0, 0]]), ValueError, r"X: expected finite values, got nan at "
     r"index \(0, 1\)"),
    ("inf", np.array([[0.0, 0, 0, np.inf]]), ValueError, "X: expected finite values, got inf"),
    ("strings", np.array([["a", "b", "c", "d"]]), TypeError, "X: expected a numeric"),
    ("objects", np.array([[None] * 4], dtype=object), TypeError, "X: expected a numeric"),
    ("booleans", np.ones((1, 4), dtype=bool), TypeError, "X: expected a numeric"),
    ("complex", np.ones((1, 4), dtype=complex), TypeError, "X: expected a numeric"),
    ("ragged", [[1, 2, 3, 4], [1, 2]], TypeError, "X: expected a numeric array, got a ragged"),
]


@pytest.mark.parametrize(("case", "X", "exc", "match"), BAD_X, ids=[b[0] for b in BAD_X])
def test_bad_inputs(case: str, X, exc, match: str) -> None:
    net = _ce_net()
    with pytest.raises(exc, match=match):
        net.forward(X)
    with pytest.raises(exc, match=match):
        net.loss_and_grads(X, np.zeros(len(X), dtype=int))


BAD_T = [
    # (id, loss, T for a batch of 3 with 2 outputs, exception, regex)
    ("labels-out-of-range", "cross_entropy", np.array([0, 2, 1]), ValueError,
     r"T: class labels must lie in \[0, 2\), got 2 at index 1"),
    ("labels-negative", "cross_entropy", np.array([0, -1, 1]), ValueError,
     r"class labels must lie in \[0, 2\), got -1"),
    ("labels-fractional", "cross_entropy", np.array([0.0, 0.5, 1.0]), ValueError,
     r"T: class labels must be integral, got 0.5 at index 1; probability rows must have "
     r"shape \(3, 2\)"),
    ("labels-wrong-count", "cross_entropy", np.array([0, 1]), ValueError,
     r"T: expected 3 class labels.*got shape \(2,\)"),
    ("rows-wrong-shape", "cross_entropy", np.full((3, 3), 1 / 3), ValueError,
     r"T: expected \(3, 2\) probability rows, or \(3,\) / \(3, 1\) class labels 0..1, for "
     r"loss 'cross_entropy'; got shape \(3, 3\)"),
    ("rows-not-summing-to-one", "cross_entropy", np.array([[0.5, 0.5], [0.7, 0.7], [1, 0]]),
     ValueError, "T: cross-entropy target rows must sum to 1, row 1 sums to 1.4"),
    ("rows-negative", "cross_entropy", np.array([[1.5, -0.5], [1, 0], [0, 1]]), ValueError,
     "must be non-negative"),
    ("sse-wrong-shape", "sum_of_squares", np.zeros((3,)), ValueError,
     r"T: expected \(3, 2\) targets for loss 'sum_of_squares'; got shape \(3,\): 1-D "
     r"targets are accepted only for a single output"),
    ("sse-transposed", "sum_of_squares", np.zeros((2, 3)), ValueError,
     r"got shape \(2, 3\)"),
    ("sse-nan", "sum_of_squares", np.array([[0, 0], [0, NAN], [0, 0]]), ValueError,
     r"T: expected finite values, got nan at index \(1, 1\)"),
    ("bce-out-of-unit-interval", "binary_cross_entropy", np.array([[0, 1], [0, 2], [0, 0]]),
     ValueError, r"T: binary cross-entropy targets must lie in \[0, 1\]"),
    ("poisson-negative", "poisson", np.array([[0, 1], [2, -1], [0, 3]]), ValueError,
     r"T: Poisson targets must be >= 0 \(counts or rates\), got a minimum of -1"),
    ("poisson-inf", "poisson", np.array([[0, 1], [2, np.inf], [0, 3]]), ValueError,
     r"T: expected finite values, got inf at index \(1, 1\)"),
    ("strings", "sum_of_squares", np.array([["a", "b"]] * 3), TypeError, "T: expected a numeric"),
]


@pytest.mark.parametrize(("case", "loss", "T", "exc", "match"), BAD_T,
                         ids=[b[0] for b in BAD_T])
def test_bad_targets(case: str, loss: str, T, exc, match: str) -> None:
    with pytest.raises(exc, match=match):
        _net(loss).loss_and_grads(GOOD_X, T)


def test_python_lists_and_integer_arrays_are_accepted() -> None:
    net = _ce_net()
    as_list = net.forward([[1, 2, 3, 4]])
    as_float = net.forward(np.array([[1.0, 2.0, 3.0, 4.0]]))
    np.testing.assert_array_equal(as_list, as_float)
    loss, _ = net.loss_and_grads([[1, 2, 3, 4]], [1])
    assert np.isfinite(loss)


def test_a_failed_call_leaves_the_network_usable() -> None:
    net = _ce_net()
    x = np.ones((2, 4))
    before = net.forward(x)
    with pytest.raises(ValueError):
        net.loss_and_grads(np.ones((5, 4)), np.array([0, 7, 0, 0, 0]))
    np.testing.assert_array_equal(net.forward(x), before)


BAD_PARAMS = [
    ("not-a-dict", [np.zeros(3)], TypeError, "params: expected a dict"),
    ("unknown-name", {"x->y": np.zeros((2, 4))}, ValueError,
     "params: unknown parameter 'x->y', expected names from"),
    ("wrong-shape", {"x->h1": np.zeros((4, 3))}, ValueError,
     r"params\['x->h1'\]: expected shape \(3, 4\), got \(4, 3\)"),
    ("bias-wrong-shape", {"h1": np.zeros((3, 1))}, ValueError,
     r"params\['h1'\]: expected shape \(3,\)"),
    ("nan", {"y": np.array([0.0, NAN])}, ValueError, r"params\['y'\]: expected finite values"),
    ("strings", {"y": np.array(["a", "b"])}, TypeError, r"params\['y'\]: expected a numeric"),
]


@pytest.mark.parametrize(("case", "params", "exc", "match"), BAD_PARAMS,
                         ids=[b[0] for b in BAD_PARAMS])
def test_bad_set_parameters(case: str, params, exc, match: str) -> None:
    net = _ce_net()
    before = net.parameters()
    with pytest.raises(exc, match=match):
        net.set_parameters(params)
    for k, v in net.parameters().items():  # nothing was half-applied
        np.testing.assert_array_equal(v, before[k])


def test_set_parameters_accepts_a_subset_and_copies() -> None:
    net = _ce_net()
    before = net.parameters()
    new_bias = np.array([0.5, -0.5])
    net.set_parameters({"y": new_bias})
    new_bias[0] = 99.0  # the network holds its own copy
    after = net.parameters()
    np.testing.assert_array_equal(after["y"], [0.5, -0.5])
    for k in before:
        if k != "y":
            np.testing.assert_array_equal(after[k], before[k])
    after["h1"][0] = 42.0  # parameters() returns copies too
    assert net.parameters()["h1"][0] != 42.0


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"dtype": "float16"}, ValueError, r"dtype: expected one of \['float32', 'float64'\]"),
    ({"backend": "tpu"}, ValueError,
     r"backend: expected one of \['auto', 'cuda', 'cpu', 'numpy'\], got 'tpu'"),
    ({"backend": None}, TypeError, "backend: expected a backend name"),
    ({"dtype": None}, ValueError, "dtype: expected one of"),
    ({"dtype": "int32"}, ValueError, "dtype: expected one of"),
    ({"seed": -1}, ValueError, "seed: expected an integer >= 0, got -1"),
    ({"seed": 1.5}, TypeError, r"seed: expected an integer, got 1\.5 \(float\)"),
    ({"seed": True}, TypeError, "seed: expected an integer, got True"),
    ({"deterministic": 1}, TypeError, "deterministic: expected True or False, got 1"),
])
def test_bad_constructor_arguments(kwargs: dict, exc, match: str) -> None:
    with pytest.raises(exc, match=match):
        gpuback.Network(gpuback.mlp_spec([2, 2]), **kwargs)


@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32")])
def test_dtype_spellings(dtype) -> None:
    net = gpuback.Network(gpuback.mlp_spec([2, 2]), dtype=dtype)
    assert net.dtype == "float32"
    assert net.forward(np.ones((1, 2))).dtype == np.float32
