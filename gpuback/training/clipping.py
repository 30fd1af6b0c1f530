"""Gradient clipping by global norm, ``fit(..., clip_grad_norm=c)``: after a step's
gradients are complete (summed over the ranks, unscaled under fp16 loss scaling, checked)
and before the optimiser's update, the flat gradient buffer is multiplied by
min(1, c / (||g||_2 + 1e-6)), the rule of ``torch.nn.utils.clip_grad_norm_``. The norm is
computed into a buffer on the backend and read there by the scaling: no host wait.

A step whose gradients are not finite is skipped by the optimiser whatever clipping does
to them (the status pair was set before); under fp16 loss scaling the gradient clipped is
the unscaled one, so ``c`` means what it means without scaling.
"""

from __future__ import annotations

from typing import Any

from ..core.checks import check_real
from ..core.engine import Engine


def check_clip_grad_norm(value: Any) -> float | None:
    """``clip_grad_norm`` as fit takes it: None (no clipping) or a finite number > 0."""
    if value is None:
        return None
    return check_real("clip_grad_norm", value, 0.0, low_open=True)


class GradientClip:
    """The clipping of one ``fit`` call: the threshold ``max_norm`` and the backend buffer
    that holds the norm of the latest step's gradients (before clipping)."""

    def __init__(self, net: Engine, max_norm: float) -> None:
        self.net, self.max_norm = net, max_norm
        self.norm = net.ops.zeros((1,), net.dtype)

    def apply(self) -> None:
        """Clip the network's flat gradients in place (``ops.clip_gradient_norm``)."""
        self.net.ops.clip_gradient_norm(self.net.flat_gradients, self.max_norm, self.norm)

    def last_norm(self) -> float:
        """The global norm of the latest step's gradients, before clipping (a read back)."""
        return float(self.net.ops.to_host(self.norm)[0])
