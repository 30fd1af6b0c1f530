"""The engine: a spec validated and compiled into a plan, run forward and backward on a
backend (Bishop 5.48-5.56).

``spec``: groups and blocks as plain data, validated; ``plan``: the spec compiled once
(topological order, incoming blocks, sparse indices); ``layout``: every parameter's place in
one flat buffer; ``init``: the initial weights; ``workspace``: the per-step buffers, reserved
once; ``propagation``: the forward and backward passes over the op set; ``checks``: the
validation of what users hand in; ``memory``: what a network needs, checked before it is
allocated; ``loss_scale``: fp16's dynamic loss scale, kept on the backend.
"""

from __future__ import annotations

from .plan import Plan, compile_plan
from .spec import (
    ACTIVATIONS,
    LOSSES,
    mlp_spec,
    resmlp_spec,
    sparse_mlp_spec,
    validate_spec,
)

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "Plan",
    "compile_plan",
    "mlp_spec",
    "resmlp_spec",
    "sparse_mlp_spec",
    "validate_spec",
]
