"""Sweeps: presets lose no axis, launchers compose, the submitit path runs end to end, resumability."""

import json
import os
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

import pytest

from tests.conftest import compose_train
from twm.sweep import grid_jobs, run_state, status

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"repeat_copy", "staggered_copy", "signed_shuffle_48", "signed_shuffle_70"}
BANNERS = ("GPU available", "TPU available", "Tip:")  # Lightning's INFO lines at Trainer start


def _grid(preset, extra=()):
    cfg = compose_train([f"sweep={preset}", *extra])
    jobs = grid_jobs({str(k): str(v) for k, v in cfg.hydra.sweeper.params.items()})
    return cfg, [dict(o.split("=", 1) for o in job) for job in jobs]


def test_table1_grid_is_the_full_product():
    cfg, jobs = _grid("table1")
    assert len(jobs) == 1920 == 4 * 3 * 4 * 2 * 20
    axes = {
        "task": TASKS, "model.hidden_size": {"128", "64", "32"}, "optimizer.l2": {"0.0", "0.001", "0.1", "10.0"},
        "curriculum.threshold": {"0.9", "0.98"}, "seed": {str(s) for s in range(1, 21)},
    }
    for key, values in axes.items():
        assert {job[key] for job in jobs} == values, key
    combos = {tuple(job[k] for k in axes) for job in jobs}
    assert combos == set(product(*axes.values()))  # every configuration exactly once: none dropped
    assert cfg.sweep_name == "table1" and "0" not in {job["seed"] for job in jobs}


def test_table1_cpu_grid():
    _, jobs = _grid("table1_cpu")
    assert len(jobs) == 48
    assert {j["task"] for j in jobs} == TASKS and {j["model.hidden_size"] for j in jobs} == {"64", "128"}


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local", "slurm"])
def test_launchers_compose(launcher):
    cfg = compose_train([f"launcher={launcher}", "sweep=smoke", "hydra.launcher.partition=x"]
                        if launcher == "slurm" else [f"launcher={launcher}", "sweep=smoke"])
    target = cfg.hydra.launcher._target_
    expected = {"basic": "BasicLauncher", "joblib": "JoblibLauncher", "submitit_local": "LocalLauncher",
                "slurm": "SlurmLauncher"}[launcher]
    assert target.endswith(expected)
    if launcher == "slurm":
        launcher_cfg = cfg.hydra.launcher
        assert launcher_cfg.array_parallelism == 64 and launcher_cfg.max_num_timeout == 3
        assert launcher_cfg.signal_delay_s == 120
        assert cfg.num_threads == 1


def test_slurm_cfg_hydra_shows_without_submitting(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "twm.train", "sweep=smoke", "launcher=slurm",
                           "hydra.launcher.partition=cpu", f"hydra.sweep.dir={tmp_path}/s", "--cfg", "hydra",
                           "-p", "hydra.launcher"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "SlurmLauncher" in proc.stdout and "partition: cpu" in proc.stdout
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_smoke_sweep_through_submitit_local_then_resume(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "twm.train", "sweep=smoke", "launcher=submitit_local", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [json.loads((tmp_path / str(i) / "summary.json").read_text()) for i in range(4)]
    assert all(s["status"] == "completed" and s["steps"] == 40 for s in summaries)
    assert {(s["l2"], s["seed"]) for s in summaries} == {(0.0, 1), (0.0, 2), (0.1, 1), (0.1, 2)}
    assert list((tmp_path / ".submitit").glob("*/*_result.pkl"))
    logs = [*tmp_path.glob("*/train.log"), *tmp_path.glob(".submitit/*/*_log.*")]
    assert len(logs) == 12, logs  # Lightning's banner lines stay out of the job logs
    for log in logs:
        assert not [b for b in BANNERS if b in log.read_text()], log
    assert status(tmp_path)["counts"]["completed"] == 4
    # relaunch into the same folder: completed runs are skipped, a failed one is rerun
    first = (tmp_path / "0" / "summary.json").read_text()
    failed = json.loads((tmp_path / "1" / "summary.json").read_text()) | {"status": "failed", "error": "boom"}
    (tmp_path / "1" / "summary.json").write_text(json.dumps(failed))
    assert status(tmp_path)["failed"] == ["1"]
    proc = subprocess.run(cmd[:4] + [f"hydra.sweep.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "0" / "summary.json").read_text() == first
    assert json.loads((tmp_path / "1" / "summary.json").read_text())["status"] == "completed"
    assert "nothing to do" in (tmp_path / "0" / "train.log").read_text()


def test_run_states(tmp_path):
    import socket

    import torch

    (tmp_path / "done" / "checkpoints").mkdir(parents=True)
    (tmp_path / "done" / "summary.json").write_text(json.dumps({"status": "completed"}))
    torch.save({"global_step": 1}, tmp_path / "done" / "checkpoints" / "last.ckpt")
    (tmp_path / "nockpt").mkdir()
    (tmp_path / "nockpt" / "summary.json").write_text(json.dumps({"status": "completed"}))
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "summary.json").write_text('{"status": "compl')
    for name, pid in (("busy", os.getpid()), ("dead", 2**22 + 12345)):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "checkpoints" / "last.ckpt").write_bytes(b"x")
        (tmp_path / name / "owner.json").write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                                                "heartbeat": 0}))
    (tmp_path / "elsewhere" / "checkpoints").mkdir(parents=True)
    (tmp_path / "elsewhere" / "owner.json").write_text(json.dumps({"pid": 1, "host": "other-node",
                                                                   "heartbeat": time.time()}))
    (tmp_path / "empty").mkdir()
    (tmp_path / "prepared" / ".hydra").mkdir(parents=True)
    assert run_state(tmp_path / "done") == "completed"
    assert run_state(tmp_path / "garbage") == "damaged" and run_state(tmp_path / "nockpt") == "damaged"
    assert run_state(tmp_path / "busy") == "running"  # its owner (this process) is alive
    assert run_state(tmp_path / "dead") == "interrupted"  # no such pid: killed
    assert run_state(tmp_path / "elsewhere") == "running"  # another host: a fresh heartbeat
    assert run_state(tmp_path / "empty") == "missing"
    assert run_state(tmp_path / "prepared") == "not started"


def test_a_folder_of_another_configuration_is_refused(tmp_path):
    from tests.conftest import TINY
    from twm.train.config import ConfigError
    from twm.train.pipeline import train

    train(compose_train(TINY + ["trainer.max_steps=5"], tmp_path))
    with pytest.raises(ConfigError, match="another configuration"):
        train(compose_train(TINY + ["trainer.max_steps=5", "seed=7"], tmp_path))
