"""``gpuback bench``: gpuback's step against the best peers measured in the same run.

``suite``: the step and digits cases, the targets and the report; ``cpu_cases``: the cpu
backend's startup and scaling cases; ``timing``: how a call is timed; ``torch_peers``:
PyTorch (eager) doing the same steps; ``torch_compile_peer``: the dense networks under
``torch.compile``; ``jax_peer``: the dense networks in JAX, jitted; ``sparseprop_peer``:
SparseProp's sparse layers, for sparse blocks on the CPU; ``gpuback_torch_peer``: the same
network as a PyTorch model of ``gpuback.torch.SparseLinear`` layers (what going through
PyTorch costs).
"""

from __future__ import annotations

from .suite import format_result, run

__all__ = ["format_result", "run"]
