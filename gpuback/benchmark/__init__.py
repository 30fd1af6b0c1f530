"""``gpuback bench``: gpuback's step against the best peers measured in the same run.

``suite``: the cases, their timing and the report; ``torch_peers``: PyTorch (eager) doing the
same steps; ``sparseprop_peer``: SparseProp's sparse layers, for sparse blocks on the CPU;
``gpuback_torch_peer``: the same network as a PyTorch model of ``gpuback.torch.SparseLinear``
layers (what going through PyTorch costs).
"""

from __future__ import annotations

from .suite import format_result, run

__all__ = ["format_result", "run"]
