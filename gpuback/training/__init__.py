"""Training: the epoch loop, device-resident data, evaluation, prediction, L-BFGS.

``loop``: mini-batch training (``fit``), evaluation and prediction on any backend; ``lbfgs``:
full-batch L-BFGS through SciPy."""

from __future__ import annotations

from .loop import (
    DIVERGENCE_FACTOR,
    REDRAW_SECONDS,
    DataParallel,
    Dataset,
    Metrics,
    ProgressBar,
    StreamedDataset,
    TrainingDivergedError,
    accuracy_from_count,
    dataset,
    evaluate,
    fit,
    forward_backward,
    predict,
)

__all__ = [
    "DIVERGENCE_FACTOR",
    "REDRAW_SECONDS",
    "DataParallel",
    "Dataset",
    "Metrics",
    "ProgressBar",
    "StreamedDataset",
    "TrainingDivergedError",
    "accuracy_from_count",
    "dataset",
    "evaluate",
    "fit",
    "forward_backward",
    "predict",
]
