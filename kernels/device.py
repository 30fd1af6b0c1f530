"""The scalar functions of ``gpuback.kernels.scalar`` compiled as inlined CUDA device functions."""

from __future__ import annotations

from numba import cuda

from .scalar import compile_for

DEVICE = compile_for(cuda.jit(device=True, inline=True))
