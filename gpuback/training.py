"""Training: the fit loop, evaluation and prediction, on any backend.

``fit`` runs mini-batch gradient descent: for each batch, ``loss_and_grads`` (forward
and backprop, Bishop 5.3) and one optimiser step; per epoch it records the training
loss and accuracy, the validation loss and accuracy, and samples per second. A
NaN or infinite loss or gradient stops training with ``TrainingDivergedError``, naming the
epoch and step.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from .backends import cuda_device
from .checks import check_inputs, check_int, check_targets
from .optim import Adam, Optimizer

CLASSIFICATION = ("cross_entropy", "binary_cross_entropy")


class TrainingDivergedError(RuntimeError):
    """The loss or a gradient became NaN or infinite."""


def accuracy(loss: str, Y: np.ndarray, T: np.ndarray) -> float | None:
    """Fraction correct for classification losses (None for sum of squares).

    Cross-entropy: arg-max of the outputs against the label (or the target row's arg-max).
    Binary cross-entropy: each output thresholded at 0.5 against the target at 0.5.
    """
    if loss == "cross_entropy":
        labels = T if T.ndim == 1 else T.argmax(axis=1)
        return float(np.mean(Y.argmax(axis=1) == labels))
    if loss == "binary_cross_entropy":
        return float(np.mean((Y > 0.5) == (T > 0.5)))
    return None


def _batches(n: int, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def _host(net: Any, X: Any, T: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validated host copies of a whole data set (batches are sliced from them)."""
    X = _to_numpy(check_inputs(X, net._plan.n_in))
    if T is None:
        return X, None
    return X, _to_numpy(check_targets(T, net._plan.loss, net._plan.n_out, X.shape[0]))


def _to_numpy(array: Any) -> np.ndarray:
    return array if isinstance(array, np.ndarray) else cuda_device.to_numpy(array)


def predict(net: Any, X: Any, batch_size: int = 1024) -> np.ndarray:
    """Outputs for every sample of ``X``, computed ``batch_size`` samples at a time."""
    batch_size = check_int("batch_size", batch_size, 1)
    X, _ = _host(net, X)
    return np.concatenate([net.forward(X[i:i + batch_size])
                           for i in range(0, X.shape[0], batch_size)])


def evaluate(net: Any, X: Any, T: Any, batch_size: int = 1024) -> dict[str, float | None]:
    """Mean loss and accuracy (None for sum of squares) over the whole of ``X``, ``T``."""
    batch_size = check_int("batch_size", batch_size, 1)
    X, T = _host(net, X, T)
    total, outputs = 0.0, []
    for i in range(0, X.shape[0], batch_size):
        xb, tb = X[i:i + batch_size], T[i:i + batch_size]
        total += net._loss(xb, tb) * xb.shape[0]
        outputs.append(net._last_outputs())
    return {"loss": total / X.shape[0],
            "accuracy": accuracy(net._plan.loss, np.concatenate(outputs), T)}


def fit(net: Any, X: Any, T: Any, epochs: int = 10, batch_size: int = 32,
        optimizer: Optimizer | None = None, validation: tuple[Any, Any] | None = None,
        shuffle: bool = True, seed: int = 0, early_stopping: int | None = None,
        checkpoint: str | None = None, progress: bool = True) -> dict[str, list[float]]:
    """Train ``net`` in place; return the per-epoch history (see ``Network.fit``)."""
    check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    if optimizer is None:
        optimizer = Adam()
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected a gpuback.optim optimiser, got {optimizer!r}")
    if early_stopping is not None and (isinstance(early_stopping, bool) or
                                       not isinstance(early_stopping, int) or early_stopping < 1):
        raise ValueError(f"early_stopping: expected a positive integer (epochs of patience) "
                         f"or None, got {early_stopping!r}")
    if early_stopping is not None and validation is None:
        raise ValueError("early_stopping: needs validation data to watch")
    X, T = _host(net, X, T)
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError("validation: expected a pair (X_val, T_val)")
        Xv, Tv = _host(net, *validation)
    history: dict[str, list] = {"loss": [], "accuracy": [], "samples_per_second": []}
    if validation is not None:
        history.update(val_loss=[], val_accuracy=[])
    best, best_params, waited = np.inf, None, 0
    bar = _progress(epochs * -(-X.shape[0] // batch_size), progress)
    ops = net._optimizer_view()[0]
    for epoch in range(1, epochs + 1):
        start, total, outputs, order = time.perf_counter(), 0.0, [], []
        # one generator per (seed, epoch number): a resumed run shuffles as an unbroken one
        rng = np.random.default_rng([seed, net.epochs_trained]) if shuffle else None
        for step, idx in enumerate(_batches(X.shape[0], batch_size, rng), start=1):
            loss, grads = net.loss_and_grads(X[idx], T[idx], as_device=True)
            if not np.isfinite(loss) or not all(ops.all_finite(g) for g in grads.values()):
                what = "loss" if not np.isfinite(loss) else "a gradient"
                raise TrainingDivergedError(
                    f"training diverged: {what} is NaN or infinite at epoch {epoch}, step "
                    f"{step} (loss {loss}); lower the learning rate "
                    f"({optimizer.current_lr():g})")
            optimizer.step(net)
            total += loss * idx.size
            outputs.append(net._last_outputs())
            order.append(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}")
        seconds = time.perf_counter() - start
        net.epochs_trained += 1
        history["loss"].append(total / X.shape[0])
        history["accuracy"].append(accuracy(net._plan.loss, np.concatenate(outputs),
                                            T[np.concatenate(order)]))
        history["samples_per_second"].append(X.shape[0] / seconds)
        if validation is not None:
            result = evaluate(net, Xv, Tv, batch_size=max(batch_size, 256))
            history["val_loss"].append(result["loss"])
            history["val_accuracy"].append(result["accuracy"])
        if checkpoint is not None:
            net.save(checkpoint, optimizer)
        if early_stopping is not None:  # (validation is required with it)
            if result["loss"] < best:
                best, best_params, waited = result["loss"], net.parameters(), 0
            else:
                waited += 1
                if waited >= early_stopping:
                    net.set_parameters(best_params)  # keep the best epoch's weights
                    break
    if bar is not None:
        bar.close()
    return history


def _progress(total: int, wanted: bool) -> Any:
    """A tqdm bar on a terminal; None when not wanted, not a TTY, or tqdm is missing."""
    if not wanted or not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="step", leave=False)
