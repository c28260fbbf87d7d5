"""Figures (Figs. 3-6) render for small planted examples; length generalisation on planted models."""

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from twm.analysis import (
    length_generalisation,
    normalise_for_display,
    plot_gradient_flow,
    plot_hidden_waves,
    plot_length_generalisation,
    plot_spectral_errors,
    plot_spectrum,
    plot_weights_in_basis,
    spectral_comparison,
    states_in_basis,
    variable_memory_basis,
    weights_in_basis,
)
from twm.model import ElmanRNN
from twm.tasks import get_task, sample
from twm.theory import embed, phi, predicted_eigenvalues

PNG = b"\x89PNG\r\n\x1a\n"


def _planted(name="repeat_copy", s=4, d=4, n=24, seed=0, scale=1.0):
    F = get_task(name, s=s, d=d).F
    Xi = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, s * d)))[0]
    W_hh, W_uh, W_r = embed(phi(F, s), Xi, d=d)
    model = ElmanRNN(d, n)
    with torch.no_grad():
        model.rnn.weight_hh_l0.copy_(torch.as_tensor(W_hh))
        model.rnn.weight_ih_l0.copy_(torch.as_tensor(scale * W_uh))
        model.readout.weight.copy_(torch.as_tensor(W_r / scale))
    return F, model, W_hh, W_r


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 2000 and data.startswith(PNG)


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def test_plot_spectrum(tmp_path):
    F = get_task("signed_shuffle_48").F
    W_hh, _, _ = embed(phi(F, 8), np.linalg.qr(np.random.default_rng(1).standard_normal((80, 64)))[0])
    W_hh = W_hh + 2e-3 * np.random.default_rng(2).standard_normal(W_hh.shape)
    comparison = spectral_comparison(W_hh, F, 8)
    lam = np.linalg.eigvals(W_hh)
    fig = plot_spectrum(lam, F, 8, path=tmp_path / "spectrum.png", comparison=comparison)
    assert _is_png(tmp_path / "spectrum.png") and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title().startswith("Jacobian spectrum vs TWM prediction\nerror ")
    assert f"{comparison.error:.2e} rad (greedy)" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "|λ| = 0.9", "Φ: 36 with |λ| = 1 (boxes: learned/Φ count per angle), 28 at 0", "learned: 36 with |λ| > 0.9"]
    origin, rings, dots = ax.collections  # Φ's zero ring, Φ's unit rings, the learned eigenvalues
    np.testing.assert_array_equal(origin.get_offsets(), [[0.0, 0.0]])
    np.testing.assert_allclose(dots.get_offsets(), np.column_stack([lam.real, lam.imag]))
    theory = predicted_eigenvalues(F, 8)
    unit = theory[np.abs(theory) > 0.5]
    np.testing.assert_allclose(rings.get_offsets(), np.column_stack([unit.real, unit.imag]))
    # one box per angle of Φ's unit eigenvalues, holding how many learned and Φ eigenvalues sit at that angle (the
    # planted network's are within 2e-3 of Φ's, so both counts are Φ's multiplicity)
    angles = np.angle(unit)
    boxes = {round(float(np.angle(complex(*b.get_position()))), 6): b.get_text().split("/") for b in ax.texts}
    assert len(boxes) == len(ax.texts) == len(np.unique(np.round(angles, 6)))
    for angle, (learned, count) in boxes.items():
        assert int(learned) == int(count) == int(np.sum(np.abs(np.angle(np.exp(1j * (angles - angle)))) < 1e-5))
    assert sum(int(c) for _, c in boxes.values()) == 36


def test_plot_weights_in_basis_masks_and_clips_outliers(tmp_path):
    s = d = 4
    F, model, W_hh, W_r = _planted(s=s, d=d, scale=1e-2)
    u, _ = sample(F, s, 8, 1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = model(u)[1][:, 0].double().numpy()
    basis = variable_memory_basis(W_hh, W_r, s, F=F, hidden=hidden)
    M = weights_in_basis(W_hh, basis)
    np.testing.assert_allclose(M, phi(F, s), atol=1e-9)  # an orthonormal embedding: Ψ* W_hh Ψ is Φ, ±1 per row
    M[0, 5] = 50.0  # one outlier must not wash out the colours of Φ's entries
    kept = basis.kept.copy()
    kept[[1, 6]] = False  # two coordinates drawn as not kept: their rows and columns are masked
    fig = plot_weights_in_basis(M, s, d, path=tmp_path / "weights.png", kept=kept)
    assert _is_png(tmp_path / "weights.png") and len(fig.axes) == 2  # the heatmap and its colour bar
    ax, bar = fig.axes
    image = ax.images[0]
    np.testing.assert_array_equal(image.get_array().data, M)
    np.testing.assert_array_equal(image.get_array().mask, ~(kept[:, None] & kept[None, :]))
    assert image.get_clim() == pytest.approx((-1.0, 1.0))  # Φ's entries, not the outlier
    assert "largest |entry| 50" in bar.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["masked: 2 coordinates not kept (no persistent memory)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert ax.get_title() == "W_hh in the variable-memory basis: Ψ* W_hh Ψ"
    plain = plot_weights_in_basis(M, s, d, robust=None)
    assert plain.axes[0].images[0].get_clim() == (-50.0, 50.0) and plain.axes[0].get_legend() is None


def test_plot_hidden_waves_layout_and_normalisations(tmp_path):
    s, d, T = 4, 4, 16
    F, model, W_hh, W_r = _planted(s=s, d=d, scale=1e-2)
    u, _ = sample(F, s, T - s, 1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = model(u)[1][:, 0].double().numpy()
    basis = variable_memory_basis(W_hh, W_r, s, F=F, hidden=hidden)
    coords = states_in_basis(hidden, basis)
    fig = plot_hidden_waves(coords, path=tmp_path / "waves.png", raw_hidden=hidden, inputs=s)
    assert _is_png(tmp_path / "waves.png")
    shown = 2 * s  # the input phase and one trip of the wave, in rows of s panels
    raw, panels = fig.axes[0], fig.axes[2 : 2 + shown]
    assert len(fig.axes) == 2 + shown + 2  # the raw image and its bar, the panels, one bar per row of panels
    np.testing.assert_allclose(raw.images[0].get_array(), hidden[:shown].T)  # units × time
    normalised = normalise_for_display(coords)
    for t, ax in enumerate(panels):
        assert ax.get_title() == f"t={t + 1}"
        np.testing.assert_allclose(ax.images[0].get_array(), normalised[t][::-1])  # variable s on top
        assert (ax.spines["top"].get_edgecolor() == to_rgba("tab:orange")) == (t < s)  # input steps framed
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["4", "3", "2", "1"]
    assert "colours: each step ÷ its max |value| over all variables (global per-step; the default)" in (
        fig._suptitle.get_text())
    assert "first 8 of 16 steps" in fig._suptitle.get_text()


def test_hidden_wave_normalisations_by_hand():
    # both variables follow p = (1, -1, 2, -2, 0, 0) over time (mean 0, standard deviation sqrt(10/6)), scaled by 3
    # and by 0.5; the largest |value| of a step is 3 |p_t|
    T, s, d = 6, 2, 2
    p = np.array([1.0, -1.0, 2.0, -2.0, 0.0, 0.0])
    C = np.zeros((T, s, d))
    C[:, 0, :], C[:, 1, :] = 3.0 * p[:, None], 0.5 * p[:, None]
    unit = np.repeat(np.repeat(p[:, None, None], s, axis=1), d, axis=2)
    step = np.where(p != 0, 1.0, 0.0)[:, None, None] * np.sign(unit) * np.array([1.0, 0.5 / 3.0])[None, :, None]
    expected = {"memory": unit / np.sqrt(10 / 6), "step": step, "none": C}
    for mode, want in expected.items():
        fig = plot_hidden_waves(C, normalise=mode, max_panels=T, title="glyph")
        panels = [ax for ax in fig.axes if ax.get_title().startswith("t=")]
        assert len(panels) == T
        for t, ax in enumerate(panels):
            np.testing.assert_allclose(ax.images[0].get_array(), want[t][::-1])
        assert fig._suptitle.get_text().startswith("glyph\ncolours: ")  # the normalisation is always stated
    memory = plot_hidden_waves(C, normalise="memory")._suptitle.get_text()
    assert "each variable ÷ its standard deviation over time and dims" in memory
    with pytest.raises(ValueError, match="normalise='rows'"):
        plot_hidden_waves(C, normalise="rows")


def test_plot_gradient_flow(tmp_path):
    steps = np.arange(0, 1001, 100)
    rates = 0.8 * np.exp(-steps / 250)
    G = np.exp(-rates[:, None] * (8 - np.arange(1, 9))[None, :])
    eig = 0.7 + 0.4 * (1 - np.exp(-steps / 250))  # above 1 from step 250 ln 4 = 347: first probe 400
    fig = plot_gradient_flow(steps, G, rates, eig, path=tmp_path / "gradients.png")
    assert _is_png(tmp_path / "gradients.png")
    axA, axB, bar, axE = fig.axes
    assert (axA.get_title(loc="left"), axB.get_title(loc="left"), bar.get_ylabel()) == (
        "A  input-gradient profile", "B  decay rate and spectral radius", "training step")
    assert axA.get_yscale() == "log" and len(axA.lines) == len(steps)
    for line, profile in zip(axA.lines, G):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 9))
        np.testing.assert_allclose(line.get_ydata(), profile)
    np.testing.assert_allclose(axB.lines[0].get_xydata(), np.column_stack([steps, rates]))
    np.testing.assert_allclose(axE.lines[0].get_xydata(), np.column_stack([steps, eig]))
    assert axE.lines[1].get_ydata()[0] == 1.0 and axE.get_ylabel() == "max |λ(W_hh)|"
    # the crossing is marked, and the step axis is logarithmic beyond the first probe so it is not squeezed
    assert axB.lines[2].get_xdata()[0] == 400 and axB.texts[0].get_text() == "max|λ| > 1\nfrom step 400"
    assert axB.get_xscale() == "symlog" and axB.get_xlabel() == "training step (linear to 100, then log)"
    # on that axis the first tenth of training (steps 0..100) takes a visible share of the width
    lo, hi = axB.transData.transform([(0, 0), (100, 0)])[:, 0]
    left, right = axB.transAxes.transform([(0, 0), (1, 0)])[:, 0]
    assert (hi - lo) / (right - left) > 0.2
    assert plot_gradient_flow(steps, G, rates, eig, step_scale="linear").axes[1].get_xscale() == "linear"


def test_length_generalisation_and_plot(tmp_path):
    # a planted repeat copy in the linear regime (inputs scaled down, readout up) holds its memory far past training
    F, model, _, _ = _planted(s=3, d=3, n=16, scale=1e-3)
    good = length_generalisation(model, F, 3, horizon=200, n_batches=2, batch_size=16)
    assert good.accuracy.shape == (200,) and good.first_below is None and good.mean_accuracy == 1.0
    zero = ElmanRNN(3, 16)
    with torch.no_grad():
        zero.readout.weight.zero_()
    bad = length_generalisation(zero, F, 3, horizon=50, n_batches=2, batch_size=16)
    assert bad.first_below == 1 and 0.35 < bad.mean_accuracy < 0.65  # sign(0) = +1: chance
    curve = np.concatenate([np.ones(120), np.linspace(1, 0.5, 80)])
    curves = {"planted": good.accuracy, "zero": bad.accuracy, "decaying": curve}
    fig = plot_length_generalisation(curves, path=tmp_path / "length.png")
    assert _is_png(tmp_path / "length.png") and len(fig.axes) == 1
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "planted", "zero", "decaying", "threshold 0.94", "chance", "training horizon 100"]
    for line, acc in zip(ax.lines, curves.values()):
        np.testing.assert_array_equal(line.get_xydata(), np.column_stack([np.arange(1, acc.size + 1), acc]))
    assert [ax.lines[k].get_ydata()[0] for k in (3, 4)] == [0.94, 0.5] and ax.lines[5].get_xdata()[0] == 100
    assert ax.get_ylim()[0] == pytest.approx(min(0.45, bad.accuracy.min() - 0.03))
    # two identical curves stay visible: the later one is thinner, dashed and drawn on top
    first, second = ax.lines[0], ax.lines[1]
    assert second.get_linewidth() < first.get_linewidth() and second.get_zorder() > first.get_zorder()
    assert (first.get_linestyle(), first.get_color()) != (second.get_linestyle(), second.get_color())
    # small multiples: one panel per key, each with its own series and the reference lines; the same series in
    # every panel share one legend under them, different ones get a legend per panel
    panels = {"task A": {"h128": good.accuracy, "h64": good.accuracy}, "task B": {"h128": curve, "h64": curve}}
    fig = plot_length_generalisation(panels, path=tmp_path / "panels.png", columns=2)
    assert _is_png(tmp_path / "panels.png") and [a.get_title() for a in fig.axes] == ["task A", "task B"]
    for ax, series in zip(fig.axes, panels.values()):
        assert ax.get_legend() is None
        for line, acc in zip(ax.lines, series.values()):
            np.testing.assert_array_equal(line.get_ydata(), acc)
        assert [ax.lines[k].get_ydata()[0] for k in (2, 3)] == [0.94, 0.5]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "h128", "h64", "threshold 0.94", "chance", "training horizon 100"]
    fig = plot_length_generalisation({"task A": {"h128": curve}, "task B": {"h64": curve, "h32": curve}})
    assert [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes] == [["h128"], ["h64", "h32"]]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["threshold 0.94", "chance", "training horizon 100"]



def test_plot_spectral_errors(tmp_path):
    errors = {"T1 h128": [1e-3, 2e-3, None], "T1 h64": [None, None], "T2 h128": [5e-4]}
    fig = plot_spectral_errors(errors, path=tmp_path / "errors.png")
    assert _is_png(tmp_path / "errors.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(errors) and ax.get_yscale() == "log"
    dots = [c.get_offsets() for c in ax.collections]  # one group of dots per label with a defined error
    np.testing.assert_allclose(dots[0][:, 1], [1e-3, 2e-3])
    np.testing.assert_allclose(dots[1], [[2, 5e-4]])
    assert np.all(np.abs(dots[0][:, 0] - 0) <= 0.25)  # spread around their column
    assert [(t.get_position()[0], t.get_text()) for t in ax.texts] == [(0, "1 undefined"), (1, "2 undefined")]
