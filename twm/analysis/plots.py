"""Figures of the analysis (paper Figs. 3, 4, 5, 6/8B; docs/science.md §4–§7): matplotlib, Agg canvas, PNG.

Every ``plot_*`` builds a standalone :class:`matplotlib.figure.Figure` (no pyplot, so no global figure state is
created or leaked), saves it to ``path`` when given (parent folders are created) and returns it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, SymLogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from twm.analysis.basis import normalise_for_display
from twm.analysis.spectra import angle_counts, as_numpy
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
def plot_spectrum(eigenvalues, F, s: int, path=None, threshold: float = 0.9, comparison=None,
                  title: str | None = None) -> Figure:
    """Learned eigenvalues (dots) over Φ's predicted ones (rings) in the complex plane (Fig. 6 / 8B).

    ``eigenvalues``: ``(n,)`` complex (e.g. of ``W_hh``); ``F``: ``(s*d, d)``. Draws the unit circle, the
    ``threshold`` circle (dashed), a ray per angle of Φ's unit-modulus eigenvalues with its multiplicity in a box,
    boxed as ``learned/Φ``: the learned eigenvalues above ``threshold`` nearest that direction against Φ's
    multiplicity (:func:`~twm.analysis.spectra.angle_counts`), and Φ's zero eigenvalues as one ring at the origin
    with their count. ``comparison``: a
    :class:`~twm.analysis.spectra.SpectralComparison`, whose error goes in the title.
    """
    lam = as_numpy(eigenvalues, np.complex128).ravel()
    theory = predicted_eigenvalues(F, s)
    groups = angle_counts(lam, theory, threshold)
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
    for deg, count, n_learned in groups:
        rad = np.radians(deg)
        ax.plot([0, np.cos(rad)], [0, np.sin(rad)], color="tab:orange", lw=0.5, alpha=0.35, zorder=0)
        if sparse and count == 1 and n_learned == 1:
            continue
        use_alt = (not use_alt) if previous is not None and deg - previous < gap else False
        previous = deg
        r = r_alt if use_alt else r_label
        ax.text(r * np.cos(rad), r * np.sin(rad), f"{n_learned}/{count}", ha="center", va="center", fontsize=fontsize,
                bbox={"boxstyle": "round,pad=0.18", "fc": "white", "ec": "tab:orange", "lw": 0.6}, zorder=4)
    unit = theory[np.abs(theory) > 0.5]
    label = (f"Φ: {len(unit)} with |λ| = 1 (boxes: learned/Φ count per angle"
             f"{'; unboxed rays: 1/1' if sparse else ''})")
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


def plot_weights_in_basis(matrix, s: int, d: int, path=None, kept=None, title: str | None = None,
                          robust: float | None = 95.0) -> Figure:
    """``Ψ* W_hh Ψ`` ``(s*d, s*d)`` as a diverging heatmap with symmetric colour limits and block lines every d
    (Fig. 4). Rows: the variable written to; columns: the variable read from; labelled 1..s (s newest).

    ``kept``: optional ``(s*d,)`` bool mask (``VariableMemoryBasis.kept``); rows and columns of coordinates not kept
    are drawn grey instead of as zeros, and a legend says so. ``robust``: the colour limit is this percentile (the
    nearest row at or below it) of the shown rows' largest ``|entry|``: in a TWM every row holds one entry of Φ, so a
    few outliers do not wash out the rest; larger entries take the end colours and the colour bar is extended.
    ``None``: the largest ``|entry|``.
    """
    M = as_numpy(matrix)
    if M.shape != (s * d, s * d):
        raise ValueError(f"matrix must be ({s * d}, {s * d}), got {M.shape}")
    if robust is not None and not 0 < robust <= 100:
        raise ValueError(f"robust must be a percentile in (0, 100] or None, got {robust}")
    kept = np.ones(s * d, dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
    shown = np.ma.masked_array(M, mask=~(kept[:, None] & kept[None, :]))
    block = np.abs(M[np.ix_(kept, kept)])
    peak = float(block.max()) if block.size else 0.0
    vmax = peak
    if robust is not None and block.size:
        vmax = float(np.percentile(block.max(axis=1), robust, method="lower"))
    vmax = vmax or peak or 1.0
    cmap = colormaps["RdBu_r"].with_extremes(bad="0.8")
    fig = _figure(6.4, 6.0)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
    _block_axes(ax, s, d)
    ax.set_xlabel("from variable (column of Ψ)")
    ax.set_ylabel("to variable (row of Ψ*)")
    ax.set_title(title or "W_hh in the variable-memory basis: Ψ* W_hh Ψ", fontsize=10)
    clipped = peak > vmax * (1 + 1e-9)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, extend="both" if clipped else "neither")
    scale = f"{robust:g}th percentile of the row maxima" if robust is not None else "largest |entry|"
    bar.set_label(f"entry; colour limit ±{vmax:.2g} ({scale}" + (f"; largest |entry| {peak:.2g})" if clipped
                                                                 else ")"), fontsize=8)
    if not kept.all():
        ax.legend(handles=[Patch(facecolor="0.8", edgecolor="0.5", lw=0.5,
                                 label=f"masked: {int((~kept).sum())} coordinates not kept (no persistent memory)")],
                  loc="upper center", bbox_to_anchor=(0.5, -0.09), fontsize=8, frameon=False)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------------
# Fig. 3: the hidden waves
# --------------------------------------------------------------------------------------------------------------
WAVE_NORMALISATIONS = {
    "step": "each step ÷ its max |value| over all variables (global per-step; the default)",
    "memory": "each variable ÷ its standard deviation over time and dims (per memory, as the paper's Fig. 8)",
    "none": "raw values",
}


def plot_hidden_waves(coords, path=None, raw_hidden=None, times=None, max_panels: int | None = None,
                      normalise: str = "step", inputs: int | None = None, columns: int | None = None,
                      title: str | None = None) -> Figure:
    """Substrate coordinates over time (Fig. 3B), optionally below the raw hidden state (Fig. 3A).

    ``coords``: ``(T, s, d)`` (e.g. :func:`~twm.analysis.basis.states_in_basis` of one sample). One panel per time
    step for the first ``max_panels`` steps (default ``2 s``: the input phase and one full trip of the wave), in rows
    of ``columns`` panels (default ``min(s, 12)``). In a panel, rows are the variables s (top, newest) … 1 (bottom)
    and columns the dims 1..d, so an input enters at the top and travels down one row per step.

    ``normalise`` (stated in the figure's title): ``"step"`` (default, docs/science.md §7) divides each time step by
    its max ``|value|`` over all variables (:func:`~twm.analysis.basis.normalise_for_display`); ``"memory"`` divides
    each variable by its standard deviation over all ``T`` steps and dims, the paper's choice in Figs. 8–10
    (:func:`~twm.analysis.basis.normalise_per_memory`); ``"none"`` shows the raw coordinates. ``raw_hidden``: ``(T,
    n)``, drawn above as one units × time image on one symmetric colour scale. ``inputs``: the number of leading
    steps that received an input (their panels get an orange frame). ``times``: labels of the steps (default 1..T).
    """
    from twm.analysis.basis import normalise_per_memory

    C = as_numpy(coords)
    if C.ndim != 3:
        raise ValueError(f"coords must be (T, s, d), got {C.shape}")
    if normalise not in WAVE_NORMALISATIONS:
        raise ValueError(f"normalise={normalise!r}; choose one of {', '.join(WAVE_NORMALISATIONS)}")
    T, s, d = C.shape
    shown = min(T, max_panels or 2 * s)
    cols = max(1, min(shown, columns or min(s, 12)))
    n_rows = int(np.ceil(shown / cols))
    times = np.arange(1, T + 1) if times is None else np.asarray(times)
    C = {"step": normalise_for_display, "memory": normalise_per_memory, "none": np.asarray}[normalise](C)
    vmax = 1.0 if normalise == "step" else (float(np.max(np.abs(C[:shown]))) or 1.0)
    panel_w = 1.3
    panel_h = float(np.clip(panel_w * s / d, 0.9, 2.6))
    raw_h = 2.0 if raw_hidden is not None else 0.0
    fig = _figure(cols * panel_w + 1.6, n_rows * (panel_h + 0.35) + raw_h + 1.2)
    ratios = ([raw_h] if raw_hidden is not None else []) + [panel_h] * n_rows
    grid = fig.add_gridspec(len(ratios), cols + 1, height_ratios=ratios, width_ratios=[1] * cols + [0.1],
                            wspace=0.12, hspace=0.45)
    first = 0
    if raw_hidden is not None:
        Hr = as_numpy(raw_hidden)
        if Hr.ndim != 2 or Hr.shape[0] != T:
            raise ValueError(f"raw_hidden must be (T, n) with T = {T}, got {Hr.shape}")
        hmax = float(np.max(np.abs(Hr[:shown]))) or 1.0
        ax = fig.add_subplot(grid[0, :cols])
        im_raw = ax.imshow(Hr[:shown].T, cmap="RdBu_r", vmin=-hmax, vmax=hmax, interpolation="nearest",
                           aspect="auto", extent=(0.5, shown + 0.5, Hr.shape[1] - 0.5, -0.5))
        ax.set_xticks(np.arange(1, shown + 1), [str(v) for v in times[:shown]], fontsize=7)
        ax.set_ylabel(f"unit (n = {Hr.shape[1]})", fontsize=8)
        ax.set_title("A  raw hidden state h(t), units × time steps", fontsize=9, loc="left")
        fig.colorbar(im_raw, cax=fig.add_subplot(grid[0, -1])).set_label("h(t)", fontsize=7)
        first = 1
    for k in range(shown):
        r, c = divmod(k, cols)
        ax = fig.add_subplot(grid[first + r, c])
        im = ax.imshow(C[k][::-1], cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest", aspect="auto")
        ax.set_title(f"t={times[k]}", fontsize=8, pad=2)
        ax.set_xticks([])
        if c == 0:
            ticks = list(range(s)) if s <= 16 else [0, s // 2, s - 1]
            ax.set_yticks(ticks, [str(s - i) for i in ticks], fontsize=7)
            ax.set_ylabel("variable", fontsize=8)
        else:
            ax.set_yticks([])
        if r == n_rows - 1 or k + cols >= shown:
            ax.set_xlabel(f"dim 1..{d}", fontsize=7, labelpad=2)
        if inputs is not None and k < inputs:
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:orange")
                spine.set_linewidth(1.6)
        if k == 0 and raw_hidden is not None:
            ax.annotate("B  the same states in the variable-memory basis, Ψ* h(t)", (0, 1), xycoords="axes fraction",
                        xytext=(0, 16), textcoords="offset points", fontsize=9)
    for r in range(n_rows):
        bar = fig.colorbar(im, cax=fig.add_subplot(grid[first + r, -1]))
        bar.set_label({"step": "÷ step max", "memory": "÷ memory sd", "none": "Ψ* h"}[normalise], fontsize=7)
    extra = f"; first {shown} of {T} steps" if shown < T else ""
    frames = f"; orange frames: the {inputs} input steps" if inputs else ""
    head = title or f"hidden state in the variable-memory basis Ψ* h(t), variables {s} (top) … 1"
    fig.suptitle(f"{head}\ncolours: {WAVE_NORMALISATIONS[normalise]}{extra}{frames}", fontsize=9)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------------
# Fig. 5: gradient flow during training
# --------------------------------------------------------------------------------------------------------------
def plot_gradient_flow(steps, G, rates, max_abs_eig, path=None, title: str | None = None,
                       step_scale: str = "symlog") -> Figure:
    """Fig. 5. ``steps`` ``(m,)``, ``G`` ``(m, s)`` (input-gradient profiles), ``rates`` ``(m,)`` (decay rate r),
    ``max_abs_eig`` ``(m,)``. A: ``G_t`` against input index t, one line per probe coloured by training step, log
    y. B: r (red, left axis) and ``max|λ(W_hh)|`` (blue, right axis, dashed line at 1) against training step, with
    the first step where ``max|λ|`` exceeds 1 marked (grey line).

    ``step_scale``: ``"symlog"`` (default) draws the step axis (and the colours of A) linear up to the first probe
    after step 0 and logarithmic beyond, so a crossing in the first few hundred of 20 000 steps is visible;
    ``"linear"``: a plain axis.
    """
    if step_scale not in ("symlog", "linear"):
        raise ValueError(f"step_scale={step_scale!r}; choose 'symlog' or 'linear'")
    steps = np.asarray(steps, dtype=np.float64).ravel()
    G = np.atleast_2d(np.asarray(G, dtype=np.float64))
    rates = np.asarray(rates, dtype=np.float64).ravel()
    eig = np.asarray(max_abs_eig, dtype=np.float64).ravel()
    if not (len(steps) == len(G) == len(rates) == len(eig)):
        raise ValueError("steps, G, rates and max_abs_eig must have the same number of probes")
    s = G.shape[1]
    positive = steps[steps > 0]
    linthresh = float(positive.min()) if positive.size else 1.0
    vmin, vmax = float(steps.min()), float(max(steps.max(), steps.min() + 1))
    if step_scale == "symlog":
        norm = SymLogNorm(linthresh=linthresh, linscale=0.5, vmin=vmin, vmax=vmax, base=10)
    else:
        norm = Normalize(vmin=vmin, vmax=vmax)
    fig = _figure(11.0, 4.2)
    axA, axB = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    cmap = colormaps["viridis"]
    t = np.arange(1, s + 1)
    for k in range(len(steps)):
        profile = np.where(G[k] > 0, G[k], np.nan)
        axA.plot(t, profile, color=cmap(norm(steps[k])), lw=1.2, marker="o", ms=2.5)
    axA.set_yscale("log")
    axA.set_xticks(t)
    axA.set_xlabel("input step t (1 = oldest)")
    axA.set_ylabel("G_t = mean_b ‖∂C/∂u(t)‖")
    axA.set_title("A  input-gradient profile", fontsize=10, loc="left")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axA, label="training step")
    axB.plot(steps, rates, color="tab:red", lw=1.4, marker="o", ms=2.5, label="decay rate r")
    axB.axhline(0, color="tab:red", lw=0.6, ls=":")
    axB.set_xlabel("training step" + (f" (linear to {linthresh:g}, then log)" if step_scale == "symlog" else ""))
    axB.set_ylabel("decay rate r (slope of ln G_t)", color="tab:red")
    axB.tick_params(axis="y", colors="tab:red")
    axE = axB.twinx()
    axE.plot(steps, eig, color="tab:blue", lw=1.4, marker="s", ms=2.5, label="max |λ(W_hh)|")
    axE.axhline(1.0, color="tab:blue", lw=0.8, ls="--")
    axE.annotate("|λ| = 1", (1.0, 1.0), xycoords=("axes fraction", "data"), xytext=(-3, -9), textcoords="offset points",
                 fontsize=7, color="tab:blue", ha="right")
    axE.set_ylabel("max |λ(W_hh)|", color="tab:blue")
    axE.tick_params(axis="y", colors="tab:blue")
    above = np.flatnonzero(eig > 1.0)
    if above.size:
        crossing = float(steps[above[0]])
        axB.axvline(crossing, color="0.4", lw=0.9, ls="-.")
        axB.annotate(f"max|λ| > 1\nfrom step {crossing:g}", (crossing, 0.5), xycoords=("data", "axes fraction"),
                     xytext=(4, 0), textcoords="offset points", fontsize=8, color="0.25", va="center")
    if step_scale == "symlog":
        axB.set_xscale("symlog", linthresh=linthresh, linscale=0.5, base=10)
        axB.set_xlim(vmin, vmax * 1.05)
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


def plot_mechanism_agreement(panels: Mapping[str, tuple], path=None, columns: int = 4,
                             title: str | None = None) -> Figure:
    """The seed × seed agreement matrices of a sweep, one small panel per configuration
    (:func:`twm.analysis.mechanisms.mechanism_agreement`; docs/science.md §5). ``panels``: title → ``(A, seeds,
    kinds)`` with ``A`` ``(k, k)`` in [0, 1] (``NaN``: no pattern, drawn grey), ``seeds``: ``k`` tick labels,
    ``kinds``: ``k`` mechanism kinds (first letter shown under each seed: e = exact, c = compressed, o = other,
    n = no pattern). One shared colour bar, 0 (no entry agrees) to 1 (identical patterns)."""
    if not panels:
        raise ValueError("no configurations to plot")
    n = len(panels)
    cols = max(1, min(columns, n))
    rows = -(-n // cols)
    fig = _figure(3.4 * cols + 0.8, 3.4 * rows + 0.4)
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    norm = Normalize(0.0, 1.0)
    for k, (name, (A, seeds, kinds)) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        A = np.asarray(A, dtype=np.float64)
        ax.imshow(np.ma.masked_invalid(A), cmap=cmap, norm=norm)
        ticks = range(len(seeds))
        ax.set_xticks(ticks, [f"{s}\n{str(kind)[0]}" for s, kind in zip(seeds, kinds)], fontsize=7)
        ax.set_yticks(ticks, [str(s) for s in seeds], fontsize=7)
        for i in ticks:
            for j in ticks:
                if np.isfinite(A[i, j]):
                    ax.text(j, i, f"{A[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if A[i, j] < 0.6 else "black")
        ax.set_title("\n".join(textwrap.fill(line, 44) for line in str(name).split("\n")), fontsize=7)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=fig.axes, shrink=0.8, label="sign-pattern agreement")
    fig.text(0.02, 0.0, "ticks: seed; under it the kind: e exact, c compressed, o other, n no pattern (grey)",
             fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------------
# Length generalisation
# --------------------------------------------------------------------------------------------------------------
def _series_style(k: int) -> dict:
    """Series ``k`` of a panel: its own colour and dash, and lines thinner (and drawn later) the later they come, so
    a series lying exactly on an earlier one still shows as a thin line inside a wide one."""
    return {"color": colormaps["tab10"](k % 10), "ls": ("-", "--", "-.", ":")[k % 4], "lw": max(0.8, 2.2 - 0.6 * k),
            "zorder": 2 + k}


def plot_length_generalisation(curves: dict, path=None, threshold: float = 0.94, train_horizon: int | None = 100,
                               title: str | None = None, columns: int = 2) -> Figure:
    """Per-step accuracy against output step, with the ``threshold`` (dashed), chance 0.5 (dotted) and the training
    horizon (vertical line; ``None`` to omit).

    ``curves``: ``label -> accuracy (horizon,)`` for one panel, or ``panel title -> {label -> accuracy}`` for small
    multiples (one panel per key, e.g. per task, ``columns`` per row, shared axes; one legend under the panels when
    they all have the same series, else one per panel). Within a panel each series has its own colour, dash and
    width (:func:`_series_style`), so none hides another.
    """
    nested = bool(curves) and all(isinstance(v, Mapping) for v in curves.values())
    panels = dict(curves) if nested else {"": curves}
    shared = nested and len({tuple(map(str, s)) for s in panels.values()}) == 1
    n = len(panels)
    cols = max(1, min(columns, n)) if nested else 1
    rows = int(np.ceil(n / cols))
    fig = _figure(7.5 if not nested else 4.3 * cols + 0.4, 4.0 if not nested else 2.9 * rows + 0.9)
    lowest = 1.0
    for series in panels.values():
        for acc in series.values():
            acc = np.asarray(acc, dtype=np.float64).ravel()
            if acc.size:
                lowest = min(lowest, float(np.nanmin(acc)))
    axes = []
    for i, (name, series) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, i + 1, sharex=axes[0] if axes else None, sharey=axes[0] if axes else None)
        axes.append(ax)
        for k, (label, acc) in enumerate(series.items()):
            acc = np.asarray(acc, dtype=np.float64).ravel()
            ax.plot(np.arange(1, acc.size + 1), acc, label=str(label), **_series_style(k))
        ax.axhline(threshold, color="0.3", ls="--", lw=0.9, label=f"threshold {threshold:g}")
        ax.axhline(0.5, color="0.6", ls=":", lw=0.9, label="chance")
        if train_horizon is not None:
            ax.axvline(train_horizon, color="0.5", lw=0.9, ls="-.", label=f"training horizon {train_horizon}")
        ax.set_ylim(min(0.45, lowest - 0.03), 1.02)
        if name:
            ax.set_title(str(name), fontsize=9)
        if i % cols == 0:
            ax.set_ylabel("accuracy")
        if i >= n - cols:
            ax.set_xlabel("output step")
        if nested and not shared:
            handles, labels = ax.get_legend_handles_labels()
            ax.legend(handles[: len(series)], labels[: len(series)], fontsize=7, loc="best", frameon=False)
    if nested:
        handles, labels = axes[0].get_legend_handles_labels()
        k = len(next(iter(panels.values())))
        keep = slice(0, None) if shared else slice(k, None)  # series too when every panel has the same ones
        legend = fig.legend(handles[keep], labels[keep], loc="upper center", ncol=2 if shared else 3, fontsize=8,
                            frameon=False, bbox_to_anchor=(0.5, 0.0))
        fig.suptitle(title or "length generalisation", fontsize=10)
        fig.subplots_adjust(hspace=0.35, wspace=0.12)
        legend.set_in_layout(True)
    else:
        axes[0].set_title(title or "length generalisation", fontsize=10)
        axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------------
# A sweep's spectral errors (Table 1's metric per configuration)
# --------------------------------------------------------------------------------------------------------------
def plot_spectral_errors(errors: dict, path=None, threshold: float = 0.9, title: str | None = None) -> Figure:
    """Table 1's metric per configuration of a sweep (docs/science.md §4): ``label -> [error in radians, or None
    when the eigenvalue counts differ, one per run]``. One column per label: a dot per run with a defined error (log
    y, spread sideways so equal values stay apart) and, under it, how many runs have none ("k undefined")."""
    labels = list(errors)
    fig = _figure(min(max(5.0, 0.42 * len(labels) + 2.0), 20.0), 4.6)
    ax = fig.add_subplot(1, 1, 1)
    defined = {label: np.array([v for v in errors[label] if v is not None and np.isfinite(v) and v > 0],
                               dtype=np.float64) for label in labels}
    values = np.concatenate([v for v in defined.values()] + [np.empty(0)])
    # a band under the lowest error holds the counts of undefined runs (log axis: 1.5 decades below it)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (None, None)
    for i, label in enumerate(labels):
        points = defined[label]
        if points.size:
            offsets = np.linspace(-0.22, 0.22, points.size) if points.size > 1 else np.zeros(1)
            ax.scatter(i + offsets, points, s=14, color="tab:blue", alpha=0.8, zorder=3)
        undefined = len(list(errors[label])) - points.size
        if undefined:
            y, transform = (lo / 35, ax.transData) if lo else (0.05, ax.get_xaxis_transform())
            ax.text(i, y, f"{undefined} undefined", transform=transform, rotation=90, ha="center", va="bottom",
                    fontsize=7, color="tab:red")
    if lo:
        ax.set_yscale("log")
        ax.set_ylim(lo / 40, hi * 2)
        ax.axhline(lo / 2, color="0.75", lw=0.6, ls=":")
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.6, "no run has a defined error", transform=ax.transAxes, ha="center", fontsize=9)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel(f"spectral error (rad), |λ| > {threshold:g}")
    ax.grid(axis="y", color="0.9", lw=0.6)
    ax.set_title(title or "spectral error against Φ per configuration (one dot per run)", fontsize=10)
    return _save(fig, path)
