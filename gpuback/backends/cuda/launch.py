"""Launch configurations of the cuda backend's kernels: pure functions of the sizes.

Every function maps the sizes of one kernel's work, and ``simulated`` (the Numba CUDA
simulator, where each thread costs about 70 us, so blocks are smaller), to a
``(grid, block)`` pair of tuples. Every kernel in ``gpuback.kernels`` is grid-stride on its
big dimensions, so a configuration only has to be legal, not to cover the work: each grid
dimension is the number of blocks that gives one thread per item, capped at the CUDA limits
(gridDim.x <= 2^31 - 1, gridDim.y and .z <= 65,535, at most 1,024 threads per block).

Shapes, at the GPU block size of 256 threads (``GPU_THREADS``):

* ``rows_by_samples`` (elementwise 2-D kernels over ``(units or edges, batch)``): threads x
  over samples, ``min(32, next power of two >= batch)`` of them, so a batch of 1-31 leaves no
  lane of a warp idle; the rest of the block (y) over rows. Blocks x over rows (up to
  2^31 - 1), y over samples.
* ``row_reduction`` (a sum over the batch per row: bias and weight gradients): the same block,
  its lanes sharing a row; blocks x over rows.
* ``per_sample`` (softmax, losses): one block per sample, its threads over the units, a power
  of two from one warp to 256 (the shared arrays hold ``REDUCE_CAPACITY``).
* ``elementwise`` (1-D: optimiser updates, fill, finiteness check): 256 threads per block.
* ``single_block`` (batch metrics): one block of 256 threads, a fixed summation order.

No Numba import: this module is what the launch-limit tests check at any size.
"""

from __future__ import annotations

from ...kernels.shapes import REDUCE_CAPACITY

MAX_THREADS_PER_BLOCK = 1024
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65_535
WARP = 32
# Threads per block on a GPU, and under the simulator (where each thread costs ~70 us and
# every thread of a block is an OS thread).
GPU_THREADS = 256
SIMULATOR_THREADS = 32
# Threads per sample of the per-sample kernels under the simulator (fewer than the units of
# most test networks, so the stride over units is exercised too).
SIMULATOR_SAMPLE_THREADS = 8

Launch = tuple[tuple[int, ...], tuple[int, ...]]

assert GPU_THREADS <= REDUCE_CAPACITY and SIMULATOR_THREADS <= REDUCE_CAPACITY
assert GPU_THREADS <= MAX_THREADS_PER_BLOCK


def _blocks(items: int, per_block: int, limit: int) -> int:
    """Blocks for one thread per item, at least 1 and at most ``limit``."""
    return max(1, min(-(-int(items) // per_block), limit))


def _power_of_two_at_least(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def threads_per_block(simulated: bool) -> int:
    return SIMULATOR_THREADS if simulated else GPU_THREADS


def lanes(samples: int, simulated: bool) -> int:
    """Threads per row along the batch: a power of two, at most a warp (8 simulated)."""
    most = 8 if simulated else WARP
    return min(most, _power_of_two_at_least(max(1, samples)))


def _row_block(samples: int, simulated: bool) -> tuple[int, int]:
    x = lanes(samples, simulated)
    return x, threads_per_block(simulated) // x


def rows_by_samples(rows: int, samples: int, simulated: bool) -> Launch:
    """A 2-D elementwise kernel over (rows, samples); see ``kernels.device.grid_2d``."""
    bx, by = _row_block(samples, simulated)
    return ((_blocks(rows, by, MAX_GRID_X), _blocks(samples, bx, MAX_GRID_YZ)), (bx, by))


def row_reduction(rows: int, samples: int, simulated: bool) -> Launch:
    """A kernel summing each row over the batch: lanes x rows threads, blocks over rows."""
    bx, by = _row_block(samples, simulated)
    return ((_blocks(rows, by, MAX_GRID_X),), (bx, by))


def per_sample(samples: int, units: int, simulated: bool) -> Launch:
    """One block per sample (grid-stride beyond the grid limit), threads over the units."""
    if simulated:
        threads = min(SIMULATOR_SAMPLE_THREADS, _power_of_two_at_least(max(1, units)))
    else:
        threads = min(GPU_THREADS, max(WARP, _power_of_two_at_least(units)))
    return ((_blocks(samples, 1, MAX_GRID_X),), (threads,))


def elementwise(n: int, simulated: bool) -> Launch:
    """A 1-D grid-stride kernel over n elements."""
    threads = threads_per_block(simulated)
    return ((_blocks(n, threads, MAX_GRID_X),), (threads,))


def single_block(simulated: bool) -> Launch:
    """One block (a reduction whose summation order must not depend on the size)."""
    return ((1,), (threads_per_block(simulated),))
