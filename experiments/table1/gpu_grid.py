"""Train one hidden size of the Table-1 grid as batched ensembles on a GPU, then write its Table-1 report.

    python experiments/table1/gpu_grid.py --hidden 128 --out DIR [--seeds 20] [--deadline 400] [--analyse]

Grid per hidden size: the four Table-1 tasks x L2 {0, 1e-3, 0.1} x curriculum threshold {0.9, 0.98} x seeds
1..N (480 runs at N = 20), 20 000 steps each, the recipe of docs/science.md §3. Every job is composed from
``conf/train.yaml`` exactly as ``python -m twm.train`` composes it (``twm.train.pipeline.prepare``), so
``DIR/h<N>/<job>/`` are ordinary run folders (config, checkpoint, metrics, summary) that ``twm.analyze`` and
``twm.report`` read; the packs train through ``twm.train.pipeline.train_packed``. ``--deadline`` (seconds) stops
training cleanly when time runs out: the folders then hold the last checkpoint and a relaunch resumes them.
``--analyse`` then runs ``twm.report`` on ``DIR/h<N>`` (analysing every completed run).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from itertools import product
from pathlib import Path

import torch

from twm.run.folder import RunFolder
from twm.tasks import TASK_NAMES
from twm.train.config import compose_train_config
from twm.train.pipeline import prepare, train_packed

L2S = (0.0, 0.001, 0.1)
THRESHOLDS = (0.9, 0.98)


class Deadline(Exception):
    pass


def jobs_for(hidden: int, seeds: int, out: Path, steps: int, device: str) -> list:
    """The grid's jobs, in the order of ``conf/experiment/table1_cpu.yaml``'s axes."""
    jobs = []
    for job, (name, l2, threshold, seed) in enumerate(product(TASK_NAMES, L2S, THRESHOLDS, range(1, seeds + 1))):
        overrides = [f"task={name}", f"model.hidden_size={hidden}", f"optimizer.l2={l2}",
                     f"curriculum.threshold={threshold}", f"seed={seed}", f"trainer.max_steps={steps}",
                     f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
                     "callbacks.checkpoint.every_n_train_steps=1000", "callbacks.progress.every_n_steps=1000000"]
        jobs.append(prepare(compose_train_config(overrides, out / f"h{hidden}" / str(job))))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--deadline", type=float, default=float("inf"))
    parser.add_argument("--max-members", type=int, default=512)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--analyse", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log = logging.getLogger("gpu_grid")
    jobs = jobs_for(args.hidden, args.seeds, args.out, args.steps, args.device)
    start = time.perf_counter()
    status = "completed"

    def deadline(step, max_steps, info):
        if time.perf_counter() - start > args.deadline:
            raise Deadline(f"deadline {args.deadline:.0f} s reached at step {step}")

    try:
        train_packed(jobs, args.max_members, args.device, on_progress=deadline, progress_every=100)
    except Deadline as err:
        status = str(err)
        log.info("%s", err)
    wall = time.perf_counter() - start
    steps = [RunFolder(job.folder.path).checkpoint_step() or 0 for job in jobs]
    meta = {
        "hidden": args.hidden, "runs": len(jobs), "steps": args.steps, "train_wall_seconds": round(wall, 1),
        "status": status, "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "model_steps_per_s": round(sum(steps) / wall, 1),
    }
    (args.out / f"meta_h{args.hidden}.json").write_text(json.dumps(meta, indent=2))
    log.info("%s", meta)
    if args.analyse:
        from twm.report import write_report

        write_report(args.out / f"h{args.hidden}", workers=1)


if __name__ == "__main__":
    main()
