"""Figures of the analysis (paper Figs. 3, 4, 5, 6/8B; docs/science.md §4–§7): matplotlib, Agg canvas, PNG.

Every ``plot_*`` builds a standalone :class:`matplotlib.figure.Figure` (no pyplot, so no global figure state is
created or leaked), saves it to ``path`` when given (parent folders are created) and returns it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from twm.analysis.basis import normalise_for_display
from twm.analysis.spectra import as_numpy
from twm.theory import predicted_eigenvalues


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", bbox_inches="tight")
    return fig


# --------------------------------------------------------------------------------------------------------------
# Fig. 6 / 8B: the learned spectrum over Φ's
# --------------------------------------------------------------------------------------------------------------
def _angle_groups(values) -> list[tuple[float, int]]:
    """``[(angle in degrees [0, 360), count), ...]`` of the unit-modulus values (Φ's), sorted by angle."""
    unit = values[np.abs(values) > 0.5]
    deg = np.round(np.mod(np.degrees(np.angle(unit)), 360.0), 6)
    deg[deg >= 360.0] = 0.0
    return sorted(Counter(deg.tolist()).items())


def plot_spectrum(eigenvalues, F, s: int, path=None, threshold: float = 0.9, comparison=None,
                  title: str | None = None) -> Figure:
    """Learned eigenvalues (dots) over Φ's predicted ones (rings) in the complex plane (Fig. 6 / 8B).

    ``eigenvalues``: ``(n,)`` complex (e.g. of ``W_hh``); ``F``: ``(s*d, d)``. Draws the unit circle, the
    ``threshold`` circle (dashed), a ray per angle of Φ's unit-modulus eigenvalues with its multiplicity in a box,
    and Φ's zero eigenvalues as one ring at the origin with their count. ``comparison``: a
    :class:`~twm.analysis.spectra.SpectralComparison`, whose error goes in the title.
    """
    lam = as_numpy(eigenvalues, np.complex128).ravel()
    theory = predicted_eigenvalues(F, s)
    groups = _angle_groups(theory)
    n_zero = int(np.sum(np.abs(theory) < 0.5))
    fig = _figure(6.4, 7.0)
    ax = fig.add_subplot(1, 1, 1)
    lim = max(1.5, 1.12 * float(np.max(np.abs(lam), initial=0.0)) + 0.15)
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 721))
    ax.plot(circle.real, circle.imag, color="0.35", lw=1.0, zorder=1)
    ax.plot(threshold * circle.real, threshold * circle.imag, color="0.45", lw=0.9, ls="--", zorder=1,
            label=f"|λ| = {threshold:g}")
    ax.axhline(0, color="0.85", lw=0.6, zorder=0)
    ax.axvline(0, color="0.85", lw=0.6, zorder=0)
    # rays and multiplicity boxes; neighbours closer than `gap` degrees alternate between two label radii, and with
    # very many rays only multiplicities > 1 are boxed (the legend says so)
    r_label, r_alt = 1.2, 1.36
    gap = 6.0
    sparse = len(groups) > 72
    fontsize = 8 if len(groups) <= 16 else 6.5
    previous = None
    use_alt = False
    for deg, count in groups:
        rad = np.radians(deg)
        ax.plot([0, np.cos(rad)], [0, np.sin(rad)], color="tab:orange", lw=0.5, alpha=0.35, zorder=0)
        if sparse and count == 1:
            continue
        use_alt = (not use_alt) if previous is not None and deg - previous < gap else False
        previous = deg
        r = r_alt if use_alt else r_label
        ax.text(r * np.cos(rad), r * np.sin(rad), str(count), ha="center", va="center", fontsize=fontsize,
                bbox={"boxstyle": "round,pad=0.18", "fc": "white", "ec": "tab:orange", "lw": 0.6}, zorder=4)
    unit = theory[np.abs(theory) > 0.5]
    label = f"Φ: {len(unit)} with |λ| = 1 (boxes: count per angle{'; unboxed rays: 1' if sparse else ''})"
    if n_zero:
        label += f", {n_zero} at 0"
        ax.scatter([0], [0], s=70, facecolors="none", edgecolors="tab:orange", lw=1.2, zorder=2)
    ax.scatter(unit.real, unit.imag, s=70, facecolors="none", edgecolors="tab:orange", lw=1.2, zorder=2, label=label)
    n_above = int(np.sum(np.abs(lam) > threshold))
    ax.scatter(lam.real, lam.imag, s=9, color="tab:blue", zorder=3,
               label=f"learned: {n_above} with |λ| > {threshold:g}")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=8, frameon=False)
    head = title or "Jacobian spectrum vs TWM prediction"
    if comparison is not None:
        if comparison.defined:
            head += f"\nerror {comparison.error:.2e} rad (greedy), {comparison.error_optimal:.2e} (optimal)"
        else:
            head += (f"\nerror undefined: {comparison.n_learned} vs {comparison.n_theory} "
                     f"eigenvalues above {threshold:g}")
    ax.set_title(head, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------------
# Fig. 4: W_hh in the variable-memory basis
# --------------------------------------------------------------------------------------------------------------
def _block_axes(ax, s: int, d: int) -> None:
    for k in range(1, s):
        ax.axhline(k * d - 0.5, color="0.4", lw=0.6)
        ax.axvline(k * d - 0.5, color="0.4", lw=0.6)
    centres = [k * d + (d - 1) / 2 for k in range(s)]
    ax.set_xticks(centres, [str(k + 1) for k in range(s)])
    ax.set_yticks(centres, [str(k + 1) for k in range(s)])
    ax.tick_params(length=0)


def plot_weights_in_basis(matrix, s: int, d: int, path=None, kept=None, title: str | None = None) -> Figure:
    """``Ψ* W_hh Ψ`` ``(s*d, s*d)`` as a diverging heatmap with symmetric colour limits and block lines every d
    (Fig. 4). Rows: the variable written to; columns: the variable read from; labelled 1..s (s newest).
    ``kept``: optional ``(s*d,)`` bool mask (``VariableMemoryBasis.kept``); rows and columns of coordinates not
    kept are drawn grey instead of as zeros."""
    M = as_numpy(matrix)
    if M.shape != (s * d, s * d):
        raise ValueError(f"matrix must be ({s * d}, {s * d}), got {M.shape}")
    vmax = float(np.max(np.abs(M))) or 1.0
    shown = M
    if kept is not None:
        kept = np.asarray(kept, dtype=bool)
        shown = np.ma.masked_array(M, mask=~(kept[:, None] & kept[None, :]))
    cmap = colormaps["RdBu_r"].with_extremes(bad="0.8")
    fig = _figure(6.2, 5.4)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
    _block_axes(ax, s, d)
    ax.set_xlabel("from variable (column of Ψ)")
    ax.set_ylabel("to variable (row of Ψ*)")
    ax.set_title(title or "W_hh in the variable-memory basis: Ψ* W_hh Ψ", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------------
# Fig. 3: the hidden waves
# --------------------------------------------------------------------------------------------------------------
def _portrait_grid(n: int) -> tuple[int, int]:
    """``(rows, cols)`` with ``rows >= cols``, ``rows * cols >= n``, as square as an exact factorisation allows."""
    cols = int(np.floor(np.sqrt(n)))
    while cols > 1 and n % cols:
        cols -= 1
    if cols == 1 and n > 3:  # a prime n: pad a near-square grid instead of one long column
        cols = int(np.floor(np.sqrt(n)))
    return int(np.ceil(n / cols)), cols


def plot_hidden_waves(coords, path=None, raw_hidden=None, times=None, max_panels: int = 16, normalise: bool = True,
                      title: str | None = None) -> Figure:
    """Substrate coordinates over time (Fig. 3B), optionally above the raw hidden state (Fig. 3A).

    ``coords``: ``(T, s, d)`` (e.g. :func:`~twm.analysis.basis.states_in_basis` of one sample). One panel per
    time step (the first ``max_panels``), rows = variables s (top, newest) … 1 (bottom), columns = dims, so an
    input enters at the top and travels down one row per step. With ``normalise`` (default) each time step is
    divided by its max ``|value|`` over all variables (global per-timestep normalisation,
    :func:`~twm.analysis.basis.normalise_for_display`; said in the title). ``raw_hidden``: ``(T, n)``, drawn as a
    near-square grid per step, one symmetric colour scale (max ``|h|`` over the shown steps) for every step.
    ``times``: labels of the steps (default 1..T).
    """
    C = as_numpy(coords)
    if C.ndim != 3:
        raise ValueError(f"coords must be (T, s, d), got {C.shape}")
    T, s, d = C.shape
    shown = min(T, max_panels)
    times = np.arange(1, T + 1) if times is None else np.asarray(times)
    C = normalise_for_display(C) if normalise else C
    vmax = 1.0 if normalise else (float(np.max(np.abs(C))) or 1.0)
    rows = 2 if raw_hidden is not None else 1
    width = min(1.05 * shown + 1.4, 18.0)
    fig = _figure(width, 2.3 * rows + 0.6)
    grid = fig.add_gridspec(rows, shown + 1, width_ratios=[1] * shown + [0.12], wspace=0.15, hspace=0.25)
    if raw_hidden is not None:
        Hr = as_numpy(raw_hidden)
        if Hr.ndim != 2 or Hr.shape[0] != T:
            raise ValueError(f"raw_hidden must be (T, n) with T = {T}, got {Hr.shape}")
        gr, gc = _portrait_grid(Hr.shape[1])
        padded = np.full((T, gr * gc), np.nan)
        padded[:, : Hr.shape[1]] = Hr
        hmax = float(np.nanmax(np.abs(Hr[:shown]))) or 1.0
        for t in range(shown):
            ax = fig.add_subplot(grid[0, t])
            im_raw = ax.imshow(padded[t].reshape(gr, gc), cmap="RdBu_r", vmin=-hmax, vmax=hmax,
                               interpolation="nearest", aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t={times[t]}", fontsize=7)
            if t == 0:
                ax.set_ylabel("hidden h(t)", fontsize=8)
        fig.colorbar(im_raw, cax=fig.add_subplot(grid[0, -1])).set_label("h (one scale)", fontsize=7)
    for t in range(shown):
        ax = fig.add_subplot(grid[rows - 1, t])
        im = ax.imshow(C[t][::-1], cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest", aspect="auto")
        ax.set_xticks([])
        if t == 0:
            ticks = [0, s - 1] if s > 4 else list(range(s))
            ax.set_yticks(ticks, [str(s - k) for k in ticks], fontsize=7)
            ax.set_ylabel("variable (s top … 1)", fontsize=8)
        else:
            ax.set_yticks([])
        if raw_hidden is None:
            ax.set_title(f"t={times[t]}", fontsize=7)
    fig.colorbar(im, cax=fig.add_subplot(grid[rows - 1, -1])).set_label(
        "normalised" if normalise else "Ψ* h", fontsize=7)
    how = "each step ÷ its max |value| over all variables" if normalise else "raw values"
    extra = f"; first {shown} of {T} steps" if shown < T else ""
    fig.suptitle(title or f"hidden state in the variable-memory basis Ψ* h(t) ({how}{extra})", fontsize=9)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------------
# Fig. 5: gradient flow during training
# --------------------------------------------------------------------------------------------------------------
def plot_gradient_flow(steps, G, rates, max_abs_eig, path=None, title: str | None = None) -> Figure:
    """Fig. 5. ``steps`` ``(m,)``, ``G`` ``(m, s)`` (input-gradient profiles), ``rates`` ``(m,)`` (decay rate r),
    ``max_abs_eig`` ``(m,)``. A: ``G_t`` against input index t, one line per probe coloured by training step, log
    y. B: r (red, left axis) and ``max|λ(W_hh)|`` (blue, right axis, dotted line at 1) against training step."""
    steps = np.asarray(steps, dtype=np.float64).ravel()
    G = np.atleast_2d(np.asarray(G, dtype=np.float64))
    rates = np.asarray(rates, dtype=np.float64).ravel()
    eig = np.asarray(max_abs_eig, dtype=np.float64).ravel()
    if not (len(steps) == len(G) == len(rates) == len(eig)):
        raise ValueError("steps, G, rates and max_abs_eig must have the same number of probes")
    s = G.shape[1]
    fig = _figure(11.0, 4.2)
    axA, axB = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    norm = Normalize(vmin=float(steps.min()), vmax=float(max(steps.max(), steps.min() + 1)))
    cmap = colormaps["viridis"]
    t = np.arange(1, s + 1)
    for k in range(len(steps)):
        positive = np.where(G[k] > 0, G[k], np.nan)
        axA.plot(t, positive, color=cmap(norm(steps[k])), lw=1.2, marker="o", ms=2.5)
    axA.set_yscale("log")
    axA.set_xticks(t)
    axA.set_xlabel("input step t (1 = oldest)")
    axA.set_ylabel("G_t = mean_b ‖∂C/∂u(t)‖")
    axA.set_title("A  input-gradient profile", fontsize=10, loc="left")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axA, label="training step")
    axB.plot(steps, rates, color="tab:red", lw=1.4, marker="o", ms=2.5, label="decay rate r")
    axB.axhline(0, color="tab:red", lw=0.6, ls=":")
    axB.set_xlabel("training step")
    axB.set_ylabel("decay rate r (slope of ln G_t)", color="tab:red")
    axB.tick_params(axis="y", colors="tab:red")
    axE = axB.twinx()
    axE.plot(steps, eig, color="tab:blue", lw=1.4, marker="s", ms=2.5, label="max |λ(W_hh)|")
    axE.axhline(1.0, color="tab:blue", lw=0.8, ls="--")
    axE.annotate("|λ| = 1", (1.0, 1.0), xycoords=("axes fraction", "data"), xytext=(-3, -9), textcoords="offset points",
                 fontsize=7, color="tab:blue", ha="right")
    axE.set_ylabel("max |λ(W_hh)|", color="tab:blue")
    axE.tick_params(axis="y", colors="tab:blue")
    axB.set_title("B  decay rate and spectral radius", fontsize=10, loc="left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.45)
    return _save(fig, path)


def plot_decay_against_radius(max_abs_eig, rates, groups, path=None, rate_tol: float = 0.05,
                              title: str | None = None) -> Figure:
    """Fig. 5's claim over many networks, one point each: the decay rate r (y) against ``max|λ(W_hh)|`` (x), one
    colour per entry of ``groups`` (e.g. the task), a dashed line at ``|λ| = 1`` and a band ``|r| < rate_tol``.
    ``max_abs_eig``, ``rates``, ``groups``: ``(m,)``; points whose r or radius is not finite are left out (their
    count goes in the legend title)."""
    x = np.asarray(max_abs_eig, dtype=np.float64).ravel()
    y = np.asarray(rates, dtype=np.float64).ravel()
    groups = [str(g) for g in groups]
    if not (len(x) == len(y) == len(groups)):
        raise ValueError("max_abs_eig, rates and groups must have one entry per network")
    finite = np.isfinite(x) & np.isfinite(y)
    fig = _figure(6.4, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.axhspan(-rate_tol, rate_tol, color="0.9", zorder=0, label=f"|r| < {rate_tol:g}")
    ax.axvline(1.0, color="tab:blue", lw=0.8, ls="--", label="|λ| = 1")
    cmap = colormaps["tab10"]
    for k, name in enumerate(sorted(set(groups))):
        pick = finite & np.array([g == name for g in groups], dtype=bool)
        ax.scatter(x[pick], y[pick], s=18, color=cmap(k % 10), edgecolors="none", alpha=0.85,
                   label=f"{name} ({int(pick.sum())})")
    ax.set_xlabel("max |λ(W_hh)|")
    ax.set_ylabel("decay rate r (slope of ln G_t)")
    dropped = int((~finite).sum())
    ax.legend(fontsize=7, title=f"undefined r: {dropped}" if dropped else None, title_fontsize=7, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------------
# Length generalisation
# --------------------------------------------------------------------------------------------------------------
def plot_length_generalisation(curves: dict, path=None, threshold: float = 0.94, train_horizon: int | None = 100,
                               title: str | None = None) -> Figure:
    """Per-step accuracy against output step for each ``label -> accuracy (horizon,)``, with the ``threshold``
    (dashed), chance 0.5 (dotted) and the training horizon (vertical line; ``None`` to omit)."""
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    lowest = 1.0
    for label, acc in curves.items():
        acc = np.asarray(acc, dtype=np.float64).ravel()
        ax.plot(np.arange(1, acc.size + 1), acc, lw=1.2, label=str(label))
        if acc.size:
            lowest = min(lowest, float(np.nanmin(acc)))
    ax.axhline(threshold, color="0.3", ls="--", lw=0.9, label=f"threshold {threshold:g}")
    ax.axhline(0.5, color="0.6", ls=":", lw=0.9, label="chance")
    if train_horizon is not None:
        ax.axvline(train_horizon, color="0.5", lw=0.9, ls="-.", label=f"training horizon {train_horizon}")
    ax.set_ylim(min(0.45, lowest - 0.03), 1.02)
    ax.set_xlabel("output step")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "length generalisation", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)
