"""Gradient propagation to the inputs during training (Figure 5; docs/science.md §6).

``G_t = mean_b ‖∂C/∂u(t)‖₂`` for the s input steps, on a fixed probe batch, with C the training loss (output-phase
MSE) or the loss at the first output step alone. Its decay rate r is the least-squares slope of ``ln G_t`` against
t (``G_t ∝ exp(−r(s−t))``: r > 0 means older inputs get smaller gradients). The TWM predicts r → 0 once the
traveling waves exist, about when ``max|λ(W_hh)|`` first exceeds 1. ``twm.train.callbacks.GradientProbe``
records all three during training (either engine), :func:`load_probe_csv` reads its file back, and ``twm.analyze``
computes them after training (:func:`gradient_probe`) for the final network and any kept weights.
"""

from __future__ import annotations

import csv

import numpy as np
import torch

from twm.analysis.spectra import spectral_radius
from twm.metrics import output_mse

LOSSES = ("output", "first")


def _loss(pred: torch.Tensor, y: torch.Tensor, s: int, loss: str) -> torch.Tensor:
    if loss == "output":
        return output_mse(pred, y, s)
    if loss == "first":
        return torch.mean((pred[s] - y[s]) ** 2)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def input_gradient_profile(model, u: torch.Tensor, y: torch.Tensor, s: int, loss: str = "output") -> np.ndarray:
    """``G`` ``(s,)`` float64: ``G[t-1] = mean over the batch of ‖∂C/∂u(t)‖₂`` for input steps t = 1..s
    (docs/science.md §6).

    ``model(u) -> (pred, hidden)`` with ``u``, ``y``: ``(T, B, d)``, time-major. ``loss="output"``: C is the
    output-phase MSE (:func:`twm.metrics.output_mse`, the training loss); ``loss="first"``: the MSE at step
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
    """Least-squares slope r of ``ln G_t`` against t = 1..s (docs/science.md §6): ``G_t ∝ exp(−r(s−t))``, so r > 0 means
    gradients shrink for older inputs and r = 0 means no decay. ``nan`` when some ``G_t`` is not positive and
    finite (the logarithm is undefined) or there are fewer than 2 points."""
    G = np.asarray(G, dtype=np.float64).ravel()
    if G.size < 2 or not np.all(np.isfinite(G)) or not np.all(G > 0):
        return float("nan")
    t = np.arange(1, G.size + 1, dtype=np.float64)
    return float(np.polyfit(t, np.log(G), 1)[0])


def gradient_probe(model, u: torch.Tensor, y: torch.Tensor, s: int) -> dict:
    """One network on one probe batch (docs/science.md §6): ``G`` and ``G_first`` ``(s,)`` float64 (C = the
    training loss, C = the loss at step s+1: :func:`input_gradient_profile`), their decay rates ``decay_rate`` and
    ``decay_rate_first`` (:func:`decay_rate`) and ``max_abs_eig``: the spectral radius of the model's recurrent
    operator (``W_hh`` for the Elman RNN; NaN for a model without one, ``twm.model.NoOperator``)."""
    from twm.model import NoOperator

    G = input_gradient_profile(model, u, y, s, loss="output")
    G_first = input_gradient_profile(model, u, y, s, loss="first")
    try:
        radius = spectral_radius(model.operator())
    except NoOperator:
        radius = float("nan")
    return {"G": G, "decay_rate": decay_rate(G), "max_abs_eig": radius, "G_first": G_first,
            "decay_rate_first": decay_rate(G_first)}


def decay_against_radius(max_abs_eig, rates, rate_tol: float = 0.05) -> dict:
    """Fig. 5's claim across networks (docs/science.md §6: r ≈ 0 once ``max|λ(W_hh)|`` exceeds 1), from one
    ``max|λ|`` and one r per network (``(m,)`` each). Returns ``n`` (networks where both are finite),
    ``n_undefined``, ``rate_tol``; ``above_1`` and ``at_most_1`` (networks with ``max|λ|`` > 1 and <= 1): ``n``,
    ``n_flat`` (``|r| < rate_tol``), ``median_rate`` (``None`` when empty); ``spearman`` and ``spearman_p``
    (``scipy.stats.spearmanr`` of r against ``max|λ|``; ``None`` below 3 networks or for constant inputs)."""
    from scipy.stats import spearmanr

    x = np.asarray(max_abs_eig, dtype=np.float64).ravel()
    r = np.asarray(rates, dtype=np.float64).ravel()
    finite = np.isfinite(x) & np.isfinite(r)
    x, r = x[finite], r[finite]

    def side(mask):
        return {"n": int(mask.sum()), "n_flat": int((np.abs(r[mask]) < rate_tol).sum()),
                "median_rate": float(np.median(r[mask])) if mask.any() else None}

    rho = p = None
    if x.size >= 3 and np.ptp(x) > 0 and np.ptp(r) > 0:
        result = spearmanr(x, r)
        rho, p = float(result.statistic), float(result.pvalue)
    return {"n": int(x.size), "n_undefined": int((~finite).sum()), "rate_tol": float(rate_tol),
            "above_1": side(x > 1.0), "at_most_1": side(x <= 1.0), "spearman": rho, "spearman_p": p}


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
