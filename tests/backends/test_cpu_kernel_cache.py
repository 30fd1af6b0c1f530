"""The cpu backend's on-disk kernel cache is keyed on every file its kernels compile from.

Each process here runs on a copy of the checkout in ``tmp_path`` (its own ``__pycache__``,
no shared cache directory), as a user starts Python: the first compiles and stores the
kernel, the second loads it, and after an edit of ``kernels/scalar.py`` (ReLU made to
double its input) the third must compile again and compute with the edited function.
Numba on its own keys a kernel only on the file that defines it, and would load the old
machine code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.checkout import copy_checkout

pytestmark = pytest.mark.slow

RELU_LINE = "return a if a > zero else zero"
EDITED_RELU_LINE = "return a + a if a > zero else zero"

PROBE = """
import json
import numpy as np
from gpuback.backends.cpu import kernel_cache
from gpuback.backends.cpu import kernels as cpu_kernels
from gpuback.kernels.scalar import CODES
a = np.array([[-1.0, 0.5, 2.0]], dtype=np.float32)
b = np.zeros(1, dtype=np.float32)
z = np.empty_like(a)
relu = cpu_kernels.bias_activation(CODES["relu"])
relu(0, 1, b, a, z)
stats = relu.stats
print("PROBE " + json.dumps({"z": z.ravel().tolist(), "hits": sum(stats.cache_hits.values()),
                             "misses": sum(stats.cache_misses.values()),
                             "kernels_from": kernel_cache.kernel_sources()[0].parent.as_posix()}))
"""


def probe(checkout: Path) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in {"PYTHONPATH", "NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT"}}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    line = next(text for text in done.stdout.splitlines() if text.startswith("PROBE "))
    return json.loads(line.removeprefix("PROBE "))


def test_an_edit_of_the_scalar_functions_recompiles_the_cached_kernels(tmp_path):
    checkout = copy_checkout(tmp_path / "checkout")
    first = probe(checkout)
    assert first["kernels_from"] == (checkout / "kernels").as_posix()
    assert first["z"] == [0.0, 0.5, 2.0]
    assert first["misses"] == 1 and first["hits"] == 0

    second = probe(checkout)
    assert second["z"] == [0.0, 0.5, 2.0]
    assert second["hits"] == 1 and second["misses"] == 0, "the kernel was not cached"

    scalar = checkout / "kernels" / "scalar.py"
    text = scalar.read_text()
    assert text.count(RELU_LINE) == 1
    scalar.write_text(text.replace(RELU_LINE, EDITED_RELU_LINE))
    edited = probe(checkout)
    assert edited["z"] == [0.0, 1.0, 4.0], "the cached kernel ran the old ReLU"
    assert edited["misses"] == 1 and edited["hits"] == 0
