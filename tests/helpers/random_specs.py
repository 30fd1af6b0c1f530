"""Random and hand-picked network specs for the test suite, and data to go with them.

Covers dense chains, sparse blocks, DAGs with skip connections and groups feeding
several later groups, identity (residual) connections, every activation, every loss,
sizes 1, 3 and 17.
"""

from __future__ import annotations

import itertools

import numpy as np

ELEMENTWISE = ["identity", "tanh", "sigmoid", "relu", "leaky_relu", "softplus", "gelu", "silu",
               "exp"]
OUTPUT_FOR_LOSS = {"sum_of_squares": "identity", "binary_cross_entropy": "sigmoid",
                   "cross_entropy": "softmax", "poisson": "exp"}
# What the random DAGs draw from: the activations and losses as they were before exp and
# Poisson, so that every seed keeps the spec that tests name it for ("dag-2", a cross-entropy
# DAG); exp and Poisson have cases of their own in ``SPEC_CASES`` and ``SIM_CASES``.
DRAWN_ACTIVATIONS = ELEMENTWISE[:8]
DRAWN_LOSSES = ["sum_of_squares", "binary_cross_entropy", "cross_entropy"]
SIZES = (1, 3, 17)


def random_edges(rng: np.random.Generator, n_src: int, n_dst: int, density: float) -> list:
    """A random edge list, no duplicates, in shuffled order, with at least one edge into every
    destination unit (a unit with no input sits at a = b, on relu's kink when b = 0)."""
    covering = rng.integers(0, n_src, size=n_dst) + n_src * np.arange(n_dst)
    n = max(n_dst, round(density * n_src * n_dst))
    rest = np.setdiff1d(np.arange(n_src * n_dst), covering)
    flat = np.concatenate([covering, rng.choice(rest, size=n - n_dst, replace=False)])
    flat = rng.permutation(flat)
    return [(flat % n_src).tolist(), (flat // n_src).tolist()]


def block(rng: np.random.Generator, src: str, dst: str, sizes: dict, kind: str) -> dict:
    if kind == "dense":
        return {"src": src, "dst": dst, "kind": "dense"}
    density = float(rng.uniform(0.2, 0.7))
    return {"src": src, "dst": dst, "kind": "sparse",
            "edges": random_edges(rng, sizes[src], sizes[dst], density)}


def chain_spec(sizes: list[int], activation: str, loss: str, kind: str = "dense",
               output_activation: str | None = None, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    names = ["x"] + [f"h{i}" for i in range(1, len(sizes) - 1)] + ["y"]
    size_of = dict(zip(names, sizes, strict=True))
    groups = [{"name": "x", "size": sizes[0]}]
    groups += [{"name": n, "size": size_of[n], "activation": activation} for n in names[1:-1]]
    groups.append({"name": "y", "size": sizes[-1],
                   "activation": output_activation or OUTPUT_FOR_LOSS[loss]})
    connections = [block(rng, a, b, size_of, kind) for a, b in itertools.pairwise(names)]
    return {"groups": groups, "connections": connections, "input": "x", "output": "y",
            "loss": loss}


def random_dag_spec(seed: int, n_hidden: int = 4, loss: str | None = None,
                    sizes: tuple[int, ...] = SIZES) -> dict:
    """A random DAG: every group receives from at least one earlier group, feeds at least one
    later group, and many have extra skip connections; random kinds, activations, sizes."""
    rng = np.random.default_rng(seed)
    loss = loss or DRAWN_LOSSES[seed % len(DRAWN_LOSSES)]
    names = ["x"] + [f"g{i}" for i in range(n_hidden)] + ["y"]
    size_choices = sizes
    sizes = {n: int(rng.choice(size_choices)) for n in names}
    groups = [{"name": "x", "size": sizes["x"]}]
    groups += [{"name": n, "size": sizes[n], "activation": str(rng.choice(DRAWN_ACTIVATIONS))}
               for n in names[1:-1]]
    out_act = OUTPUT_FOR_LOSS[loss]
    if loss == "sum_of_squares":
        out_act = str(rng.choice(DRAWN_ACTIVATIONS))
    groups.append({"name": "y", "size": sizes["y"], "activation": out_act})
    pairs = set()
    for i in range(1, len(names)):  # an incoming connection for every group
        pairs.add((names[int(rng.integers(0, i))], names[i]))
    for i in range(len(names) - 1):  # an outgoing connection for every group
        if not any(src == names[i] for src, _ in pairs):
            pairs.add((names[i], names[int(rng.integers(i + 1, len(names)))]))
    for _ in range(len(names)):  # extra skips
        i, j = sorted(rng.choice(len(names), size=2, replace=False))
        pairs.add((names[i], names[j]))
    ordered = [p for _, p in sorted((rng.random(), p) for p in sorted(pairs))]  # random order
    connections = [block(rng, s, d, sizes, str(rng.choice(["dense", "sparse"])))
                   for s, d in ordered]
    # shuffle the groups' listing too (input first is not required)
    order = rng.permutation(len(groups))
    return {"groups": [groups[k] for k in order], "connections": connections,
            "input": "x", "output": "y", "loss": loss}


def random_residual_spec(seed: int, n_hidden: int = 5, width: int = 3,
                         loss: str | None = None) -> dict:
    """A random DAG with identity (residual) connections and layer normalisation: most hidden
    groups have ``width`` units, and about half of the later-earlier pairs of equal size are
    joined by an identity block; the other pairs by dense or sparse blocks, as in
    ``random_dag_spec``. About half of the computed groups of 3 units or more, the output
    among them, are layer-normalised (at least one); about half the hidden groups have
    dropout (at least one), which only training passes apply."""
    rng = np.random.default_rng(1000 + seed)
    loss = loss or DRAWN_LOSSES[seed % len(DRAWN_LOSSES)]
    names = ["x"] + [f"r{i}" for i in range(n_hidden)] + ["y"]
    sizes = {n: width if rng.random() < 0.75 else int(rng.choice(SIZES)) for n in names}
    sizes["y"] = int(rng.choice(SIZES))
    sizes["r0"] = sizes["r1"] = width  # r0 -> r1 is always an identity block
    groups = [{"name": "x", "size": sizes["x"]}]
    groups += [{"name": n, "size": sizes[n], "activation": str(rng.choice(DRAWN_ACTIVATIONS))}
               for n in names[1:-1]]
    groups.append({"name": "y", "size": sizes["y"], "activation": OUTPUT_FOR_LOSS[loss]})
    connections = []
    for j in range(1, len(names)):
        sources = {names[j - 1]} | {names[int(i)] for i in rng.integers(0, j, size=2)}
        for src in sorted(sources):
            dst = names[j]
            if sizes[src] == sizes[dst] and (rng.random() < 0.5 or (src, dst) == ("r0", "r1")):
                connections.append({"src": src, "dst": dst, "kind": "identity"})
            else:
                kind = str(rng.choice(["dense", "sparse"]))
                connections.append(block(rng, src, dst, sizes, kind))
    normed = [g for g in groups[1:] if g["size"] >= 3 and rng.random() < 0.5]
    for g in normed or [groups[1]]:
        g["norm"] = "layer"
    for g in groups[1:-1]:  # dropout on about half the hidden groups, the first always
        if g is groups[1] or rng.random() < 0.5:
            g["dropout"] = float(rng.choice([0.1, 0.3, 0.5]))
    return {"groups": groups, "connections": connections, "input": "x", "output": "y",
            "loss": loss}


def _poisson_cases(simulated: bool = False) -> list[tuple[str, dict]]:
    """Poisson (exp outputs): a dense chain and a DAG with skip connections and sparse blocks
    (``random_dag_spec``'s seed 1 with the Poisson loss); unsimulated, also a sparse chain and
    one unit per group (exp hidden too)."""
    if simulated:
        return [("poisson", chain_spec([3, 3, 2], "tanh", "poisson")),
                ("dag-poisson", random_dag_spec(1, n_hidden=3, loss="poisson",
                                                sizes=(1, 3, 5)))]
    return [("poisson", chain_spec([17, 3, 3], "tanh", "poisson")),
            ("sparse-poisson", chain_spec([3, 17, 3], "softplus", "poisson", kind="sparse",
                                          seed=3)),
            ("size-1-poisson", chain_spec([1, 1, 1], "exp", "poisson")),
            ("dag-poisson", random_dag_spec(1, n_hidden=3, loss="poisson"))]


def _cases() -> list[tuple[str, dict]]:
    cases = []
    for act in ELEMENTWISE:
        cases.append((f"dense-{act}", chain_spec([3, 17, 3, 3], act, "cross_entropy")))
    for out_act in ELEMENTWISE:
        cases.append((f"sse-out-{out_act}",
                      chain_spec([3, 3, 3], "tanh", "sum_of_squares", output_activation=out_act)))
    cases.append(("bce", chain_spec([17, 3, 3], "relu", "binary_cross_entropy")))
    cases.append(("size-1", chain_spec([1, 1, 1], "tanh", "sum_of_squares")))
    cases.append(("size-1-bce", chain_spec([1, 1, 1], "sigmoid", "binary_cross_entropy")))
    cases.append(("softmax-1", chain_spec([3, 1, 1], "gelu", "cross_entropy")))
    cases.append(("sparse-chain", chain_spec([17, 17, 3, 3], "softplus", "cross_entropy",
                                             kind="sparse", seed=1)))
    cases.append(("sparse-sse", chain_spec([3, 17, 3], "leaky_relu", "sum_of_squares",
                                           kind="sparse", seed=2)))
    cases += _poisson_cases()
    for seed in range(6):
        cases.append((f"dag-{seed}", random_dag_spec(seed)))
    # 17 units wide: a layer-normalised group of 3 units keeps 1 of 3 directions of dE/du
    # (its mean and its xhat component are projected out), and that cancellation magnifies
    # the rounding of mixed precision hundreds of times in some bias gradients; the
    # precision bounds of tests/core/test_mixed_precision.py hold for wide groups
    for seed in range(4):
        cases.append((f"residual-{seed}", random_residual_spec(seed, width=17)))
    return cases


SPEC_CASES: list[tuple[str, dict]] = _cases()


def _sim_cases() -> list[tuple[str, dict]]:
    """Smaller cases for the CUDA simulator, where every simulated thread costs ~70 us."""
    cases = [(f"dense-{act}", chain_spec([3, 4, 3], act, "cross_entropy")) for act in ELEMENTWISE]
    cases += [(f"sse-out-{act}", chain_spec([2, 3, 2], "tanh", "sum_of_squares",
                                            output_activation=act))
              for act in ("identity", "sigmoid", "gelu")]
    cases.append(("bce", chain_spec([3, 3, 2], "relu", "binary_cross_entropy")))
    cases.append(("size-1", chain_spec([1, 1, 1], "tanh", "sum_of_squares")))
    cases.append(("sparse-chain", chain_spec([5, 5, 3, 3], "softplus", "cross_entropy",
                                             kind="sparse", seed=1)))
    cases += _poisson_cases(simulated=True)
    cases += [(f"dag-{seed}", random_dag_spec(seed, n_hidden=3, sizes=(1, 3, 5)))
              for seed in range(3)]
    cases += [(f"residual-{seed}", random_residual_spec(seed, n_hidden=3)) for seed in range(2)]
    return cases


SIM_CASES: list[tuple[str, dict]] = _sim_cases()


def random_data(spec: dict, batch: int, rng: np.random.Generator,
                labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (batch, n_in) and targets matching the spec's loss.

    Cross-entropy targets are probability rows, or integer class labels with ``labels``;
    Poisson targets are counts drawn with mean 1 (a third of them 0).
    """
    sizes = {g["name"]: g["size"] for g in spec["groups"]}
    n_in, n_out = sizes[spec["input"]], sizes[spec["output"]]
    X = rng.normal(size=(batch, n_in))
    loss = spec["loss"]
    if loss == "sum_of_squares":
        T = rng.normal(size=(batch, n_out))
    elif loss == "binary_cross_entropy":
        T = rng.uniform(size=(batch, n_out))
    elif loss == "poisson":  # counts, zeros among them
        T = rng.poisson(1.0, size=(batch, n_out)).astype(np.float64)
    elif labels:
        T = rng.integers(0, n_out, size=batch)
    else:
        T = rng.dirichlet(np.ones(n_out), size=batch)
    return X, T
