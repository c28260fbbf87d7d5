"""Loss and accuracy on the output phase (docs/science.md §1.3), shared by both training engines and the analysis."""

from __future__ import annotations

import numpy as np
import torch

from twm.tasks import sample


def output_mse(pred: torch.Tensor, target: torch.Tensor, s: int) -> torch.Tensor:
    """Mean squared error over the output phase ``t >= s`` (all ``H*B*d`` entries). Shapes ``(T, B, d)``."""
    return torch.mean((pred[s:] - target[s:]) ** 2)


def sign_match(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``sign(pred) == target`` elementwise, with a zero prediction counting as +1."""
    return torch.where(pred >= 0, 1.0, -1.0) == target


def sign_accuracy(pred: torch.Tensor, target: torch.Tensor, s: int) -> torch.Tensor:
    """Fraction of output-phase entries whose sign matches the ±1 target."""
    return sign_match(pred[s:], target[s:]).float().mean()


@torch.no_grad()
def per_step_accuracy(
    model, F, s: int, horizon: int, n_batches: int, batch_size: int, seed: int, device=None
) -> np.ndarray:
    """Accuracy at each output step ``1..horizon`` over ``n_batches`` fresh batches from a generator seeded with
    ``seed`` (independent of training). Returns ``(horizon,)`` float64."""
    gen = torch.Generator().manual_seed(int(seed))
    hits = torch.zeros(horizon, dtype=torch.float64)
    for _ in range(n_batches):
        u, y = sample(F, s, horizon, batch_size, gen, device=device)
        pred, _ = model(u)
        hits += sign_match(pred[s:], y[s:]).double().mean(dim=(1, 2)).cpu()
    return (hits / n_batches).numpy()


def test_accuracy(model, F, s: int, horizon: int, n_batches: int, batch_size: int, seed: int, device=None) -> float:
    """The test accuracy of docs/science.md §1.3: the mean of :func:`per_step_accuracy` over all output steps
    (Table 1's number in brackets: horizon 200, 10 batches of 64)."""
    return float(per_step_accuracy(model, F, s, horizon, n_batches, batch_size, seed, device=device).mean())


test_accuracy.__test__ = False  # a metric, not a pytest test
