"""gpuback: backpropagation for feed-forward networks of any acyclic wiring.

Bishop, *Pattern Recognition and Machine Learning*, section 5.3: a hidden unit's
delta is h'(a_j) * sum_k w_kj delta_k over *every* unit k it feeds (eq. 5.55,
5.56), whichever later group k is in. The documentation's page "From Bishop's equations
to the code" maps each equation to the functions that implement it.

The package's folders are its architecture, each importing only the ones below it:

    cli                          the ``gpuback`` command
    sklearn, interop, diagnostics, benchmark
                                 integrations, checks and reports, ``gpuback bench``
    network                      ``Network``: the engine with training and checkpoints
    training                     the epoch loop, device-resident data, L-BFGS
    checkpoint, distributed      crash-safe storage; the MPI world of data-parallel runs
    optim                        optimisers and schedules
    core                         spec, plan, layout, workspace, propagation, the engine
    backends                     the registry, the op-set protocol, numpy / cpu / cuda
    kernels                      device code only (Numba, for the CPU and CUDA)

``datasets`` stands beside them, importing none. The modules at this level
(``precision``, ``loss_scale``, ``memory``, ``profile``, ``lbfgs``, ``explain``) are
public import paths onto the subpackage that implements them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path


def _alias_checkout_kernels() -> None:
    """Register ``<checkout>/kernels`` as ``gpuback.kernels`` when gpuback runs uninstalled.

    The device code lives in ``kernels/`` at the top of the repository and becomes
    ``gpuback.kernels`` when the package is installed. Run from a checkout (scripts in its
    root, ``python -m pytest``, a mutation tester's copy of the tree), ``gpuback`` is the
    source directory and has no ``kernels`` inside: the top-level ``kernels/`` is registered
    under that name, so both layouts import the very same modules.
    """
    here = Path(__file__).resolve().parent
    checkout = here.parent / "kernels" / "__init__.py"
    if (here / "kernels").is_dir() or "gpuback.kernels" in sys.modules \
            or not checkout.is_file():
        return
    spec = importlib.util.spec_from_file_location(
        "gpuback.kernels", checkout, submodule_search_locations=[str(checkout.parent)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpuback.kernels"] = module
    spec.loader.exec_module(module)
    # as an import of the subpackage would: gpuback.kernels.<name> works after
    # ``import gpuback.kernels``
    globals()["kernels"] = module


_alias_checkout_kernels()  # before anything imports gpuback.kernels

# (the imports follow the alias on purpose)
from . import (  # noqa: E402
    checkpoint,
    datasets,
    distributed,
    loss_scale,
    memory,
    optim,
    precision,
    profile,
    training,
)
from .backends import available_backends  # noqa: E402
from .core.spec import (  # noqa: E402
    ACTIVATIONS,
    LOSSES,
    mlp_spec,
    resmlp_spec,
    sparse_mlp_spec,
    validate_spec,
)
from .diagnostics import (  # noqa: E402
    GradcheckReport,
    ParameterCheck,
    describe_network,
    gradcheck,
    info,
    plot_history,
)
from .network import Network  # noqa: E402
from .training import TrainingDivergedError  # noqa: E402

try:
    __version__ = importlib.metadata.version(__name__)
except importlib.metadata.PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "GradcheckReport",
    "Network",
    "ParameterCheck",
    "TrainingDivergedError",
    "__version__",
    "available_backends",
    "checkpoint",
    "datasets",
    "describe_network",
    "distributed",
    "gradcheck",
    "info",
    "loss_scale",
    "memory",
    "mlp_spec",
    "optim",
    "plot_history",
    "precision",
    "profile",
    "resmlp_spec",
    "sparse_mlp_spec",
    "training",
    "validate_spec",
]
