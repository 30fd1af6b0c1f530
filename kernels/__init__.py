"""Device code for gpuback's CUDA backend (Numba CUDA kernels), installed as ``gpuback.kernels``.

Only device code lives here, one module per op family (activation, sparse, loss,
optimiser). Launch configuration and buffer handling belong to the cuda backend
module in ``gpuback/backends``. The kernels themselves arrive with the CUDA
backend; this package exists now so that the packaging that ships it is in place
and tested.
"""
