"""The paper's central claim at test scale: a real 3 000-step run learns repeat copy (s = d = 4, hidden 64) and its
W_hh carries Φ's spectrum (docs/science.md §4)."""

import numpy as np
import pytest

from tests.conftest import compose_train
from twm.analysis import spectral_comparison
from twm.run.folder import RunFolder
from twm.train.pipeline import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("real_run")
    overrides = ["task=repeat_copy", "task.s=4", "task.d=4", "model.hidden_size=64", "trainer.max_steps=3000",
                 "num_threads=2"]
    summary = train(compose_train(overrides, run_dir))
    return run_dir, summary


def test_repeat_copy_is_learned(trained):
    _, summary = trained
    assert summary["status"] == "completed" and summary["steps"] == 3000
    assert summary["final_horizon"] == 100
    assert summary["test_accuracy"] >= 0.99  # horizon 200: twice the training horizon


def test_learned_spectrum_matches_phi(trained):
    run_dir, _ = trained
    model, spec = RunFolder(run_dir).load_model()
    comparison = spectral_comparison(model.W_hh.double().numpy(), spec.task.F, spec.task.s)
    assert comparison.defined and comparison.n_learned == comparison.n_theory == 16
    assert comparison.error < 0.01 and comparison.error_optimal <= comparison.error + 1e-12
    assert np.all(np.abs(np.abs(comparison.learned) - 1) < 0.1)
