"""Diagnostics: gradient checks, 5.56 explained on one unit, device counters, reports, plots."""

from __future__ import annotations

from .explanation import explain
from .gradient_check import (
    GradcheckReport,
    ParameterCheck,
    gradcheck,
)
from .plots import describe_network, plot_history
from .profiling import counters
from .report import info

__all__ = [
    "GradcheckReport",
    "ParameterCheck",
    "counters",
    "describe_network",
    "explain",
    "gradcheck",
    "info",
    "plot_history",
]
