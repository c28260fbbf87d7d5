"""Training callbacks: the curriculum over the horizon (SPEC §3) and a compact progress line."""

from __future__ import annotations

import logging
import time

import lightning.pytorch as pl

log = logging.getLogger("twm.train")


class CurriculumCallback(pl.Callback):
    """Drives a curriculum from :mod:`twm.train.curriculum` with each step's batch accuracy and loss; its state
    (and the step at which the horizon first reached its maximum) travels in the checkpoint."""

    def __init__(self, curriculum):
        self.curriculum = curriculum
        self.step_reached_max_horizon: int | None = None

    def _sync(self, pl_module) -> None:
        pl_module.horizon = self.curriculum.horizon
        pl_module.max_horizon = self.curriculum.max_horizon

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._sync(pl_module)

    def on_train_start(self, trainer, pl_module) -> None:
        self._sync(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.curriculum.update(float(outputs["accuracy"]), float(outputs["loss"]))
        if self.step_reached_max_horizon is None and self.curriculum.horizon >= self.curriculum.max_horizon:
            self.step_reached_max_horizon = trainer.global_step
        self._sync(pl_module)

    def state_dict(self) -> dict:
        return {"curriculum": self.curriculum.state_dict(), "step_reached_max_horizon": self.step_reached_max_horizon}

    def load_state_dict(self, state_dict: dict) -> None:
        self.curriculum.load_state_dict(state_dict["curriculum"])
        self.step_reached_max_horizon = state_dict["step_reached_max_horizon"]


class ProgressLine(pl.Callback):
    """One log line every ``every_n_steps``: step, loss, accuracy, horizon, speed and ETA. Suits a terminal and a
    SLURM log file alike (no redraws)."""

    def __init__(self, every_n_steps: int = 500):
        self.every_n_steps = int(every_n_steps)
        self._t0 = self._step0 = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0, self._step0 = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every_n_steps and step != trainer.max_steps:
            return
        rate = (step - self._step0) / max(time.perf_counter() - self._t0, 1e-9)
        eta = (trainer.max_steps - step) / rate if rate > 0 else float("nan")
        log.info("step %d/%d (%3.0f%%) loss %.4f acc %.3f H %d | %.1f steps/s, eta %dm%02ds",
                 step, trainer.max_steps, 100 * step / trainer.max_steps, float(outputs["loss"]),
                 float(outputs["accuracy"]), pl_module.horizon, rate, eta // 60, eta % 60)
