"""The ensemble launcher on submitit: one array task per ensemble, requeued after SLURM's early-warning signal,
with the same run folders as the in-process launcher (submitit's local executor: SLURM's code path without SLURM)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from twm.run.folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
SWEEP = ["sweep=smoke", "hydra.launcher.max_members=2", "trainer.max_steps=60"]


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twm.train", *args], cwd=ROOT, capture_output=True, text=True,
                          env=ENV, timeout=600, stdin=subprocess.DEVNULL)


def test_the_launcher_config_shows_what_would_be_submitted():
    proc = _train(*SWEEP, "launcher=ensemble_slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra", "-p",
                  "hydra.launcher")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in ("executor: slurm", "partition: gpu", "max_members: 2", "signal_delay_s: 120", "max_num_timeout: 3",
                 "gpus_per_node: 1"):
        assert line in proc.stdout, line


@pytest.mark.slow
def test_packs_run_as_array_tasks_are_requeued_after_a_signal_and_equal_in_process_ensembles(tmp_path):
    """4 jobs, 2 per ensemble: two array tasks. Every member sends SIGUSR2 (SLURM's warning before the time limit,
    as submitit asks for it) to its task at step 25: each task checkpoints its members at that step, submitit
    requeues it, the new process resumes from the checkpoints. The folders equal those of in-process ensembles."""
    signal_at = ["+callbacks.sig._target_=tests.helpers.callbacks.SignalAt", "+callbacks.sig.step=25",
                 "+callbacks.sig.signum=12"]
    inproc = _train(*SWEEP, "launcher=ensemble", f"hydra.sweep.dir={tmp_path / 'inproc'}")
    assert inproc.returncode == 0, inproc.stderr[-2000:]
    proc = _train(*SWEEP, "launcher=ensemble_local", *signal_at, f"hydra.sweep.dir={tmp_path / 'array'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    tasks = sorted(p.name for p in (tmp_path / "array" / ".submitit").iterdir() if p.name != "%j")
    assert len(tasks) == 2, tasks  # one task per ensemble
    logs = "".join(p.read_text() for p in (tmp_path / "array" / ".submitit").rglob("*_log.*"))
    assert logs.count(" - Requeued job") == 2, logs[-3000:]
    for job in range(4):
        a, b = RunFolder(tmp_path / "inproc" / str(job)), RunFolder(tmp_path / "array" / str(job))
        sa, sb = a.read_summary(), b.read_summary()
        assert sb["status"] == "completed" and sb["resumed_at"] == [25], sb
        for key in ("steps", "train_loss", "train_accuracy", "test_accuracy", "final_horizon"):
            assert sa[key] == sb[key], (job, key)
        wa, wb = a.load_model()[0].state_dict(), b.load_model()[0].state_dict()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert a.metrics_path.read_text() == b.metrics_path.read_text()
