"""W&B: the offline run files both engines write, read back (config, group, tags, summary, history), one W&B run
per job across a crash and relaunch, and the analysis figures added to the same run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from twm.run.folder import RunFolder
from twm.run.spec import RunSpec
from twm.run.wandb import flatten, group_name, offline_runs

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["sweep=smoke", "logger=wandb", "tags=[paper,wandb]", "optimizer.lr=0.004", "trainer.gradient_clip_val=0.2"]


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return {**env, "HOME": str(home), "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _launch(sweep_dir: Path, home: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twm.train", *SMOKE, *extra, f"hydra.sweep.dir={sweep_dir}"],
                          cwd=ROOT, capture_output=True, text=True, env=_env(home), timeout=600,
                          stdin=subprocess.DEVNULL)


def _without_paths(config: dict) -> dict:
    return {k: v for k, v in config.items()
            if not k.startswith(("paths.", "logger.", "callbacks.crash")) and k != "callbacks.checkpoint.dirpath"}


def test_flatten_and_groups_differ_in_everything_but_the_seed():
    assert flatten({"model": {"hidden_size": 8, "init": "uniform"}, "tags": ["a"], "seed": 1}) == {
        "model.hidden_size": 8, "model.init": "uniform", "tags": ["a"], "seed": 1}
    from twm.run.spec import CurriculumSpec, TaskSpec
    from twm.tasks import get_task

    base = RunSpec(TaskSpec.from_task(get_task("repeat_copy", 4, 4)))
    assert group_name(base) == group_name(base.replace(seed=7)) == group_name(base.replace(tags=("x",)))
    assert base.replace(tags=("x",)).identity() == base.identity() and "tags" not in base.to_dict()
    assert RunSpec.from_dict(base.replace(tags=("x",)).to_dict()).tags == ("x",)
    variants = [base.replace(curriculum=CurriculumSpec.of("ladder", ladder=[10, 20, 40, 60, 100], threshold=0.9)),
                base.replace(optim={"lr": 0.01}), base.replace(model={"init": "gaussian"}),
                base.replace(data={"batch_size": 32}), base.replace(steps=100),
                RunSpec(TaskSpec.from_task(get_task("repeat_copy", 4, 3)))]
    names = {group_name(v) for v in [base, *variants]}
    assert len(names) == len(variants) + 1


@pytest.mark.slow
def test_both_engines_write_the_same_wandb_runs_one_per_job_across_a_crash(tmp_path, monkeypatch):
    """The two launchers on one sweep, and W&B: 4 jobs with launcher=ensemble and with launcher=basic give equal
    run folders and offline W&B runs with equal config, group, tags and summary; the ensemble launch crashes at
    step 25 (checkpoint at 20) and is relaunched: still one W&B run per job, every step logged exactly once; after
    twm.analyze the same runs hold the analysis figures in their summary and the plots as images."""
    crash = ["+callbacks.crash._target_=tests.helpers.callbacks.CrashAt", "+callbacks.crash.step=25"]
    basic = _launch(tmp_path / "basic", tmp_path, "launcher=basic")
    assert basic.returncode == 0, basic.stderr[-2000:]
    crashed = _launch(tmp_path / "ensemble", tmp_path, "launcher=ensemble", *crash)
    assert crashed.returncode != 0 and "simulated crash at step 25" in crashed.stderr + crashed.stdout
    relaunch = _launch(tmp_path / "ensemble", tmp_path, "launcher=ensemble")
    assert relaunch.returncode == 0, relaunch.stderr[-2000:]
    for launcher, proc in (("basic", basic), ("ensemble", relaunch)):  # 4 runs in one process, no banners
        output = proc.stdout + proc.stderr + "".join(p.read_text() for p in (tmp_path / launcher).glob("*/*.log"))
        assert "GPU available" not in output and "Tip:" not in output, launcher

    from twm.analyze import AnalyzeOptions, analyze_sweep

    monkeypatch.delenv("WANDB_MODE")  # the suite disables W&B; analyse offline like a user without a login
    monkeypatch.setenv("HOME", str(tmp_path))
    import wandb

    wandb.init(mode="disabled").finish()  # a disabled run earlier in the process must not decide the mode
    report = analyze_sweep(tmp_path / "ensemble", AnalyzeOptions(length_horizon=20, length_batches=1))
    assert report["counts"]["analysed"] == 4 and not report["errors"]
    for job in range(4):
        a, b = (offline_runs(tmp_path / launcher / str(job)) for launcher in ("basic", "ensemble"))
        assert len(a) == 1 and len(b) == 3  # basic: one process; ensemble: crash, relaunch, analysis
        assert len({r["id"] for r in b}) == 1, "one W&B run per job across the crash and the analysis"
        first, again, analysis = b
        spec = RunFolder(tmp_path / "ensemble" / str(job)).spec()
        for run in (a[0], first):
            assert run["group"] == group_name(spec) and run["name"] == f"{group_name(spec)}-seed{spec.seed}"
            assert run["job_type"] == "train" and run["tags"] == ["paper", "wandb", "smoke"]
            assert run["config"]["model.hidden_size"] == 16 and run["config"]["optimizer.lr"] == 0.004
            assert run["config"]["spec"]["optim"]["lr"] == 0.004 and run["config"]["seed"] == spec.seed
        assert _without_paths(a[0]["config"]) == _without_paths(first["config"])
        assert (a[0]["group"], a[0]["name"], a[0]["tags"]) == (first["group"], first["name"], first["tags"])
        steps = [row["trainer/global_step"] for run in b for row in run["history"] if "train/loss" in row]
        assert sorted(steps) == list(range(40)), "every step once: rows after the step-20 checkpoint are not kept"
        assert [row["trainer/global_step"] for row in first["history"] if "train/loss" in row] == list(range(20))
        sa, sb = a[0]["summary"], again["summary"]
        for key in ("status", "steps", "seed", "l2", "lr", "threshold", "final_horizon", "step_reached_max_horizon"):
            assert sa[key] == sb[key], (job, key)
        assert sa["status"] == "completed" and sa["test_accuracy"] == pytest.approx(sb["test_accuracy"], abs=2e-3)
        assert sa["train_loss"] == pytest.approx(sb["train_loss"], abs=1e-5)
        assert (sa["engine"], sb["engine"]) == ("lightning", "batched")
        fa, fb = (RunFolder(tmp_path / launcher / str(job)) for launcher in ("basic", "ensemble"))
        assert fa.spec().identity() == fb.spec().identity()
        assert first["summary"]["status"] == "failed" and sa["tags"] == sb["tags"] == ["paper", "wandb"]
        assert analysis["summary"]["analysis/n_theory"] == 16 and "analysis/spectral_error" in analysis["summary"]
        assert "analysis/support_match" in analysis["summary"] and "analysis/first_below" in analysis["summary"]
        assert analysis["summary"]["analysis/decay_rate"] is not None
        assert {"analysis/spectrum", "analysis/weights_in_basis", "analysis/length_generalisation"} <= set(
            analysis["images"])
