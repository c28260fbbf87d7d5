"""Train one hidden size of the Table-1 grid as a single batched ensemble on a GPU, then analyse every run there.

    python experiments/table1/gpu_grid.py --hidden 128 --out DIR [--seeds 20] [--deadline 400]

Grid per hidden size: the four Table-1 tasks x L2 {0, 1e-3, 0.1} x curriculum threshold {0.9, 0.98} x seeds
1..N (480 runs at N = 20), 20 000 steps each, the SPEC §3 recipe; each member trains exactly what
``python -m twm.train`` trains for the same config (tests/test_ensemble.py). Writes ``DIR/h<N>/<job>/`` run folders
(metrics every 100 steps) and ``DIR/results_h<N>.csv`` with one row per run (the columns of ``table1.csv``).
``--deadline`` (seconds) stops training cleanly when time runs out; rows then carry the steps reached.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from itertools import product
from pathlib import Path

import numpy as np
import torch

from twm.analysis import spectral_comparison
from twm.model import ElmanRNN
from twm.tasks import TASK_NAMES, get_task
from twm.train.artifacts import read_summary
from twm.train.curriculum import Ladder
from twm.train.ensemble import Member, train_ensemble

L2S = (0.0, 0.001, 0.1)
THRESHOLDS = (0.9, 0.98)


class Deadline(Exception):
    pass


def members_for(hidden: int, seeds: int, out: Path, steps: int) -> list[Member]:
    members = []
    for job, (name, l2, threshold, seed) in enumerate(product(TASK_NAMES, L2S, THRESHOLDS, range(1, seeds + 1))):
        task = get_task(name)
        members.append(
            Member(
                F=task.F,
                s=8,
                hidden_size=hidden,
                seed=seed,
                l2=l2,
                curriculum=Ladder(threshold=threshold),
                max_steps=steps,
                run_dir=str(out / f"h{hidden}" / str(job)),
                task_name=name,
                task_id=task.task_id,
            )
        )
    return members


def analyse(member: Member) -> dict:
    ckpt = torch.load(Path(member.run_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    model = ElmanRNN(8, member.hidden_size, 8)
    model.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
    comparison = spectral_comparison(model.W_hh.double().numpy(), member.F, member.s)
    summary = read_summary(member.run_dir) or {}
    task = get_task(member.task_name)
    return {
        "task": member.task_name,
        "task_id": ",".join(map(str, member.task_id)),
        "label_table": task.labels["table"],
        "label_demo": task.labels["demo"],
        "hidden": member.hidden_size,
        "l2": member.l2,
        "threshold": member.curriculum.threshold,
        "seed": member.seed,
        "test_accuracy": summary.get("test_accuracy"),
        "spectral_error": comparison.error,
        "spectral_error_optimal": comparison.error_optimal,
        "n_learned": comparison.n_learned,
        "n_theory": comparison.n_theory,
        "defined": comparison.defined,
        "final_horizon": summary.get("final_horizon"),
        "step_reached_max_horizon": summary.get("step_reached_max_horizon"),
        "steps": int(ckpt["global_step"]),
        "status": summary.get("status"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--deadline", type=float, default=float("inf"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log = logging.getLogger("gpu_grid")
    members = members_for(args.hidden, args.seeds, args.out, args.steps)
    start = time.perf_counter()

    def progress(step, max_steps, info):
        elapsed = time.perf_counter() - start
        if step % 1000 == 0:
            log.info(
                "h%d: step %d/%d, %.1f s, %.1f ensemble steps/s", args.hidden, step, max_steps, elapsed, step / elapsed
            )
        if elapsed > args.deadline:
            raise Deadline(f"deadline {args.deadline:.0f} s reached at step {step}")

    status = "completed"
    try:
        train_ensemble(
            members, device=args.device, checkpoint_every=1000, log_every=100, progress=progress, progress_every=100
        )
    except Deadline as err:
        status = str(err)
        log.info("%s", err)
    wall = time.perf_counter() - start
    rows = [analyse(m) for m in members]
    path = args.out / f"results_h{args.hidden}.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta = {
        "hidden": args.hidden,
        "runs": len(members),
        "steps": args.steps,
        "train_wall_seconds": round(wall, 1),
        "status": status,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "model_steps_per_s": round(sum(r["steps"] for r in rows) / wall, 1),
        "mean_test_accuracy": float(np.mean([r["test_accuracy"] or 0 for r in rows])),
    }
    (args.out / f"meta_h{args.hidden}.json").write_text(json.dumps(meta, indent=2))
    log.info("%s", meta)


if __name__ == "__main__":
    main()
