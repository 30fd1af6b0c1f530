"""Registers, spills and shared memory of every CUDA kernel, from ptxas; no GPU needed.

Run with ``python bench/kernel_report.py [--json] [--arch 80 90]``: the same as
``python -m gpuback.kernel_report`` (see that module). Needs the ``sim13`` extra
(``numba-cuda[cu13]`` for NVVM, ``nvidia-cuda-nvcc`` for ptxas).
"""

from __future__ import annotations

from gpuback.kernel_report import main

if __name__ == "__main__":
    raise SystemExit(main())
