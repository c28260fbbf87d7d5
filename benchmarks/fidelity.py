"""Does a ``matmul`` variant of the batched engine change the science? Train a held-out set of reduced Table-1 cells
with the default and with each variant, analyse every run, and compare the cells.

The held-out set is drawn from a fixed random stream (:func:`held_out`), not chosen by looking at results: hidden 64,
repeat copy and one of the three other Table-1 tasks, L2 0 and 0.1, two seeds of 1..20, one curriculum threshold of
{0.9, 0.98}; ``--steps`` steps each (the docs/science.md §3 recipe otherwise). Each variant trains the 8 runs as one
ensemble through the pipeline (``train_packed``, run folders, the CPU test at H = 200), then ``twm.analyze``
(spectral comparison at |λ| > 0.9) and ``twm.report.aggregate`` (docs/science.md §4: per seed the minimum defined
error and maximum accuracy over thresholds, mean over seeds).

A variant passes on a cell when, against the default: the same outcome (an error, or "—": no seed count-matched),
spectral errors within a factor 2 where both are defined, mean test accuracies within 0.02. Two float32 runs that
differ only in rounding drift apart over thousands of steps too, so a failing cell is read beside the per-run lines
(eigenvalue counts, accuracies) that follow the table.

    python benchmarks/fidelity.py                          # default, onednn, bf16; 8 000 steps; ~15 min on 2 cores
    python benchmarks/fidelity.py --variants bf16 --steps 3000 --out outputs/fidelity

Relaunching with the same ``--out`` resumes: completed runs are not trained again, analyses are reused. The last
line is JSON: ``{"held_out", "steps", "threads", "seconds", "cells", "pass"}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from pathlib import Path

import torch

from twm.analyze import AnalyzeOptions
from twm.report import aggregate, collect_rows, compare_cells, format_error
from twm.train.batched import MATMULS
from twm.train.config import compose_train_config
from twm.train.pipeline import prepare, train_packed

STREAM = 20261202  # the held-out draw
HIDDEN = 64
L2S = (0.0, 0.1)


def held_out() -> dict:
    """The cells: repeat copy plus one other Table-1 task, two seeds, one threshold, drawn once from ``STREAM``."""
    rng = random.Random(STREAM)
    return {"tasks": ["repeat_copy", rng.choice(["staggered_copy", "signed_shuffle_48", "signed_shuffle_70"])],
            "seeds": sorted(rng.sample(range(1, 21), 2)), "threshold": rng.choice([0.9, 0.98]),
            "hidden": HIDDEN, "l2": list(L2S)}


def train_variant(folder: Path, matmul: str, cells: dict, steps: int) -> float:
    """Train every run of ``cells`` with ``matmul`` into ``folder/<job>``; returns the wall seconds."""
    jobs = []
    overrides = [(task, l2, seed) for task in cells["tasks"] for l2 in cells["l2"] for seed in cells["seeds"]]
    for j, (task, l2, seed) in enumerate(overrides):
        cfg = compose_train_config([f"task={task}", f"model.hidden_size={cells['hidden']}", f"optimizer.l2={l2}",
                                    f"curriculum.threshold={cells['threshold']}", f"seed={seed}",
                                    f"trainer.max_steps={steps}", "callbacks.progress.every_n_steps=1000000"],
                                   folder / str(j))
        jobs.append(prepare(cfg))
    t0 = time.perf_counter()
    train_packed(jobs, len(jobs), "cpu", matmul=matmul, progress_every=500)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=[m for m in MATMULS if m != "default"],
                        choices=[m for m in MATMULS if m != "default"])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cells = held_out()
    print(f"held-out cells: {json.dumps(cells)}; {args.steps} steps; {args.threads} threads", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        seconds, table = {}, {}
        for matmul in ["default", *args.variants]:
            seconds[matmul] = round(train_variant(root / matmul, matmul, cells, args.steps), 1)
            rows = collect_rows(root / matmul, AnalyzeOptions(plots=False))
            table[matmul] = (rows, {(c["task"], c["l2"]): c for c in aggregate(rows)})
            print(f"{matmul}: trained in {seconds[matmul]} s", flush=True)

    base_rows, base = table["default"]
    result = []
    print(f"\n{'task':<18} {'L2':>4} {'default':>16} " + " ".join(f"{v:>28}" for v in args.variants))
    for key, b in base.items():
        line = f"{key[0]:<18} {key[1]:>4} {b['cell']:>16} "
        entry = {"task": key[0], "l2": key[1], "default": {"error": b["error"], "accuracy": b["accuracy"]}}
        for v in args.variants:
            c = table[v][1][key]
            cmp = compare_cells(b, c)
            entry[v] = {"error": c["error"], "accuracy": c["accuracy"], **cmp}
            ratio = "" if cmp["error_ratio"] is None else f" x{cmp['error_ratio']:.2f}"
            line += f"{c['cell'] + ratio + (' ok' if cmp['pass'] else ' FAIL'):>28} "
        result.append(entry)
        print(line)
    print("\nper run: task L2 seed | default: accuracy, learned/theory eigenvalues, error | each variant")
    for i, r in enumerate(base_rows):
        parts = [f"{r['task']} {r['l2']} {r['seed']}"]
        for v, (rows, _) in [("default", table["default"])] + [(v, table[v]) for v in args.variants]:
            x = rows[i]
            parts.append(f"{v}: {x['test_accuracy']:.4f}, {x['n_learned']}/{x['n_theory']}, "
                         f"{format_error(x['spectral_error'] if x['defined'] else None)}")
        print(" | ".join(parts))
    verdict = {v: all(e[v]["pass"] for e in result) for v in args.variants}
    print("\n" + "; ".join(f"{v}: {'PASS' if ok else 'FAIL'} on {sum(e[v]['pass'] for e in result)}/{len(result)} "
                           f"cells, trained in {seconds[v]} s against {seconds['default']} s" for v, ok in
                           verdict.items()))
    print(json.dumps({"held_out": cells, "steps": args.steps, "threads": args.threads, "seconds": seconds,
                      "cells": result, "pass": verdict}))


if __name__ == "__main__":
    main()
