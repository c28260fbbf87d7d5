"""Run folders that survive: one owner per folder, signals checkpoint and resume exactly, kill -9 reads as
interrupted at once, damaged files stay local to their job, bad inputs end in one line."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import compose_train
from twm.run.folder import RunFolder
from twm.sweep import status
from twm.train.pipeline import train

ROOT = Path(__file__).resolve().parents[1]
BASE = ["task.s=4", "task.d=4", "model.hidden_size=16", "data.test_batches=2", "curriculum.ladder=[2,4,8]",
        "curriculum.threshold=0.6"]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _overrides(steps, every):
    return BASE + [f"trainer.max_steps={steps}", f"callbacks.checkpoint.every_n_train_steps={every}",
                   f"callbacks.progress.every_n_steps={every}"]


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, **kw)


def _wait_for(path: Path, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _steps(run: Path) -> list[int]:
    with open(run / "metrics.csv", newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


def _weights(run: Path) -> dict:
    return RunFolder(run).load_model()[0].state_dict()


def _equal_runs(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text()
    sa, sb = RunFolder(a).read_summary(), RunFolder(b).read_summary()
    for key in ("status", "steps", "final_horizon", "step_reached_max_horizon", "train_loss", "test_accuracy"):
        assert sa[key] == sb[key], key


# ----------------------------------------------------------------------------------------------------------------
# signals
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_checkpoints_marks_interrupted_and_the_relaunch_equals_an_uninterrupted_run(tmp_path):
    overrides = _overrides(1500, 100)
    train(compose_train(overrides, tmp_path / "clean"))
    run = tmp_path / "run"
    proc = _cli("twm.train", *overrides, f"hydra.run.dir={run}")
    _wait_for(run / "checkpoints" / "last.ckpt", proc)
    time.sleep(0.3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10 and proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM at step" in err and "Traceback" not in err
    summary = RunFolder(run).read_summary()
    assert summary["status"] == "interrupted" and 100 < summary["steps"] < 1500
    assert RunFolder(run).checkpoint_step() == summary["steps"] == len(_steps(run))  # nothing after the checkpoint
    assert RunFolder(run).state() == ("interrupted", None)
    proc = _cli("twm.train", *overrides, f"hydra.run.dir={run}")
    assert proc.wait(timeout=300) == 0, proc.communicate()
    _equal_runs(tmp_path / "clean", run)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT])
def test_each_signal_at_a_known_step_resumes_exactly(tmp_path, signum):
    """The signal arrives inside step 137's batch-end hooks: Lightning's own SIGTERM stop and this project's stop
    for the others both end with the checkpoint of step 137 and every metrics row once."""
    overrides = _overrides(300, 100)
    train(compose_train(overrides, tmp_path / "clean"))
    run = tmp_path / "run"
    sig = ["+callbacks.sig._target_=tests.helpers.callbacks.SignalAt", "+callbacks.sig.step=137",
           f"+callbacks.sig.signum={int(signum)}"]
    proc = _cli("twm.train", *overrides, *sig, f"hydra.run.dir={run}")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum and "Traceback" not in err, err
    assert RunFolder(run).read_summary()["status"] == "interrupted" and RunFolder(run).checkpoint_step() == 137
    assert _steps(run) == list(range(137))
    assert _cli("twm.train", *overrides, f"hydra.run.dir={run}").wait(timeout=120) == 0
    _equal_runs(tmp_path / "clean", run)


@pytest.mark.slow
def test_sigusr1_stops_an_ensemble_launch_and_the_relaunch_resumes(tmp_path):
    args = ["twm.train", "sweep=smoke", "launcher=ensemble", "trainer.max_steps=1200",
            "callbacks.checkpoint.every_n_train_steps=100"]
    clean = _cli(*args, f"hydra.sweep.dir={tmp_path / 'clean'}")
    assert clean.wait(timeout=300) == 0, clean.communicate()
    proc = _cli(*args, f"hydra.sweep.dir={tmp_path / 'run'}")
    _wait_for(tmp_path / "run" / "3" / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGUSR1 and "Traceback" not in err, err
    for job in range(4):
        folder = RunFolder(tmp_path / "run" / str(job))
        summary = folder.read_summary()
        assert summary["status"] == "interrupted" and folder.checkpoint_step() == summary["steps"]
    proc = _cli(*args, f"hydra.sweep.dir={tmp_path / 'run'}")
    assert proc.wait(timeout=300) == 0, proc.communicate()
    for job in range(4):
        _equal_runs(tmp_path / "clean" / str(job), tmp_path / "run" / str(job))


@pytest.mark.slow
def test_a_submitit_job_stops_on_sigterm_and_the_relaunch_resumes(tmp_path):
    args = ["twm.train", "sweep=smoke", "launcher=submitit_local", "seed=1", "optimizer.l2=0.0",
            "trainer.max_steps=1500", "callbacks.checkpoint.every_n_train_steps=100", f"hydra.sweep.dir={tmp_path}"]
    train(compose_train(["sweep=smoke", "trainer.max_steps=1500", "callbacks.checkpoint.every_n_train_steps=100",
                         "seed=1", "optimizer.l2=0.0"], tmp_path / "clean"))
    proc = _cli(*args)
    _wait_for(tmp_path / "0" / "checkpoints" / "last.ckpt", proc)
    owner = json.loads((tmp_path / "0" / "owner.json").read_text())
    assert owner["pid"] != proc.pid and owner["host"] == socket.gethostname()  # the submitit worker
    os.kill(owner["pid"], signal.SIGTERM)
    proc.communicate(timeout=120)
    summary = RunFolder(tmp_path / "0").read_summary()
    assert summary["status"] == "interrupted" and RunFolder(tmp_path / "0").checkpoint_step() == summary["steps"]
    proc = _cli(*args)
    assert proc.wait(timeout=300) == 0, proc.communicate()
    _equal_runs(tmp_path / "clean", tmp_path / "0")


# ----------------------------------------------------------------------------------------------------------------
# liveness and ownership
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_kill9_reads_interrupted_at_once(tmp_path):
    run = tmp_path / "0"
    proc = _cli("twm.train", *_overrides(2000, 100), f"hydra.run.dir={run}")
    _wait_for(run / "checkpoints" / "last.ckpt", proc)
    assert status(tmp_path)["counts"]["running"] == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed = time.monotonic()
    assert status(tmp_path)["counts"]["interrupted"] == 1 and time.monotonic() - killed < 5
    assert train(compose_train(_overrides(2000, 100), run))["status"] == "completed"  # the dead owner's lock
    assert _steps(run) == list(range(2000))


def test_a_kill9_just_after_a_periodic_checkpoint_loses_no_metrics_row(tmp_path):
    """The CSV logger flushes every 100 steps; a kill the instant the checkpoint of step 20 lands must still leave
    rows 0-19 on disk (the relaunch continues from step 20 and never rewrites them)."""
    overrides = _overrides(40, 10)
    train(compose_train(overrides, tmp_path / "clean"))
    run = tmp_path / "run"
    kill = ["+callbacks.kill._target_=tests.helpers.callbacks.KillAfterCheckpoint", "+callbacks.kill.step=20"]
    proc = _cli("twm.train", *overrides, *kill, f"hydra.run.dir={run}")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL and RunFolder(run).checkpoint_step() == 20
    assert _steps(run) == list(range(20))
    assert _cli("twm.train", *overrides, f"hydra.run.dir={run}").wait(timeout=120) == 0
    _equal_runs(tmp_path / "clean", run)


def test_a_folder_held_by_a_live_process_is_skipped(tmp_path, caplog):
    cfg = compose_train(_overrides(20, 10), tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from twm.run.folder import RunFolder; f = RunFolder(sys.argv[1]); f.acquire(); "
        "print('held', flush=True); time.sleep(60)"), str(tmp_path)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        caplog.set_level("WARNING", logger="twm.train")
        assert train(cfg)["status"] == "skipped"
        assert f"running in pid {holder.pid} on host {socket.gethostname()}, skipped" in caplog.text
        assert not (tmp_path / "metrics.csv").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(cfg)["status"] == "completed"  # the lock of the killed holder is reclaimed


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "ensemble"])
def test_two_launches_at_once_train_every_job_exactly_once(tmp_path, launcher):
    args = ["twm.train", "sweep=smoke", f"launcher={launcher}", "trainer.max_steps=400",
            "callbacks.checkpoint.every_n_train_steps=50", f"hydra.sweep.dir={tmp_path}"]
    procs = [_cli(*args), _cli(*args)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for job in range(4):
        assert _steps(tmp_path / str(job)) == list(range(400)), job  # once: no duplicated metric rows
        assert RunFolder(tmp_path / str(job)).read_summary()["status"] == "completed"
    logs = "".join(o + e for o, e in outs) + "".join(p.read_text() for p in tmp_path.glob("*/train.log"))
    assert "skipped" in logs


# ----------------------------------------------------------------------------------------------------------------
# damage stays local
# ----------------------------------------------------------------------------------------------------------------
def _sweep(root: Path, steps=30) -> Path:
    for job, seed in enumerate((1, 2, 3)):
        train(compose_train(_overrides(steps, 10) + [f"seed={seed}"], root / str(job)))
    return root


def test_a_damaged_completed_checkpoint_is_reported_not_retrained(tmp_path):
    from twm.analyze import AnalyzeOptions, analyze_sweep

    root = _sweep(tmp_path / "sweep")
    ckpt = root / "1" / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = (root / "1" / "summary.json").read_text()
    report = status(root)
    assert report["counts"]["damaged"] == 1 and "does not match its checksum" in report["damaged"]["1"]
    proc = subprocess.run([sys.executable, "-m", "twm.sweep", "status", f"sweep_dir={root}"], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "damaged: job 1" in proc.stdout and "Traceback" not in proc.stderr
    analysis = analyze_sweep(root, AnalyzeOptions(length_horizon=20, length_batches=1, plots=False))
    assert list(analysis["damaged"]) == ["1"] and analysis["analysed"] == ["0", "2"]
    assert train(compose_train(_overrides(30, 10) + ["seed=2"], root / "1"))["status"] == "completed"
    assert (root / "1" / "summary.json").read_text() == before and ckpt.stat().st_size == 1000


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    overrides = _overrides(30, 10)
    train(compose_train(overrides, tmp_path / "clean"))
    crash = overrides + ["+callbacks.crash._target_=tests.helpers.callbacks.CrashAt", "+callbacks.crash.step=25"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose_train(crash, tmp_path / "run"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 20
    ckpt.write_bytes(ckpt.read_bytes()[:-50])
    caplog.set_level("WARNING", logger="twm.train")
    assert train(compose_train(overrides, tmp_path / "run"))["status"] == "completed"
    assert "resuming from prev.ckpt" in caplog.text
    _equal_runs(tmp_path / "clean", tmp_path / "run")


def test_a_garbage_summary_and_a_torn_metrics_row_are_repaired_on_relaunch(tmp_path):
    overrides = _overrides(30, 10)
    first = train(compose_train(overrides, tmp_path / "done"))
    (tmp_path / "done" / "summary.json").write_text("{not json")
    assert status(tmp_path)["damaged"] == {}  # not a numbered job folder: nothing listed
    assert RunFolder(tmp_path / "done").state()[0] == "damaged"
    assert train(compose_train(overrides, tmp_path / "done")) == first  # rebuilt from the checkpoint, same content

    train(compose_train(overrides, tmp_path / "clean"))
    crash = overrides + ["+callbacks.crash._target_=tests.helpers.callbacks.CrashAt", "+callbacks.crash.step=25"]
    with pytest.raises(RuntimeError):
        train(compose_train(crash, tmp_path / "torn"))
    with open(tmp_path / "torn" / "metrics.csv", "a") as fh:
        fh.write("4.0,0,2")  # a row cut by a full disk
    train(compose_train(overrides, tmp_path / "torn"))
    _equal_runs(tmp_path / "clean", tmp_path / "torn")


def test_damaged_analysis_and_config_files_stay_local(tmp_path):
    from twm.analyze import AnalyzeOptions, analyze_sweep
    from twm.report import write_report

    root = _sweep(tmp_path / "sweep")
    options = AnalyzeOptions(length_horizon=20, length_batches=1, plots=False)
    analyze_sweep(root, options)
    (root / "0" / "analysis.json").write_text("garbage")
    (root / "2" / ".hydra" / "config.yaml").write_text("task: [unclosed")
    (root / "2" / "checkpoints" / "last.ckpt").unlink()
    (root / "2" / "checkpoints" / "prev.ckpt").unlink()
    report = analyze_sweep(root, options)
    assert report["analysed"] == ["0"] and report["up_to_date"] == ["1"] and list(report["damaged"]) == ["2"]
    rows = list(csv.DictReader(open(write_report(root, options=options)["csv"])))
    assert [r["status"] for r in rows] == ["completed", "completed", "damaged"]


# ----------------------------------------------------------------------------------------------------------------
# one line for bad inputs
# ----------------------------------------------------------------------------------------------------------------
def test_bad_inputs_end_in_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    cases = [
        (["twm.train", f"hydra.run.dir={tmp_path / 'file' / 'run'}"], "cannot be written"),
        (["twm.sweep", "status", f"sweep_dir={tmp_path}", "stale_minutes=abc"], "is not a number"),
        (["twm.analyze", f"sweep_dir={tmp_path}", "workers=abc"], "is not an integer"),
        (["twm.report", f"sweep_dir={tmp_path}", "length_horizon=ten"], "is not an integer"),
    ]
    if not torch.cuda.is_available():
        cases.append((["twm.train", "trainer=gpu", f"hydra.run.dir={tmp_path / 'gpu'}"], "no CUDA device"))
    if not any(Path(p, "sbatch").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        cases.append((["twm.train", "sweep=smoke", "launcher=slurm", "hydra.launcher.partition=x",
                       f"hydra.sweep.dir={tmp_path / 'slurm'}"], "SLURM is not installed"))
    for args, needle in cases:
        proc = subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    assert not (tmp_path / "gpu").exists() and not (tmp_path / "slurm").exists()


def test_an_exported_run_keeps_its_files_and_weights_without_the_optimiser(tmp_path):
    run = tmp_path / "run"
    train(compose_train(_overrides(20, 10), run))
    dest = RunFolder(run).export(tmp_path / "kept", weights=True)
    for name in (".hydra/config.yaml", "summary.json"):
        assert (dest / name).read_bytes() == (run / name).read_bytes(), name
    ckpt = torch.load(dest / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert set(ckpt) == {"state_dict", "global_step"} and ckpt["global_step"] == 20
    assert all(torch.equal(a, b) for a, b in zip(_weights(run).values(), _weights(dest).values()))
    assert not (dest / "metrics.csv").exists()
