"""PyTorch interop: a gpuback ``Network`` as a ``torch.nn.Module`` and back.

* ``to_torch(net)``: a module whose outputs equal ``net.forward(X)`` (the output activation
  included: probabilities for a softmax output). A plain MLP (a chain of dense blocks, each
  group fed by the one before it) becomes an ``nn.Sequential`` of ``nn.Linear`` and
  activation modules, one pair per layer; any other wiring a ``GroupNetwork``
  (``gpuback.interop.modules``), the same groups and blocks: every group's pre-activation
  is its bias plus the sum over its incoming blocks (Bishop 5.48), dense blocks as
  ``z @ W.T``, sparse blocks as an ``index_add`` over their edge list, then its activation
  (5.49).
* ``from_torch(module)``: a ``Network`` with the same outputs, from such an ``nn.Sequential``
  (or a lone ``nn.Linear``) or from a module ``to_torch`` returned (any wiring).

PyTorch is an optional extra (``pip install 'gpuback[torch]'``). Importing this package does
not import it; each function does, on call, and raises ``ImportError`` with that hint when it
is missing, so ``import gpuback`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ..network import Network

INSTALL_HINT = "pip install 'gpuback[torch]'"


def require_torch() -> Any:
    """The ``torch`` module, or ``ImportError`` saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"gpuback.interop needs PyTorch, which is not installed: "
                          f"{INSTALL_HINT}") from exc
    return torch


def to_torch(net: Network) -> torch.nn.Module:
    """``net`` as a ``torch.nn.Module`` whose outputs equal ``net.forward(X)``.

    A plain MLP gives an ``nn.Sequential`` of ``[nn.Linear, activation] * layers`` (an
    ``nn.Identity`` for an identity activation, so always two modules per layer); any other
    wiring a ``gpuback.interop.modules.GroupNetwork``. Parameters are in the network's dtype
    and trainable (``nn.Parameter``). ``Linear.weight`` is gpuback's ``"src->dst"`` weight
    as it is, shape ``(n_dst, n_src)``, and ``Linear.bias`` the bias of group ``dst``.

    Memory: on a backend whose parameters live in device memory (the cuda backend on a GPU)
    every parameter crosses by ``torch.from_dlpack`` with no copy, so the module *shares*
    the network's parameter buffers: a step taken in either moves both. On a host backend
    (numpy, cpu; the cuda backend under the simulator) the parameters are copied: the
    module owns its tensors and does not alias the network's buffers.
    """
    require_torch()
    from .convert import to_torch as convert

    return convert(net)


def from_torch(module: torch.nn.Module, backend: str = "auto", dtype: Any = None,
               loss: str | None = None) -> Network:
    """A ``Network`` (on ``backend``) whose outputs equal ``module(X)``.

    ``module``: an ``nn.Sequential`` of ``nn.Linear`` layers (a missing bias reads as a zero
    bias), each followed by at most one activation module (a Linear followed directly by a
    Linear, or ending the Sequential, has the identity activation), or a lone ``nn.Linear``,
    or a module returned by ``to_torch``. Supported activations and the gpuback ones they
    are: ``nn.Identity`` identity, ``nn.Tanh`` tanh, ``nn.Sigmoid`` sigmoid, ``nn.ReLU``
    relu, ``nn.LeakyReLU(0.01)`` leaky_relu, ``nn.Softplus()`` (beta 1; above its
    threshold, 20 by default, PyTorch returns x, which differs from log(1 + e^x) by less
    than e^-20) and ``gpuback.interop.modules.Softplus`` softplus, ``nn.GELU(approximate=
    "tanh")`` gelu, ``nn.SiLU`` silu, ``gpuback.interop.modules.Exp`` exp (PyTorch has no
    module for e^a; ``to_torch`` writes this one), and, last only, ``nn.Softmax(dim=-1)`` (or
    ``dim=1``) softmax.
    Anything else raises ``TypeError`` naming the module and its position.
    Groups are named as ``gpuback.mlp_spec`` names them: ``x, h1, ..., y``.

    ``dtype``: "float32" or "float64"; None: the module's parameter dtype.
    ``loss``: the gpuback loss; None: the one the module carries (``to_torch`` records the
    network's loss as ``module.gpuback_loss``), else the one paired with the output
    activation: cross_entropy for softmax, binary_cross_entropy for sigmoid, poisson for
    exp, sum_of_squares for every other.
    Parameters are copied into the network (the module is left as it was).
    """
    require_torch()
    from .convert import from_torch as convert

    return convert(module, backend=backend, dtype=dtype, loss=loss)


__all__ = ["INSTALL_HINT", "from_torch", "require_torch", "to_torch"]
