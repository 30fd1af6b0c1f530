"""Values that do not fit the network's dtype, labels that are not class indices, and
networks or training runs that do not fit in memory: each refused in one clear line.

* A float64 value beyond float32's range is finite, but cast into a float32 network it is
  inf (NaN outputs on the numpy backend, plausible ones on the others): inputs, targets and
  parameters are checked against the network's dtype, on every backend and every entry
  point (``gpuback.checks.check_range``).
* Labels {0, 1, 2, 1000000} made the CLI build a 1,000,001-output network: the loaders
  accept only the class indices 0..K-1, K >= 2, every class present.
* A network or a training run larger than the free memory is refused before anything is
  allocated (``gpuback.memory``), and the initial weights are drawn chunk by chunk, never
  as a float64 copy of the whole network (``gpuback.init``).
"""

from __future__ import annotations

import itertools
import re
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import gpuback
from gpuback import memory
from gpuback.backends import backend_module, get_backend, host_memory
from gpuback.core import init
from gpuback.datasets.loaders import DataError, load_file, load_idx, split
from gpuback.optim.optimizers import SGD, Adam, AdamW

F32_MAX = float(np.finfo(np.float32).max)
TOO_BIG = 1e39  # finite in float64, inf in float32
FITS = 1e38  # below float32's maximum (3.4e38)
RANGE_X = r"X: 1e\+39 at index \(0, 3\) is outside the float32 range \(max 3\.4e\+38\)"
UNITS = {"B": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40}


# ---------------------------------------------------------------------------- the dtype's range


def _net(backend: str, loss: str = "cross_entropy", dtype: str = "float32") -> gpuback.Network:
    return gpuback.Network(gpuback.mlp_spec([4, 3, 2], activation="tanh", loss=loss),
                           backend=backend, dtype=dtype)


def _inputs(value: float, at: tuple[int, int] = (0, 3)) -> np.ndarray:
    X = np.linspace(-1, 1, 12).reshape(3, 4)  # float64
    X[at] = value
    return X


LABELS = np.array([0, 1, 1])
ROWS = np.array([[0.5, -0.5], [1.0, 0.0], [0.0, 2.0]])


def _input_entry_points(net: gpuback.Network, X: np.ndarray) -> dict:
    """Every public way inputs reach ``net``, as zero-argument calls."""
    good = _inputs(0.0)
    sgd = SGD(lr=1e-3)
    return {
        "forward": lambda: net.forward(X),
        "loss_and_grads": lambda: net.loss_and_grads(X, LABELS),
        "loss": lambda: net.loss(X, LABELS),
        "trace": lambda: net.trace(X),
        "trace with targets": lambda: net.trace(X, LABELS),
        "fit": lambda: net.fit(X, LABELS, epochs=1, batch_size=3, optimizer=sgd,
                               progress=False),
        "fit validation": lambda: net.fit(good, LABELS, epochs=1, batch_size=3,
                                          optimizer=sgd, validation=(X, LABELS),
                                          progress=False),
        "predict": lambda: net.predict(X),
        "evaluate": lambda: net.evaluate(X, LABELS),
        "gradcheck": lambda: gpuback.gradcheck(net, X, LABELS),
    }


@pytest.mark.parametrize("value", [TOO_BIG, -TOO_BIG, 3.5e38])
def test_inputs_beyond_float32_are_refused_at_every_entry_point(backend: str,
                                                                value: float) -> None:
    net = _net(backend)
    before = net.parameters()
    for name, call in _input_entry_points(net, _inputs(value)).items():
        with pytest.raises(ValueError, match=r"X(_val)?: .* at index \(0, 3\) is outside the "
                                             r"float32 range \(max 3\.4e\+38\)") as info:
            call()
        assert f"{value:.3g}" in str(info.value), name
    for k, v in net.parameters().items():  # nothing ran: no training step was taken
        np.testing.assert_array_equal(v, before[k])


def test_the_message_names_the_value_its_place_and_the_dtype(backend: str) -> None:
    with pytest.raises(ValueError, match=RANGE_X + ": it does not fit the network's dtype"):
        _net(backend).forward(_inputs(TOO_BIG))
    with pytest.raises(ValueError, match=r"X_val: 1e\+39 at index \(0, 3\)"):
        _net(backend).fit(_inputs(0.0), LABELS, epochs=1, validation=(_inputs(TOO_BIG), LABELS),
                          progress=False)


def test_inputs_that_fit_float32_are_accepted_at_every_entry_point(backend: str) -> None:
    net = _net(backend)
    for name, call in _input_entry_points(net, _inputs(FITS)).items():
        if name != "gradcheck":  # its finite differences are meaningless at 1e38
            call()
    y = net.forward(_inputs(FITS))
    assert np.isfinite(y).all()  # tanh saturates: 1e38 is a legal, finite input
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)


def test_inf_and_nan_are_still_reported_as_not_finite(backend: str) -> None:
    net = _net(backend)
    for value, shown in ((np.inf, "inf"), (np.nan, "nan")):
        for call in (lambda X: net.forward(X), lambda X: net.predict(X),
                     lambda X: net.fit(X, LABELS, epochs=1, progress=False)):
            with pytest.raises(ValueError, match=f"X: expected finite values, got {shown} "
                                                 r"at index \(0, 3\)"):
                call(_inputs(value))


def test_a_float64_network_takes_float64_values_and_integers_always_fit(backend: str) -> None:
    assert np.isfinite(_net(backend, dtype="float64").forward(_inputs(TOO_BIG))).all()
    big_ints = np.full((3, 4), 2 ** 62, dtype=np.int64)  # 4.6e18, far below float32's max
    assert np.isfinite(_net(backend).forward(big_ints)).all()
    at_max = _inputs(0.0).astype(np.float32)
    at_max[0, 3] = F32_MAX  # float32 data into a float32 network: no cast, nothing to check
    assert np.isfinite(_net(backend).forward(at_max)).all()


def _target_entry_points(net: gpuback.Network, T: np.ndarray) -> dict:
    X = _inputs(0.0)
    sgd = SGD(lr=1e-3)
    return {
        "loss_and_grads": lambda: net.loss_and_grads(X, T),
        "loss": lambda: net.loss(X, T),
        "trace": lambda: net.trace(X, T),
        "fit": lambda: net.fit(X, T, epochs=1, batch_size=3, optimizer=sgd, progress=False),
        "fit validation": lambda: net.fit(X, ROWS, epochs=1, batch_size=3, optimizer=sgd,
                                          validation=(X, T), progress=False),
        "evaluate": lambda: net.evaluate(X, T),
        "gradcheck": lambda: gpuback.gradcheck(net, X, T),
    }


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # the float32 loss of 1e38
def test_targets_beyond_float32_are_refused_at_every_entry_point(backend: str) -> None:
    net = _net(backend, loss="sum_of_squares")
    T = ROWS.copy()
    T[2, 1] = -TOO_BIG
    for name, call in _target_entry_points(net, T).items():
        with pytest.raises(ValueError, match=r"T(_val)?: -1e\+39 at index \(2, 1\) is outside "
                                             r"the float32 range"):
            call()
        del name
    T[2, 1] = -FITS  # fits: accepted (the loss itself may overflow float32, it is no error)
    net.loss_and_grads(_inputs(0.0), T)
    net.evaluate(_inputs(0.0), T)


def test_parameters_beyond_float32_are_refused_and_nothing_is_written(backend: str,
                                                                      tmp_path: Path) -> None:
    net = _net(backend)
    before = net.parameters()
    W = before["x->h1"].astype(np.float64)
    W[1, 2] = TOO_BIG
    with pytest.raises(ValueError, match=r"params\['x->h1'\]: 1e\+39 at index \(1, 2\) is "
                                         r"outside the float32 range"):
        net.set_parameters({"h1": np.ones(3), "x->h1": W})  # a good one first: not written
    for k, v in net.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    W[1, 2] = FITS
    net.set_parameters({"x->h1": W})
    assert net.parameters()["x->h1"][1, 2] == np.float32(FITS)
    net.save(str(tmp_path / "model"))  # a value that fits is saved (1e39 stored inf before)
    loaded = gpuback.Network.load(str(tmp_path / "model"), backend=backend)
    assert loaded.parameters()["x->h1"][1, 2] == np.float32(FITS)


# ---------------------------------------------------------------------------- labels


OUTLIER = np.array([0, 1, 2, 1000000, 0, 1, 2, 0])
OUTLIER_MESSAGE = ("labels must be the class indices 0..K-1 with every class present; got 4 "
                   "distinct values up to 1000000 (missing 3..999999)")


def _features(n: int) -> np.ndarray:
    return np.arange(2 * n, dtype=np.float64).reshape(n, 2)


def _write(tmp_path: Path, kind: str, y: np.ndarray) -> Path:
    X = _features(len(y))
    if kind == "npz":
        np.savez(tmp_path / "d.npz", X=X, y=y)
        return tmp_path / "d.npz"
    if kind == "npy":
        np.save(tmp_path / "d.npy", np.column_stack([X, y]))
        return tmp_path / "d.npy"
    if kind == "csv":
        np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", fmt="%d")
        return tmp_path / "d.csv"
    images, labels = tmp_path / "d-images-idx3-ubyte", tmp_path / "d-labels-idx1-ubyte"
    images.write_bytes(bytes([0, 0, 0x08, 3, 0, 0, 0, len(y), 0, 0, 0, 1, 0, 0, 0, 2])
                       + bytes(2 * len(y)))
    labels.write_bytes(bytes([0, 0, 0x0C, 1]) + len(y).to_bytes(4, "big")
                       + y.astype(">i4").tobytes())
    return images


@pytest.mark.parametrize("kind", ["npz", "csv", "npy", "idx"])
def test_an_outlier_label_is_refused_by_every_loader(tmp_path: Path, kind: str) -> None:
    path = _write(tmp_path, kind, OUTLIER)
    with pytest.raises(DataError) as info:
        load_file(path)
    assert OUTLIER_MESSAGE in str(info.value) and str(path) in str(info.value)
    if kind == "idx":
        with pytest.raises(DataError, match=re.escape(OUTLIER_MESSAGE)):
            load_idx(path, tmp_path / "d-labels-idx1-ubyte")
    with pytest.raises(DataError, match=re.escape(OUTLIER_MESSAGE)):
        split(_features(len(OUTLIER)), OUTLIER)


def test_the_message_stays_short_however_many_classes_are_missing() -> None:
    y = np.arange(0, 200_000, 2)  # every other class: 99,999 gaps
    with pytest.raises(DataError) as info:
        split(_features(len(y)), y)
    message = str(info.value)
    assert "got 100000 distinct values up to 199998 (missing 1, 3, 5 and 99996 more)" in message
    assert len(message) < 250


@pytest.mark.parametrize("y", [np.array([1, 2, 1, 2]), np.array([0, 2, 2, 0]),
                               np.array([0.0, 1.0, 3.0, 1.0])], ids=["no-0", "no-1", "float"])
def test_a_missing_class_is_named(tmp_path: Path, y: np.ndarray) -> None:
    missing = sorted(set(range(int(y.max()) + 1)) - set(y.astype(int).tolist()))
    with pytest.raises(DataError, match=rf"missing {missing[0]}\)"):
        load_file(_write(tmp_path, "npz", y))


@pytest.mark.parametrize("kind", ["npz", "csv"])
def test_a_single_class_is_an_error_not_accuracy_one(tmp_path: Path, kind: str) -> None:
    for label in (0, 3):
        with pytest.raises(DataError, match=f"labels must name at least 2 classes.*found only "
                                            f"{label}, in all 5 samples"):
            load_file(_write(tmp_path, kind, np.full(5, label)))
    with pytest.raises(DataError, match="at least 2 classes"):
        split(_features(5), np.zeros(5, dtype=int))


def test_complete_labels_still_load(tmp_path: Path) -> None:
    y = np.array([2, 0, 1, 1, 0, 2])
    X_got, y_got = load_file(_write(tmp_path, "csv", y))
    np.testing.assert_array_equal(y_got, y)
    assert split(X_got, y_got, test_fraction=0.5).n_classes == 3


@pytest.mark.parametrize(("fraction", "exc"), [
    ("0.2", TypeError), (None, TypeError), (True, TypeError), ([0.2], TypeError),
    (float("nan"), DataError), (0, DataError), (0.0, DataError), (-0.2, DataError),
    (1, DataError), (1.0, DataError), (1.5, DataError),
    (0.01, DataError), (0.99, DataError),  # of 10 samples: no test or no training sample
])
def test_split_names_test_fraction_when_it_is_not_a_usable_fraction(fraction, exc) -> None:
    with pytest.raises(exc, match="test_fraction") as info:
        split(_features(10), np.arange(10) % 2, test_fraction=fraction)
    assert not isinstance(info.value, DataError) or exc is DataError


def test_the_cli_refuses_an_outlier_label_in_one_line(tmp_path: Path, capsys) -> None:
    from gpuback.cli.app import main

    code = main(["train", "--data", str(_write(tmp_path, "csv", OUTLIER)), "--epochs", "1",
                 "--backend", "numpy", "--no-progress", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and "missing 3..999999" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model").exists()


# ---------------------------------------------------------------------------- memory: figures


def _parse(figure: str) -> float:
    value, unit = figure.split()
    return float(value) * UNITS[unit]


def _figure(message: str, what: str) -> float:
    """The bytes a message gives for ``what`` ("parameters 7.28 TiB" -> 8.0e12)."""
    found = re.search(rf"{re.escape(what)} ([\d.]+ (?:B|KiB|MiB|GiB|TiB))", message)
    assert found, f"{what!r} not in {message!r}"
    return _parse(found.group(1))


def test_human_units() -> None:
    assert [memory.human(n) for n in (0, 1023, 1024, 1536, 10 * 2 ** 20, 7.28 * 2 ** 40)] == \
        ["0 B", "1023 B", "1.00 KiB", "1.50 KiB", "10.0 MiB", "7.28 TiB"]
    assert memory.human(512 * 2 ** 30) == "512 GiB"


def _mlp_parameter_count(sizes: list[int]) -> int:
    """Independent count: a dense MLP has n_in * n_out weights and n_out biases per layer."""
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


class Allocations:
    """Records the buffers a backend module allocates (zeros, from_host) while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
        module = backend_module(backend)
        self.nbytes: list[int] = []
        for op in ("zeros", "from_host"):
            original = getattr(module, op)

            def recording(*args, _original=original, **kwargs):
                out = _original(*args, **kwargs)
                self.nbytes.append(int(out.nbytes))
                return out

            monkeypatch.setattr(module, op, recording)


def _stub_free(monkeypatch: pytest.MonkeyPatch, backend: str, free: int) -> None:
    monkeypatch.setattr(backend_module(backend), "free_memory", lambda: free)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_network_larger_than_the_free_memory_is_refused_before_any_allocation(
        backend: str, monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    sizes = [30, 20, 5]
    count = _mlp_parameter_count(sizes)  # 725
    itemsize = np.dtype(dtype).itemsize
    _stub_free(monkeypatch, backend, 10_000)
    allocations = Allocations(monkeypatch, backend)
    with pytest.raises(memory.InsufficientMemoryError) as info:
        gpuback.Network(gpuback.mlp_spec(sizes), backend=backend, dtype=dtype)
    assert allocations.nbytes == []  # refused before any buffer was allocated
    assert isinstance(info.value, MemoryError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert "\n" not in message and f"{count:,} {dtype} parameters need" in message
    assert f"only {memory.human(10_000)} is free there" in message
    # the parameter figure is the independent count (plus at most ALIGN-element padding per
    # parameter array: 4 arrays), and the gradients take as much again
    params = _figure(message, "parameters")
    assert count * itemsize <= params * 1.005 and params <= (count + 4 * 64) * itemsize * 1.005
    assert _figure(message, "gradients") == params


def test_the_network_figure_is_what_the_network_allocates(backend: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    spec = gpuback.mlp_spec([30, 20, 5])
    allocations = Allocations(monkeypatch, backend)
    net = gpuback.Network(spec, backend=backend, dtype="float32")
    needs = {n.what: n.nbytes for n in memory.network_needs(net.plan, net.layout, "float32")}
    assert sorted(allocations.nbytes) == [needs["parameters"], needs["gradients"]]
    assert needs["initial-weight staging"] == (600 + 100) * (8 + 4)  # float64 chunk + cast
    # the boundary: exactly the need is enough, a byte less is not
    total = sum(needs.values())
    _stub_free(monkeypatch, backend, total)
    gpuback.Network(spec, backend=backend, dtype="float32")
    _stub_free(monkeypatch, backend, total - 1)
    with pytest.raises(memory.InsufficientMemoryError):
        gpuback.Network(spec, backend=backend, dtype="float32")


def test_a_million_by_million_block_is_refused_with_its_tib_figure(backend: str) -> None:
    # 10^12 weights: 3.64 TiB each for parameters and gradients in float32. Before, the
    # initial weights alone were drawn as a 7.28 TiB float64 array: a raw MemoryError.
    spec = gpuback.mlp_spec([1_000_000, 1_000_000], loss="sum_of_squares")
    with pytest.raises(memory.InsufficientMemoryError) as info:
        gpuback.Network(spec, backend=backend, dtype="float32")
    message = str(info.value)
    assert "\n" not in message
    assert f"{_mlp_parameter_count([1_000_000, 1_000_000]):,} float32 parameters need " \
           "7.28 TiB" in message
    assert "parameters 3.64 TiB, gradients 3.64 TiB" in message
    assert f"on the {backend} backend" in message


def test_the_cli_refuses_a_network_too_large_in_one_line(tmp_path: Path, capsys) -> None:
    from gpuback.cli.app import main

    code = main(["train", "--hidden", "1000000", "1000000", "--epochs", "1", "--backend",
                 "numpy", "--no-progress", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and "TiB" in err and "is free there" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_cli_counts_the_optimiser_before_drawing_a_weight(tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    """A network that fits, whose Adam state does not: refused before the network exists
    (no weight drawn), with the figure of the whole run."""
    from gpuback.cli.app import main
    from gpuback.core import engine as network_module

    spec = gpuback.mlp_spec([64, 300, 10])
    flat = gpuback.Network(spec).layout.size * 4  # float32 parameter bytes
    _stub_free(monkeypatch, "numpy", 3 * flat)  # params + grads fit, + 2 Adam buffers do not
    drawn = []
    real = network_module.weight_chunks
    monkeypatch.setattr(network_module, "weight_chunks",
                        lambda *a, **k: drawn.append(1) or real(*a, **k))
    code = main(["train", "--hidden", "300", "--epochs", "1", "--backend", "numpy",
                 "--no-progress", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Adam state (2 x parameters)" in err and "is free there" in err
    assert len(err.strip().splitlines()) == 1
    assert drawn == []
    assert not (tmp_path / "run" / "model").exists()


def test_the_free_memory_op_answers_on_every_backend(backend: str) -> None:
    free = get_backend(backend).free_memory()
    assert isinstance(free, int) and free > 0
    if get_backend(backend).device == "cpu" or backend_module(backend).status().simulated:
        # host memory: no more than the machine's available memory
        assert free <= host_memory.free_bytes() * 1.5 + 2 ** 30


# ---------------------------------------------------------------------------- memory: the host


def _fake_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cgroup: str, mountinfo: str,
               meminfo_kib: int = 8_000_000) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal:  16000000 kB\nMemAvailable:  {meminfo_kib} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "mountinfo").write_text(mountinfo)
    (proc / "self" / "status").write_text("Name: python\nVmSize:  1048576 kB\n")
    monkeypatch.setattr(host_memory, "PROC", proc)
    return proc


def test_host_free_memory_is_the_smallest_of_meminfo_cgroup_v2_and_rlimit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cg"
    job = root / "user.slice" / "job"
    job.mkdir(parents=True)
    (job / "memory.max").write_text(f"{6 * 2 ** 30}\n")  # a 6 GiB limit
    (job / "memory.current").write_text(f"{2 * 2 ** 30}\n")
    (job / "memory.stat").write_text(f"anon 1\ninactive_file {2 ** 30}\n")  # reclaimable
    (root / "user.slice" / "memory.max").write_text("max\n")
    (root / "user.slice" / "memory.current").write_text("1\n")
    _fake_host(tmp_path, monkeypatch, "0::/user.slice/job\n",
               f"30 20 0:26 / {root} rw,nosuid shared:9 - cgroup2 cgroup2 rw\n")
    assert host_memory.free_bytes() == 5 * 2 ** 30  # 6 - 2 + 1 GiB, under MemAvailable
    (job / "memory.max").write_text("max\n")
    assert host_memory.free_bytes() == 8_000_000 * 1024  # MemAvailable
    fake = SimpleNamespace(RLIMIT_AS=9, RLIM_INFINITY=-1, getrlimit=lambda _: (4 * 2 ** 30, -1))
    monkeypatch.setattr(host_memory, "resource", fake)
    assert host_memory.free_bytes() == 3 * 2 ** 30  # RLIMIT_AS 4 GiB - VmSize 1 GiB


def test_host_free_memory_reads_a_cgroup_v1_memory_controller(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mount = tmp_path / "memory"  # a container's view: the mount's root is its own group
    mount.mkdir()
    (mount / "memory.limit_in_bytes").write_text(f"{3 * 2 ** 30}\n")
    (mount / "memory.usage_in_bytes").write_text(f"{2 ** 30}\n")
    (mount / "memory.stat").write_text("total_inactive_file 0\n")
    _fake_host(tmp_path, monkeypatch, "5:memory:/docker/abc\n0::/\n",
               f"40 30 0:30 /docker/abc {mount} rw - cgroup cgroup rw,memory\n")
    assert host_memory.free_bytes() == 2 * 2 ** 30
    (mount / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert host_memory.free_bytes() == 8_000_000 * 1024


# ---------------------------------------------------------------------------- memory: training


@pytest.mark.parametrize(("make", "buffers"), [(Adam, 2), (AdamW, 2), (SGD, 1),
                                                (lambda: SGD(momentum=0.9), 1)],
                         ids=["Adam", "AdamW", "SGD", "SGD-momentum"])
def test_state_buffers_is_what_a_step_allocates(backend: str, monkeypatch: pytest.MonkeyPatch,
                                                make, buffers: int) -> None:
    optimizer = make()
    net = _net(backend)
    net.loss_and_grads(_inputs(0.0), LABELS)
    allocations = Allocations(monkeypatch, backend)
    assert optimizer.state_buffers() == buffers and not optimizer.bound_to(net)
    optimizer.step(net)
    flat = net.layout.size * 4
    assert allocations.nbytes.count(flat) == buffers and optimizer.bound_to(net)


def test_the_workspace_figure_is_what_reserve_allocates(backend: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    net = gpuback.Network(gpuback.mlp_spec([7, 5, 3]), backend=backend, dtype="float32")
    allocations = Allocations(monkeypatch, backend)
    net.reserve(13)
    assert sum(allocations.nbytes) == \
        gpuback.core.workspace.workspace_bytes(net.plan, "float32", 13)
    assert net.reserved_batch == 13


def test_a_training_run_larger_than_the_free_memory_is_refused(
        backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    net = gpuback.Network(gpuback.mlp_spec([30, 20, 5]), backend=backend, dtype="float32")
    flat = net.layout.size * 4
    workspace = gpuback.core.workspace.workspace_bytes(net.plan, "float32", 32)
    data = 1000
    need = 2 * flat + workspace + data  # Adam's m and v, the workspace, the data
    _stub_free(monkeypatch, backend, need)
    memory.check_training(net, 32, Adam(), data_bytes=data)  # exactly enough
    _stub_free(monkeypatch, backend, need - 1)
    with pytest.raises(memory.InsufficientMemoryError) as info:
        memory.check_training(net, 32, Adam(), data_bytes=data)
    message = str(info.value)
    assert "\n" not in message and message.startswith("training with batches of 32 needs ")
    assert f"{memory.human(need)} of it still to allocate" in message
    assert f"Adam state (2 x parameters) {memory.human(2 * flat)}" in message
    assert f"parameters {memory.human(flat)} (allocated)" in message
    assert f"only {memory.human(need - 1)} is free" in message
    # SGD keeps one buffer: the same run fits with one parameter buffer less
    _stub_free(monkeypatch, backend, need - flat)
    memory.check_training(net, 32, SGD(), data_bytes=data)
    with pytest.raises(memory.InsufficientMemoryError):
        memory.check_training(net, 32, None, data_bytes=data)  # fit's default: Adam


def test_what_is_allocated_already_is_not_asked_for_again(
        backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    net = gpuback.Network(gpuback.mlp_spec([30, 20, 5]), backend=backend, dtype="float32")
    optimizer = Adam()
    net.fit(_features(8)[:, :1].repeat(30, axis=1) / 16, np.arange(8) % 5, epochs=1,
            batch_size=4, optimizer=optimizer, progress=False)
    _stub_free(monkeypatch, backend, 0)  # nothing free: only a run that allocates nothing fits
    memory.check_training(net, 4, optimizer)  # state bound, workspace reserved
    with pytest.raises(memory.InsufficientMemoryError, match="workspace for batches of 64"):
        memory.check_training(net, 64, optimizer)
    with pytest.raises(memory.InsufficientMemoryError, match="SGD state"):
        memory.check_training(net, 4, SGD())


@pytest.mark.parametrize(("kwargs", "match"), [({"batch_size": 0}, "batch_size"),
                                               ({"batch_size": 2.5}, "batch_size"),
                                               ({"data_bytes": -1}, "data_bytes")])
def test_check_training_arguments(kwargs: dict, match: str) -> None:
    net = _net("numpy")
    with pytest.raises(ValueError, match=match):
        memory.check_training(net, **{"batch_size": 8, **kwargs})


# ---------------------------------------------------------------------------- initial weights


def _textbook_draw(sizes: list[int], seed: int, relu: bool) -> dict[str, np.ndarray]:
    """An MLP's initial weights drawn in float64 in one call per block: He's sqrt(2 / n_in)
    into relu layers, Glorot's sqrt(2 / (n_in + n_out)) elsewhere (the output layer)."""
    rng = np.random.default_rng(seed)
    names = ["x", *[f"h{i}" for i in range(1, len(sizes) - 1)], "y"]
    weights = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        into_relu = relu and i < len(sizes) - 2
        std = np.sqrt(2 / a) if into_relu else np.sqrt(2 / (a + b))
        weights[f"{names[i]}->{names[i + 1]}"] = rng.normal(0.0, std, size=(b, a))
    return weights


@pytest.mark.parametrize("chunk", [None, 7, 1], ids=["default", "chunk7", "chunk1"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_initial_weights_are_a_float64_draw_cast_to_the_dtype(
        backend: str, monkeypatch: pytest.MonkeyPatch, chunk: int | None, dtype: str) -> None:
    if chunk is not None:  # drawn chunk by chunk: the same values as one call per block
        monkeypatch.setattr(init, "CHUNK", chunk)
    sizes = [9, 11, 4]
    params = gpuback.Network(gpuback.mlp_spec(sizes), backend=backend, dtype=dtype,
                             seed=3).parameters()
    for name, w in _textbook_draw(sizes, 3, relu=True).items():
        assert params[name].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(params[name], w.astype(dtype))
    for bias in ("h1", "y"):
        np.testing.assert_array_equal(params[bias], np.zeros(sizes[-1] if bias == "y" else 11))


def test_no_float64_copy_of_the_whole_network_is_made(backend: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(init, "CHUNK", 2 ** 14)
    sizes = [1000, 500]  # 500,000 weights: 2 MB per float32 buffer, 4 MB as a float64 copy
    tracemalloc.start()
    try:
        net = gpuback.Network(gpuback.mlp_spec(sizes, loss="sum_of_squares"), backend=backend,
                              dtype="float32")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    buffers = 2 * net.layout.size * 4  # parameters and gradients
    assert peak < buffers + 2 ** 14 * 12 + 2 ** 20, (peak, buffers)  # + one chunk, + slack
