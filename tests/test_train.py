"""The training job: configs, a real run, determinism, resume, errors, loggers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import CONF, TINY, compose_train
from twm.run.folder import SUMMARY_KEYS, RunFolder, read_summary
from twm.run.spec import RunSpec
from twm.train.config import ConfigError, validate
from twm.train.pipeline import train

ROOT = Path(__file__).resolve().parents[1]


def _options(group):
    return sorted(p.stem for p in Path(CONF, group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override",
    [f"task={o}" for o in _options("task")]
    + [f"model={o}" for o in _options("model")]
    + [f"optimizer={o}" for o in _options("optimizer")]
    + [f"curriculum={o}" for o in _options("curriculum")]
    + [f"trainer={o}" for o in _options("trainer")]
    + [f"logger={o}" for o in _options("logger")]
    + [f"callbacks={o}" for o in _options("callbacks")],
)
def test_every_group_option_composes_and_builds(override, tmp_path):
    from hydra.utils import instantiate

    cfg = compose_train([override], tmp_path)
    validate(cfg)
    spec = RunSpec.from_config(cfg)
    assert spec.make_model().hidden_size == cfg.model.hidden_size
    assert spec.curriculum.build().horizon > 0 and spec.task.s == cfg.task.s
    for node in cfg.callbacks.values():
        instantiate(node)


def test_defaults_match_spec(tmp_path):
    cfg = compose_train([], tmp_path)
    assert cfg.seed == 1 and cfg.trainer.max_steps == 20000 and cfg.trainer.gradient_clip_val == 1.0
    assert list(cfg.curriculum.ladder) == [10, 20, 40, 60, 100] and cfg.curriculum.threshold == 0.98
    assert cfg.model.bias is False and cfg.optimizer.lr == 1e-3 and cfg.data.batch_size == 64
    assert list(cfg.logger) == ["csv"] and cfg.data.test_horizon == 200


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["task=linear", "task.task_id=[7,0,0]"], "task.task_id"),
        (["task=signed_shuffle_48", "task.s=4"], "task.name"),
        (["model.hidden_size=0"], "model.hidden_size"),
        (["curriculum.threshold=1.5"], "curriculum.threshold"),
        (["curriculum.threshold=0"], "curriculum.threshold"),
        (["curriculum.ladder=[10,40,20]"], "curriculum.ladder"),
        (["trainer.max_steps=0"], "trainer.max_steps"),
        (["model.init=xavier"], "model.init"),
    ],
)
def test_bad_configs_are_named(overrides, key, tmp_path):
    with pytest.raises(ConfigError) as err:
        validate(compose_train(overrides, tmp_path))
    assert err.value.key == key and "Allowed" in str(err.value)


def test_bad_config_cli_exits_cleanly(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    for args, needle in [
        (["model.hidden_size=-3"], "model.hidden_size"),
        (["logger=nope"], "Available options in 'logger'"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "twm.train", *args, f"hydra.run.dir={tmp_path}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode != 0
        assert needle in proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    ("args", "new"),
    [
        (["model.l2=0.1"], "optimizer.l2=0.1"),
        (["+model.lr=0.01"], "optimizer.lr=0.01"),  # Hydra itself would add it, and the run would ignore it
        (["-m", "model.l2=0,0.001", "debug=default"], "optimizer.l2=0,0.001"),
        (["++model.lr=3e-3", "model.hidden_size=16"], "optimizer.lr=3e-3"),
    ],
)
def test_a_moved_key_on_the_command_line_names_the_new_key_in_one_line(args, new, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "twm.train", *args, f"hydra.run.dir={tmp_path}/run",
                           f"hydra.sweep.dir={tmp_path}/sweep"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "WANDB_MODE": "disabled"}, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and f"write {new} instead" in proc.stderr, proc.stderr
    assert not any(tmp_path.iterdir())


def test_a_moved_key_in_a_composed_config_or_a_sweep_grid_is_refused(tmp_path, capsys):
    from omegaconf import OmegaConf, open_dict

    from twm.train.config import MovedKeyError, check_moved_keys
    from twm.train.preflight import check_sweep_keys

    cfg = compose_train(["optimizer.l2=0.1", "optimizer.lr=0.01", "model.hidden_size=16"], tmp_path)
    validate(cfg)
    check_moved_keys(["optimizer.l2=0.1", "model.hidden_size=16", "model.l2x=1", "task=linear", "-m"])
    with open_dict(cfg.model):
        cfg.model.lr = 0.5  # as a YAML file of another layout, or +model.lr=0.5, would set it
    with pytest.raises(MovedKeyError) as err:
        validate(cfg)
    assert err.value.key == "optimizer.lr" and "write optimizer.lr=0.5 instead" in str(err.value)
    check_sweep_keys(OmegaConf.create({"hydra": {"sweeper": {"params": {"optimizer.l2": "0,0.1"}}}}))
    with pytest.raises(SystemExit) as stop:
        check_sweep_keys(OmegaConf.create({"hydra": {"sweeper": {"params": {"model.l2": "0,0.1"}}}}))
    assert stop.value.code == 2
    assert "hydra.sweeper.params: model.l2 has moved to optimizer.l2" in capsys.readouterr().err


def _weights(run_dir):
    model, _ = RunFolder(run_dir).load_model()
    return model.state_dict()


def test_tiny_run_writes_the_run_folder_contract(tmp_path):
    summary = train(compose_train(TINY, tmp_path))
    assert set(SUMMARY_KEYS) <= set(summary) and summary["status"] == "completed" and summary["steps"] == 20
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 20
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",") == ["curriculum/horizon", "epoch", "step", "train/accuracy", "train/loss"]
    assert len(rows) == 21  # the horizon is logged every step
    from twm.curriculum import Ladder

    replay, csv_rows = Ladder([2, 4, 8], 0.6), [r.split(",") for r in rows[1:]]
    for horizon, _, _, accuracy, loss in csv_rows:  # the ladder replayed on the logged accuracies
        assert float(horizon) == replay.horizon
        replay.update(float(accuracy), float(loss))
    assert summary["final_horizon"] == replay.horizon and summary["train_accuracy"] == float(csv_rows[-1][3])
    # running again does nothing and says so
    assert train(compose_train(TINY, tmp_path)) == summary


def test_same_seed_same_numbers_and_seed_zero_is_honoured(tmp_path):
    a = train(compose_train(TINY + ["seed=0"], tmp_path / "a"))
    b = train(compose_train(TINY + ["seed=0"], tmp_path / "b"))
    train(compose_train(TINY + ["seed=1"], tmp_path / "c"))
    drop = {"wall_seconds"}
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    wa, wb, wc = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(wa["rnn.weight_hh_l0"], wc["rnn.weight_hh_l0"])


def test_kill_and_resume_gives_identical_weights(tmp_path):
    overrides = TINY + ["trainer.max_steps=30"]
    full = train(compose_train(overrides, tmp_path / "full"))
    crash = overrides + ["+callbacks.crash._target_=tests.helpers.callbacks.CrashAt", "+callbacks.crash.step=25"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose_train(crash, tmp_path / "resumed"))
    assert read_summary(tmp_path / "resumed")["status"] == "failed"
    resumed = train(compose_train(overrides, tmp_path / "resumed"))
    wf, wr = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    for key in ("train_loss", "train_accuracy", "test_accuracy", "final_horizon", "step_reached_max_horizon"):
        assert full[key] == resumed[key], key
    assert (tmp_path / "full" / "metrics.csv").read_text() == (tmp_path / "resumed" / "metrics.csv").read_text()


def test_wandb_offline_writes_an_offline_run(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("HOME", str(tmp_path))  # no login anywhere
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    summary = train(compose_train(TINY + ["logger=wandb", "trainer.max_steps=5"], tmp_path / "run"))
    assert summary["status"] == "completed"
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and (tmp_path / "run" / "metrics.csv").exists()
    assert os.environ["WANDB_MODE"] == "offline"
