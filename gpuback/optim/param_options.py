"""Per-parameter options of an optimiser step, and the segments of the flat buffer sharing them.

Three options vary from parameter to parameter (``gpuback.optim``):

* weight decay: on the weights ``"src->dst"`` only, unless ``decay_biases`` (a group's name
  is its bias; a layer norm's gain and shift go with the biases);
* a learning-rate factor per group: a group's factor applies to its bias, its layer norm's
  gain and shift and every block into it (``"src->group"``);
* frozen: never updated, no optimiser state.

Every parameter lives in one flat buffer (``gpuback.core.layout``), weights first, then biases.
``segments`` cuts that buffer into the fewest contiguous runs of parameters whose options
are equal: the optimiser's fused update runs once per run, on views ``flat[lo:hi]`` of the
parameters, the gradients and each state buffer. A network trained with one set of options
throughout (no factors, no frozen parameters, no decay or decay on everything) is one run:
one launch, as before; the default (decay on the weights alone) is two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.checks import check_real
from ..core.layout import FlatLayout
from ..core.plan import Plan


@dataclass(frozen=True)
class Segment:
    """Elements ``[lo, hi)`` of the flat buffers, updated with ``lr * lr_factor``, and with
    the optimiser's weight decay if ``decayed`` (else none)."""

    lo: int
    hi: int
    lr_factor: float
    decayed: bool


def check_lr_multipliers(value: Any) -> dict[str, float]:
    """``lr_multipliers`` as a dict group -> factor (empty for None); each factor a finite
    number >= 0. Group names are checked against a network later (``resolve``)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"lr_multipliers: expected a mapping group name -> factor, or None, "
                        f"got {value!r}")
    checked = {}
    for group, factor in value.items():
        if not isinstance(group, str):
            raise TypeError(f"lr_multipliers: expected group names (strings) as keys, got "
                            f"{group!r}")
        checked[group] = check_real(f"lr_multipliers[{group!r}]", factor, 0)
    return checked


def check_freeze(value: Any) -> tuple[str, ...]:
    """``freeze`` as a tuple of names (parameters or groups, checked later by ``resolve``)."""
    if isinstance(value, str):
        raise TypeError(f"freeze: expected a sequence of parameter or group names, got the "
                        f"string {value!r} (write [{value!r}])")
    if not isinstance(value, Sequence) or not all(isinstance(n, str) for n in value):
        raise TypeError(f"freeze: expected a sequence of parameter or group names, got "
                        f"{value!r}")
    return tuple(value)


def owners(plan: Plan) -> dict[str, str]:
    """Every parameter's group: a block's destination group; a bias's (and a layer norm's
    gain's and shift's) own group."""
    owned = {b.name: b.dst for b in plan.blocks}
    owned.update({name: g for g in plan.computed for name in plan.groups[g].parameters})
    return owned


def _unknown(argument: str, name: str, plan: Plan, what: str, known: list[str]) -> ValueError:
    if name == plan.input:
        return ValueError(f"{argument}: {name!r} is the input group, which has no parameters")
    return ValueError(f"{argument}: unknown {what} {name!r}; expected one of {known}")


def frozen_parameters(plan: Plan, freeze: Sequence[str]) -> set[str]:
    """The parameters ``freeze`` names: a block ``"src->dst"``, a layer norm's ``"g.gain"`` or
    ``"g.shift"``, or a group, meaning its bias, its layer norm's gain and shift and every
    block into it."""
    owned = owners(plan)
    single = [b.name for b in plan.blocks] + [p for g in plan.computed
                                              for p in plan.groups[g].parameters[1:]]
    frozen: set[str] = set()
    for name in freeze:
        if name in plan.computed:
            frozen.update(p for p, g in owned.items() if g == name)
        elif name in single:
            frozen.add(name)
        else:
            raise _unknown("freeze", name, plan, "parameter or group",
                           single + list(plan.computed))
    return frozen


def check_groups(plan: Plan, lr_multipliers: Mapping[str, float]) -> None:
    """Every key of ``lr_multipliers`` is a group with parameters (not the input group)."""
    for group in lr_multipliers:
        if group not in plan.computed:
            raise _unknown("lr_multipliers", group, plan, "group", list(plan.computed))


def segments(plan: Plan, layout: FlatLayout, weight_decay: float, decay_biases: bool,
             lr_multipliers: Mapping[str, float], frozen: set[str]) -> list[Segment]:
    """The runs of the flat buffer (``layout``) to update, each with its options; frozen
    parameters belong to none. The padding after a parameter goes with it (it is zero and
    its gradient is zero, so any update leaves it zero). Only whether ``weight_decay`` is 0
    matters here (then decayed and undecayed parameters share runs): the value is the
    optimiser's at each step."""
    check_groups(plan, lr_multipliers)
    owned = owners(plan)
    weights = {b.name for b in plan.blocks}
    names = sorted(layout.offsets, key=layout.offsets.__getitem__)
    runs: list[tuple[int, int, Any]] = []
    for i, name in enumerate(names):
        lo = layout.offsets[name]
        hi = layout.offsets[names[i + 1]] if i + 1 < len(names) else layout.size
        is_weight = name in weights
        options = None if name in frozen else (
            lr_multipliers.get(owned[name], 1.0),
            weight_decay != 0.0 and (is_weight or decay_biases))
        if runs and runs[-1][2] == options and runs[-1][1] == lo:
            runs[-1] = (runs[-1][0], hi, options)
        else:
            runs.append((lo, hi, options))
    return [Segment(lo, hi, *options) for lo, hi, options in runs
            if options is not None and hi > lo]
