"""An independent implementation of a network's forward pass, loss and gradients, for checking
gpuback.

Why this is independent of gpuback:

* It imports nothing from gpuback and shares no code with it. It reads only the plain spec
  dict (groups, connections, input, output, loss) and a dict of NumPy parameter arrays.
* It is written differently: batch-major ``(batch, units)`` arrays where gpuback works
  feature-major; its own topological sort (Kahn's algorithm); a sparse block is expanded into
  a dense ``(dst, src)`` matrix with ``np.add.at`` instead of gathered by index arrays.
* Its gradients do not use backpropagation (Bishop PRML 5.53-5.56) at all. They come from the
  complex step: for an analytic E, ``E(w + i h e) = E(w) + i h dE/dw.e + O(h^2)``, so
  ``Im E(w + i h e) / h`` is the directional derivative with error O(h^2) and *no
  subtractive cancellation* (unlike central differences, Bishop 5.69). With h = 1e-30 the
  truncation error is ~1e-60 relative: the result is exact to rounding. A mistake in
  gpuback's deltas, its accumulation over consumers or its weight-gradient products cannot
  be reproduced here, because none of those are computed here.

Every function is written to be complex-analytic, so that it can be evaluated at complex
parameters: relu is ``where(Re a > 0, a, 0)`` (not ``maximum``, which compares complex
numbers); nothing that carries the perturbation goes through ``abs``, ``conj`` or
``maximum``; softmax is shifted by the row maximum of the *real* part. Losses are written
from their definitions, with ``1 - y`` for a sigmoid output taken as ``sigmoid(-a)`` and
``log y`` for a softmax output as ``a - m - log sum exp(a - m)`` and for an exp output as ``a``
(exact identities, free of cancellation). Inputs in the tests are small, so the plain formulas
(``log(1 + exp(a))``, ``1 / (1 + exp(-a))``) need no overflow tricks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

LEAKY_SLOPE = 0.01
NORM_EPS = 1e-5  # layer normalisation: (a - mean) / sqrt(variance + eps), nn.LayerNorm's
GELU_C = np.sqrt(2.0 / np.pi)


# --- activations (complex-analytic) ------------------------------------------------------


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _tanh(a: np.ndarray) -> np.ndarray:
    return np.tanh(a)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _relu(a: np.ndarray) -> np.ndarray:
    return np.where(np.real(a) > 0, a, 0.0)


def _leaky_relu(a: np.ndarray) -> np.ndarray:
    return np.where(np.real(a) > 0, a, LEAKY_SLOPE * a)


def _softplus(a: np.ndarray) -> np.ndarray:
    return np.log(1.0 + np.exp(a))


def _gelu(a: np.ndarray) -> np.ndarray:
    # a * a * a rather than a ** 3: plain products, nothing routed through complex pow
    return 0.5 * a * (1.0 + np.tanh(GELU_C * (a + 0.044715 * a * a * a)))


def _silu(a: np.ndarray) -> np.ndarray:
    return a / (1.0 + np.exp(-a))


def _exp(a: np.ndarray) -> np.ndarray:
    return np.exp(a)


def _softmax(a: np.ndarray) -> np.ndarray:
    """Softmax over units (axis 1), shifted by the row maximum of the real part.

    Softmax is invariant to any per-row shift, so a real shift keeps it analytic and exact.
    """
    e = np.exp(a - np.max(np.real(a), axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


ACTIVATIONS = {
    "identity": _identity,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "softplus": _softplus,
    "gelu": _gelu,
    "silu": _silu,
    "exp": _exp,
    "softmax": _softmax,
}


# --- structure ---------------------------------------------------------------------------


def topological_order(spec: Mapping[str, Any]) -> list[str]:
    """Group names, each after every group that sends it a connection (Kahn's algorithm).

    Ties are broken by the order groups are listed in the spec. Raises ``ValueError`` on a
    cycle.
    """
    names = [g["name"] for g in spec["groups"]]
    indegree = dict.fromkeys(names, 0)
    consumers: dict[str, list[str]] = {n: [] for n in names}
    for c in spec["connections"]:
        indegree[c["dst"]] += 1
        consumers[c["src"]].append(c["dst"])
    ready = [n for n in names if indegree[n] == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for dst in consumers[name]:
            indegree[dst] -= 1
            if indegree[dst] == 0:
                ready.append(dst)
    if len(order) != len(names):
        raise ValueError(f"spec: connections form a cycle among {sorted(set(names) - set(order))}")
    return order


def connection_name(connection: Mapping[str, Any]) -> str:
    """A connection's parameter name, ``"src->dst"``."""
    return f"{connection['src']}->{connection['dst']}"


def _block_matrix(connection: Mapping[str, Any], weight: np.ndarray, n_src: int,
                  n_dst: int) -> np.ndarray:
    """The block's weights as a dense ``(n_dst, n_src)`` matrix (row = receiving unit).

    A sparse block's weight ``w[e]`` goes to row ``edges[1][e]``, column ``edges[0][e]``.
    """
    if connection["kind"] == "dense":
        return weight
    src_idx, dst_idx = (np.asarray(i, dtype=np.intp) for i in connection["edges"])
    matrix = np.zeros((n_dst, n_src), dtype=weight.dtype)
    np.add.at(matrix, (dst_idx, src_idx), weight)
    return matrix


# --- forward and loss --------------------------------------------------------------------


def _output(spec: Mapping[str, Any], params: Mapping[str, np.ndarray],
            X: np.ndarray, masks: Mapping[str, np.ndarray] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """The output group's activation input (its pre-activations, or for a layer-normalised
    group gain * (a - mean) / sqrt(variance + eps) + shift, the mean and the variance over
    its units) and its activations, each ``(batch, n_out)``, in the dtype of ``params``
    (real or complex). ``masks``: group -> a 0/1 ``(batch, size)`` dropout mask, which
    multiplies that group's outputs with 1 / (1 - p) (none: no dropout, evaluation).

    Batch-major form of Bishop PRML (5.48) ``a_k = sum_j w_kj z_j + b_k`` and (5.49)
    ``z_k = h(a_k)``: a row per sample, ``A = b + sum over incoming blocks of Z_src @ W.T``.
    """
    groups = {g["name"]: g for g in spec["groups"]}
    incoming: dict[str, list[Mapping[str, Any]]] = {n: [] for n in groups}
    for c in spec["connections"]:
        incoming[c["dst"]].append(c)
    if spec["input"] == spec["output"]:
        raise ValueError("spec: the input group cannot be the output group")
    A: dict[str, np.ndarray] = {}
    Z: dict[str, np.ndarray] = {spec["input"]: X}
    for name in topological_order(spec):
        if name == spec["input"]:
            continue
        a = np.broadcast_to(params[name], (X.shape[0], groups[name]["size"]))
        for c in incoming[name]:
            if c["kind"] == "identity":  # unit j feeds unit j with weight 1, no parameter
                a = a + Z[c["src"]]
                continue
            W = _block_matrix(c, params[connection_name(c)], groups[c["src"]]["size"],
                              groups[name]["size"])
            a = a + Z[c["src"]] @ W.T  # (5.48), batch-major
        if groups[name].get("norm") == "layer":  # over the units of each sample (a row)
            centred = a - np.mean(a, axis=1, keepdims=True)
            variance = np.mean(centred * centred, axis=1, keepdims=True)
            a = centred / np.sqrt(variance + NORM_EPS) * params[f"{name}.gain"] + \
                params[f"{name}.shift"]
        A[name] = a
        Z[name] = ACTIVATIONS[groups[name].get("activation", "identity")](a)  # (5.49)
        if masks is not None and name in masks:  # dropout with a given 0/1 mask
            Z[name] = Z[name] * masks[name] / (1.0 - groups[name]["dropout"])
    return A[spec["output"]], Z[spec["output"]]


def _mean_loss(spec: Mapping[str, Any], params: Mapping[str, np.ndarray], X: np.ndarray,
               T: np.ndarray, masks: Mapping[str, np.ndarray] | None = None) -> Any:
    """Mean over the batch of E_n, in the dtype of ``params`` (a complex scalar for the
    complex step).

    The logs are taken without cancellation, by identities that hold exactly (and
    analytically): for a sigmoid output ``1 - y = sigmoid(-a)``; for a softmax output
    ``log y_k = a_k - m - log sum_j exp(a_j - m)`` with ``m`` the row maximum of Re a; for
    an exp output ``log y = a``.
    """
    A, Y = _output(spec, params, X, masks)
    batch = Y.shape[0]
    out_activation = next(g for g in spec["groups"] if g["name"] == spec["output"]).get(
        "activation", "identity")
    loss = spec["loss"]
    if loss == "sum_of_squares":
        D = Y - T
        E = 0.5 * np.sum(D * D)
    elif loss == "binary_cross_entropy":
        one_minus_Y = _sigmoid(-A) if out_activation == "sigmoid" else 1.0 - Y
        E = -np.sum(T * np.log(Y) + (1.0 - T) * np.log(one_minus_Y))
    elif loss == "cross_entropy":
        if out_activation == "softmax":
            shifted = A - np.max(np.real(A), axis=1, keepdims=True)
            log_Y = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        else:
            log_Y = np.log(Y)
        # integer class labels pick one log-probability per row; probability rows weight all
        E = -np.sum(log_Y[np.arange(batch), T]) if T.ndim == 1 else -np.sum(T * log_Y)
    elif loss == "poisson":
        # half the Poisson deviance, t log(t / y) - t + y, with t log t = 0 at t = 0
        log_Y = A if out_activation == "exp" else np.log(Y)
        t_log_t = np.where(T > 0, T * np.log(np.where(T > 0, T, 1.0)), 0.0)
        E = np.sum(t_log_t - T * log_Y - T + Y)
    else:
        raise ValueError(f"spec['loss']: unknown loss {loss!r}")
    return E / batch


def _as_complex(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64).astype(np.complex128) for k, v in params.items()}


def _targets(T: Any) -> np.ndarray:
    """Integer labels stay integer; anything else becomes float64."""
    T = np.asarray(T)
    return T.astype(np.intp) if np.issubdtype(T.dtype, np.integer) else T.astype(np.float64)


def forward(spec: Mapping[str, Any], params: Mapping[str, Any], X: Any) -> np.ndarray:
    """Network outputs ``(batch, n_out)`` as float64, computed in complex128."""
    X = np.asarray(X, dtype=np.float64).astype(np.complex128)
    return np.real(_output(spec, _as_complex(params), X)[1]).copy()


def loss(spec: Mapping[str, Any], params: Mapping[str, Any], X: Any, T: Any,
         masks: Mapping[str, np.ndarray] | None = None) -> float:
    """The mean loss over the batch, computed in complex128. ``T`` is ``(batch, n_out)`` or,
    for cross-entropy, ``(batch,)`` integer class labels."""
    X = np.asarray(X, dtype=np.float64).astype(np.complex128)
    return float(np.real(_mean_loss(spec, _as_complex(params), X, _targets(T), masks)))


def complex_step_grads(spec: Mapping[str, Any], params: Mapping[str, Any], X: Any, T: Any,
                       h: float = 1e-30, masks: Mapping[str, np.ndarray] | None = None
                       ) -> dict[str, np.ndarray]:
    """dE/dw for every parameter entry as ``Im E(w + i h e) / h`` (one loss per entry).

    No backpropagation is involved; the error is O(h^2) relative plus rounding, with no
    cancellation, so with the default h it is exact to rounding. ``masks``: dropout masks,
    as for ``_output``.
    """
    X = np.asarray(X, dtype=np.float64).astype(np.complex128)
    T = _targets(T)
    base = _as_complex(params)
    grads: dict[str, np.ndarray] = {}
    for key, value in base.items():
        grad = np.empty(value.shape, dtype=np.float64)
        for idx in np.ndindex(value.shape):
            probe = value.copy()
            probe[idx] += 1j * h
            grad[idx] = np.imag(_mean_loss(spec, {**base, key: probe}, X, T, masks)) / h
        grads[key] = grad
    return grads
