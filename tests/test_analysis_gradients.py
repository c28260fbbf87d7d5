"""Gradient propagation to the inputs (docs/science.md §6): the profile, its decay rate and the training probe."""

import csv

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers.logger import Logger
from torch.utils.data import DataLoader

from twm.analysis import decay_rate, input_gradient_profile, load_probe_csv, spectral_radius
from twm.metrics import output_mse
from twm.model import ElmanRNN
from twm.tasks import get_task, sample
from twm.train.callbacks import GradientProbe


@pytest.mark.parametrize("r", [0.7, 0.0, -0.3])
def test_decay_rate_recovers_exponential_profiles(r):
    s = 8
    t = np.arange(1, s + 1)
    G = 2.5 * np.exp(-r * (s - t))
    assert decay_rate(G) == pytest.approx(r, abs=1e-12)
    noisy = G * np.exp(0.01 * np.random.default_rng(0).standard_normal(s))
    assert decay_rate(noisy) == pytest.approx(r, abs=0.01)


def test_decay_rate_undefined_without_a_logarithm():
    assert np.isnan(decay_rate([1.0, 0.0, 2.0])) and np.isnan(decay_rate([1.0]))


def _tiny_model(seed=0, n=6, d=3):
    return ElmanRNN(d, n, generator=torch.Generator().manual_seed(seed)).double()


@pytest.mark.parametrize("loss", ["output", "first"])
def test_profile_matches_finite_differences(loss):
    s, d, B = 3, 3, 2
    model = _tiny_model()
    F = get_task("repeat_copy", s=s, d=d).F
    u, y = (x.double() for x in sample(F, s, 4, B, torch.Generator().manual_seed(0)))
    G = input_gradient_profile(model, u, y, s, loss=loss)
    assert G.shape == (s,) and G.dtype == np.float64

    def C(v):
        with torch.no_grad():
            pred, _ = model(v)
            return (output_mse(pred, y, s) if loss == "output" else torch.mean((pred[s] - y[s]) ** 2)).item()

    eps = 1e-6
    for t in range(s):
        grad = np.zeros((B, d))
        for b in range(B):
            for j in range(d):
                up, down = u.clone(), u.clone()
                up[t, b, j] += eps
                down[t, b, j] -= eps
                grad[b, j] = (C(up) - C(down)) / (2 * eps)
        assert G[t] == pytest.approx(np.linalg.norm(grad, axis=1).mean(), rel=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_profile_of_a_linear_delay_line_is_flat():
    # a planted linear-regime repeat copy (tiny inputs keep tanh linear): every input is held, not forgotten
    from twm.theory import embed, phi

    s, d, n = 4, 2, 12
    F = get_task("repeat_copy", s=s, d=d).F
    W_hh, W_uh, W_r = embed(phi(F, s), np.linalg.qr(np.random.default_rng(1).standard_normal((n, s * d)))[0])
    model = ElmanRNN(d, n).double()
    with torch.no_grad():
        model.rnn.weight_hh_l0.copy_(torch.as_tensor(W_hh))
        model.rnn.weight_ih_l0.copy_(torch.as_tensor(W_uh))
        model.readout.weight.copy_(torch.as_tensor(W_r))
    u, y = (1e-4 * x.double() for x in sample(F, s, 3 * s, 16, torch.Generator().manual_seed(2)))
    G = input_gradient_profile(model, u, y + 1e-3, s)
    assert abs(decay_rate(G)) < 1e-3
    assert spectral_radius(model.W_hh) == pytest.approx(1.0, abs=1e-6)


class _FakeModule(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.s = 3
        self.task_F = get_task("repeat_copy", s=3, d=2).F
        self.max_horizon = 5
        self.model = ElmanRNN(2, 8, generator=torch.Generator().manual_seed(0))
        self.data_gen = torch.Generator().manual_seed(1)

    def training_step(self, batch, batch_idx):
        u, y = sample(self.task_F, self.s, 5, 4, self.data_gen)
        pred, _ = self.model(u)
        return output_mse(pred, y, self.s)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)

    def train_dataloader(self):
        return DataLoader(torch.zeros(64, 1), batch_size=1)


class _RecordingLogger(Logger):
    def __init__(self):
        super().__init__()
        self.records = []

    @property
    def name(self):
        return "recording"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.records.append((step, dict(metrics)))


def _fit(module, tmp_path, callbacks, logger):
    trainer = L.Trainer(max_steps=6, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1, default_root_dir=tmp_path,
                        callbacks=callbacks)
    trainer.fit(module)
    return trainer


def test_gradient_probe_records_and_does_not_interfere(tmp_path):
    torch.manual_seed(0)
    probe = GradientProbe(every_n_steps=2, batch_size=8, seed=3)
    logger = _RecordingLogger()
    probed = _FakeModule()
    _fit(probed, tmp_path / "a", [probe], [logger])
    plain = _FakeModule()
    _fit(plain, tmp_path / "b", [], False)
    # the probe touches neither the optimiser nor the parameters' gradients: training is bit-identical
    for p, q in zip(probed.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)

    assert [row["step"] for row in probe.rows] == [0, 2, 4, 6]
    path = tmp_path / "a" / "grad_probe.csv"
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:6] == ["step", "G_1", "G_2", "G_3", "decay_rate", "max_abs_eig"]
    table = load_probe_csv(path)
    assert list(table["steps"]) == [0, 2, 4, 6] and table["G"].shape == (4, 3)

    # the last probe (after step 6 = the final weights) equals a direct computation on the fixed probe batch
    u, y = sample(probed.task_F, 3, 5, 8, torch.Generator().manual_seed(3))
    G = input_gradient_profile(probed.model, u, y, 3)
    np.testing.assert_allclose(table["G"][-1], G, rtol=1e-5)
    assert table["decay_rate"][-1] == pytest.approx(decay_rate(G), rel=1e-5)
    assert table["max_abs_eig"][-1] == pytest.approx(spectral_radius(probed.model.W_hh), rel=1e-6)
    assert table["G_first"].shape == (4, 3)
    assert not np.allclose(table["G"][0], table["G"][-1])  # the profile was measured as training moved

    assert [step for step, _ in logger.records] == [0, 2, 4, 6]
    assert {"grad/G_1", "grad/G_3", "grad/decay_rate", "grad/max_abs_eig"} <= set(logger.records[-1][1])
    assert not list((tmp_path / "a").glob("*.tmp"))
