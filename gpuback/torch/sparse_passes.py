"""One sparse block's forward and backward on backend arrays: the work of ``SparseLinear``.

Written against the op set alone (``gpuback.backends.protocol``), on feature-major
buffers, with no PyTorch in sight: the same functions run on the cpu backend over CPU
tensors' memory, on the cuda backend over CUDA tensors' memory, and under the Numba
simulator over stand-ins for CUDA tensors (the tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..backends.protocol import Array, Backend


def forward(ops: Backend, weight: Array, index: Any, bias: Array | None, z: Array,
            out: Array) -> None:
    """``out = W z + b`` (5.48): ``weight`` (E,) on the edges of ``index`` (the backend's
    ``prepare_index``), ``z`` (in, B), ``out`` (out, B), ``bias`` (out,) or None."""
    ops.sparse_forward(weight, index, z, out, False)
    if bias is not None:  # a += b, then the identity activation in place
        ops.bias_activation("identity", bias, out, out)


def backward(ops: Backend, weight: Array, index: Any, delta: Array, z: Array,
             dw: Array | None, dz: Array | None) -> None:
    """From ``delta`` = dE/da (out, B): ``dw`` (E,) = the sum over the batch of
    delta_k z_j per edge (5.53), and ``dz`` (in, B) = sum over the edges out of j of
    w_e delta_k (5.56); either may be None (not wanted). The bias gradient is
    ``ops.bias_grad(delta, db)``."""
    if dw is not None:
        ops.sparse_block_backward(weight, index, delta, z, dw, dz, False)
    elif dz is not None:
        ops.sparse_backward(weight, index, delta, dz, False)
