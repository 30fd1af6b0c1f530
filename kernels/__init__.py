"""Device code for gpuback's CUDA backend (Numba CUDA kernels), installed as ``gpuback.kernels``.

Only device code lives here, one module per op family (activation, sparse, loss, reduce,
optimizer, metrics, buffers), each with a ``KERNELS`` table ``{name: {dtype: (python
function, signature)}}``; ``scalar.py`` holds the math the CUDA and the CPU kernels share.
Launch configuration lives in ``gpuback/backends/cuda/launch.py``, buffer handling in the
cuda backend.
"""
