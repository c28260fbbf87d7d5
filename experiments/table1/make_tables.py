"""Regenerate this experiment's tables from the committed artefacts (no training, no analysis).

    python experiments/table1/make_tables.py [--collect outputs/sweeps/table1_cpu [outputs/sweeps/table1_cpu_h32 ...]]

``--collect`` first copies the small per-run files (``summary.json``, ``analysis.json``, ``.hydra/overrides.yaml``)
of finished, analysed sweeps into ``runs/``: job i of ``table1_cpu`` as ``runs/i``, job i of another sweep
``table1_cpu_<part>`` (complete_grid.sh, more_seeds.sh) as ``runs/<part>_i``, except the sweeps of a variant check
(``table1_cpu_bf16``, ``table1_cpu_seeds_h64``, ``table1_cpu_seeds_h128``: ``bf16_check/runs/<part>_i``). Then,
from ``runs/``: ``results.csv`` (one row per run, with its ``matmul`` variant), ``table1.md`` and ``table1.json``
(docs/science.md §4 aggregation, beside the published table), ``gradient_decay.json`` and ``gradient_decay.png``
(Fig. 5's claim over every run whose analysis has the post-hoc gradient-decay section: the decay rate r of the final
network against max|λ(W_hh)|); from ``gpu/results_h*.csv``: ``gpu/table1.md`` (the H200 grid, see README); from
``bf16_check/runs/`` and ``runs/``: ``bf16_check/fidelity.json`` (each bf16 run beside its default twin, and their
cells compared).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

from twm.analysis import decay_against_radius, plot_decay_against_radius
from twm.analyze import gradient_decay_points
from twm.report import CSV_COLUMNS, aggregate, compare_cells, format_table, run_row
from twm.run.folder import RunFolder
from twm.sweep import run_dirs

HERE = Path(__file__).resolve().parent


# Sweeps trained with a matmul variant as twins (same configs) of default-variant runs in runs/: collected beside
# it as <variant>_check/runs/<part>_<job>, not into Table 1 (README: the bf16 variant fails the spectral criterion).
CHECKS = {"bf16": "bf16", "seeds_h64": "bf16", "seeds_h128": "bf16"}


def collect(sweep_dir: Path) -> None:
    part = sweep_dir.name.removeprefix("table1_cpu").lstrip("_")
    runs = HERE / f"{CHECKS[part]}_check" / "runs" if part in CHECKS else HERE / "runs"
    for job in run_dirs(sweep_dir):
        RunFolder(job).export(runs / (f"{part}_{job.name}" if part else job.name))


def rows_of(folder: Path) -> list[dict]:
    """:func:`twm.report.run_row` of every run under ``folder``, with the batched engine's ``matmul`` variant."""
    rows = []
    for run in sorted((p for p in folder.iterdir() if p.is_dir()), key=_run_order):
        summary_path, analysis_path = run / "summary.json", run / "analysis.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        analysis = json.loads(analysis_path.read_text()) if analysis_path.exists() else None
        row = run_row(run, summary.get("status", "unfinished"), analysis, "ok" if analysis else "missing")
        rows.append({**row, "matmul": summary.get("matmul", "default")})
    return rows


def _run_order(run: Path) -> tuple:
    """``runs/i`` (the 48-run grid) first, then ``runs/<part>_i`` by part and job."""
    part, _, job = run.name.rpartition("_")
    return part, int(job)


def cpu_tables(rows: list[dict]) -> list[dict]:
    with (HERE / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*CSV_COLUMNS, "matmul"])
        writer.writeheader()
        writer.writerows(rows)
    cells = aggregate(rows)
    parts = sorted({r["run"].rpartition("_")[0] for r in rows} - {""})
    sweeps = ", ".join(["outputs/sweeps/table1_cpu", *(f"table1_cpu_{p}" for p in parts)])
    meta = {"sweep_dir": f"{sweeps} (runs/ here)",
            "counts": {"completed": sum(r["status"] == "completed" for r in rows)}}
    (HERE / "table1.md").write_text(format_table(cells, meta))
    (HERE / "table1.json").write_text(json.dumps(cells, indent=2, default=str) + "\n")
    return cells


def gradient_decay(rate_tol: float = 0.05) -> dict | None:
    """r against max|λ(W_hh)| per run (docs/science.md §6), over all runs and split by hidden size and by whether
    the run learned its task (test accuracy above 0.6) or stayed at chance."""
    points = gradient_decay_points(sorted((p for p in (HERE / "runs").iterdir() if p.is_dir()), key=_run_order))
    if not points:
        return None

    def summary(rows):
        return decay_against_radius([p["max_abs_eig"] for p in rows], [p["decay_rate"] for p in rows], rate_tol)

    result = {"n_runs": len(points), "rate_tol": rate_tol, "summary": summary(points),
              "by_hidden": {str(h): summary([p for p in points if p["hidden_size"] == h])
                            for h in sorted({p["hidden_size"] for p in points})},
              "learned": summary([p for p in points if p["test_accuracy"] > 0.6]),
              "at_chance": summary([p for p in points if p["test_accuracy"] <= 0.6]), "points": points}
    (HERE / "gradient_decay.json").write_text(json.dumps(result, indent=2) + "\n")
    s = result["summary"]
    plot_decay_against_radius([p["max_abs_eig"] for p in points], [p["decay_rate"] for p in points],
                              [p["task"] for p in points], HERE / "gradient_decay.png",
                              rate_tol, title=f"Table-1 runs, final networks: {s['n']} runs; |r| < {rate_tol:g} in "
                                              f"{s['above_1']['n_flat']}/{s['above_1']['n']} with max|λ| > 1, "
                                              f"{s['at_most_1']['n_flat']}/{s['at_most_1']['n']} with max|λ| ≤ 1")
    return result


def variant_check(name: str, folder: Path, rows: list[dict]) -> dict | None:
    """A matmul variant against the default where the spectral error is defined: each run of the variant (in
    ``runs/`` or ``folder/runs``) beside its twin of the default variant (the same task, hidden size, L2, threshold
    and seed, in either folder), and the
    cells of both (``twm.report.aggregate``) compared by :func:`twm.report.compare_cells`, benchmarks/fidelity.py's
    criteria. ``rows``: those of ``runs/``."""
    if not (folder / "runs").exists():
        return None
    key = ("task_id", "hidden", "l2", "threshold", "seed")
    rows = rows + rows_of(folder / "runs")
    default = {tuple(r[k] for k in key): r for r in rows if r["matmul"] == "default"}
    pairs = [(default[tuple(r[k] for k in key)], r) for r in rows
             if r["matmul"] == name and tuple(r[k] for k in key) in default]
    runs = [{**{k: b[k] for k in ("task", *key)}, "run_default": a["run"], "run_variant": b["run"],
             **{f"{f}_{side}": r[f] for f in ("test_accuracy", "spectral_error", "n_learned", "defined")
                for side, r in (("default", a), ("variant", b))}} for a, b in pairs]
    cells = [{"task": base["task"], "hidden": base["hidden"], "l2": base["l2"], "default": base["cell"],
              "variant": other["cell"], **compare_cells(base, other)}
             for base, other in zip(aggregate([a for a, _ in pairs]), aggregate([b for _, b in pairs]))]
    both = [(a, b) for a, b in pairs if a["defined"] and b["defined"]]
    ratios = sorted(b["spectral_error"] / a["spectral_error"] for a, b in both)
    result = {"variant": name, "n_pairs": len(pairs), "pass": f"{sum(c['pass'] for c in cells)}/{len(cells)}",
              "pairs": {"both_count_matched": len(both), "variant_error_larger": sum(r > 1 for r in ratios),
                        "error_ratio_median": statistics.median(ratios) if ratios else None,
                        "error_ratio_range": [ratios[0], ratios[-1]] if ratios else None,
                        "count_match_differs": sum(bool(a["defined"]) != bool(b["defined"]) for a, b in pairs),
                        "accuracy_diff_max": max(abs(a["test_accuracy"] - b["test_accuracy"]) for a, b in pairs)},
              "cells": cells, "runs": runs}
    (folder / "fidelity.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def gpu_tables() -> list[dict] | None:
    paths = sorted((HERE / "gpu").glob("results_h*.csv"))
    if not paths:
        return None
    rows = []
    for path in paths:
        for row in csv.DictReader(path.open()):
            row["status"] = "completed"  # stopped at the session's deadline: see gpu/README.md (steps column)
            rows.append(row)
    cells = aggregate(rows)
    steps = sorted({int(r["steps"]) for r in rows})
    meta = {"sweep_dir": f"H200 grid, {len(rows)} runs stopped after {steps} steps (see README)",
            "counts": {"runs": len(rows)}}
    (HERE / "gpu" / "table1.md").write_text(format_table(cells, meta))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collect", type=Path, nargs="+", help="finished, analysed sweep folders to copy runs/ from")
    args = parser.parse_args()
    for sweep_dir in args.collect or ():
        collect(sweep_dir)
    rows = rows_of(HERE / "runs") if (HERE / "runs").exists() else None
    for name, cells in (("CPU", cpu_tables(rows) if rows is not None else None), ("GPU", gpu_tables())):
        if cells:
            print(f"{name}: {len(cells)} cells")
            for c in cells:
                print(f"  {c['label_table']:>3} h{c['hidden']:<4} l2={c['l2']:<6} {c['cell']:>16}  "
                      f"count-matched {c['n_defined']}/{c['n_runs']}  published {(c['published'] or {}).get('cell')}")
    for name in sorted(set(CHECKS.values())):
        check = variant_check(name, HERE / f"{name}_check", rows or [])
        if check:
            print(f"{name} against default: {check['pass']} cells pass ({check['n_pairs']} run pairs: "
                  f"{json.dumps(check['pairs'])})")
            for c in check["cells"]:
                print(f"  {c['task']:>17} h{c['hidden']} l2={c['l2']:<6} {c['default']:>14} | {c['variant']:<14} "
                      f"ratio {c['error_ratio'] or float('nan'):.2f}  acc diff {c['accuracy_diff']:.3f}  "
                      f"{'pass' if c['pass'] else 'FAIL'}")
    decay = gradient_decay() if (HERE / "runs").exists() else None
    if decay:
        print(json.dumps({k: decay[k] for k in ("n_runs", "summary", "by_hidden", "learned", "at_chance")}, indent=1))


if __name__ == "__main__":
    main()
