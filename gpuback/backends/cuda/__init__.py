"""The cuda backend: ``backend`` is its op set (Numba CUDA kernels on CuPy memory, cuBLAS
for dense products); ``device`` the one module that touches CuPy and the device, ``launch``
the launch grids, ``nccl`` the collectives of data-parallel runs on GPUs."""

__all__: list[str] = []
