"""Training data on the backend: ``Dataset`` (put there once, batch-major; a user's CuPy
arrays are used in place), ``StreamedDataset`` (too large for the backend's memory budget:
kept on the host and streamed through pinned buffers) and ``dataset``, which picks one;
``SampleWeights``, each sample's weight in the loss, and ``sample_weights``, which checks
them."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends.protocol import Backend
from ..core.checks import as_numeric_array, check_finite, check_inputs, check_targets
from ..core.engine import Engine
from ..core.memory import LABELS_ITEMSIZE
from ..core.workspace import Workspace


class Dataset:
    """A data set held on the network's backend, batch-major: ``X`` (n, n_in) in the
    network's dtype, and ``T`` (n, n_out) or int64 class labels (n,)."""

    def __init__(self, net: Engine, X: Any, T: Any | None = None) -> None:
        self.net, ops = net, net.ops
        self.X = ops.asarray(X, net.dtype)
        self.T = None if T is None else ops.asarray(T, np.int64 if T.ndim == 1 else net.dtype)
        self.n: int = X.shape[0]
        self.order = ops.zeros((self.n,), np.int64)

    def set_order(self, order: np.ndarray) -> None:
        """The sample order of the next pass (one host-to-device copy)."""
        self.net.ops.copy_into(self.order, order)

    def load(self, start: int, batch: int) -> tuple[Workspace, Any]:
        """Samples ``order[start:start + batch]`` gathered into the workspace; the workspace
        and its target buffer (None without targets)."""
        net, ops = self.net, self.net.ops
        ws = net.workspace(batch)
        ops.take_batch(self.X, self.order, start, ws.z[net.plan.input])
        if self.T is None:
            return ws, None
        targets = ws.labels if self.T.ndim == 1 else ws.targets
        ops.take_batch(self.T, self.order, start, targets)
        return ws, targets


class StreamedDataset:
    """A data set too large for the backend's memory budget: it stays on the host.

    Each batch is gathered on the host into one of two pinned (page-locked) buffers and
    copied to a device staging buffer asynchronously on the network's stream, so the
    host gathers batch i + 1 while the device computes batch i. Before a pinned buffer
    is refilled the host waits for the copy made from it two batches earlier.
    """

    def __init__(self, net: Engine, X: Any, T: Any | None, batch: int) -> None:
        ops = net.ops
        self.net, self.n = net, int(X.shape[0])
        self.host_X = _to_numpy(ops, X)
        self.host_T = None if T is None else _to_numpy(ops, T)
        dtypes = [net.dtype] + ([] if T is None else
                                [np.int64 if T.ndim == 1 else net.dtype])
        self._pinned = [[ops.pinned_empty((batch, *a.shape[1:]), d)
                         for a, d in zip(self._host_arrays(), dtypes, strict=True)]
                        for _ in range(2)]
        self._staged = [ops.zeros((batch, *a.shape[1:]), d)
                        for a, d in zip(self._host_arrays(), dtypes, strict=True)]
        self._copied: list[Any] = [None, None]
        self._turn = 0
        self._host_order = np.arange(self.n)
        self.order = ops.from_host(np.arange(batch), np.int64)  # staged rows in order
        self.X = self._staged[0]
        self.T = None if T is None else self._staged[1]

    def _host_arrays(self) -> list[np.ndarray]:
        return [self.host_X] + ([] if self.host_T is None else [self.host_T])

    def set_order(self, order: np.ndarray) -> None:
        """The sample order of the next pass (kept on the host)."""
        self._host_order = order

    def load(self, start: int, batch: int) -> tuple[Workspace, Any]:
        """As ``Dataset.load``: the rows gathered on the host, copied over, then loaded."""
        net, ops = self.net, self.net.ops
        rows = self._host_order[start:start + batch]
        pinned = self._pinned[self._turn]
        if self._copied[self._turn] is not None:
            ops.wait_for(self._copied[self._turn])
        staged_views = []
        for host, buf, staged in zip(self._host_arrays(), pinned, self._staged, strict=True):
            np.take(host, rows, axis=0, out=buf[:batch])
            view = staged[:batch]
            ops.copy_into(view, buf[:batch])
            staged_views.append(view)
        self._copied[self._turn] = ops.record_event()
        self._turn = 1 - self._turn
        ws = net.workspace(batch)
        ops.take_batch(staged_views[0], self.order, 0, ws.z[net.plan.input])
        if self.host_T is None:
            return ws, None
        targets = ws.labels if self.host_T.ndim == 1 else ws.targets
        ops.take_batch(staged_views[1], self.order, 0, targets)
        return ws, targets


TrainingData = Dataset | StreamedDataset


class SampleWeights:
    """Each sample's weight in the loss (``fit(..., sample_weight=w)``), on the backend.

    A step's loss is then the weighted mean over its batch, sum_n w_n E_n / sum_n w_n
    (scikit-learn's, and PyTorch's ``"mean"`` reduction with weights), and its gradient
    (5.53) that of this mean. The loss op gives the deltas (5.54) of the plain mean
    (1/B) sum_n E_n, so each sample's deltas and loss are multiplied by
    r_n = B w_n / sum_m w_m, the sum over its batch (the ``weight_samples`` op): (1/B) sum_n
    r_n E_n is the weighted mean. A batch whose weights are all zero adds nothing (r = 0).

    ``set_order`` computes r for a pass's order and batch size on the host and copies it to
    the backend once; ``at(start, rows)`` is the backend view of the rows of a step (on a
    rank of a data-parallel run, its share of the global batch: r is the global batch's).
    """

    def __init__(self, net: Engine, weights: np.ndarray) -> None:
        self.net, self.weights = net, weights
        self.n = int(weights.shape[0])
        self.factors = net.ops.zeros((self.n,), net.dtype)
        self.totals = np.zeros(0)  # each batch's sum of weights, of the last order

    def set_order(self, order: np.ndarray, batch_size: int) -> None:
        """The factors r of a pass over the samples in ``order`` in batches of
        ``batch_size`` (the last batch takes what is left); ``totals`` each batch's sum of
        weights."""
        w = self.weights[order]
        sizes = np.diff(np.append(np.arange(0, self.n, batch_size), self.n))
        self.totals = batch_sums(w, batch_size)
        scale = np.divide(sizes, self.totals, out=np.zeros_like(self.totals),
                          where=self.totals > 0)
        factors = w * np.repeat(scale, sizes)
        self.net.ops.copy_into(self.factors, factors.astype(self.net.dtype))

    def at(self, start: int, rows: int) -> Any:
        """The factors of the ``rows`` samples from position ``start`` of the order."""
        return self.factors[start:start + rows]


def batch_sums(weights: np.ndarray, batch_size: int) -> np.ndarray:
    """The sums of ``weights`` (in a pass's order) over each batch of ``batch_size`` (the
    last takes what is left)."""
    return np.add.reduceat(weights, np.arange(0, weights.shape[0], batch_size))


def sample_weights(net: Engine, sample_weight: Any, n: int,
                   name: str = "sample_weight") -> SampleWeights | None:
    """``sample_weight`` checked (None: every sample weighs the same): a 1-D array of ``n``
    finite, non-negative numbers, not all zero (``name``: what messages call it); its
    ``SampleWeights``."""
    if sample_weight is None:
        return None
    ops = net.ops
    arr = as_numeric_array(ops, name, sample_weight, f"a 1-D array of {n} weights")
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected a 1-D array of {n} weights, one per sample; got "
                         f"shape {arr.shape}")
    check_finite(ops, name, arr, None)
    host = _to_numpy(ops, arr).astype(np.float64)
    if (host < 0).any():
        bad = int(np.argmax(host < 0))
        raise ValueError(f"{name}: expected non-negative weights, got {host[bad]} at index "
                         f"{bad}")
    if not host.any():
        raise ValueError(f"{name}: every weight is zero: nothing to train on")
    return SampleWeights(net, host)


def dataset(net: Engine, X: Any, T: Any | None, batch: int,
            names: tuple[str, str] = ("X", "T")) -> TrainingData:
    """The data validated (in the network's dtype; ``names``: what messages call X and T),
    then on the backend (a ``Dataset``) when it fits the backend's memory budget, else a
    ``StreamedDataset``."""
    ops, plan = net.ops, net.plan
    X = check_inputs(ops, X, plan.n_in, net.dtype, names[0])
    if T is not None:
        T = check_targets(ops, T, plan.loss, plan.n_out, X.shape[0], net.dtype, names[1])
    itemsize = np.dtype(net.dtype).itemsize
    target_itemsize = LABELS_ITEMSIZE if T is not None and T.ndim == 1 else itemsize
    size = X.size * itemsize + (0 if T is None else T.size * target_itemsize)
    if size <= ops.memory_budget():
        return Dataset(net, X, T)
    return StreamedDataset(net, X, T, min(batch, X.shape[0]))


def _to_numpy(ops: Backend, array: Any) -> np.ndarray:
    return ops.to_host(array) if ops.is_device_array(array) else np.asarray(array)
