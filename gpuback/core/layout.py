"""One flat buffer for all parameters (and one each for gradients and optimiser state).

Every parameter is a view into one contiguous buffer of the network's dtype, at an
offset aligned to ``ALIGN`` elements. So the optimiser updates every parameter in one
fused launch, a checkpoint moves the whole model in one copy, and a data-parallel run
can all-reduce every gradient at once. The gradient buffer and each optimiser state
buffer share the parameters' layout, element for element. The padding between
parameters is zero and stays zero (its gradient is zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

ALIGN = 64  # elements: 256 bytes in float32, so every parameter starts on a 256-byte boundary


@dataclass(frozen=True)
class FlatLayout:
    """Where each named parameter lives inside a flat buffer of ``size`` elements."""

    offsets: dict[str, int]
    shapes: dict[str, tuple[int, ...]]
    size: int

    @classmethod
    def of(cls, shapes: Mapping[str, tuple[int, ...]]) -> FlatLayout:
        """Parameters laid out in the order of ``shapes``, each start aligned to ``ALIGN``."""
        offsets, end = {}, 0
        for name, shape in shapes.items():
            offsets[name] = end
            end += -(-int(np.prod(shape, dtype=np.int64)) // ALIGN) * ALIGN
        return cls(offsets, {k: tuple(v) for k, v in shapes.items()}, max(end, ALIGN))

    def views(self, flat: Any) -> dict[str, Any]:
        """Each parameter as a C-contiguous view of ``flat`` (a host or backend array)."""
        return {name: flat[o:o + _count(self.shapes[name])].reshape(self.shapes[name])
                for name, o in self.offsets.items()}

    def pack(self, arrays: Mapping[str, np.ndarray], dtype: Any) -> np.ndarray:
        """A host flat buffer holding ``arrays`` (names of this layout; zero elsewhere)."""
        flat = np.zeros(self.size, dtype=dtype)
        views = self.views(flat)
        for name, value in arrays.items():
            views[name][...] = value
        return flat

    def unpack(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Copies of every parameter out of a host flat buffer."""
        return {name: view.copy() for name, view in self.views(flat).items()}


def _count(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))
