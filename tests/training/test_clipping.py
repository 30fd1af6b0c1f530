"""Gradient clipping by global norm (``fit(..., clip_grad_norm=c)``, ``gpuback train
--clip-grad-norm C``): the op against PyTorch's ``clip_grad_norm_`` on every backend, the
clipped update of ``fit`` against the rule written out on the gradients of
``loss_and_grads``, fp16 loss scaling (the unscaled gradient is clipped; a skipped step
stays skipped), the arguments, and the cuda step's budget: two launches, no host wait."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tolerances import TOLERANCES, rel_error
from helpers.training_runs import three_class_net, three_class_problem

import gpuback
from gpuback import profile
from gpuback.optim import optimizers as optim


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("n", "max_norm"), [(1, 0.1), (40, 1.0), (700, 3.0), (700, 1e3)])
def test_the_op_is_torchs_clip_grad_norm(backend: str, dtype: str, n: int,
                                         max_norm: float) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(n)
    grad = rng.normal(size=n).astype(dtype)
    ops = gpuback.backends.get_backend(backend)
    on_backend, norm = ops.from_host(grad, grad.dtype), ops.zeros((1,), grad.dtype)
    ops.clip_gradient_norm(on_backend, max_norm, norm)
    # PyTorch's rule over the same numbers, split into parameters of several shapes
    pieces = np.split(grad, [n // 3, n // 2]) if n > 2 else [grad]
    params = [torch.zeros(len(p), dtype=getattr(torch, dtype), requires_grad=True)
              for p in pieces]
    for param, piece in zip(params, pieces, strict=True):
        param.grad = torch.tensor(piece)
    expected_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    expected = np.concatenate([p.grad.numpy() for p in params])
    tol = TOLERANCES[dtype]["backend"]
    assert rel_error(ops.to_host(norm)[0], expected_norm) <= tol
    assert rel_error(ops.to_host(on_backend), expected) <= tol
    clipped = expected_norm > max_norm
    assert (np.linalg.norm(ops.to_host(on_backend)) < np.linalg.norm(grad)) == clipped


def _one_step(backend: str, max_norm: float | None, **kwargs) -> gpuback.Network:
    """One full-batch SGD step of ``fit``, clipped at ``max_norm``."""
    X, y = three_class_problem(24)
    net = three_class_net(backend, dtype="float64", **kwargs)
    net.fit(X, y, epochs=1, batch_size=24, optimizer=optim.SGD(lr=0.5), shuffle=False,
            progress=False, clip_grad_norm=max_norm)
    return net


@pytest.mark.parametrize("max_norm", [0.05, 1e6])
def test_fit_updates_with_the_clipped_gradient(backend: str, max_norm: float) -> None:
    X, y = three_class_problem(24)
    before = three_class_net(backend, dtype="float64")
    _, grads = before.loss_and_grads(X, y)
    norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
    factor = min(1.0, max_norm / (norm + 1e-6))
    assert (factor < 1) == (max_norm < norm)  # one case clips, the other does not
    expected = {k: w - 0.5 * factor * grads[k] for k, w in before.parameters().items()}
    after = _one_step(backend, max_norm).parameters()
    for name, value in expected.items():
        assert rel_error(after[name], value) <= TOLERANCES["float64"]["backend"], name


def test_without_clipping_fit_is_unchanged(backend: str) -> None:
    plain, huge = _one_step(backend, None), _one_step(backend, 1e6)
    for name, value in plain.parameters().items():
        np.testing.assert_array_equal(huge.parameters()[name], value, err_msg=name)


def _fp16_run(loss_scale, max_norm: float | None, steps: int = 3) -> gpuback.Network:
    X, y = three_class_problem(8 * steps)
    net = three_class_net("numpy", dtype="float32", precision="fp16")
    net.fit(X, y, epochs=1, batch_size=8, optimizer=optim.SGD(lr=0.5), shuffle=False,
            progress=False, loss_scale=loss_scale, clip_grad_norm=max_norm)
    return net


def test_fp16_clips_the_unscaled_gradient() -> None:
    """The same clipped run with the loss scaled by 2^10 and unscaled: clipping the scaled
    gradient would shrink it 2^10 times more."""
    scaled, plain = _fp16_run(2.0**10, 0.05), _fp16_run(False, 0.05)
    unclipped = _fp16_run(False, None)
    for name, value in plain.parameters().items():
        assert rel_error(scaled.parameters()[name], value) <= TOLERANCES["float32"]["backend"]
    assert any(rel_error(unclipped.parameters()[k], v) > 1e-3
               for k, v in plain.parameters().items())  # and clipping did act


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow the step is skipped for
def test_fp16_a_skipped_step_stays_skipped_when_clipped() -> None:
    """A loss scale so large that the first step's scaled gradients overflow: the step is
    skipped, clipping or not (the clip of an infinite norm multiplies by zero, which the
    skip leaves unused)."""
    first = three_class_net("numpy", dtype="float32", precision="fp16").parameters()
    X, y = three_class_problem(8)
    net = three_class_net("numpy", dtype="float32", precision="fp16")
    net.fit(X, y, epochs=1, batch_size=8, optimizer=optim.SGD(lr=0.5), progress=False,
            loss_scale=2.0**60, clip_grad_norm=1.0)
    for name, value in first.items():
        np.testing.assert_array_equal(net.parameters()[name], value, err_msg=name)


@pytest.mark.parametrize(("value", "error"), [(0.0, ValueError), (-1.0, ValueError),
                                              (float("inf"), ValueError),
                                              (float("nan"), ValueError),
                                              ("1", TypeError), (True, TypeError)])
def test_bad_clip_grad_norms_are_refused(value, error) -> None:
    X, y = three_class_problem(8)
    net = three_class_net()
    with pytest.raises(error, match=r"^clip_grad_norm: "):
        net.fit(X, y, epochs=1, progress=False, clip_grad_norm=value)
    assert net.epochs_trained == 0


@pytest.mark.sim
@pytest.mark.slow
def test_clipping_adds_two_launches_and_no_host_wait_to_a_cuda_step() -> None:
    X, y = three_class_problem(32)

    def counts(n: int, **kwargs) -> profile.Counts:
        net = three_class_net("cuda", dtype="float32")
        with profile.counters() as counted:
            net.fit(X[:n], y[:n], epochs=1, batch_size=8, optimizer=optim.SGD(lr=0.1),
                    progress=False, **kwargs)
        return counted

    # 2 more steps each: what differs between the two is the cost of two steps
    plain = counts(32) - counts(16)
    clipped = counts(32, clip_grad_norm=1.0) - counts(16, clip_grad_norm=1.0)
    assert clipped.launches - plain.launches == 2 * 2
    for field in ("host_to_device", "device_to_host", "host_waits", "allocations"):
        assert getattr(clipped, field) == getattr(plain, field), field
