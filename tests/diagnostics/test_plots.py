"""gpuback.diagnostics.plots: the training-curve figure (labels, epoch numbers, values, panels), the
atomic write, the error without matplotlib, and describe_network's titles.

The figure tests need matplotlib, which the `test` extra brings (as the `plot` extra does),
so they run wherever the suite does; none skips.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import gpuback
from gpuback.diagnostics.explanation import DEMO_SPEC
from gpuback.diagnostics.plots import TRAIN_LABEL, describe_network, history_figure, plot_history
from gpuback.optim.optimizers import SGD, Adam, AdamW, Cosine

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MATPLOTLIB = ("matplotlib", "matplotlib.figure", "matplotlib.backends",
              "matplotlib.backends.backend_agg", "matplotlib.ticker")


@pytest.fixture(scope="module")
def digits():
    d = gpuback.datasets.load_digits()
    return d.X_train[:120], d.y_train[:120], d.X_test[:60], d.y_test[:60]


@pytest.fixture(scope="module")
def fitted(digits):
    """A real history: 2 epochs of a small MLP on a slice of the digits, with validation."""
    X, y, X_val, y_val = digits
    net = gpuback.Network(gpuback.mlp_spec([64, 16, 10]), backend="numpy", seed=0)
    optimizer = Adam(lr=0.003)
    history = net.fit(X, y, epochs=2, batch_size=32, optimizer=optimizer,
                      validation=(X_val, y_val), progress=False)
    return net, optimizer, history


def lines(ax):
    """{legend label: (x data, y data)} of an axes."""
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    drawn = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
             for line in ax.get_lines()}
    assert list(drawn) == legend
    return drawn


# --------------------------------------------------------------------------- the figure


def test_a_real_history_is_drawn_with_its_labels_epochs_and_values(fitted):
    net, optimizer, history = fitted
    assert len(history["loss"]) == 2 and len(history["val_accuracy"]) == 2
    title = describe_network(net, optimizer)
    fig = history_figure(history, title)
    assert fig.get_suptitle() == title == "64-16-10 relu, numpy float64, Adam lr 0.003"
    loss, accuracy = fig.axes
    assert loss.get_ylabel() == "loss" and accuracy.get_ylabel() == "accuracy"
    assert loss.get_xlabel() == accuracy.get_xlabel() == "epoch"
    validation = "validation (end of epoch)"
    assert lines(loss) == {TRAIN_LABEL: ([1, 2], history["loss"]),
                           validation: ([1, 2], history["val_loss"])}
    assert lines(accuracy) == {TRAIN_LABEL: ([1, 2], history["accuracy"]),
                               validation: ([1, 2], history["val_accuracy"])}
    assert TRAIN_LABEL == "train (running mean over the epoch)"


def test_a_resumed_run_is_numbered_from_its_first_epoch(digits):
    X, y, X_val, y_val = digits
    net = gpuback.Network(gpuback.mlp_spec([64, 8, 10]), backend="numpy")
    net.fit(X, y, epochs=1, progress=False)
    history = net.fit(X, y, epochs=2, validation=(X_val, y_val), progress=False)
    first = net.epochs_trained - len(history["loss"]) + 1
    assert first == 2
    fig = history_figure(history, first_epoch=first, validation_name="test")
    drawn = lines(fig.axes[0])
    assert drawn == {TRAIN_LABEL: ([2, 3], history["loss"]),
                     "test (end of epoch)": ([2, 3], history["val_loss"])}
    assert fig.get_suptitle() == ""  # no title given, none drawn


def test_a_regression_history_has_only_the_loss_panel(digits):
    X, _, X_val, _ = digits
    net = gpuback.Network(gpuback.mlp_spec([64, 8, 2], loss="sum_of_squares"),
                          backend="numpy")
    history = net.fit(X, X[:, :2], epochs=2, validation=(X_val, X_val[:, :2]),
                      progress=False)
    assert history["accuracy"] == [None, None] and history["val_accuracy"] == [None, None]
    fig = history_figure(history)
    (loss,) = fig.axes
    assert set(lines(loss)) == {TRAIN_LABEL, "validation (end of epoch)"}


def test_a_history_without_validation_or_accuracy_keys():
    fig = history_figure({"loss": [3.0, 2.0, 1.5]})
    (loss,) = fig.axes
    assert lines(loss) == {TRAIN_LABEL: ([1, 2, 3], [3.0, 2.0, 1.5])}
    fig = history_figure({"loss": [3.0, 2.0], "accuracy": [0.5, 0.7]}, first_epoch=5)
    assert [lines(ax) for ax in fig.axes] == [{TRAIN_LABEL: ([5, 6], [3.0, 2.0])},
                                             {TRAIN_LABEL: ([5, 6], [0.5, 0.7])}]


def test_plot_history_writes_a_png_atomically(fitted, tmp_path):
    _, _, history = fitted
    target = tmp_path / "curve.png"
    target.write_bytes(b"the previous curve")
    assert plot_history(history, str(target), "a title") == target
    assert target.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temporary left
    # the format follows the suffix
    svg = plot_history(history, tmp_path / "curve.svg")
    assert b"<svg" in svg.read_bytes()[:1000]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(fitted, tmp_path):
    _, _, history = fitted
    target = tmp_path / "curve.nosuchformat"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match="nosuchformat"):
        plot_history(history, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_pyplot_and_the_global_backend_are_left_alone(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import matplotlib
        matplotlib.use("svg")
        from gpuback import plot_history
        plot_history({{"loss": [2.0, 1.0]}}, {str(tmp_path / "c.png")!r})
        assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("history", [{}, {"loss": []}, {"loss": [], "val_loss": []}])
def test_an_empty_history_is_refused(history, tmp_path):
    with pytest.raises(ValueError, match="no epochs to plot"):
        plot_history(history, tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []


def test_inconsistent_histories_are_refused():
    with pytest.raises(ValueError, match=r"expected a 'loss' series .* \['accuracy'\]"):
        history_figure({"accuracy": [0.5]})
    with pytest.raises(ValueError, match="'val_loss' has 1 entries, 'loss' 2"):
        history_figure({"loss": [1.0, 0.5], "val_loss": [1.0]})
    with pytest.raises(TypeError, match="history: expected the mapping"):
        history_figure([1.0, 0.5])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="first_epoch"):
        history_figure({"loss": [1.0]}, first_epoch=0)


def test_without_matplotlib_the_error_names_the_extra(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    for name in MATPLOTLIB:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"^plot_history needs matplotlib: pip install "
                                          r"'gpuback\[plot\]'$") as caught:
        plot_history({"loss": [1.0]}, tmp_path / "c.png")
    assert caught.value.__suppress_context__ and caught.value.__cause__ is None
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- titles


def test_describe_network_an_mlp():
    net = gpuback.Network(gpuback.mlp_spec([64, 128, 10]), backend="numpy", dtype="float32")
    assert describe_network(net) == "64-128-10 relu, numpy float32"
    assert describe_network(net, Adam(lr=0.003)) == "64-128-10 relu, numpy float32, Adam lr 0.003"
    tanh = gpuback.Network(gpuback.mlp_spec([4, 3, 3, 2], activation="tanh"), backend="numpy")
    assert describe_network(tanh, SGD(lr=0.1, momentum=0.9, nesterov=True,
                                      schedule=Cosine(100))) == \
        "4-3-3-2 tanh, numpy float64, SGD lr 0.1 momentum 0.9 nesterov cosine schedule"
    linear = gpuback.Network(gpuback.mlp_spec([4, 2], loss="sum_of_squares"), backend="numpy")
    assert describe_network(linear, AdamW()) == \
        "4-2, numpy float64, AdamW lr 0.001 weight decay 0.01"


def test_describe_network_mixed_activations_and_sparse_blocks():
    spec = gpuback.mlp_spec([4, 3, 3, 2])
    spec["groups"][2]["activation"] = "tanh"
    assert describe_network(gpuback.Network(spec, backend="numpy")) == \
        "4-3-3-2 relu/tanh, numpy float64"
    net = gpuback.Network(gpuback.sparse_mlp_spec([64, 32, 10], density=0.05), backend="numpy")
    n_params = sum(v.size for v in net.parameters().values())
    assert n_params == 102 + 320 + 32 + 10
    assert describe_network(net) == \
        f"64-32-10 relu, 1 sparse block, {n_params} parameters, numpy float64"


def test_describe_network_a_dag():
    net = gpuback.Network(DEMO_SPEC, backend="numpy")
    n_params = sum(v.size for v in net.parameters().values())
    assert n_params == 57
    assert describe_network(net, SGD(lr=0.05)) == (
        "DAG of 5 groups (3 in, 2 out; tanh/sigmoid/softplus), 6 blocks (1 sparse), "
        "57 parameters, numpy float64, SGD lr 0.05")


def test_describe_network_a_custom_schedule_and_bad_arguments():
    net = gpuback.Network(gpuback.mlp_spec([3, 2]), backend="numpy")
    assert describe_network(net, Adam(lr=0.01, schedule=lambda step: 0.5)) == \
        "3-2, numpy float64, Adam lr 0.01 custom schedule"
    with pytest.raises(TypeError, match=r"net: expected a gpuback\.Network"):
        describe_network(gpuback.mlp_spec([3, 2]))  # type: ignore[arg-type]

