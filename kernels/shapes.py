"""The block shapes the kernels are written for, in plain Python (no Numba import).

The launch configuration (``gpuback/backends/cuda/launch.py``) reads these so that it never
launches a block larger than the shared arrays of a reduction kernel hold.
"""

from __future__ import annotations

# Threads per block of every kernel that reduces in shared memory: its shared arrays have
# this many slots, one per thread (a power of two; the tree reductions halve it).
REDUCE_CAPACITY = 256
