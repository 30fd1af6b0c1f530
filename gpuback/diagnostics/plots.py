"""Training curves: the history of ``Network.fit`` drawn per epoch, labelled with what its
numbers are, and a one-line title naming the network, backend and optimiser.

What the history holds (``gpuback.training.fit``): ``loss`` and ``accuracy`` are the
training figures of each epoch, the sum over the epoch's mini-batches of each sample's
loss (and correct count), taken in the forward pass of its batch, before that batch's
update, divided by the number of samples: a running mean over the epoch while the weights
change, not an evaluation of the weights the epoch ends with. ``val_loss`` and
``val_accuracy`` evaluate the validation data with the weights at the end of the epoch.
``accuracy`` entries are None for sum of squares and Poisson (regression losses): then only
the loss panel is drawn.

matplotlib (``pip install 'gpuback[plot]'``) is imported only when a curve is drawn, and
never through ``pyplot``: the figure is a ``matplotlib.figure.Figure`` on an Agg canvas of
its own, so neither the user's chosen backend nor pyplot's figure list is touched.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.checks import check_int
from ..network import Network

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..optim.optimizers import Optimizer

# The legend labels: what the numbers of each history key are (see the module docstring).
TRAIN_LABEL = "train (running mean over the epoch)"
VALIDATION_LABEL = "{name} (end of epoch)"

_MISSING = "plot_history needs matplotlib: pip install 'gpuback[plot]'"


def plot_history(history: Mapping[str, Sequence[float | None]], path: str | os.PathLike[str],
                 title: str | None = None, *, first_epoch: int = 1,
                 validation_name: str = "validation") -> Path:
    """Draw ``history`` (what ``Network.fit`` returns) to the image file ``path``; return it.

    Loss on the left, accuracy on the right (left out when the history has no accuracy:
    sum of squares, Poisson), against the epoch number: ``first_epoch`` is the number of the
    history's first epoch, for a resumed run whose history holds only the epochs run now:
    the network's ``epochs_trained`` before the ``fit`` call, plus one (after it, without
    early stopping, ``net.epochs_trained - len(history["loss"]) + 1``; early stopping
    rolls ``epochs_trained`` back to the best epoch, the history keeps every epoch run).
    The training lines are labelled as the running mean over the epoch they are, the
    validation ones (keys ``val_loss``, ``val_accuracy``, drawn when present) as evaluated
    at the end of the epoch; ``validation_name`` names that data in the legend (``"test"``
    when the validation data is the test split). ``title``: the figure's title
    (``describe_network`` makes one).

    The format follows the suffix of ``path`` (PNG without one). The file is written
    beside ``path`` under a temporary name, then moved over it: a reader never sees a
    half-written image. Raises ``ValueError`` for an empty or inconsistent history and
    ``ImportError`` when matplotlib is not installed.
    """
    fig = history_figure(history, title, first_epoch=first_epoch,
                         validation_name=validation_name)
    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            fig.savefig(f, format=fmt, dpi=100)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def history_figure(history: Mapping[str, Sequence[float | None]], title: str | None = None,
                   *, first_epoch: int = 1, validation_name: str = "validation") -> Figure:
    """The figure ``plot_history`` saves (same arguments, less the path): a
    ``matplotlib.figure.Figure`` on its own Agg canvas, one axes per panel (loss, then
    accuracy when the history has any), never registered with pyplot."""
    first_epoch = check_int("first_epoch", first_epoch, 1)
    if not isinstance(validation_name, str) or not validation_name:
        raise TypeError(f"validation_name: expected a non-empty string, got "
                        f"{validation_name!r}")
    panels = _panels(history)
    figure_class, canvas_class, integer_locator = _matplotlib()
    fig = figure_class(figsize=(4.5 * len(panels), 3.8), layout="constrained")
    canvas_class(fig)
    n = len(history["loss"])
    epochs = list(range(first_epoch, first_epoch + n))
    labels = {"train": TRAIN_LABEL, "val": VALIDATION_LABEL.format(name=validation_name)}
    axes: list[Axes] = fig.subplots(1, len(panels), squeeze=False)[0].tolist()
    for ax, (quantity, lines) in zip(axes, panels, strict=True):
        for which, values in lines:
            ax.plot(epochs, values, marker="o" if n == 1 else None, label=labels[which])
        ax.set(xlabel="epoch", ylabel=quantity, title=quantity)
        ax.xaxis.set_major_locator(integer_locator(integer=True))
        ax.legend(fontsize="small")
    if title is not None:
        fig.suptitle(title)
    figure: Figure = fig
    return figure


def _panels(history: Mapping[str, Sequence[float | None]]
            ) -> list[tuple[str, list[tuple[str, list[float]]]]]:
    """The panels to draw: (quantity, [(train or val, values)]), the loss panel first; the
    values as floats, a None entry as NaN (a gap). ValueError for an empty history, one
    without ``loss``, or series of other lengths than ``loss``."""
    if not isinstance(history, Mapping):
        raise TypeError(f"history: expected the mapping Network.fit returns, got "
                        f"{type(history).__name__}")
    if not history:
        raise ValueError("history: no epochs to plot (the history is empty)")
    if "loss" not in history:
        raise ValueError(f"history: expected a 'loss' series (what Network.fit returns), got "
                         f"keys {sorted(history)}")
    n = len(history["loss"])
    if n == 0:
        raise ValueError("history: no epochs to plot (history['loss'] is empty)")
    panels = []
    for quantity in ("loss", "accuracy"):
        lines = []
        for which, key in (("train", quantity), ("val", f"val_{quantity}")):
            if key not in history:
                continue
            values = list(history[key])
            if len(values) != n:
                raise ValueError(f"history: {key!r} has {len(values)} entries, 'loss' {n}: "
                                 f"expected one per epoch in each")
            if all(v is None for v in values):  # accuracy under sum of squares
                continue
            lines.append((which, [math.nan if v is None else float(v) for v in values]))
        if lines:
            panels.append((quantity, lines))
    return panels


def _matplotlib() -> tuple[Any, Any, Any]:
    """matplotlib's Figure, FigureCanvasAgg and MaxNLocator, imported now (not through
    pyplot, so no backend is selected); ImportError naming the extra without matplotlib."""
    try:
        import matplotlib  # noqa: F401  (first: a missing package fails here)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError(_MISSING) from None
    return Figure, FigureCanvasAgg, MaxNLocator


def describe_network(net: Network, optimizer: Optimizer | None = None) -> str:
    """A one-line title for a training curve: the network, backend, dtype and optimiser.

    A chain of groups (an MLP, ``mlp_spec`` or ``sparse_mlp_spec``): its sizes joined by
    '-' and the hidden activation (one per hidden group, '/'-joined, when they differ),
    with the count of sparse blocks and of parameters when it has any sparse ones, e.g.
    ``"64-128-10 relu, cpu float32, Adam lr 0.003"``. Any other wiring: its group count,
    input and output sizes, hidden activations, block count (sparse ones) and parameter
    count, e.g. ``"DAG of 5 groups (3 in, 2 out; tanh/sigmoid/softplus), 6 blocks
    (1 sparse), 57 parameters, numpy float64"``. The optimiser adds its class and
    learning rate, and its momentum, weight decay and schedule when not the plain ones.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a gpuback.Network, got {type(net).__name__}")
    parts = [_describe_wiring(net), f"{net.backend} {net.dtype}"]
    if optimizer is not None:
        parts.append(_describe_optimizer(optimizer))
    return ", ".join(parts)


def _describe_wiring(net: Network) -> str:
    plan = net.plan
    order = plan.order
    hidden = [plan.groups[g].activation for g in order[1:-1]]
    sparse = sum(b.kind == "sparse" for b in plan.blocks)
    identity = len(plan.connections) - len(plan.blocks)
    n_params = sum(math.prod(shape) for shape in plan.parameter_shapes().values())
    chain = not identity and len(plan.blocks) == len(order) - 1 and all(
        len(plan.groups[g].incoming) == 1 and plan.groups[g].incoming[0].src == order[i]
        for i, g in enumerate(order[1:]))
    if chain:
        text = "-".join(str(plan.groups[g].size) for g in order)
        if hidden:
            text += " " + (hidden[0] if len(set(hidden)) == 1 else "/".join(hidden))
        if sparse:
            text += f", {sparse} sparse block{'s' * (sparse > 1)}, {n_params:,} parameters"
        return text
    kinds = "/".join(dict.fromkeys(hidden))  # the distinct ones, in order
    inner = f"{plan.n_in} in, {plan.n_out} out" + (f"; {kinds}" if kinds else "")
    special = [f"{n} {kind}" for n, kind in ((sparse, "sparse"), (identity, "identity")) if n]
    blocks = f"{len(plan.connections)} blocks" + (f" ({', '.join(special)})" if special else "")
    return f"DAG of {len(order)} groups ({inner}), {blocks}, {n_params:,} parameters"


def _describe_optimizer(optimizer: Optimizer) -> str:
    try:
        config = optimizer.config()
    except TypeError:  # a schedule of the user's own: config() cannot name it
        config = {"type": type(optimizer).__name__, "lr": optimizer.lr,
                  "weight_decay": optimizer.weight_decay, "schedule": {"type": "custom"}}
    words = [str(config["type"]), f"lr {config['lr']:g}"]
    if config.get("momentum"):
        words.append(f"momentum {config['momentum']:g}")
    if config.get("nesterov"):
        words.append("nesterov")
    if config.get("weight_decay"):
        words.append(f"weight decay {config['weight_decay']:g}")
    schedule = config.get("schedule", {}).get("type", "constant")
    if schedule != "constant":
        words.append(f"{schedule} schedule")
    return " ".join(words)


__all__ = ["TRAIN_LABEL", "VALIDATION_LABEL", "describe_network", "history_figure",
           "plot_history"]
