"""``hparams_search=optuna``: the Optuna sweeper maximises the test accuracy the train entry point returns. Needs the
``optuna`` extra (skipped without it)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import compose_train

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")


def test_preset_composes_a_maximising_search(tmp_path):
    cfg = compose_train(["hparams_search=optuna"], tmp_path)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert cfg.hydra.mode.name == "MULTIRUN" and "optimizer.lr" in sweeper.params


def test_three_trials_find_the_best_test_accuracy(tmp_path):
    """The reported best trial is the run folder with the highest test accuracy in its summary."""
    proc = subprocess.run([str(Path(sys.executable).with_name("twm-train")), "hparams_search=optuna", "debug=default",
                           "hydra.sweeper.n_trials=3", "model.hidden_size=8", "trainer.max_steps=10",
                           f"paths.output_root={tmp_path}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (study,) = (tmp_path / "debug" / "multiruns").iterdir()
    trials = sorted(p for p in study.iterdir() if p.name.isdigit())
    assert len(trials) == 3
    accuracy = {p: json.loads((p / "summary.json").read_text())["test_accuracy"] for p in trials}
    best = max(accuracy, key=accuracy.get)
    result = OmegaConf.load(study / "optimization_results.yaml")
    assert result.best_value == accuracy[best]
    chosen = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in OmegaConf.load(best / ".hydra/overrides.yaml")}
    assert {k: str(v) for k, v in result.best_params.items()} == {k: chosen[k] for k in result.best_params}
    assert set(result.best_params) == {"optimizer.lr", "optimizer.l2", "curriculum.threshold"}  # hidden fixed by CLI
