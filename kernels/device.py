"""Device-side building blocks shared by the kernel modules.

``device(real)``: the scalar functions of ``gpuback.kernels.scalar`` compiled as inlined CUDA
device functions computing in ``real`` (float32 or float64). ``grid_2d``: where a thread of a
2-D grid-stride launch starts and how far it strides. ``block_sum`` / ``block_max`` /
``block_argmax``: shared-memory tree reductions over the threads of a block (the simulator
has no warp shuffles, so none are used).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

from numba import cuda

from .scalar import better, compile_for

inline = cuda.jit(device=True, inline=True)


@functools.cache
def device(real: Any) -> SimpleNamespace:
    """``scalar.compile_for`` for CUDA in the float type ``real`` (cached per type)."""
    return compile_for(inline, real)


first_better = inline(better)


@inline
def grid_2d():
    """(row, row stride, sample, sample stride) of this thread in a 2-D launch.

    Threads: x over samples (a warp reads a contiguous run of one unit's row), y over rows.
    Blocks: x over rows (up to 2^31 - 1 of them), y over samples (up to 65,535). Every kernel
    loops from ``row`` to the rows by ``row stride`` and from ``sample`` to the samples by
    ``sample stride``, so any size is covered by a grid of any legal size. Products are
    64-bit (Numba widens int32 arithmetic), so indices never wrap.

    The kernels write these grid-stride loops as ``while`` loops: Numba's ``range`` with a
    step computes a trip count and NVVM unrolls around it, which cost the scatter-add 45
    registers against 23 (the row reductions 48 against 29), occupancy that memory-bound
    kernels need.
    """
    row = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    sample = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    return row, cuda.gridDim.x * cuda.blockDim.y, sample, cuda.gridDim.y * cuda.blockDim.x


@inline
def grid_1d():
    """(element, stride) of this thread in a 1-D grid-stride launch."""
    return (cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x,
            cuda.gridDim.x * cuda.blockDim.x)


@inline
def block_sum(partial, base, lane, lanes):
    """Tree-sum ``partial[base:base + lanes]`` into ``partial[base]``, in a fixed order.

    ``lanes`` (a power of two) threads own one slot each; every thread of the block must call
    it (it synchronises the block before, between and after the steps).
    """
    cuda.syncthreads()
    width = lanes // 2
    while width > 0:
        if lane < width:
            partial[base + lane] += partial[base + lane + width]
        cuda.syncthreads()
        width //= 2


@inline
def block_max(partial, lane, lanes):
    """As ``block_sum`` over ``partial[0:lanes]``, taking the maximum."""
    cuda.syncthreads()
    width = lanes // 2
    while width > 0:
        if lane < width:
            partial[lane] = max(partial[lane], partial[lane + width])
        cuda.syncthreads()
        width //= 2


@inline
def block_argmax(values, indices, lane, lanes):
    """The first arg-max over ``(values, indices)[0:lanes]`` into slot 0 (``scalar.better``:
    ties go to the smaller index, as a serial scan from k = 0 would)."""
    cuda.syncthreads()
    width = lanes // 2
    while width > 0:
        if lane < width and first_better(values[lane + width], indices[lane + width],
                                         values[lane], indices[lane]):
            values[lane] = values[lane + width]
            indices[lane] = indices[lane + width]
        cuda.syncthreads()
        width //= 2
