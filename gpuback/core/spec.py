"""Network specs: plain, JSON-serialisable descriptions of a feed-forward network.

A spec lists groups of units and connection blocks between them::

    {"groups": [{"name": "x", "size": 4},
                {"name": "h", "size": 3, "activation": "tanh"},
                {"name": "y", "size": 2, "activation": "softmax"}],
     "connections": [{"src": "x", "dst": "h", "kind": "dense"},
                     {"src": "h", "dst": "y", "kind": "dense"},
                     {"src": "x", "dst": "y", "kind": "sparse", "edges": [[0, 3], [1, 0]]}],
     "input": "x", "output": "y", "loss": "cross_entropy"}

A connection is ``"dense"`` (a weight matrix), ``"sparse"`` (a weight per listed edge) or
``"identity"`` (no parameters: unit j of the source feeds unit j of an equally sized
destination with weight 1, a residual connection: a_dst += z_src, and in backward
delta_src += delta_dst, 5.56 with W = I).

A hidden group may carry ``"dropout": p`` (0 <= p < 1): in training, each of its outputs is
zeroed with probability p and the rest scaled by 1 / (1 - p) (``gpuback.kernels.mask_hash``
draws the masks). A non-input group may carry ``"norm": "layer"``: layer normalisation of
its pre-activations over its units, per sample, before the activation, with a per-unit gain
and shift (parameters ``"<group>.gain"`` and ``"<group>.shift"``; eps ``NORM_EPS``).

``validate_spec`` checks everything that can be checked without data and returns a
normalised deep copy (plain ``int``/``str``/``list``), which is what ``Network.spec``
holds and what a checkpoint stores. Every error names the offending field, what was
expected and what was given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..kernels.scalar import NORM_EPS
from .checks import check_int, check_real, is_integer

ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu", "leaky_relu", "softplus", "gelu", "silu",
               "exp", "softmax")
ELEMENTWISE_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a != "softmax")
LOSSES = ("sum_of_squares", "binary_cross_entropy", "cross_entropy", "poisson")
KINDS = ("dense", "sparse", "identity")
NORMS = ("layer",)

# The output activation each loss is defined for (None: any elementwise activation).
LOSS_OUTPUT_ACTIVATION = {
    "sum_of_squares": None,
    "binary_cross_entropy": "sigmoid",
    "cross_entropy": "softmax",
    "poisson": "exp",  # the log link: y = e^a, the mean of a Poisson count
}

_SPEC_KEYS = {"groups", "connections", "input", "output", "loss"}
_GROUP_KEYS = {"name", "size", "activation", "norm", "dropout"}
_CONNECTION_KEYS = {"src", "dst", "kind", "edges"}


def weight_name(src: str, dst: str) -> str:
    """The parameter name of the weight block from group ``src`` to group ``dst``."""
    return f"{src}->{dst}"


def gain_name(group: str) -> str:
    """The parameter name of a layer-normalised group's per-unit gain."""
    return f"{group}.gain"


def shift_name(group: str) -> str:
    """The parameter name of a layer-normalised group's per-unit shift."""
    return f"{group}.shift"


def validate_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``spec`` and return a normalised, JSON-serialisable deep copy.

    Raises ``TypeError`` for values of the wrong type and ``ValueError`` for
    inconsistent ones (unknown names, cycles, unreachable output, bad edges, ...).
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"spec: expected a dict, got {type(spec).__name__}")
    _check_keys("spec", spec, required=_SPEC_KEYS, allowed=_SPEC_KEYS)
    groups = _validate_groups(spec["groups"])
    sizes = {g["name"]: g["size"] for g in groups}
    input_name = _check_group_ref("spec['input']", spec["input"], sizes)
    output_name = _check_group_ref("spec['output']", spec["output"], sizes)
    if input_name == output_name:
        raise ValueError(f"spec['output']: must differ from the input group, got {output_name!r}")
    loss = spec["loss"]
    if loss not in LOSSES:
        raise ValueError(f"spec['loss']: expected one of {list(LOSSES)}, got {loss!r}")
    connections = _validate_connections(spec["connections"], sizes)

    for g in groups:
        name = g["name"]
        if name == input_name:
            for key in ("activation", "norm", "dropout"):
                if key in g:
                    raise ValueError(f"group {name!r}: the input group takes no {key}, "
                                     f"got {g[key]!r}")
            continue
        activation = g.get("activation")
        if activation is None:
            raise ValueError(
                f"group {name!r}: 'activation' is required for a non-input group, "
                f"expected one of {list(ACTIVATIONS)}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"group {name!r}: activation expected one of {list(ACTIVATIONS)}, "
                f"got {activation!r}"
            )
        if "dropout" in g and name == output_name:
            raise ValueError(f"group {name!r}: dropout is for hidden groups, not the output "
                             "group")
        if "norm" in g and g["norm"] not in NORMS:
            raise ValueError(f"group {name!r}: norm expected one of {list(NORMS)}, "
                             f"got {g['norm']!r}")
        if activation == "softmax" and name != output_name:
            raise ValueError(
                f"group {name!r}: softmax is allowed only on the output group "
                f"({output_name!r}), not on a hidden group"
            )

    out_activation = next(g["activation"] for g in groups if g["name"] == output_name)
    wanted = LOSS_OUTPUT_ACTIVATION[loss]
    if wanted is None and out_activation == "softmax":
        raise ValueError(
            f"spec['loss']: {loss!r} needs an elementwise output activation; "
            f"output group {output_name!r} has 'softmax' (use loss 'cross_entropy')"
        )
    if wanted is not None and out_activation != wanted:
        raise ValueError(
            f"spec['loss']: {loss!r} needs output activation {wanted!r}; "
            f"output group {output_name!r} has {out_activation!r}"
        )

    _check_graph([g["name"] for g in groups], connections, input_name, output_name)
    return {
        "groups": groups,
        "connections": connections,
        "input": input_name,
        "output": output_name,
        "loss": loss,
    }


def topological_order(group_names: Sequence[str],
                      connections: Sequence[Mapping[str, Any]]) -> list[str]:
    """Groups ordered so that every connection goes from an earlier to a later group.

    Kahn's algorithm; ties keep the order in which groups are listed, so the order
    is deterministic. Raises ``ValueError`` naming the groups on a cycle.
    """
    indegree = {name: 0 for name in group_names}
    consumers: dict[str, list[str]] = {name: [] for name in group_names}
    for c in connections:
        indegree[c["dst"]] += 1
        consumers[c["src"]].append(c["dst"])
    position = {name: i for i, name in enumerate(group_names)}
    ready = [name for name in group_names if indegree[name] == 0]
    order: list[str] = []
    while ready:
        ready.sort(key=position.__getitem__)
        name = ready.pop(0)
        order.append(name)
        for dst in consumers[name]:
            indegree[dst] -= 1
            if indegree[dst] == 0:
                ready.append(dst)
    if len(order) < len(group_names):
        # What Kahn's algorithm left is the cycles and what hangs below them; peel off
        # groups that feed nothing left, so the message names the cycles' groups.
        left = {name for name in group_names if indegree[name] > 0}
        while True:
            sinks = {n for n in left if not any(d in left for d in consumers[n])}
            if not sinks:
                break
            left -= sinks
        on_cycle = [name for name in group_names if name in left]
        raise ValueError(f"spec['connections']: the connections form a cycle through {on_cycle}")
    return order


def _check_keys(where: str, obj: Mapping[str, Any], required: set[str],
                allowed: set[str]) -> None:
    missing = sorted(required - obj.keys())
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")
    unknown = sorted(set(obj.keys()) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}, expected only {sorted(allowed)}")


def _check_group_ref(where: str, value: Any, sizes: Mapping[str, int]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where}: expected a group name (str), got {value!r}")
    if value not in sizes:
        raise ValueError(f"{where}: unknown group {value!r}, known groups are {list(sizes)}")
    return value


def _validate_groups(groups: Any) -> list[dict[str, Any]]:
    if not isinstance(groups, Sequence) or isinstance(groups, (str, bytes)):
        raise TypeError(f"spec['groups']: expected a list of dicts, got {type(groups).__name__}")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, g in enumerate(groups):
        where = f"spec['groups'][{i}]"
        if not isinstance(g, Mapping):
            raise TypeError(f"{where}: expected a dict, got {type(g).__name__}")
        _check_keys(where, g, required={"name", "size"}, allowed=_GROUP_KEYS)
        name = g["name"]
        if not isinstance(name, str) or not name:
            raise TypeError(f"{where}['name']: expected a non-empty string, got {name!r}")
        if "->" in name:
            raise ValueError(f"{where}['name']: must not contain '->' (used in weight names), "
                             f"got {name!r}")
        if name in seen:
            raise ValueError(f"{where}['name']: duplicate group name {name!r}")
        seen.add(name)
        group: dict[str, Any] = {"name": name, "size": check_int(f"{where}['size']", g["size"], 1)}
        for key in ("activation", "norm"):
            if key in g:
                group[key] = g[key]
        if "dropout" in g:
            group["dropout"] = check_real(f"{where}['dropout']", g["dropout"], 0, 1,
                                          high_open=True)
        out.append(group)
    names = {g["name"] for g in out}
    for g in out:
        if "norm" in g:
            for taken in (gain_name(g["name"]), shift_name(g["name"])):
                if taken in names:
                    raise ValueError(f"group {taken!r}: its name is the parameter name of "
                                     f"group {g['name']!r}'s layer norm; rename it")
    if len(out) < 2:
        raise ValueError(f"spec['groups']: expected at least 2 groups (input and output), "
                         f"got {len(out)}")
    return out


def _validate_connections(connections: Any, sizes: Mapping[str, int]) -> list[dict[str, Any]]:
    if not isinstance(connections, Sequence) or isinstance(connections, (str, bytes)):
        raise TypeError(
            f"spec['connections']: expected a list of dicts, got {type(connections).__name__}"
        )
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(connections):
        where = f"spec['connections'][{i}]"
        if not isinstance(c, Mapping):
            raise TypeError(f"{where}: expected a dict, got {type(c).__name__}")
        _check_keys(where, c, required={"src", "dst", "kind"}, allowed=_CONNECTION_KEYS)
        src = _check_group_ref(f"{where}['src']", c["src"], sizes)
        dst = _check_group_ref(f"{where}['dst']", c["dst"], sizes)
        if (src, dst) in seen:
            raise ValueError(f"{where}: duplicate connection {weight_name(src, dst)!r}; "
                             "merge them into one block")
        seen.add((src, dst))
        kind = c["kind"]
        if kind not in KINDS:
            raise ValueError(f"{where}['kind']: expected one of {list(KINDS)}, got {kind!r}")
        conn: dict[str, Any] = {"src": src, "dst": dst, "kind": kind}
        if kind != "sparse":
            if "edges" in c:
                article = "an" if kind == "identity" else "a"
                raise ValueError(f"{where}: {article} {kind} connection takes no 'edges'")
            if kind == "identity" and sizes[src] != sizes[dst]:
                raise ValueError(f"{where}: an identity connection needs groups of equal size, "
                                 f"got {src!r} of {sizes[src]} and {dst!r} of {sizes[dst]} "
                                 "units")
        else:
            if "edges" not in c:
                raise ValueError(f"{where}: a sparse connection needs 'edges': "
                                 "[[src unit indices], [dst unit indices]]")
            conn["edges"] = _validate_edges(f"{where}['edges']", c["edges"], sizes[src], sizes[dst])
        out.append(conn)
    return out


def _validate_edges(where: str, edges: Any, n_src: int, n_dst: int) -> list[list[int]]:
    try:
        arr = np.asarray(edges)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{where}: expected [[src indices], [dst indices]] of equal length "
                         f"({exc})") from None
    if arr.ndim != 2 or arr.shape[0] != 2:
        raise ValueError(f"{where}: expected shape (2, E), [[src indices], [dst indices]], "
                         f"got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{where}: expected at least one edge, got none")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{where}: expected integer unit indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    for row, side, n in ((0, "src", n_src), (1, "dst", n_dst)):
        bad = np.flatnonzero((arr[row] < 0) | (arr[row] >= n))
        if bad.size:
            e = int(bad[0])
            raise ValueError(f"{where}: {side} index of edge {e} is {int(arr[row, e])}, "
                             f"expected 0 <= index < {n}")
    flat = arr[0] * n_dst + arr[1]
    unique, first, counts = np.unique(flat, return_index=True, return_counts=True)
    if unique.size < flat.size:
        dup = int(np.flatnonzero(counts > 1)[0])
        e = int(first[dup])
        raise ValueError(f"{where}: duplicate edge ({int(arr[0, e])} -> {int(arr[1, e])})")
    edge_list: list[list[int]] = arr.tolist()
    return edge_list


def _check_graph(names: list[str], connections: list[dict[str, Any]], input_name: str,
                 output_name: str) -> None:
    if any(c["dst"] == input_name for c in connections):
        src = next(c["src"] for c in connections if c["dst"] == input_name)
        raise ValueError(f"spec['connections']: the input group {input_name!r} cannot receive "
                         f"a connection (from {src!r})")
    topological_order(names, connections)  # raises on a cycle
    receivers = {c["dst"] for c in connections}
    for name in names:
        if name != input_name and name not in receivers:
            raise ValueError(f"group {name!r}: a non-input group needs at least one incoming "
                             "connection")
    reaches_output = {output_name}
    changed = True
    while changed:
        changed = False
        for c in connections:
            if c["dst"] in reaches_output and c["src"] not in reaches_output:
                reaches_output.add(c["src"])
                changed = True
    for name in names:
        if name not in reaches_output:
            raise ValueError(f"group {name!r}: the output group {output_name!r} cannot be "
                             f"reached from it")


def mlp_spec(sizes: Sequence[int], activation: str = "relu", loss: str = "cross_entropy",
             output_activation: str | None = None) -> dict[str, Any]:
    """A fully connected MLP: groups ``x, h1, ..., y`` chained by dense blocks.

    ``output_activation`` defaults to the one ``loss`` is paired with (softmax for
    cross-entropy, sigmoid for binary cross-entropy, exp for Poisson, identity for sum of
    squares).
    """
    return _chain_spec(sizes, activation, loss, output_activation,
                       lambda i, n_src, n_dst: {"kind": "dense"})


def sparse_mlp_spec(sizes: Sequence[int], density: float = 0.05, seed: int = 0,
                    activation: str = "relu", loss: str = "cross_entropy",
                    output_activation: str | None = None,
                    sparse_output: bool = False) -> dict[str, Any]:
    """An MLP whose hidden blocks are sparse with random edges.

    Every block into a hidden group keeps ``round(density * n_src * n_dst)`` edges
    (at least one), drawn without replacement from ``numpy.random.default_rng(seed)``.
    The block into the output group is dense unless ``sparse_output`` is set.
    """
    check_real("density", density, 0, 1, low_open=True, high_open=False)
    rng = np.random.default_rng(seed)
    n_blocks = len(sizes) - 1

    def block(i: int, n_src: int, n_dst: int) -> dict[str, Any]:
        if i == n_blocks - 1 and not sparse_output:
            return {"kind": "dense"}
        return {"kind": "sparse", "edges": random_edges(n_src, n_dst, density, rng).tolist()}

    return _chain_spec(sizes, activation, loss, output_activation, block)


def random_edges(n_src: int, n_dst: int, density: float,
                 rng: np.random.Generator) -> np.ndarray:
    """``max(1, round(density * n_src * n_dst))`` distinct random edges drawn without
    replacement from ``rng``, as a (2, E) int64 array ``[src, dst]`` ordered by destination,
    then source: a sparse block's edges (``sparse_mlp_spec``, ``gpuback.torch.SparseLinear``)."""
    check_real("density", density, 0, 1, low_open=True, high_open=False)
    n_edges = max(1, round(density * n_src * n_dst))
    flat = np.sort(rng.choice(n_src * n_dst, size=n_edges, replace=False))
    return np.stack([flat % n_src, flat // n_src]).astype(np.int64)


def resmlp_spec(n_in: int, width: int, depth: int, n_out: int, norm: str | None = "layer",
                dropout: float = 0.1, activation: str = "gelu",
                loss: str = "cross_entropy") -> dict[str, Any]:
    """The usual residual MLP: a dense stem ``x -> r0`` of ``width`` units, ``depth`` residual
    blocks, and a dense head ``r<depth> -> y``.

    Block i is a group ``b<i>`` fed densely by ``r<i-1>`` (a -> layer norm -> ``activation``
    -> dropout; ``norm=None`` for no norm, ``dropout=0`` for none), then the stream ``r<i> =
    r<i-1> + b<i>`` (plus its bias): a group of identity activation fed by two identity
    connections. So z_r<i> = z_r<i-1> + drop(h(LN(W z_r<i-1> + b))) + b_r<i>, the residual
    form of PyTorch's ``x + block(x)``. The output activation is the one ``loss`` is
    paired with. Validated.
    """
    for name, value in (("n_in", n_in), ("width", width), ("n_out", n_out)):
        check_int(name, value, 1)
    check_int("depth", depth, 0)
    dropout = check_real("dropout", dropout, 0, 1)
    if norm is not None and norm not in NORMS:
        raise ValueError(f"norm: expected one of {list(NORMS)} or None, got {norm!r}")
    if activation not in ELEMENTWISE_ACTIVATIONS:
        raise ValueError(f"activation: expected one of {list(ELEMENTWISE_ACTIVATIONS)}, got "
                         f"{activation!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {list(LOSSES)}, got {loss!r}")
    groups: list[dict[str, Any]] = [{"name": "x", "size": n_in},
                                    {"name": "r0", "size": width, "activation": "identity"}]
    connections: list[dict[str, Any]] = [{"src": "x", "dst": "r0", "kind": "dense"}]
    for i in range(1, depth + 1):
        block: dict[str, Any] = {"name": f"b{i}", "size": width, "activation": activation}
        if norm is not None:
            block["norm"] = norm
        if dropout > 0.0:
            block["dropout"] = dropout
        groups += [block, {"name": f"r{i}", "size": width, "activation": "identity"}]
        connections += [{"src": f"r{i - 1}", "dst": f"b{i}", "kind": "dense"},
                        {"src": f"r{i - 1}", "dst": f"r{i}", "kind": "identity"},
                        {"src": f"b{i}", "dst": f"r{i}", "kind": "identity"}]
    groups.append({"name": "y", "size": n_out,
                   "activation": LOSS_OUTPUT_ACTIVATION[loss] or "identity"})
    connections.append({"src": f"r{depth}", "dst": "y", "kind": "dense"})
    return validate_spec({"groups": groups, "connections": connections, "input": "x",
                          "output": "y", "loss": loss})


def _chain_spec(sizes: Sequence[int], activation: str, loss: str,
                output_activation: str | None,
                block: Callable[[int, int, int], dict[str, Any]]) -> dict[str, Any]:
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes: expected at least 2 layer sizes (input, output), got {sizes}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {list(LOSSES)}, got {loss!r}")
    if not all(is_integer(s, 1) for s in sizes):
        raise ValueError(f"sizes: expected positive integers, got {sizes}")
    if output_activation is None:
        output_activation = LOSS_OUTPUT_ACTIVATION[loss] or "identity"
    names = ["x"] + [f"h{i}" for i in range(1, len(sizes) - 1)] + ["y"]
    groups: list[dict[str, Any]] = [{"name": "x", "size": sizes[0]}]
    groups += [{"name": n, "size": s, "activation": activation}
               for n, s in zip(names[1:-1], sizes[1:-1], strict=True)]
    groups.append({"name": "y", "size": sizes[-1], "activation": output_activation})
    connections = [{"src": names[i], "dst": names[i + 1], **block(i, sizes[i], sizes[i + 1])}
                   for i in range(len(sizes) - 1)]
    spec = {"groups": groups, "connections": connections, "input": "x", "output": "y",
            "loss": loss}
    return validate_spec(spec)


__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "NORMS",
    "NORM_EPS",
    "gain_name",
    "mlp_spec",
    "random_edges",
    "resmlp_spec",
    "shift_name",
    "sparse_mlp_spec",
    "topological_order",
    "validate_spec",
    "weight_name",
]
