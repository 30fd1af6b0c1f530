"""Bishop 5.55/5.56 on one unit: the sum over every consumer, shown and checked.

The public path of ``gpuback.diagnostics.explanation``."""

from __future__ import annotations

from .diagnostics.explanation import (
    DEMO_SPEC,
    Explanation,
    Term,
    default_group,
    explain,
    random_targets,
)

__all__ = [
    "DEMO_SPEC",
    "Explanation",
    "Term",
    "default_group",
    "explain",
    "random_targets",
]
