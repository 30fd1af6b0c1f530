"""The arguments of ``fit`` checked before anything runs, and what every rank of a
data-parallel run must pass alike; ``check_real``, the check of a real-valued argument."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..core.checks import check_int, check_real, is_integer
from ..core.engine import Engine
from ..optim.optimizers import Optimizer
from .callbacks import Callback


def check_fit_arguments(epochs: Any, optimizer: Any, validation: Any, early_stopping: Any,
                        seed: Any, divergence_factor: Any) -> None:
    """The arguments of ``fit`` other than the data, checked before anything runs."""
    check_int("epochs", epochs, 1)
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected a gpuback.optim optimiser, got {optimizer!r}")
    if early_stopping is not None and not is_integer(early_stopping, 1):
        raise ValueError(f"early_stopping: expected a positive integer (epochs of patience) "
                         f"or None, got {early_stopping!r}")
    if early_stopping is not None and validation is None:
        raise ValueError("early_stopping: needs validation data to watch")
    if validation is not None and (not isinstance(validation, (tuple, list))
                                   or len(validation) != 2):
        raise TypeError("validation: expected a pair (X_val, T_val)")
    if not isinstance(seed, np.random.RandomState):
        check_int("seed", seed, 0)
    if divergence_factor is not None:
        check_real("divergence_factor", divergence_factor, 1.0, low_open=True)


def callback_list(callbacks: Any) -> list[Callback]:
    """``callbacks`` as a list, each checked to have the two methods of ``Callback``."""
    if isinstance(callbacks, (Callback, str)) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks: expected a list of callbacks, got {callbacks!r}")
    listed = list(callbacks)
    for callback in listed:
        if not all(callable(getattr(callback, method, None))
                   for method in ("before_update", "on_epoch_end")):
            raise TypeError(f"callbacks: expected objects with the methods before_update and "
                            f"on_epoch_end (gpuback.training.Callback), got {callback!r}")
    return listed


def check_history(history: Any) -> None:
    """``history`` must be an empty dict for ``fit`` to record into."""
    if not isinstance(history, dict):
        raise TypeError(f"history: expected an empty dict to record into, got {history!r}")
    if history:
        raise ValueError(f"history: expected an empty dict to record into, got {history!r}")


def run_fields(net: Engine, X: Any, T: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """What every rank of a data-parallel ``fit`` must pass alike (``check_same``): the
    network, the data's shapes and ``fit``'s other ``arguments`` by name."""
    args = dict(arguments)
    validation, optimizer, seed = args.pop("validation"), args.pop("optimizer"), args["seed"]
    fields = {"spec": net.spec, "dtype": net.dtype, "precision": net.precision,
              "epochs_trained": net.epochs_trained, "X shape": np.shape(X),
              "T shape": np.shape(T), **args, "seed": _seed_field(seed),
              "loss_scale": repr(args.get("loss_scale"))}
    if validation is not None and isinstance(validation, (tuple, list)) and len(validation) == 2:
        fields.update({"X_val shape": np.shape(validation[0]),
                       "T_val shape": np.shape(validation[1])})
    weight = args.get("sample_weight")
    if weight is not None:  # compared by a digest of its values (checked later, in fit)
        host = net.ops.to_host(weight) if net.ops.is_device_array(weight) else weight
        try:
            values = np.ascontiguousarray(np.asarray(host, dtype=np.float64))
            fields["sample_weight"] = hashlib.sha256(values.tobytes()).hexdigest()
        except (TypeError, ValueError):
            fields["sample_weight"] = repr(host)
    if isinstance(optimizer, Optimizer):
        try:
            config: Any = optimizer.config()
        except TypeError:  # a schedule that cannot be saved: compared by its repr
            config = repr(optimizer.schedule)
        fields.update(optimizer=type(optimizer).__name__, optimizer_config=config,
                      optimizer_steps=optimizer.steps)
    return fields


def _seed_field(seed: Any) -> Any:
    """The seed as the ranks compare it: a ``RandomState`` by a digest of its state."""
    if not isinstance(seed, np.random.RandomState):
        return seed
    kind, keys, pos, has_gauss, gauss = seed.get_state(legacy=True)
    state = np.asarray(keys).tobytes() + repr((kind, pos, has_gauss, gauss)).encode()
    return f"RandomState {hashlib.sha256(state).hexdigest()}"
