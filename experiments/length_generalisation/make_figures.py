"""Length generalisation of the Table-1 grid's trained models, from the committed analyses (no training).

    python experiments/length_generalisation/make_figures.py

Reads ``experiments/table1/runs/*/analysis.json`` (accuracy per output step to 1 000, 4 batches of 64, the run's
test seed) and writes ``length_generalisation.png`` (one panel per task: the mean curve at hidden 128 and 64, L2 = 0),
``results.csv`` (one row per run: accuracy at output steps 100, 200, 500, 1000 and the first step below 0.94) and
``results.md`` (means per task × hidden × L2).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from twm.analysis import plot_length_generalisation

HERE = Path(__file__).resolve().parent
RUNS = HERE.parent / "table1" / "runs"
STEPS = (100, 200, 500, 1000)


def main() -> None:
    rows, curves = [], defaultdict(list)
    for path in sorted((p for p in RUNS.glob("*/analysis.json") if p.parent.name.isdigit()),
                       key=lambda p: int(p.parent.name)):  # the 48-run grid (runs/<part>_i: its later columns)
        a = json.loads(path.read_text())
        run, lg = a["run"], a["length_generalisation"]
        acc = np.asarray(lg["accuracy"])
        rows.append({"run": path.parent.name, "task": run["task"], "hidden": run["hidden_size"], "l2": run["l2"],
                     "seed": run["seed"], **{f"acc_{k}": round(float(acc[k - 1]), 4) for k in STEPS},
                     "mean_acc_1000": round(float(acc.mean()), 4), "first_below_0.94": lg["first_below"]})
        if run["l2"] == 0.0:
            curves[(run["task"], run["hidden_size"])].append(acc)
    with (HERE / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    groups = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["hidden"], r["l2"])].append(r)
    lines = ["| task | hidden | L2 | runs | " + " | ".join(f"acc @ {k}" for k in STEPS) + " | first < 0.94 (per run) |",
             "|---|---|---|---|" + "---|" * len(STEPS) + "---|"]
    for (task, hidden, l2), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2])):
        accs = " | ".join(f"{np.mean([r[f'acc_{k}'] for r in rs]):.3f}" for k in STEPS)
        firsts = ", ".join(str(r["first_below_0.94"]) for r in rs)
        lines.append(f"| {task} | {hidden} | {l2:g} | {len(rs)} | {accs} | {firsts} |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    by_task: dict[str, dict] = defaultdict(dict)  # one panel per task, one line per hidden size
    for (task, hidden), c in sorted(curves.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        by_task[task][f"hidden {hidden} (mean of {len(c)})"] = np.mean(c, axis=0)
    plot_length_generalisation(dict(by_task), path=HERE / "length_generalisation.png",
                               title="accuracy per output step, L2 = 0, trained to H = 100 (CPU Table-1 grid)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
