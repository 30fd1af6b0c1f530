"""The CUDA kernel that rounds a float32 buffer in place to tf32, bf16 or fp16.

Mixed precision (``gpuback.precision``) keeps stored activations, deltas and the weights'
product copy rounded to the precision; the rounding itself is ``precision.round_code``
(integer arithmetic on the float32 bits, the same source as the cpu backend's).
"""

from __future__ import annotations

from .precision import cuda_round_kernel

KERNELS = {"round_elements": {"float32": cuda_round_kernel()}}
