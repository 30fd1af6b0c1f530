"""The one table of tolerances the tests use, per dtype, and the error measure they apply to.

Every value is a maximum relative error. Comparisons between implementations use
``rel_error`` (normwise over a whole array); finite-difference checks use the
per-entry measure of ``gpuback.gradcheck``.
"""

from __future__ import annotations

import numpy as np

TOLERANCES = {
    "float64": {
        # backprop vs central differences (5.69), per entry, gradcheck's measure
        "gradcheck": 1e-7,
        # the independent implementation's complex step vs its own central differences,
        # normwise (rel_error)
        "central_differences": 1e-7,
        # gpuback vs the independent implementation in tests/helpers/independent.py
        "independent_forward": 1e-9,
        "independent_grad": 1e-9,
        # two gpuback computations that must agree up to summation order
        "invariance": 1e-12,
        # another backend (cuda, simulated or real) vs the NumPy reference
        "backend": 1e-10,
        # ``explain``'s dE/da_j by plain central differences on a_j (eps 1e-5) against the
        # backprop delta and the 5.56 sum: truncation ~eps^2, rounding ~1e-16 / eps, so 1e-6
        # leaves room; a missing path is off by far more (DISTINCT)
        "explain": 1e-6,
    },
    "float32": {
        "independent_forward": 1e-4,
        "independent_grad": 1e-4,
        "invariance": 1e-5,
        "backend": 1e-5,
    },
}

# Not a tolerance but its opposite: the least relative error that counts as a different
# value, for checks that something left out (one path of 5.56, say) is really missed.
DISTINCT = 1e-3


def rel_error(a, b) -> float:
    """max |a - b| / max(max |b|, tiny): the normwise relative error of a against b."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(b))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b))) / scale
