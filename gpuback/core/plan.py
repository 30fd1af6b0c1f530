"""A validated spec compiled once into what the forward and backward passes walk.

The plan holds the topological order of the groups, each group's incoming blocks,
and for every sparse block the index arrays every backend needs:

* COO (``src``, ``dst``): edge e connects source unit ``src[e]`` to destination
  unit ``dst[e]``; the weight vector is in this order. Used by the scatter-add.
* CSR by destination (``dst_ptr``, ``dst_edges``): the edges into destination unit
  k are ``dst_edges[dst_ptr[k]:dst_ptr[k+1]]``. Used by the forward gather.
* CSC by source (``src_ptr``, ``src_edges``): the edges out of source unit j are
  ``src_edges[src_ptr[j]:src_ptr[j+1]]``. Used by the deterministic backward gather.

Index arrays are host NumPy ``int64`` arrays; a backend copies them to its device
once, when the network is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..backends.protocol import SparseIndex
from .spec import gain_name, shift_name, topological_order, weight_name


@dataclass(frozen=True)
class Block:
    """One connection block ``src -> dst``: dense (weight (n_dst, n_src)), sparse (weight
    (E,)) or identity (no weight, shape ``()``: a_dst += z_src)."""

    name: str
    src: str
    dst: str
    kind: str
    shape: tuple[int, ...]  # the weight's; () for an identity block
    index: SparseIndex | None = None
    # In the backward pass, the first block to write src's delta accumulator
    # overwrites it; later ones add to it (Bishop 5.56's sum over consumers).
    first_into_src_accumulator: bool = False


@dataclass(frozen=True)
class Group:
    name: str
    size: int
    activation: str  # the input group's is "identity": its z is the input itself
    incoming: tuple[Block, ...] = field(default=())  # every kind, identity blocks too
    norm: str | None = None  # "layer": layer-normalised before the activation
    dropout: float = 0.0  # in training, each output zeroed with this probability

    @property
    def parameters(self) -> tuple[str, ...]:
        """The group's own parameters: its bias (its name), and with layer norm the gain
        and the shift."""
        if self.norm is None:
            return (self.name,)
        return (self.name, gain_name(self.name), shift_name(self.name))


@dataclass(frozen=True)
class Plan:
    """Everything about a network that does not depend on the weights or the batch."""

    spec: dict[str, Any]
    order: tuple[str, ...]
    groups: dict[str, Group]
    blocks: tuple[Block, ...]  # the blocks with a weight (dense, sparse), in spec order
    connections: tuple[Block, ...]  # every block, identity blocks too, in spec order
    input: str
    output: str
    loss: str

    @property
    def n_in(self) -> int:
        return self.groups[self.input].size

    @property
    def n_out(self) -> int:
        return self.groups[self.output].size

    @property
    def dropped(self) -> tuple[str, ...]:
        """The groups with dropout (p > 0), in topological order."""
        return tuple(g for g in self.order if self.groups[g].dropout > 0.0)

    @property
    def computed(self) -> tuple[str, ...]:
        """The non-input groups in topological order: the ones the forward pass computes."""
        return self.order[1:]

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names and shapes: every block's weight, ordered by its destination
        group's place in the topological order (spec order among the blocks into one
        group), then every non-input group's own parameters in topological order (its bias;
        with layer norm its gain and shift after it). The order of the flat
        buffers (``gpuback.core.layout``): backward visits the groups in reverse, so once it has
        finished a group, the gradients of that group and of every later one fill a suffix
        of the weights and a suffix of the biases (``gpuback.distributed.buckets``)."""
        position = {g: i for i, g in enumerate(self.order)}
        blocks = sorted(self.blocks, key=lambda b: position[b.dst])
        shapes = {b.name: b.shape for b in blocks}
        for g in self.computed:
            shapes.update({name: (self.groups[g].size,) for name in self.groups[g].parameters})
        return shapes


def compile_plan(spec: dict[str, Any]) -> Plan:
    """Compile a spec already passed through ``validate_spec``."""
    sizes = {g["name"]: g["size"] for g in spec["groups"]}
    order = topological_order([g["name"] for g in spec["groups"]], spec["connections"])
    position = {name: i for i, name in enumerate(order)}

    # The backward pass visits groups in reverse topological order and, inside a
    # group, its incoming blocks in spec order; the first block so visited that
    # feeds a given source initialises that source's accumulator.
    visit = sorted(range(len(spec["connections"])),
                   key=lambda i: -position[spec["connections"][i]["dst"]])
    first_writer: dict[str, int] = {}
    for i in visit:
        first_writer.setdefault(spec["connections"][i]["src"], i)

    blocks = []
    for i, c in enumerate(spec["connections"]):
        n_src, n_dst = sizes[c["src"]], sizes[c["dst"]]
        index = None
        if c["kind"] == "dense":
            shape: tuple[int, ...] = (n_dst, n_src)
        elif c["kind"] == "identity":
            shape = ()
        else:
            index = SparseIndex.from_edges(c["edges"], n_src, n_dst)
            shape = (index.n_edges,)
        blocks.append(Block(weight_name(c["src"], c["dst"]), c["src"], c["dst"], c["kind"],
                            shape, index, first_writer[c["src"]] == i))
    groups = {
        g["name"]: Group(g["name"], g["size"], g.get("activation", "identity"),
                         tuple(b for b in blocks if b.dst == g["name"]), g.get("norm"),
                         g.get("dropout", 0.0))
        for g in spec["groups"]
    }
    weighted = tuple(b for b in blocks if b.kind != "identity")
    return Plan(spec, tuple(order), groups, weighted, tuple(blocks), spec["input"],
                spec["output"], spec["loss"])
