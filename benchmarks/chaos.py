"""Chaos check of the run folders (not a unit test): kill a tiny sweep at random instants, launch it twice at once,
damage its files, relaunch, and compare every job with an uninterrupted reference.

    python benchmarks/chaos.py [--kills 8] [--launcher basic|ensemble|both] [--seed 0]

The sweep is ``sweep=smoke`` (4 jobs, s = d = 4, hidden 16) at 1 200 steps, checkpoints every 50. Scenarios:

- ``kill``: launch, wait a random 3–14 s, send kill -9 or SIGTERM (alternating), relaunch until it completes (a
  second kill lands in half of the relaunches);
- ``concurrent``: two launches of the same sweep started together;
- ``damage``: a completed sweep whose job 0 gets a truncated checkpoint (must be reported, left unchanged), then a
  sweep killed while job 1 trains: job 1 gets a truncated latest checkpoint and a torn metrics row, job 2 a
  garbage summary, before the relaunch.

Per job it counts: **lost** (no completed summary at the end), **duplicated** (trained by two processes: metric rows
of one step twice), **from scratch** (had a good checkpoint when killed, but the relaunch did not resume from it or
later), **differing** (final weights not bitwise equal to the reference, or a summary field that differs), and the
number of **duplicated metric rows**. Prints one line per scenario and a JSON total as the last line; all figures
should be 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
JOBS = 4
STEPS = 1200
ARGS = ["sweep=smoke", f"trainer.max_steps={STEPS}", "callbacks.checkpoint.every_n_train_steps=50",
        "callbacks.progress.every_n_steps=50"]
KEYS = ("status", "steps", "final_horizon", "step_reached_max_horizon", "train_loss", "train_accuracy",
        "test_accuracy")


def launch(sweep: Path, launcher: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "twm.train", *ARGS, f"launcher={launcher}",
                             f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def checkpoint_steps(sweep: Path) -> dict[int, int]:
    from twm.run.folder import RunFolder

    out = {}
    for job in range(JOBS):
        try:
            step = RunFolder(sweep / str(job)).checkpoint_step()
        except Exception:  # noqa: BLE001  (a file being written right now)
            step = None
        out[job] = step or 0
    return out


def interrupted_steps(sweep: Path) -> dict[int, int]:
    """The checkpoint step of every job that was not completed (0 for the others): what a relaunch must resume."""
    from twm.run.folder import RunFolder

    steps = checkpoint_steps(sweep)
    return {job: 0 if RunFolder(sweep / str(job)).is_completed() else step for job, step in steps.items()}


def rows(run: Path) -> list[int]:
    if not (run / "metrics.csv").exists():
        return []
    with open(run / "metrics.csv", newline="") as fh:
        return [int(float(r["step"])) for r in csv.DictReader(fh) if r.get("step")]


def compare(sweep: Path, reference: Path, had_checkpoint: dict[int, int] | None = None) -> dict:
    from twm.run.folder import Damaged, RunFolder

    figures = {"lost": 0, "duplicated": 0, "from_scratch": 0, "differing": 0, "duplicated_rows": 0}
    for job in range(JOBS):
        run, ref = RunFolder(sweep / str(job)), RunFolder(reference / str(job))
        try:
            summary = run.read_summary() or {}
        except Damaged:
            summary = {}
        if summary.get("status") != "completed":
            figures["lost"] += 1
            continue
        steps = rows(run.path)
        extra = len(steps) - len(set(steps))
        figures["duplicated_rows"] += extra
        figures["duplicated"] += int(extra > 0)
        if had_checkpoint and had_checkpoint.get(job) and max(summary.get("resumed_at") or [0]) < had_checkpoint[job]:
            figures["from_scratch"] += 1
        wa, wb = run.load_model()[0].state_dict(), ref.load_model()[0].state_dict()
        same = all(torch.equal(wa[k], wb[k]) for k in wa) and sorted(set(steps)) == list(range(STEPS))
        expected = ref.read_summary()
        figures["differing"] += int(not same or any(summary.get(k) != expected.get(k) for k in KEYS))
    return figures


def run_to_completion(sweep: Path, launcher: str, rng: random.Random, kill_again: bool) -> None:
    for attempt in range(6):
        proc = launch(sweep, launcher)
        if kill_again and attempt == 0:
            time.sleep(rng.uniform(1.0, 4.0))
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=600)
        if proc.returncode == 0:
            return
    raise RuntimeError(f"{sweep} did not complete after 6 launches")


def add(total: dict, figures: dict) -> None:
    for k, v in figures.items():
        total[k] = total.get(k, 0) + v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--launcher", choices=["basic", "ensemble", "both"], default="both")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    launchers = ["basic", "ensemble"] if args.launcher == "both" else [args.launcher]
    total: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for launcher in launchers:
            reference = tmp / f"reference-{launcher}"
            assert launch(reference, launcher).wait(timeout=600) == 0
            for trial in range(args.kills):
                sweep = tmp / f"kill-{launcher}-{trial}"
                proc = launch(sweep, launcher)
                time.sleep(rng.uniform(3.0, 14.0))
                how = signal.SIGKILL if trial % 2 == 0 else signal.SIGTERM
                proc.send_signal(how)
                proc.wait(timeout=120)
                before = interrupted_steps(sweep)
                run_to_completion(sweep, launcher, rng, kill_again=rng.random() < 0.5)
                figures = compare(sweep, reference, had_checkpoint=before)
                add(total, figures)
                print(f"{launcher} kill {trial} ({signal.Signals(how).name}, unfinished jobs at {before}): {figures}",
                      flush=True)
            sweep = tmp / f"concurrent-{launcher}"
            procs = [launch(sweep, launcher), launch(sweep, launcher)]
            codes = [p.wait(timeout=600) for p in procs]
            figures = compare(sweep, reference)
            add(total, figures)
            print(f"{launcher} two launches at once (exit codes {codes}): {figures}", flush=True)

            damaged = tmp / f"damage-{launcher}"
            shutil.copytree(reference, damaged)
            ckpt = damaged / "0" / "checkpoints" / "last.ckpt"
            summary_before = (damaged / "0" / "summary.json").read_text()
            ckpt.write_bytes(ckpt.read_bytes()[:500])
            status = subprocess.run([sys.executable, "-m", "twm.sweep", "status", f"sweep_dir={damaged}"], cwd=ROOT,
                                    env=ENV, capture_output=True, text=True)
            relaunch = launch(damaged, launcher).wait(timeout=600)
            reported = status.returncode == 1 and "damaged: job 0" in status.stdout
            unchanged = (damaged / "0" / "summary.json").read_text() == summary_before
            figures = {"damaged_not_reported": int(not reported), "completed_result_changed": int(not unchanged),
                       "relaunch_failed": int(relaunch != 0)}
            add(total, figures)
            print(f"{launcher} damaged completed checkpoint: {figures}", flush=True)

            sweep = tmp / f"damage-interrupted-{launcher}"
            proc = launch(sweep, launcher)
            while checkpoint_steps(sweep)[1] < 150 and proc.poll() is None:
                time.sleep(0.2)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            last = sweep / "1" / "checkpoints" / "last.ckpt"
            last.write_bytes(last.read_bytes()[:-100])
            with open(sweep / "1" / "metrics.csv", "a") as fh:
                fh.write("4.0,0,9")
            (sweep / "2").mkdir(exist_ok=True)
            (sweep / "2" / "summary.json").write_text("{garbage")
            run_to_completion(sweep, launcher, rng, kill_again=False)
            figures = compare(sweep, reference)
            add(total, figures)
            print(f"{launcher} truncated latest checkpoint, torn metrics row, garbage summary: {figures}",
                  flush=True)
    print(json.dumps(total))


if __name__ == "__main__":
    main()
