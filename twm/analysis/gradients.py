"""Gradient propagation to the inputs during training (Figure 5; SPEC §6).

``G_t = mean_b ‖∂C/∂u(t)‖₂`` for the s input steps, on a fixed probe batch, with C the training loss (output-phase
MSE) or the loss at the first output step alone. Its decay rate r is the least-squares slope of ``ln G_t`` against
t (``G_t ∝ exp(−r(s−t))``: r > 0 means older inputs get smaller gradients). The TWM predicts r → 0 once the
traveling waves exist, about when ``max|λ(W_hh)|`` first exceeds 1. :class:`GradientProbe` records all three
during a Lightning run.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from twm.analysis.spectra import spectral_radius
from twm.tasks import sample
from twm.train.metrics import output_mse

LOSSES = ("output", "first")


def _loss(pred: torch.Tensor, y: torch.Tensor, s: int, loss: str) -> torch.Tensor:
    if loss == "output":
        return output_mse(pred, y, s)
    if loss == "first":
        return torch.mean((pred[s] - y[s]) ** 2)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def input_gradient_profile(model, u: torch.Tensor, y: torch.Tensor, s: int, loss: str = "output") -> np.ndarray:
    """``G`` ``(s,)`` float64: ``G[t-1] = mean over the batch of ‖∂C/∂u(t)‖₂`` for input steps t = 1..s (SPEC §6).

    ``model(u) -> (pred, hidden)`` with ``u``, ``y``: ``(T, B, d)``, time-major. ``loss="output"``: C is the
    output-phase MSE (:func:`twm.train.metrics.output_mse`, the training loss); ``loss="first"``: the MSE at step
    s+1 alone (the first output step). Uses ``torch.autograd.grad`` with respect to a copy of ``u`` only, so no
    parameter's ``.grad`` is touched; the model's train/eval mode is left as it is (cuDNN is bypassed, since its
    RNN backward refuses eval mode).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if u.shape[0] <= s:
        raise ValueError(f"need more than s = {s} time steps, got {u.shape[0]}")
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        x = u.detach().clone().requires_grad_(True)
        pred, _ = model(x)
        (grad,) = torch.autograd.grad(_loss(pred, y, s, loss), x)
    return grad[:s].detach().double().norm(dim=-1).mean(dim=1).cpu().numpy()


def decay_rate(G) -> float:
    """Least-squares slope r of ``ln G_t`` against t = 1..s (SPEC §6): ``G_t ∝ exp(−r(s−t))``, so r > 0 means
    gradients shrink for older inputs and r = 0 means no decay. ``nan`` when some ``G_t`` is not positive and
    finite (the logarithm is undefined) or there are fewer than 2 points."""
    G = np.asarray(G, dtype=np.float64).ravel()
    if G.size < 2 or not np.all(np.isfinite(G)) or not np.all(G > 0):
        return float("nan")
    t = np.arange(1, G.size + 1, dtype=np.float64)
    return float(np.polyfit(t, np.log(G), 1)[0])


class GradientProbe(Callback):
    """Records the input-gradient profile, its decay rate and ``max|λ(W_hh)|`` during training (Fig. 5, SPEC §6).

    Probes at the start of training (step 0) and after every optimizer step whose ``trainer.global_step`` is a
    multiple of ``every_n_steps``. The probe batch is drawn once, ``twm.tasks.sample(pl_module.task_F, pl_module.s,
    horizon, batch_size)`` with its own generator seeded by ``seed`` (horizon = ``pl_module.max_horizon`` if present,
    else 100), and reused. The module must expose ``model`` (an ``ElmanRNN``), ``task_F`` (``(s*d, d)``) and ``s``.

    Each probe: ``G`` (C = the training loss), ``G_first`` (C = loss at step s+1), ``r`` for both, and
    ``max|λ(W_hh)|``; gradients are taken with respect to the input only (no parameter ``.grad``, no optimizer
    state is touched). Logged as ``grad/G_1..grad/G_s``, ``grad/decay_rate``, ``grad/decay_rate_first``,
    ``grad/max_abs_eig`` through ``log_metrics(..., step=global_step)`` of every logger in ``trainer.loggers``;
    rows are kept in ``self.rows`` (saved in checkpoints) and ``grad_probe.csv`` in ``trainer.default_root_dir`` is
    rewritten atomically after each probe (columns ``step, G_1..G_s, decay_rate, max_abs_eig, G_first_1..G_first_s,
    decay_rate_first``).
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
        G = input_gradient_profile(pl_module.model, u, y, s, loss="output")
        G_first = input_gradient_profile(pl_module.model, u, y, s, loss="first")
        row = {"step": int(step)}
        row.update({f"G_{t + 1}": float(g) for t, g in enumerate(G)})
        row["decay_rate"] = decay_rate(G)
        row["max_abs_eig"] = spectral_radius(pl_module.model.W_hh)
        row.update({f"G_first_{t + 1}": float(g) for t, g in enumerate(G_first)})
        row["decay_rate_first"] = decay_rate(G_first)
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


def load_probe_csv(path) -> dict[str, np.ndarray]:
    """Read ``grad_probe.csv`` back: ``steps`` ``(m,)``, ``G`` ``(m, s)``, ``decay_rate`` ``(m,)``,
    ``max_abs_eig`` ``(m,)`` (and ``G_first``, ``decay_rate_first`` when present) — the inputs of
    :func:`twm.analysis.plots.plot_gradient_flow`."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} holds no probe rows")
    cols = rows[0].keys()
    g_cols = sorted((c for c in cols if c.startswith("G_") and not c.startswith("G_first_")), key=lambda c: int(c[2:]))
    f_cols = sorted((c for c in cols if c.startswith("G_first_")), key=lambda c: int(c[8:]))
    out = {
        "steps": np.array([int(r["step"]) for r in rows]),
        "G": np.array([[float(r[c]) for c in g_cols] for r in rows]),
        "decay_rate": np.array([float(r["decay_rate"]) for r in rows]),
        "max_abs_eig": np.array([float(r["max_abs_eig"]) for r in rows]),
    }
    if f_cols:
        out["G_first"] = np.array([[float(r[c]) for c in f_cols] for r in rows])
        out["decay_rate_first"] = np.array([float(r["decay_rate_first"]) for r in rows])
    return out
