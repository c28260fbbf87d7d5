"""Figures (Figs. 3-6) render for small planted examples; length generalisation on planted models."""

import numpy as np
import pytest
import torch

from twm.analysis import (
    length_generalisation,
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
from twm.theory import embed, phi

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
    fig = plot_spectrum(np.linalg.eigvals(W_hh), F, 8, path=tmp_path / "spectrum.png", comparison=comparison)
    assert _is_png(tmp_path / "spectrum.png") and "error" in fig.axes[0].get_title()


def test_plot_weights_and_waves(tmp_path):
    s = d = 4
    F, model, W_hh, W_r = _planted(s=s, d=d, scale=1e-2)
    u, _ = sample(F, s, 8, 1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, hidden = model(u)
    hidden = hidden[:, 0].double().numpy()
    basis = variable_memory_basis(W_hh, W_r, s, F=F, hidden=hidden)
    plot_weights_in_basis(weights_in_basis(W_hh, basis), s, d, path=tmp_path / "weights.png", kept=basis.kept)
    coords = states_in_basis(hidden, basis)
    fig = plot_hidden_waves(coords, path=tmp_path / "waves.png", raw_hidden=hidden)
    assert _is_png(tmp_path / "weights.png") and _is_png(tmp_path / "waves.png")
    assert "max |value|" in fig._suptitle.get_text()


def test_plot_gradient_flow(tmp_path):
    steps = np.arange(0, 1001, 100)
    rates = 0.8 * np.exp(-steps / 250)
    G = np.exp(-rates[:, None] * (8 - np.arange(1, 9))[None, :])
    eig = 0.7 + 0.4 * (1 - np.exp(-steps / 250))
    plot_gradient_flow(steps, G, rates, eig, path=tmp_path / "gradients.png")
    assert _is_png(tmp_path / "gradients.png")


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
    plot_length_generalisation({"planted": good.accuracy, "zero": bad.accuracy, "decaying": curve},
                               path=tmp_path / "length.png")
    assert _is_png(tmp_path / "length.png")

