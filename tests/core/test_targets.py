"""The target forms people have, on every backend (the ``backend`` fixture, tests/conftest.py).

Class labels as floats (0.0, 1.0, ...), as a (batch, 1) column, or as integers of any width;
1-D targets for a single-output network: each is read as its canonical form (int64 (batch,)
labels, (batch, 1) rows), so the loss, the gradients, ``trace``, ``evaluate`` and ``fit``
give bitwise what the canonical form gives. Every other form is refused, before anything
runs, with a message naming the forms that are accepted for that loss and output count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import gpuback
from gpuback.core.checks import check_targets
from gpuback.optim import optimizers as optim

BATCH = 6
N_IN, N_OUT = 4, 3
NAN = float("nan")


def _net(backend: str, sizes: tuple[int, ...] = (N_IN, 5, N_OUT),
         loss: str = "cross_entropy", dtype: str = "float64") -> gpuback.Network:
    net = gpuback.Network(gpuback.mlp_spec(list(sizes), activation="tanh", loss=loss),
                          backend=backend, dtype=dtype, seed=1)
    rng = np.random.default_rng(7)  # nonzero biases: every path carries a real number
    net.set_parameters({g["name"]: rng.normal(scale=0.5, size=g["size"])
                        for g in net.spec["groups"] if g["name"] != "x"})
    return net


def _labels(n: int = BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_IN))
    y = np.arange(n) % N_OUT  # every class present
    rng.shuffle(y)
    return X, y.astype(np.int64)


# label form -> the form built from int64 labels (batch,)
LABEL_FORMS: dict[str, Callable[[np.ndarray], object]] = {
    "float64": lambda y: y.astype(np.float64),
    "float32": lambda y: y.astype(np.float32),
    "int-column": lambda y: y[:, None],
    "float-column": lambda y: y.astype(np.float64)[:, None],
    "float32-column": lambda y: y.astype(np.float32)[:, None],
    "int8": lambda y: y.astype(np.int8),
    "int32": lambda y: y.astype(np.int32),
    "uint8": lambda y: y.astype(np.uint8),
    "uint64-column": lambda y: y.astype(np.uint64)[:, None],
    "list-of-floats": lambda y: [float(v) for v in y],
}
# (form, where, network dtype): every form as the user's host data, and every array form as
# a backend array (a device array on the cuda backend, checked where it lives), into a
# float64 network; a few into a float32 one
PLACES = [(form, "host", "float64") for form in LABEL_FORMS] + \
    [(form, "backend", "float64") for form in LABEL_FORMS if form != "list-of-floats"] + \
    [(form, where, "float32") for form in ("float64", "float32-column", "int8")
     for where in ("host", "backend")]


def _same_grads(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"{what}: {k}")


@pytest.mark.parametrize(("form", "where", "dtype"), PLACES, ids=["-".join(p) for p in PLACES])
def test_label_forms_give_the_int_label_results_bitwise(backend: str, form: str, where: str,
                                                        dtype: str) -> None:
    net = _net(backend, dtype=dtype)
    X, y = _labels()
    T = LABEL_FORMS[form](y)
    if where == "backend":
        T = net.ops.from_host(T, np.asarray(T).dtype)
    loss, grads = net.loss_and_grads(X, y)
    loss_f, grads_f = net.loss_and_grads(X, T)
    assert loss_f == loss
    _same_grads(grads_f, grads, form)
    assert net.loss(X, T) == net.loss(X, y)
    want, got = net.trace(X, y), net.trace(X, T)
    assert got.loss == want.loss and got.delta is not None and want.delta is not None
    _same_grads(got.delta, want.delta, f"{form} delta")
    checked = check_targets(net.ops, T, "cross_entropy", N_OUT, BATCH, net.dtype)
    assert checked.shape == (BATCH,) and checked.dtype == np.int64
    np.testing.assert_array_equal(net.ops.to_host(checked) if where == "backend" else checked,
                                  y)


@pytest.mark.parametrize("loss", ["sum_of_squares", "binary_cross_entropy", "poisson"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_output_takes_1d_targets_as_its_column(backend: str, loss: str,
                                                   dtype: str) -> None:
    net = _net(backend, sizes=(N_IN, 5, 1), loss=loss, dtype=dtype)
    rng = np.random.default_rng(3)
    X, t = rng.normal(size=(BATCH, N_IN)), rng.uniform(size=BATCH)
    column = t[:, None]
    loss_c, grads_c = net.loss_and_grads(X, column)
    loss_1, grads_1 = net.loss_and_grads(X, t)
    assert loss_1 == loss_c
    _same_grads(grads_1, grads_c, loss)
    assert net.loss(X, t) == net.loss(X, column)
    assert net.evaluate(X, t) == net.evaluate(X, column)
    on_backend = net.ops.from_host(t, np.float64)
    assert net.loss_and_grads(X, on_backend)[0] == loss_c
    checked = check_targets(net.ops, t, loss, 1, BATCH, net.dtype)
    assert checked.shape == (BATCH, 1)


def test_gradcheck_takes_float_labels() -> None:
    net = _net("numpy")
    X, y = _labels()
    assert gpuback.gradcheck(net, X, y.astype(float), mode="direction") == \
        gpuback.gradcheck(net, X, y, mode="direction")


# fit sizes at full speed, and (key True) for a simulated backend
FIT = {False: {"n": 96, "batch": 16, "epochs": 3}, True: {"n": 16, "batch": 8, "epochs": 2}}


def _fit(backend: str, X, T, Xv, Tv, sizes: tuple[int, ...], loss: str, size: dict):
    net = _net(backend, sizes=sizes, loss=loss)
    history = net.fit(X, T, epochs=size["epochs"], batch_size=size["batch"],
                      optimizer=optim.SGD(lr=0.1, momentum=0.9), validation=(Xv, Tv),
                      seed=5, progress=False)
    del history["samples_per_second"]
    return net.parameters(), history, net.evaluate(Xv, Tv)


@pytest.mark.parametrize("form", ["float64", "float32", "int-column", "float-column"])
def test_fit_and_evaluate_with_label_forms_match_int_labels(backend: str, simulated: bool,
                                                           form: str) -> None:
    size = FIT[simulated]
    X, y = _labels(size["n"] + 8, seed=2)
    X, Xv, y, yv = X[:size["n"]], X[size["n"]:], y[:size["n"]], y[size["n"]:]
    to = LABEL_FORMS[form]
    want = _fit(backend, X, y, Xv, yv, (N_IN, 5, N_OUT), "cross_entropy", size)
    params, history, evaluated = _fit(backend, X, to(y), Xv, to(yv), (N_IN, 5, N_OUT),
                                      "cross_entropy", size)
    _same_grads(params, want[0], form)
    assert history == want[1]
    assert evaluated == want[2] and evaluated["accuracy"] is not None


@pytest.mark.parametrize("loss", ["sum_of_squares", "binary_cross_entropy"])
def test_fit_one_output_with_1d_targets_matches_the_column(backend: str, simulated: bool,
                                                          loss: str) -> None:
    size = FIT[simulated]
    rng = np.random.default_rng(4)
    X, t = rng.normal(size=(size["n"] + 8, N_IN)), rng.uniform(size=size["n"] + 8)
    X, Xv, t, tv = X[:size["n"]], X[size["n"]:], t[:size["n"]], t[size["n"]:]
    want = _fit(backend, X, t[:, None], Xv, tv[:, None], (N_IN, 5, 1), loss, size)
    got = _fit(backend, X, t, Xv, tv, (N_IN, 5, 1), loss, size)
    _same_grads(got[0], want[0], loss)
    assert got[1:] == want[1:]


CE_FORMS = "(6, 3) probability rows, or (6,) / (6, 1) class labels 0..2, for loss 'cross_entropy'"
Y = np.array([0, 1, 2, 0, 1, 2])
REFUSED = [
    # (id, network sizes, loss, T for a batch of 6, exception, phrases the message holds)
    ("fractional-labels", (N_IN, 5, 3), "cross_entropy", np.array([0, 1, 0.5, 2, 1, 0]),
     ValueError, ["T: class labels must be integral, got 0.5 at index 2",
                  "probability rows must have shape (6, 3)", CE_FORMS]),
    ("fractional-column", (N_IN, 5, 3), "cross_entropy", np.array([[0], [1], [2], [0], [1.25],
                                                                   [2]]),
     ValueError, ["class labels must be integral, got 1.25 at index 4", CE_FORMS]),
    ("nan-label", (N_IN, 5, 3), "cross_entropy", np.array([0, 1, NAN, 2, 1, 0]), ValueError,
     ["T: expected finite values, got nan at index (2,)", CE_FORMS]),
    ("nan-in-column", (N_IN, 5, 3), "cross_entropy", np.array([[0], [1], [NAN], [2], [1], [0]]),
     ValueError, ["T: expected finite values, got nan at index (2, 0)", CE_FORMS]),
    ("inf-label", (N_IN, 5, 3), "cross_entropy", np.array([0, 1, 2, np.inf, 1, 0]), ValueError,
     ["expected finite values, got inf at index (3,)", CE_FORMS]),
    ("float-label-out-of-range", (N_IN, 5, 3), "cross_entropy", Y + 1.0, ValueError,
     ["T: class labels must lie in [0, 3), got 3 at index 2", CE_FORMS]),
    ("huge-float-label", (N_IN, 5, 3), "cross_entropy", np.array([0, 1, 2, 1e300, 1, 0]),
     ValueError, ["class labels must lie in [0, 3), got 1e+300 at index 3", CE_FORMS]),
    ("int-column-out-of-range", (N_IN, 5, 3), "cross_entropy", (Y + 1)[:, None], ValueError,
     ["class labels must lie in [0, 3), got 3 at index 2", CE_FORMS]),
    ("two-label-columns", (N_IN, 5, 3), "cross_entropy", np.stack([Y, Y], axis=1), ValueError,
     [f"T: expected {CE_FORMS}; got shape (6, 2)"]),
    ("labels-wrong-count", (N_IN, 5, 3), "cross_entropy", Y[:5, None], ValueError,
     ["T: expected 6 class labels (one per sample of X), got shape (5, 1)", CE_FORMS]),
    ("bool-labels", (N_IN, 5, 3), "cross_entropy", Y == 1, TypeError,
     ["got dtype bool", CE_FORMS, "T.astype(int) for class labels"]),
    ("one-output-column-is-rows", (N_IN, 5, 1), "cross_entropy", np.zeros((6, 1)), ValueError,
     ["cross-entropy target rows must sum to 1", "(6, 1) probability rows, or (6,) class "
                                                  "labels 0..0, for loss 'cross_entropy'"]),
    ("sse-1d-for-3-outputs", (N_IN, 5, 3), "sum_of_squares", np.zeros(6), ValueError,
     ["T: expected (6, 3) targets for loss 'sum_of_squares'; got shape (6,)",
      "1-D targets are accepted only for a single output", "3 outputs"]),
    ("bce-1d-for-3-outputs", (N_IN, 5, 3), "binary_cross_entropy", np.zeros(6), ValueError,
     ["T: expected (6, 3) targets in [0, 1] for loss 'binary_cross_entropy'; got shape (6,)",
      "1-D targets are accepted only for a single output"]),
    ("sse-column-for-3-outputs", (N_IN, 5, 3), "sum_of_squares", np.zeros((6, 1)), ValueError,
     ["T: expected (6, 3) targets for loss 'sum_of_squares'; got shape (6, 1)"]),
    ("sse-1d-wrong-count", (N_IN, 5, 1), "sum_of_squares", np.zeros(5), ValueError,
     ["T: expected (6, 1) targets, or (6,) for a single output, for loss 'sum_of_squares'; "
      "got shape (5,)"]),
    ("bce-1d-out-of-unit-interval", (N_IN, 5, 1), "binary_cross_entropy", Y * 1.0, ValueError,
     ["binary cross-entropy targets must lie in [0, 1]",
      "(6, 1) targets in [0, 1], or (6,) for a single output"]),
    ("sse-nan-1d", (N_IN, 5, 1), "sum_of_squares", np.array([0, 1, 2, NAN, 0, 0]), ValueError,
     ["expected finite values, got nan at index (3,)", "or (6,) for a single output"]),
    ("bce-bool", (N_IN, 5, 1), "binary_cross_entropy", Y[:, None] == 1, TypeError,
     ["got dtype bool", "T.astype(float)"]),
    ("poisson-1d-for-3-outputs", (N_IN, 5, 3), "poisson", np.zeros(6), ValueError,
     ["T: expected (6, 3) targets >= 0 for loss 'poisson'; got shape (6,)",
      "1-D targets are accepted only for a single output"]),
    ("poisson-1d-negative", (N_IN, 5, 1), "poisson", np.array([0, 1, -2, 0, 3, 0.5]),
     ValueError, ["T: Poisson targets must be >= 0 (counts or rates), got a minimum of -2",
                  "(6, 1) targets >= 0, or (6,) for a single output, for loss 'poisson'"]),
    ("poisson-nan", (N_IN, 5, 3), "poisson", np.array([[0, 1, 2]] * 5 + [[0, NAN, 1]]),
     ValueError, ["T: expected finite values, got nan at index (5, 1)",
                  "(6, 3) targets >= 0 for loss 'poisson'"]),
]


def _assert_message(exc_info: pytest.ExceptionInfo, phrases: list[str], name: str) -> None:
    message = str(exc_info.value)
    for phrase in phrases:
        assert phrase.replace("T:", f"{name}:") in message, (phrase, message)


@pytest.mark.parametrize(("case", "sizes", "loss", "T", "exc", "phrases"), REFUSED,
                         ids=[r[0] for r in REFUSED])
def test_refused_forms_name_the_accepted_ones(backend: str, case: str, sizes, loss: str, T,
                                              exc, phrases: list[str]) -> None:
    net = _net(backend, sizes=sizes, loss=loss)
    X = np.zeros((BATCH, N_IN))
    before = net.parameters()
    for call in (net.loss_and_grads, net.loss, net.trace, net.evaluate):
        with pytest.raises(exc) as info:
            call(X, T)
        _assert_message(info, phrases, "T")
    with pytest.raises(exc) as info:
        net.fit(X, T, epochs=1, progress=False)
    _assert_message(info, phrases, "T")
    good = np.zeros((BATCH, sizes[-1])) if loss != "cross_entropy" else Y % sizes[-1]
    with pytest.raises(exc) as info:
        net.fit(X, good, epochs=1, validation=(X, T), progress=False)
    _assert_message(info, phrases, "T_val")
    assert net.epochs_trained == 0
    _same_grads(net.parameters(), before, case)
