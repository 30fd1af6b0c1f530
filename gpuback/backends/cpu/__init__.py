"""The cpu backend: ``backend`` is its op set (Numba kernels and BLAS over the cores);
``kernels`` its Numba kernels, ``threads`` the pool that shares each op over the cores,
``products`` the dense products (``gemm_kernels``: gemm by address, the helpers' mailboxes),
``kernel_cache`` the on-disk cache of the compiled kernels."""

__all__: list[str] = []
