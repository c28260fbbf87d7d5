"""The debug presets and the fixed batch behind ``debug=overfit``: every engine trains on the run's first batch
(continued to the current horizon) at every step, and the preset's loss falls to ~0."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import CONF, TINY, compose_train
from twm.metrics import output_mse
from twm.run.folder import RunFolder
from twm.run.spec import RunSpec
from twm.tasks import sample
from twm.train.config import validate
from twm.train.pipeline import prepare, run_lightning, train, train_packed
from twm.train.reference import train_reference

FIXED = [*TINY, "trainer.max_steps=40", "data.fixed_batch=true", "optimizer.lr=0.01"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _losses(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as fh:
        return [float(row["train/loss"]) for row in csv.DictReader(fh) if row["train/loss"]]  # not probe rows


def test_reference_loop_trains_on_the_first_batch_continued_to_the_horizon(tmp_path):
    """By hand: one batch drawn once at the longest horizon, cut to each step's horizon, loss before each step."""
    spec = RunSpec.from_config(compose_train(FIXED, tmp_path))
    assert spec.data.fixed_batch
    seen = []
    _, history = train_reference(spec, callback=lambda step, model: seen.append(
        {k: v.clone() for k, v in model.state_dict().items()}))
    assert len(set(history["horizon"])) >= 2, "the curriculum must move for the test to mean anything"
    s, longest = spec.task.s, max(history["horizon"])
    u, y = sample(spec.task.F, s, longest, spec.data.batch_size, torch.Generator().manual_seed(spec.seeds.data))
    model = spec.make_model()
    for step, horizon in enumerate(history["horizon"]):
        if step:
            model.load_state_dict(seen[step - 1])
        with torch.no_grad():
            loss = output_mse(model(u[: s + horizon])[0], y[: s + horizon], s)
        assert float(loss) == pytest.approx(history["loss"][step], abs=1e-6), step


def test_lightning_engine_with_a_fixed_batch_equals_the_reference_loop(tmp_path):
    cfg = compose_train(FIXED, tmp_path / "run")
    summary = run_lightning(prepare(cfg))
    model, history = train_reference(RunSpec.from_config(cfg))
    trained, _ = RunFolder(tmp_path / "run").load_model()
    for k, w in model.state_dict().items():
        assert torch.equal(trained.state_dict()[k], w), k
    assert _losses(tmp_path / "run") == history["loss"] and summary["steps"] == 40


def test_batched_engine_with_a_fixed_batch_equals_the_reference_loop(tmp_path):
    """A fixed-batch member beside an ordinary one in one ensemble: each follows its own reference run."""
    configs = [compose_train(FIXED, tmp_path / "fixed"), compose_train(FIXED[:-2], tmp_path / "stream")]
    train_packed([prepare(cfg) for cfg in configs], 8, "cpu")
    for cfg, run in zip(configs, ("fixed", "stream")):
        _, history = train_reference(RunSpec.from_config(cfg))
        np.testing.assert_allclose(_losses(tmp_path / run), history["loss"], rtol=0, atol=1e-5, err_msg=run)


def test_a_fixed_batch_run_has_its_own_identity(tmp_path):
    fixed = RunSpec.from_config(compose_train(FIXED, tmp_path))
    stream = RunSpec.from_config(compose_train(FIXED[:-2] + ["optimizer.lr=0.01"], tmp_path))
    assert fixed.identity()["data"]["fixed_batch"] is True and "fixed_batch" not in stream.identity()["data"]
    assert RunSpec.from_dict(json.loads(json.dumps(fixed.to_dict()))) == fixed


def test_overfit_preset_drives_the_loss_to_zero(tmp_path):
    """``debug=overfit`` (Lightning engine, the recipe's model and optimiser on one fixed batch of 16)."""
    summary = train(compose_train(["debug=overfit"], tmp_path))
    losses = _losses(tmp_path)
    assert len(losses) == 300 and losses[0] > 0.9
    assert summary["status"] == "completed" and summary["train_loss"] < 1e-3 and max(losses[-10:]) < 1e-3


@pytest.mark.parametrize("experiment", sorted(p.stem for p in Path(CONF, "experiment").glob("*.yaml")))
def test_debug_presets_compose_on_every_kind_of_experiment(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}", "debug=default"], tmp_path)
    validate(cfg)
    assert cfg.trainer.max_steps == 30 and cfg.trainer.accelerator == "cpu" and list(cfg.logger) == ["csv"]
    assert cfg.num_threads == 1
    assert cfg.callbacks.checkpoint.every_n_train_steps == 10
    node = cfg.hydra.sweep if cfg.hydra.mode is not None else cfg.hydra.run
    assert str(node.dir).startswith(f"{cfg.paths.output_root}/debug/"), "never an experiment's own folder"


def test_console_command_runs_an_experiment_in_debug_mode(tmp_path):
    """``twm-train experiment=gradient_flow debug=default``: the GPU preset runs on the CPU in seconds, in its own
    folder under outputs/debug, with the experiment's probe."""
    proc = subprocess.run([str(Path(sys.executable).with_name("twm-train")), "experiment=gradient_flow",
                           "debug=default", f"paths.output_root={tmp_path}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = (tmp_path / "debug" / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 30 and summary["hidden_size"] == 16
    assert len(_losses(run)) == 30 and (run / "grad_probe.csv").exists()
