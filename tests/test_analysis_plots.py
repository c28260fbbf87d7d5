"""Figures (Figs. 3-6) render for small planted examples; length generalisation on planted models."""

import numpy as np
import pytest
import torch

from twm.analysis import (
    length_generalisation,
    normalise_for_display,
    plot_gradient_flow,
    plot_hidden_waves,
    plot_length_generalisation,
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
        "|λ| = 0.9", "Φ: 36 with |λ| = 1 (boxes: count per angle), 28 at 0", "learned: 36 with |λ| > 0.9"]
    origin, rings, dots = ax.collections  # Φ's zero ring, Φ's unit rings, the learned eigenvalues
    np.testing.assert_array_equal(origin.get_offsets(), [[0.0, 0.0]])
    np.testing.assert_allclose(dots.get_offsets(), np.column_stack([lam.real, lam.imag]))
    theory = predicted_eigenvalues(F, 8)
    unit = theory[np.abs(theory) > 0.5]
    np.testing.assert_allclose(rings.get_offsets(), np.column_stack([unit.real, unit.imag]))
    # one box per angle of Φ's unit eigenvalues, holding how many sit at that angle
    angles = np.angle(unit)
    boxes = {round(float(np.angle(complex(*b.get_position()))), 6): int(b.get_text()) for b in ax.texts}
    assert len(boxes) == len(ax.texts) == len(np.unique(np.round(angles, 6)))
    for angle, count in boxes.items():
        assert count == int(np.sum(np.abs(np.angle(np.exp(1j * (angles - angle)))) < 1e-5))
    assert sum(boxes.values()) == 36


def test_plot_weights_and_waves(tmp_path):
    s = d = 4
    F, model, W_hh, W_r = _planted(s=s, d=d, scale=1e-2)
    u, _ = sample(F, s, 8, 1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, hidden = model(u)
    hidden = hidden[:, 0].double().numpy()
    basis = variable_memory_basis(W_hh, W_r, s, F=F, hidden=hidden)
    M = weights_in_basis(W_hh, basis)
    kept = basis.kept.copy()
    kept[[1, 6]] = False  # two coordinates drawn as not kept: their rows and columns are masked
    fig = plot_weights_in_basis(M, s, d, path=tmp_path / "weights.png", kept=kept)
    assert len(fig.axes) == 2  # the heatmap and its colour bar
    image = fig.axes[0].images[0]
    shown = image.get_array()
    np.testing.assert_array_equal(shown.data, M)
    np.testing.assert_array_equal(shown.mask, ~(kept[:, None] & kept[None, :]))
    assert image.get_clim() == (-np.abs(M).max(), np.abs(M).max())
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "2", "3", "4"]
    assert fig.axes[0].get_title() == "W_hh in the variable-memory basis: Ψ* W_hh Ψ"
    coords = states_in_basis(hidden, basis)
    T = coords.shape[0]
    fig = plot_hidden_waves(coords, path=tmp_path / "waves.png", raw_hidden=hidden)
    assert _is_png(tmp_path / "weights.png") and _is_png(tmp_path / "waves.png")
    assert "max |value|" in fig._suptitle.get_text()
    assert len(fig.axes) == 2 * T + 2  # a raw and a substrate panel per step, and a colour bar per row
    raw, waves = fig.axes[:T], fig.axes[T + 1 : 2 * T + 1]
    assert [ax.get_title() for ax in raw] == [f"t={t}" for t in range(1, T + 1)]
    normalised = normalise_for_display(coords)
    for t in range(T):
        np.testing.assert_allclose(waves[t].images[0].get_array(), normalised[t][::-1])  # variable s on top
        np.testing.assert_allclose(raw[t].images[0].get_array(), hidden[t].reshape(6, 4))  # n = 24 as 6 x 4


def test_plot_gradient_flow(tmp_path):
    steps = np.arange(0, 1001, 100)
    rates = 0.8 * np.exp(-steps / 250)
    G = np.exp(-rates[:, None] * (8 - np.arange(1, 9))[None, :])
    eig = 0.7 + 0.4 * (1 - np.exp(-steps / 250))
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

