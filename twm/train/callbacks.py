"""Training callbacks, for both engines: a compact progress line, the gradient-flow probe of Fig. 5 and the kept
weights of every K-th step (for the post-hoc analyses of ``twm.analyze``).

The batched engine drives them through the same hooks (``on_train_start``, ``on_train_batch_end``, ``state_dict``)
with a per-member view that has the attributes they read (``global_step``, ``max_steps``, ``loggers``,
``default_root_dir``; ``model``, ``task_F``, ``s``, ``horizon``, ``max_horizon``, ``device``).
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from twm.analysis.gradients import gradient_probe
from twm.run.folder import RunFolder
from twm.tasks import sample

log = logging.getLogger("twm.train")


class ProgressLine(pl.Callback):
    """One log line every ``every_n_steps``: run folder, step, loss, accuracy, horizon, speed and ETA. Suits a
    terminal and a SLURM log file alike (no redraws)."""

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
        log.info("%s: step %d/%d (%3.0f%%) loss %.4f acc %.3f H %d | %.1f steps/s, eta %dm%02ds",
                 Path(trainer.default_root_dir).name, step, trainer.max_steps, 100 * step / trainer.max_steps,
                 float(outputs["loss"]), float(outputs["accuracy"]), pl_module.horizon, rate, eta // 60, eta % 60)


class GradientProbe(pl.Callback):
    """Records the input-gradient profile, its decay rate and ``max|λ(W_hh)|`` during training, in either engine
    (Fig. 5, docs/science.md §6).

    Probes at the start of training (step 0) and after every optimizer step whose ``trainer.global_step`` is a
    multiple of ``every_n_steps``. The probe batch is drawn once, ``twm.tasks.sample(pl_module.task_F, pl_module.s,
    horizon, batch_size)`` with its own generator seeded by ``seed`` (horizon = ``pl_module.max_horizon`` if present,
    else 100), and reused. The module must expose ``model`` (a ``twm.model`` network), ``task_F`` (``(s*d, d)``)
    and ``s``.

    Each probe: ``G`` (C = the training loss), ``G_first`` (C = loss at step s+1), ``r`` for both, and ``max|λ(W_hh)|``
    (of the model's recurrent operator; NaN for a model without one); gradients are taken with respect to the input only
    (no parameter ``.grad``, no optimizer state is touched). Logged as ``grad/G_1..grad/G_s``, ``grad/decay_rate``,
    ``grad/decay_rate_first``, ``grad/max_abs_eig`` through ``log_metrics(..., step=global_step)`` of every logger in
    ``trainer.loggers``; rows are kept in ``self.rows`` (saved in checkpoints) and ``grad_probe.csv`` in
    ``trainer.default_root_dir`` is rewritten atomically after each probe (columns ``step, G_1..G_s, decay_rate,
    max_abs_eig, G_first_1..G_first_s, decay_rate_first``).
    """

    def __init__(self, every_n_steps: int = 100, batch_size: int = 64, seed: int = 0, filename: str = "grad_probe.csv"):
        super().__init__()
        if every_n_steps < 1 or batch_size < 1:
            raise ValueError(f"every_n_steps and batch_size must be >= 1, got {every_n_steps}, {batch_size}")
        self.every_n_steps = int(every_n_steps)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.filename = filename
        self.rows: list[dict] = []
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._last_step: int | None = None

    # -- probe ----------------------------------------------------------------------------------------------------
    def _probe_batch(self, pl_module) -> tuple[torch.Tensor, torch.Tensor]:
        if self._batch is None:
            horizon = int(getattr(pl_module, "max_horizon", 100) or 100)
            gen = torch.Generator().manual_seed(self.seed)
            self._batch = sample(pl_module.task_F, int(pl_module.s), horizon, self.batch_size, gen)
        return tuple(t.to(pl_module.device) for t in self._batch)

    def probe(self, pl_module, step: int) -> dict:
        """One probe of ``pl_module`` in its current state; returns (and records) the row."""
        s = int(pl_module.s)
        u, y = self._probe_batch(pl_module)
        probe = gradient_probe(pl_module.model, u, y, s)
        row = {"step": int(step)}
        row.update({f"G_{t + 1}": float(g) for t, g in enumerate(probe["G"])})
        row.update(decay_rate=probe["decay_rate"], max_abs_eig=probe["max_abs_eig"])
        row.update({f"G_first_{t + 1}": float(g) for t, g in enumerate(probe["G_first"])})
        row["decay_rate_first"] = probe["decay_rate_first"]
        self.rows.append(row)
        return row

    def _run(self, trainer, pl_module) -> None:
        step = int(trainer.global_step)
        if step == self._last_step or step % self.every_n_steps != 0:
            return
        self._last_step = step
        row = self.probe(pl_module, step)
        metrics = {f"grad/{k}": v for k, v in row.items() if k != "step"}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        if trainer.is_global_zero:
            self.write_csv(Path(trainer.default_root_dir) / self.filename)

    def write_csv(self, path) -> None:
        """Write all rows to ``path`` atomically (a temporary file, then ``os.replace``)."""
        if not self.rows:
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = list(self.rows[0].keys())
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, path)

    # -- hooks ----------------------------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        self._run(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._run(trainer, pl_module)

    def state_dict(self) -> dict:
        return {"rows": list(self.rows), "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))
        self._last_step = state_dict.get("last_step")


class KeepWeights(pl.Callback):
    """Keeps the network's weights at step 0 and after every optimizer step whose ``trainer.global_step`` is a
    multiple of ``every_n_train_steps`` (``None``: off), as ``checkpoints/weights/step_XXXXXX.pt`` in the run folder
    (``trainer.default_root_dir``; :meth:`twm.run.folder.RunFolder.save_weights`): weights only, small files from
    which ``twm.analyze`` computes the Fig. 5 curves after training. A resumed run rewrites the steps after its
    checkpoint with the same weights."""

    def __init__(self, every_n_train_steps: int | None = None):
        super().__init__()
        if every_n_train_steps is not None and int(every_n_train_steps) < 1:
            raise ValueError(f"callbacks.keep_weights.every_n_train_steps must be >= 1 or null (off), "
                             f"got {every_n_train_steps}")
        self.every_n_train_steps = None if every_n_train_steps is None else int(every_n_train_steps)

    def _keep(self, trainer, pl_module) -> None:
        step = int(trainer.global_step)
        if self.every_n_train_steps is None or step % self.every_n_train_steps or not trainer.is_global_zero:
            return
        RunFolder(trainer.default_root_dir).save_weights(step, pl_module.model.state_dict())

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.global_step == 0:
            self._keep(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._keep(trainer, pl_module)
