"""JAX, a contender of ``gpuback bench``'s dense cases (dense, small, resmlp), when installed.

The network is the ``torch.nn`` contender's, written as a JAX user writes it: parameters
in a list (in the order of the PyTorch model's ``parameters()``), a batch-major forward
(``x @ W.T + b``, ReLU between the layers of an MLP; the residual MLP's blocks
``x + dropout(gelu(layer_norm(x @ W.T + b)))``), the mean softmax cross-entropy. Two
functions are compiled with ``jax.jit`` (XLA): ``fwd_bwd`` is ``jax.value_and_grad`` of
the loss, ``step`` is that followed by SGD with momentum in the same program (PyTorch's
update: ``v = momentum * v + g``, ``p -= lr * v``), with the parameter and velocity
buffers donated so XLA updates them in place. Both run on JAX's default device; the first
call of each compiles, and ``gpuback bench`` times it apart from the step.
Needs JAX (``pip install 'gpuback[bench]'``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from . import torch_peers as bench_torch

LABEL = "jax.jit"
LAYER_NORM_EPS = 1e-5  # PyTorch's LayerNorm default


@functools.cache
def version() -> str | None:
    try:
        import jax
    except ImportError:
        return None
    return str(jax.__version__)


def absent_reason() -> str:
    return "JAX is not installed (pip install 'gpuback[bench]'): the dense cases run without it"


def device() -> str:
    """JAX's default device, as PyTorch (and ``gpuback bench``) names it: "cpu", "cuda" for
    an NVIDIA GPU, else JAX's own name (which no gpuback backend runs on)."""
    import jax

    backend = jax.default_backend()
    return {"gpu": "cuda", "cuda": "cuda"}.get(backend, backend)


Layout = tuple[list[tuple[str, tuple[int, ...]]], int, float]


def _layout(spec: dict) -> Layout | None:
    """The parameters of a dense chain (``mlp_spec``) or a ``resmlp_spec`` in the PyTorch
    model's order, each as (kind, shape), kind one of weight, bias, gain, shift; the residual
    depth (0: a plain MLP) and the dropout probability. None for a network with sparse
    blocks."""
    blocks = spec["connections"]

    def linear(n_in: int, n_out: int) -> list[tuple[str, tuple[int, ...]]]:
        return [("weight", (n_out, n_in)), ("bias", (n_out,))]

    if any(b["kind"] == "identity" for b in blocks):  # a resmlp_spec
        n_in, width, depth, n_out, p = bench_torch.residual_shape(spec)
        block = [*linear(width, width), ("gain", (width,)), ("shift", (width,))]
        return [*linear(n_in, width), *block * depth, *linear(width, n_out)], depth, p
    if any(b["kind"] != "dense" for b in blocks):
        return None
    sizes = [g["size"] for g in spec["groups"]]
    return [s for n_in, n_out in itertools.pairwise(sizes) for s in linear(n_in, n_out)], 0, 0.0


def init_params(spec: dict, seed: int = 0) -> list[np.ndarray] | None:
    """Float32 parameters for ``spec`` (None: sparse blocks, not written here): weights and
    biases uniform in +-1/sqrt(fan_in) as ``torch.nn.Linear`` draws them, layer-norm gains
    1 and shifts 0."""
    layout = _layout(spec)
    if layout is None:
        return None
    rng = np.random.default_rng(seed)
    params: list[np.ndarray] = []
    bound = 1.0
    for kind, shape in layout[0]:
        if kind == "weight":
            bound = 1.0 / np.sqrt(shape[1])
        value = (rng.uniform(-bound, bound, size=shape) if kind in ("weight", "bias")
                 else np.full(shape, 1.0 if kind == "gain" else 0.0))
        params.append(value.astype(np.float32))
    return params


def loss_function(spec: dict) -> Callable[..., Any] | None:
    """``loss(params, X, y, key, training)``: the mean softmax cross-entropy of the network on
    a batch (``key``: a ``jax.random`` key for dropout, used when ``training``); None for a
    network with sparse blocks."""
    layout = _layout(spec)
    if layout is None:
        return None
    _, depth, p = layout
    import jax
    import jax.numpy as jnp

    def linear(x: Any, w: Any, b: Any) -> Any:
        return x @ w.T + b

    def forward(params: list[Any], x: Any, key: Any, training: bool) -> Any:
        if not depth:
            for i in range(0, len(params) - 2, 2):
                x = jax.nn.relu(linear(x, params[i], params[i + 1]))
            return linear(x, params[-2], params[-1])
        x = linear(x, params[0], params[1])
        for i in range(depth):
            w, b, gain, shift = params[2 + 4 * i: 6 + 4 * i]
            a = linear(x, w, b)
            mean = a.mean(axis=1, keepdims=True)
            var = ((a - mean) ** 2).mean(axis=1, keepdims=True)
            h = jax.nn.gelu((a - mean) / jnp.sqrt(var + LAYER_NORM_EPS) * gain + shift,
                            approximate=True)
            if training and p > 0:
                keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - p, h.shape)
                h = jnp.where(keep, h / (1.0 - p), 0.0)
            x = x + h
        return linear(x, params[-2], params[-1])

    def loss(params: list[Any], X: Any, y: Any, key: Any, training: bool) -> Any:
        logp = jax.nn.log_softmax(forward(params, X, key, training), axis=1)
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    return loss


def train_functions(loss: Callable[..., Any], X: np.ndarray, y: np.ndarray, seed: int = 0
                    ) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The two jitted programs on one batch: ``fwd_bwd(params, count)`` -> (loss, gradients)
    and ``step(params, velocity, count)`` -> (params, velocity, loss), SGD with momentum as
    PyTorch takes it (``v = momentum * v + g``, ``p -= lr * v``; ``params`` and ``velocity``
    donated). ``count`` (an int) picks the step's dropout masks."""
    import jax
    import jax.numpy as jnp

    lr, momentum = bench_torch.SGD_LR, bench_torch.SGD_MOMENTUM
    X_device, y_device = jnp.asarray(X), jnp.asarray(y.astype(np.int32))
    base_key = jax.random.PRNGKey(seed)
    grad = jax.value_and_grad(loss)

    @jax.jit
    def fwd_bwd(params: list[Any], count: Any) -> Any:
        return grad(params, X_device, y_device, jax.random.fold_in(base_key, count), True)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params: list[Any], velocity: list[Any], count: Any) -> Any:
        value, grads = grad(params, X_device, y_device, jax.random.fold_in(base_key, count),
                            True)
        velocity = [momentum * v + g for v, g in zip(velocity, grads, strict=True)]
        return [q - lr * v for q, v in zip(params, velocity, strict=True)], velocity, value

    return fwd_bwd, step


def contenders(spec: dict, batch: int, seed: int = 0) -> dict[str, dict[str, Callable[[], Any]]]:
    """``{"jax.jit": {"fwd_bwd": fn, "step": fn}}`` for a network of dense blocks
    (``mlp_spec``, ``resmlp_spec``) on JAX's default device (``device``), on the batch
    every peer trains on; empty without JAX or for a network with sparse blocks."""
    if version() is None:
        return {}
    params_np = init_params(spec, seed)
    loss = loss_function(spec)
    if params_np is None or loss is None:
        return {}
    import jax
    import jax.numpy as jnp

    X, y = bench_torch.batch_arrays(spec, batch, seed)
    fwd_bwd_fn, step_fn = train_functions(loss, X, y, seed)
    state: dict[str, Any] = {"params": [jnp.asarray(q) for q in params_np], "count": 0,
                             "velocity": [jnp.zeros(q.shape, jnp.float32) for q in params_np]}

    def fwd_bwd() -> None:
        state["count"] += 1
        jax.block_until_ready(fwd_bwd_fn(state["params"], state["count"]))

    def step() -> None:
        state["count"] += 1
        state["params"], state["velocity"], value = step_fn(state["params"], state["velocity"],
                                                            state["count"])
        jax.block_until_ready((state["params"], value))

    return {LABEL: {"fwd_bwd": fwd_bwd, "step": step}}
