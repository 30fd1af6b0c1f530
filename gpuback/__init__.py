"""gpuback: backpropagation for feed-forward networks of any acyclic wiring.

Bishop, *Pattern Recognition and Machine Learning*, section 5.3: a hidden unit's
delta is h'(a_j) * sum_k w_kj delta_k over *every* unit k it feeds (eq. 5.55,
5.56), whichever later group k is in. See README.md for the map from equations to
functions.
"""

# _checkout first: it makes gpuback.kernels importable from a source checkout
from . import _checkout, checkpoint, datasets, optim, profile  # noqa: F401
from .backends import available_backends
from .gradcheck import GradcheckReport, ParameterCheck, gradcheck
from .info import info
from .network import Network
from .plot import describe_network, plot_history
from .spec import ACTIVATIONS, LOSSES, mlp_spec, sparse_mlp_spec, validate_spec
from .training import TrainingDivergedError

__version__ = "0.1.0"

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
    "gradcheck",
    "info",
    "mlp_spec",
    "optim",
    "plot_history",
    "profile",
    "sparse_mlp_spec",
    "validate_spec",
]
