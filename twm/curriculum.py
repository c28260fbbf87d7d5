"""Curriculum rules over the output horizon H (docs/science.md §3). Pure state machines: both training engines
drive them with ``update(accuracy, loss)`` after every optimizer step.

- :class:`Ladder` (released experiments, the default): rungs ``[10, 20, 40, 60, 100]``, start at the first, move one
  rung up after any step whose *batch* accuracy exceeds ``threshold``, never down.
- :class:`Adaptive` (paper App. B.2): every ``window`` steps compare the mean training loss (the per-timestep MSE over
  t ≤ H) of those steps with ε: below → ``H ← ceil(γH)``, above → ``H ← floor(H/γ)``, clipped to ``[h0, h_max]``.
  The paper leaves window and rounding open; ``window = 50`` and ceil/floor (so a step always changes H by ≥ 1) are
  this implementation's choice.
- :class:`Fixed`: a constant horizon.
"""

from __future__ import annotations

import math


class Ladder:
    name = "ladder"

    def __init__(self, ladder=(10, 20, 40, 60, 100), threshold: float = 0.98):
        ladder = [int(h) for h in ladder]
        if not ladder or any(h <= 0 for h in ladder) or any(b <= a for a, b in zip(ladder, ladder[1:])):
            raise ValueError(
                f"curriculum.ladder must be a non-empty, strictly increasing list of positive ints, got {ladder}"
            )
        if not 0.0 < float(threshold) <= 1.0:
            raise ValueError(f"curriculum.threshold must lie in (0, 1], got {threshold}")
        self.ladder, self.threshold, self.rung = ladder, float(threshold), 0

    @property
    def horizon(self) -> int:
        return self.ladder[self.rung]

    @property
    def max_horizon(self) -> int:
        return self.ladder[-1]

    def update(self, accuracy: float, loss: float) -> int:
        if accuracy > self.threshold and self.rung < len(self.ladder) - 1:
            self.rung += 1
        return self.horizon

    def state_dict(self) -> dict:
        return {"rung": self.rung}

    def load_state_dict(self, state: dict) -> None:
        self.rung = int(state["rung"])


class Adaptive:
    name = "adaptive"

    def __init__(self, gamma: float = 1.2, epsilon: float = 0.03, h0: int = 10, h_max: int = 100, window: int = 50):
        if gamma <= 1.0 or epsilon <= 0 or not 0 < h0 <= h_max or window < 1:
            raise ValueError(
                f"adaptive curriculum needs gamma > 1, epsilon > 0, 0 < h0 <= h_max, window >= 1; "
                f"got gamma={gamma}, epsilon={epsilon}, h0={h0}, h_max={h_max}, window={window}"
            )
        self.gamma, self.epsilon, self.h0, self.h_max, self.window = (
            float(gamma),
            float(epsilon),
            int(h0),
            int(h_max),
            int(window),
        )
        self.current, self._losses = self.h0, []

    @property
    def horizon(self) -> int:
        return self.current

    @property
    def max_horizon(self) -> int:
        return self.h_max

    def update(self, accuracy: float, loss: float) -> int:
        self._losses.append(float(loss))
        if len(self._losses) >= self.window:
            mean = sum(self._losses) / len(self._losses)
            self._losses = []
            if mean < self.epsilon:
                self.current = min(self.h_max, math.ceil(self.current * self.gamma))
            else:
                self.current = max(self.h0, math.floor(self.current / self.gamma))
        return self.current

    def state_dict(self) -> dict:
        return {"current": self.current, "losses": list(self._losses)}

    def load_state_dict(self, state: dict) -> None:
        self.current, self._losses = int(state["current"]), [float(v) for v in state["losses"]]


class Fixed:
    name = "none"

    def __init__(self, horizon: int = 100):
        if int(horizon) <= 0:
            raise ValueError(f"curriculum.horizon must be a positive int, got {horizon}")
        self.current = int(horizon)

    @property
    def horizon(self) -> int:
        return self.current

    @property
    def max_horizon(self) -> int:
        return self.current

    def update(self, accuracy: float, loss: float) -> int:
        return self.current

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


CURRICULA = {cls.name: cls for cls in (Ladder, Adaptive, Fixed)}


def build_curriculum(kind: str, params: dict):
    """A fresh curriculum state machine: ``kind`` is a curriculum's ``name`` (``ladder``, ``adaptive``, ``none``)."""
    if kind not in CURRICULA:
        raise ValueError(f"unknown curriculum {kind!r}; known: {', '.join(CURRICULA)}")
    return CURRICULA[kind](**params)
