"""Length generalisation: per-step accuracy far past the training horizon (docs/science.md §1.3; the table's
test accuracy at H = 200 is already partly such a test)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twm.metrics import per_step_accuracy


@dataclass(frozen=True)
class LengthGeneralisation:
    """``accuracy``: ``(horizon,)``, entry ``k-1`` is the accuracy at output step k. ``first_below``: the first
    1-based output step with accuracy ``< threshold``, or ``None`` if there is none."""

    accuracy: np.ndarray = field(repr=False)
    first_below: int | None
    threshold: float
    horizon: int

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean(self.accuracy)) if self.accuracy.size else float("nan")

    def to_dict(self) -> dict:
        return {
            "first_below": self.first_below,
            "threshold": self.threshold,
            "horizon": self.horizon,
            "mean_accuracy": self.mean_accuracy,
        }


def first_below(accuracy, threshold: float) -> int | None:
    """First 1-based index where ``accuracy < threshold``, else ``None``."""
    below = np.flatnonzero(np.asarray(accuracy) < threshold)
    return int(below[0]) + 1 if below.size else None


def length_generalisation(
    model,
    F,
    s: int,
    horizon: int = 1000,
    n_batches: int = 4,
    batch_size: int = 64,
    seed: int = 0,
    threshold: float = 0.94,
) -> LengthGeneralisation:
    """Accuracy per output step up to ``horizon`` on ``n_batches`` fresh batches (generator seeded by ``seed``), via
    :func:`twm.metrics.per_step_accuracy`, on the device of the model's parameters. ``F``: ``(s*d, d)``."""
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration):
        device = None
    acc = per_step_accuracy(model, F, s, horizon, n_batches, batch_size, seed, device=device)
    acc = np.asarray(acc, dtype=np.float64)
    return LengthGeneralisation(acc, first_below(acc, threshold), float(threshold), int(horizon))
