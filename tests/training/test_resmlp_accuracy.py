"""The residual MLP people train today, trained by gpuback and by PyTorch with the same
settings from the same initial weights, on the embedded handwritten digits: gpuback's mean
test accuracy over seeds 0-4 is at least PyTorch's.

The network is ``resmlp_spec(64, 512, 4, 10)``: 4 residual blocks of width 512 with layer
norm, GELU and dropout 0.1. Both train 15 epochs of batches of 32 in the same order with
AdamW (lr 1e-3, weight decay 0.01 on the weights only), a linear warm-up over the first 10%
of the steps and a cosine to 0, and gradient clipping at norm 1.0. PyTorch's network is
``to_torch`` of gpuback's before training (the same weights; its dropout masks are
PyTorch's own).
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuback
from gpuback import datasets, optim

torch = pytest.importorskip("torch")

EPOCHS, BATCH, LR, WEIGHT_DECAY, WARMUP, CLIP = 15, 32, 1e-3, 0.01, 0.1, 1.0
SEEDS = range(5)


def _schedule(steps: int) -> optim.Cosine:
    return optim.Cosine(total_steps=steps, warmup_steps=int(WARMUP * steps))


def _torch_accuracy(module, data, seed: int, steps: int) -> float:
    """``module`` trained as ``fit`` trains: the same batches in the same order (``fit``'s
    shuffle for an integer seed), AdamW with the weights alone decayed, the schedule as a
    LambdaLR, ``clip_grad_norm_`` before each step; then its test accuracy."""
    torch.manual_seed(seed)
    named = module.gpuback_parameters()
    weights = [p for name, p in named.items() if "->" in name]
    others = [p for name, p in named.items() if "->" not in name]
    opt = torch.optim.AdamW([{"params": weights, "weight_decay": WEIGHT_DECAY},
                             {"params": others, "weight_decay": 0.0}], lr=LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(steps))
    X = torch.tensor(data.X_train, dtype=torch.float32)
    y = torch.tensor(data.y_train)
    n = len(data.y_train)
    module.train()
    for epoch in range(EPOCHS):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for start in range(0, n, BATCH):
            rows = torch.tensor(order[start:start + BATCH])
            opt.zero_grad()
            probabilities = module(X[rows])
            loss = -torch.log(probabilities[torch.arange(len(rows)), y[rows]]).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), CLIP)
            opt.step()
            schedule.step()
    module.eval()
    with torch.no_grad():
        predicted = module(torch.tensor(data.X_test, dtype=torch.float32)).argmax(1).numpy()
    return float((predicted == data.y_test).mean())


@pytest.mark.slow
def test_a_residual_mlp_learns_the_digits_at_least_as_well_as_in_pytorch() -> None:
    from gpuback.interop import to_torch

    data = datasets.load_digits()
    steps = EPOCHS * -(-len(data.y_train) // BATCH)
    ours, theirs = [], []
    for seed in SEEDS:
        net = gpuback.Network(gpuback.resmlp_spec(64, 512, 4, 10), backend="cpu",
                              dtype="float32", seed=seed)
        module = to_torch(net)  # copies: the same initial weights
        net.fit(data.X_train, data.y_train, epochs=EPOCHS, batch_size=BATCH,
                optimizer=optim.AdamW(lr=LR, weight_decay=WEIGHT_DECAY,
                                      schedule=_schedule(steps)),
                clip_grad_norm=CLIP, seed=seed, progress=False)
        accuracy = net.evaluate(data.X_test, data.y_test)["accuracy"]
        assert accuracy is not None
        ours.append(accuracy)
        theirs.append(_torch_accuracy(module, data, seed, steps))
    assert min(ours) > 0.95 and min(theirs) > 0.95, (ours, theirs)
    assert np.mean(ours) >= np.mean(theirs), (ours, theirs)
