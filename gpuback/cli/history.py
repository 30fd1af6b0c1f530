"""``OUT/history.jsonl``: one JSON object per epoch of a model trained by ``gpuback train``.

Line ``i`` is epoch ``i`` (counted over the model's whole life, across ``--resume``):
``{"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "samples_per_second",
"seconds"}``, ``loss`` and ``accuracy`` the training epoch's running means (what
``gpuback.training.fit`` records), ``val_*`` those of the data each epoch was evaluated on
(the test part, or the validation part with ``--early-stopping``) and ``accuracy`` null
for sum of squares and Poisson. An epoch that is in the checkpoint but whose figures
``gpuback train`` never saw (epochs trained by the Python API before a ``--resume``) has a
line whose figures are null and ``"recorded": false``; an interrupted or diverged run keeps
the figures ``fit`` recorded for the epochs its checkpoint holds.

Every write keeps the lines of the epochs before the run's first one, drops any others (so
a resumed run replaces the lines of epochs an interrupted run or early stopping left past
the checkpoint: no epoch appears twice), adds the run's own and fills gaps; the file is
written under a temporary name and moved over the old one, so it is always whole.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .files import write_text
from .options import Numbers

FILE_NAME = "history.jsonl"
EPOCHS = Numbers(int, low=1)  # the epoch a line is about: 1 for the first
FIELDS = ("loss", "accuracy", "val_loss", "val_accuracy", "samples_per_second", "seconds")


def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The lines of the history file at ``path`` that are JSON objects with an integer
    ``epoch`` >= 1, in file order (none when there is no file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # not ours: dropped at the next write
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if epoch in EPOCHS:
            lines.append(record)
    return lines


def records(history: Mapping[str, Sequence[Any]], first_epoch: int,
            samples: int) -> list[dict[str, Any]]:
    """One line per epoch of ``history`` (what ``fit`` returned), numbered from
    ``first_epoch``; ``samples``: the training samples of an epoch (for ``seconds``). Only
    the epochs every list holds: a signal that stops a run between two of an epoch's
    appends leaves that epoch partly recorded, and it is left out."""
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "samples_per_second")
            if k in history]
    complete = min(len(history[k]) for k in keys)
    out = []
    for i, loss in enumerate(history["loss"][:complete]):
        record: dict[str, Any] = {"epoch": first_epoch + i, "loss": _number(loss),
                                  "accuracy": _number(history["accuracy"][i])}
        for key in ("val_loss", "val_accuracy"):
            if key in history:
                record[key] = _number(history[key][i])
        speed = _number(history["samples_per_second"][i])
        record["samples_per_second"] = None if speed is None else round(speed, 1)
        record["seconds"] = None if not speed else round(samples / speed, 4)
        out.append(record)
    return out


def update(path: str | os.PathLike[str], first_epoch: int, new: Sequence[Mapping[str, Any]],
           through: int = 0) -> Path:
    """Rewrite the history at ``path``: its lines of epochs before ``first_epoch``, then
    ``new`` (epochs ``first_epoch`` on), every missing epoch up to the last of them or
    ``through`` (the checkpoint's epoch count) as a ``"recorded": false`` line."""
    path = Path(path)
    kept = {r["epoch"]: r for r in reversed(read(path)) if r["epoch"] < first_epoch}
    kept.update({r["epoch"]: dict(r) for r in new})
    last = max([through, first_epoch - 1, *kept])
    lines = [kept.get(epoch) or _not_recorded(epoch) for epoch in range(1, last + 1)]
    write_text(path, "".join(json.dumps(line) + "\n" for line in lines))
    return path


def _not_recorded(epoch: int) -> dict[str, Any]:
    return {"epoch": epoch, **dict.fromkeys(FIELDS), "recorded": False}


def _number(value: Any) -> float | None:
    """A float JSON can hold (NaN and infinities become null)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


__all__ = ["FILE_NAME", "read", "records", "update"]
