"""Training: the one epoch loop, device-resident data, evaluation, prediction, L-BFGS.

``loop``: ``fit``, mini-batch training on any backend (``Network.fit``, ``gpuback train``
and the ``gpuback.sklearn`` estimators all run it); ``callbacks``: what ``fit`` calls
during a run (``Callback``, ``EpochFigures``); ``stopping``: the plateau rule
(``Plateau``), early stopping and the divergence rule (``TrainingDivergedError``,
``DIVERGENCE_FACTOR``); ``clipping``: gradient clipping by global norm
(``GradientClip``); ``data``: the data set on the backend or streamed from the host;
``step`` and ``data_parallel``: one step's passes, on one rank or several; ``metrics``:
the backend accumulators; ``evaluation``: ``predict`` and ``evaluate``; ``progress``: the
progress bar (``REDRAW_SECONDS``; its clock, ``progress.progress_clock``, is what a test
replaces); ``memory``: the memory pre-flight of a run; ``lbfgs``: full-batch L-BFGS through
SciPy."""

from __future__ import annotations

from .callbacks import Callback, EpochFigures
from .clipping import GradientClip
from .data import Dataset, StreamedDataset, dataset
from .data_parallel import DataParallel
from .evaluation import evaluate, predict
from .loop import fit
from .metrics import Metrics, accuracy_from_count
from .progress import REDRAW_SECONDS, ProgressBar
from .step import forward_backward
from .stopping import DIVERGENCE_FACTOR, Plateau, TrainingDivergedError

__all__ = [
    "DIVERGENCE_FACTOR",
    "REDRAW_SECONDS",
    "Callback",
    "DataParallel",
    "Dataset",
    "EpochFigures",
    "GradientClip",
    "Metrics",
    "Plateau",
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
