"""``python -m twm.report sweep_dir=...``: Table 1 of the paper from a sweep folder (docs/science.md §4, §4.1), the
sweep's ``results.csv`` (:mod:`twm.results`), and self-contained HTML pages of a sweep or of one run.

    python -m twm.report sweep_dir=outputs/sweeps/table1              # writes table1.{csv,md,json}, results.csv
    python -m twm.report sweep_dir=outputs/sweeps/table1 out_dir=docs/results workers=2
    python -m twm.report sweep_dir=outputs/sweeps/table1 format=html  # ... and report.html
    python -m twm.report run_dir=outputs/sweeps/table1/17             # <run>/report.html (format=md: report.md)

Reads each completed run's ``analysis.json``; completed runs without an up-to-date analysis (none, older than the
checkpoint, or made with another ``threshold``/length options) are analysed on the fly with the options of
``conf/report.yaml`` (``plots: false`` by default, so it is quick), unless ``analyze_missing=false``, in which case
they are listed as not analysed and left out of the cells. Failed and unfinished runs appear in ``table1.csv``
with their status and are left out of the cells (counted in each cell's ``n_failed``/``n_unfinished``).

Outputs (in the sweep folder, or ``out_dir``):

- ``table1.csv``: one row per run folder, columns :data:`CSV_COLUMNS` (``task_id`` as ``"id1,id2,id3"``; empty
  where unknown);
- ``table1.md``: the reproduced table in the paper's layout (rows: tasks keyed by id, with both label maps;
  columns: hidden × L2; cells ``0.0005 (1.00)`` or ``— (0.93)``), the count-matched table, the seed statistics, and the
  cell-by-cell comparison ``reproduced | published`` with docs/science.md §4.1;
- ``table1.json``: the aggregated cells of :func:`aggregate` plus the published values;
- ``results.csv``: one row per job of any sweep, its config, summary and analysis (columns: docs/results.md);
- with ``format=html``, ``report.html`` (:func:`write_sweep_page`): the jobs by state, the tasks and their rules, the
  tables above, the results per job, the sweep's figures (length generalisation per task, the spectral error of
  every run per configuration) and its config, in one file that opens offline (:mod:`twm.pages`).

``run_dir=`` writes one run's page instead (:func:`write_run_report`): its task and rule, training summary, analysis
numbers, figures and config, analysing the run first (with figures) unless its analysis is up to date.

The aggregation (:func:`aggregate`) and formatting (:func:`format_table`) are pure functions of the per-run rows.
"""

from __future__ import annotations

import csv
import logging
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

import hydra
from omegaconf import DictConfig

import twm.help  # noqa: F401  (registers the resolvers of the --help page)
from twm import CONF_DIR

log = logging.getLogger("twm.report")

DIAGONAL = 9241421688590303745  # twm.tasks.DIAGONAL_ID1: block k, dim k
# docs/science.md §4.1, transcribed exactly: task id -> (hidden, L2) -> (error in radians or None for "—",
# test accuracy).
PUBLISHED_TABLE1: dict[tuple[int, int, int], dict[tuple[int, float], tuple[float | None, float]]] = {
    (255, 0, 0): {
        (64, 0.0): (None, 0.97), (64, 0.001): (None, 0.88), (64, 0.1): (None, 0.50),
        (128, 0.0): (0.0005, 1.00), (128, 0.001): (None, 0.93), (128, 0.1): (None, 0.50),
    },
    (DIAGONAL, 0, 0): {
        (64, 0.0): (0.0075, 1.00), (64, 0.001): (None, 0.85), (64, 0.1): (None, 0.50),
        (128, 0.0): (0.0055, 0.98), (128, 0.001): (0.0031, 0.98), (128, 0.1): (None, 0.50),
    },
    (DIAGONAL, 262676, 189): {
        (64, 0.0): (0.0026, 1.00), (64, 0.001): (0.0010, 0.97), (64, 0.1): (None, 0.50),
        (128, 0.0): (0.0031, 0.98), (128, 0.001): (0.0005, 1.00), (128, 0.1): (None, 0.50),
    },
    (DIAGONAL, 38637, 145): {
        (64, 0.0): (0.0112, 0.94), (64, 0.001): (0.0011, 1.00), (64, 0.1): (None, 0.50),
        (128, 0.0): (0.0022, 1.00), (128, 0.001): (0.0006, 1.00), (128, 0.1): (None, 0.50),
    },
}
PUBLISHED_COLUMNS = [(64, 0.0), (64, 0.001), (64, 0.1), (128, 0.0), (128, 0.001), (128, 0.1)]
CSV_COLUMNS = (
    "task", "task_id", "label_table", "label_demo", "hidden", "l2", "threshold", "seed", "test_accuracy",
    "spectral_error", "spectral_error_optimal", "n_learned", "n_theory", "defined", "first_below", "final_horizon",
    "step_reached_max_horizon", "steps", "status", "analysis", "run", "mechanism", "model",
)
DASH = "—"
ELMAN = "elman"


class ReportError(ValueError):
    """A request that cannot be reported; the CLI prints it and exits 2."""


# --------------------------------------------------------------------------------------------------------------
# Keys and formatting
# --------------------------------------------------------------------------------------------------------------
def task_id_str(task_id) -> str:
    """``(id1, id2, id3)`` (tuple, list or already a string) as ``"id1,id2,id3"``."""
    if task_id is None:
        return ""
    if isinstance(task_id, str):
        return ",".join(p.strip() for p in task_id.strip("()[] ").split(","))
    return ",".join(str(int(v)) for v in task_id)


def task_id_tuple(task_id) -> tuple[int, ...]:
    text = task_id_str(task_id)
    return tuple(int(v) for v in text.split(",")) if text else ()


def short_id(task_id) -> str:
    """``(255,0,0)``; the long diagonal id1 as ``…`` as in docs/science.md §4.1: ``(…,38637,145)``."""
    ids = task_id_tuple(task_id)
    return "(" + ",".join("…" if i == 0 and v > 10**6 else str(v) for i, v in enumerate(ids)) + ")"


def labels_for(task_id, s: int = 8, d: int = 8) -> dict[str, str]:
    """Both label maps (``table``: the authors' table notebook, ``demo``: their demo) of a task id at (s, d);
    empty for a task outside Table 1."""
    from twm.tasks import task_by_id

    try:
        return dict(task_by_id(task_id_tuple(task_id), int(s), int(d)).labels)
    except (ValueError, TypeError):
        return {}


def format_error(error: float | None) -> str:
    if error is None:
        return DASH
    return f"{error:.4f}" if error == 0 or error >= 1e-4 else f"{error:.1e}"


def format_cell(error: float | None, accuracy: float | None) -> str:
    """``"0.0005 (1.00)"``, ``"— (0.93)"``; ``"n/a"`` when the cell has no analysed run."""
    if error is None and accuracy is None:
        return "n/a"
    return f"{format_error(error)} ({accuracy:.2f})" if accuracy is not None else f"{format_error(error)} (n/a)"


def _l2(value) -> float:
    return round(float(value), 12)


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _num(value) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def published_cell(task_id, hidden: int, l2: float) -> tuple[float | None, float] | None:
    """The docs/science.md §4.1 value of a cell, or ``None`` when the paper shows no such cell."""
    return PUBLISHED_TABLE1.get(task_id_tuple(task_id), {}).get((int(hidden), _l2(l2)))


# --------------------------------------------------------------------------------------------------------------
# Aggregation (pure)
# --------------------------------------------------------------------------------------------------------------
def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _task_order(task_id: str) -> tuple:
    ids = task_id_tuple(task_id)
    published = list(PUBLISHED_TABLE1)
    return (published.index(ids), ()) if ids in published else (len(published), ids)


def aggregate(rows: list[dict]) -> list[dict]:
    """Table 1's cells from per-run rows (docs/science.md §4), sorted by task (published row order first), hidden, L2.

    A row needs ``task_id``, ``hidden``, ``l2``, ``seed``, ``test_accuracy``, ``spectral_error``,
    ``spectral_error_optimal``, ``defined``; optional ``status`` (default "completed"), ``analysis`` (default
    "ok"), ``threshold``, ``task``, ``label_table``, ``label_demo``. Only completed, analysed rows enter the numbers.

    Per cell (task_id, model, hidden, L2; ``model`` from :func:`model_label`, ``"elman"`` when a row has none):
    per seed, the **minimum** defined error (a threshold with an undefined error
    is ignored; the seed has no error only when none is defined) and the **maximum** test accuracy over the
    curriculum thresholds; ``error``/``accuracy`` = the mean over seeds (the error over the seeds that have one;
    ``None`` when no seed has — the table's "—"). ``error_optimal`` likewise with the optimal matching. Also:
    ``n_defined``/``n_runs`` = ``defined_fraction`` (runs whose eigenvalue counts matched, nonzero), and
    ``error_mean``/``error_sd``, ``error_optimal_mean``/``error_optimal_sd`` over those runs (sample sd, ``None``
    for fewer than 2). Seed statistics, over the per-seed values above: ``accuracy_sd`` (sample sd of the seeds'
    accuracies) and ``error_seed_sd`` (of the errors of the seeds that have one; ``None`` for fewer than 2).
    ``mechanisms``: :func:`cell_mechanisms` (rows with a ``mechanism``, ``n_learned``,
    ``n_theory``). ``cell``: :func:`format_cell`; ``published``: docs/science.md §4.1's value where the paper
    has one.
    """
    groups: dict[tuple, dict] = {}
    for r in rows:
        key = (task_id_str(r["task_id"]), r.get("model") or ELMAN, int(r["hidden"]), _l2(r["l2"]))
        g = groups.setdefault(key, {"runs": [], "n_failed": 0, "n_unfinished": 0, "n_unanalysed": 0, "first": r})
        status = r.get("status") or "completed"
        if status == "failed":
            g["n_failed"] += 1
        elif status != "completed":
            g["n_unfinished"] += 1
        elif (r.get("analysis") or "ok") != "ok":
            g["n_unanalysed"] += 1
        else:
            g["runs"].append(r)
    cells = []
    for (tid, model, hidden, l2), g in sorted(groups.items(), key=lambda kv: (_task_order(kv[0][0]), *_column_order(
            kv[0][1:]))):
        runs = g["runs"]
        by_seed: dict = {}
        for r in runs:
            by_seed.setdefault(r["seed"], []).append(r)
        seed_err, seed_opt, seed_acc = [], [], []
        for seed_runs in by_seed.values():
            defined = [r for r in seed_runs if _bool(r.get("defined")) and _num(r.get("spectral_error")) is not None]
            if defined:
                seed_err.append(min(_num(r["spectral_error"]) for r in defined))
                opts = [_num(r.get("spectral_error_optimal")) for r in defined]
                if all(o is not None for o in opts):
                    seed_opt.append(min(opts))
            accs = [_num(r.get("test_accuracy")) for r in seed_runs if _num(r.get("test_accuracy")) is not None]
            if accs:
                seed_acc.append(max(accs))
        defined_runs = [r for r in runs if _bool(r.get("defined")) and _num(r.get("spectral_error")) is not None]
        err_mean, err_sd = _mean_sd([_num(r["spectral_error"]) for r in defined_runs])
        opt_mean, opt_sd = _mean_sd([_num(r["spectral_error_optimal"]) for r in defined_runs
                                     if _num(r.get("spectral_error_optimal")) is not None])
        error, error_seed_sd = _mean_sd(seed_err)
        accuracy, accuracy_sd = _mean_sd(seed_acc)
        first = g["first"]
        pub = published_cell(tid, hidden, l2) if model == ELMAN else None
        cells.append({
            "task_id": tid,
            "task": first.get("task"),
            "label_table": first.get("label_table") or "",
            "label_demo": first.get("label_demo") or "",
            "model": model,
            "hidden": hidden,
            "l2": l2,
            "n_runs": len(runs),
            "n_seeds": len(by_seed),
            "seeds": sorted(by_seed, key=lambda v: (str(type(v)), v)),
            "thresholds": sorted({_num(r.get("threshold")) for r in runs if _num(r.get("threshold")) is not None}),
            "n_seeds_defined": len(seed_err),
            "error": error,
            "error_optimal": statistics.fmean(seed_opt) if seed_opt else None,
            "accuracy": accuracy,
            "accuracy_sd": accuracy_sd,
            "error_seed_sd": error_seed_sd,
            "n_defined": len(defined_runs),
            "defined_fraction": len(defined_runs) / len(runs) if runs else None,
            "error_mean": err_mean,
            "error_sd": err_sd,
            "error_optimal_mean": opt_mean,
            "error_optimal_sd": opt_sd,
            "n_failed": g["n_failed"],
            "n_unfinished": g["n_unfinished"],
            "n_unanalysed": g["n_unanalysed"],
            "cell": format_cell(error, accuracy),
            "mechanisms": cell_mechanisms(runs),
            "published": None if pub is None else {"error": pub[0], "accuracy": pub[1], "cell": format_cell(*pub)},
        })
    return cells


FIDELITY_ERROR_FACTOR, FIDELITY_ACCURACY_TOL = 2.0, 0.02


def compare_cells(base: dict, other: dict) -> dict:
    """Whether cell ``other`` (of :func:`aggregate`) reproduces ``base`` (benchmarks/fidelity.py's criteria): the
    same outcome (an error, or "—"), errors within a factor :data:`FIDELITY_ERROR_FACTOR` where both are defined,
    mean test accuracies within :data:`FIDELITY_ACCURACY_TOL`."""
    same = (base["error"] is None) == (other["error"] is None)
    ratio = None
    if base["error"] is not None and other["error"] is not None:
        ratio = max(base["error"], other["error"]) / min(base["error"], other["error"])
    acc = abs(base["accuracy"] - other["accuracy"])
    ok = same and (ratio is None or ratio <= FIDELITY_ERROR_FACTOR) and acc <= FIDELITY_ACCURACY_TOL
    return {"same_outcome": same, "error_ratio": ratio, "accuracy_diff": acc, "pass": ok}


def cell_mechanisms(runs: list[dict]) -> dict | None:
    """The cross-seed summary of one cell (docs/science.md §5): :func:`twm.analysis.mechanisms.mechanism_summary`
    of its runs' ``mechanism`` (:func:`run_mechanism`; over all seeds and curriculum thresholds), with
    ``n_learned`` (the runs' persistent-mode counts in row order, ``None`` where undefined) and ``n_theory``
    (Φ's); ``None`` when no run has a mechanism (rows from a table without them)."""
    from twm.analysis.mechanisms import mechanism_summary

    runs = [r for r in runs if r.get("mechanism")]
    if not runs:
        return None
    theory = {int(_num(r["n_theory"])) for r in runs if _num(r.get("n_theory")) is not None}
    return {**mechanism_summary([r["mechanism"] for r in runs]),
            "n_learned": [None if _num(r.get("n_learned")) is None else int(_num(r["n_learned"])) for r in runs],
            "n_theory": theory.pop() if len(theory) == 1 else None}


def format_mechanisms(m: dict | None) -> str:
    """A ``table1.md`` cell of :func:`cell_mechanisms`: ``"k/n exact, m compressed; modes a, b / N"``."""
    if not m:
        return "n/a"
    modes = ", ".join(DASH if v is None else str(v) for v in m["n_learned"])
    return f"{m['text']}; modes {modes}" + (f" / {m['n_theory']}" if m.get("n_theory") is not None else "")


# --------------------------------------------------------------------------------------------------------------
# Markdown (pure)
# --------------------------------------------------------------------------------------------------------------
def _col(model: str, hidden: int, l2: float) -> str:
    return f"h{hidden} L2={l2:g}" if model == ELMAN else f"{model} h{hidden} L2={l2:g}"


def _column_order(column: tuple) -> tuple:
    """(model, hidden, L2) columns: the Elman RNN first, then the other architectures by name."""
    model, hidden, l2 = column
    return model != ELMAN, model, hidden, l2


def model_label(arch: str | None, options: dict | None = None) -> str:
    """A run's architecture as the report names it: ``arch``, and each option that differs from the
    architecture's default (``attention positional=True``); ``elman`` for runs that record none."""
    from twm.model import MODELS

    arch = arch or ELMAN
    defaults = MODELS[arch].OPTIONS if arch in MODELS else {}
    changed = [f"{k}={v}" for k, v in sorted((options or {}).items()) if k in defaults and defaults[k] != v]
    return " ".join([arch, *changed])


def _row_label(task_id: str, label_table: str, label_demo: str) -> str:
    labels = f"{label_table or '?'} / {label_demo or '?'}" if (label_table or label_demo) else "—"
    return f"{labels} {short_id(task_id)}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _sd(mean, sd) -> str:
    if mean is None:
        return DASH
    return f"{format_error(mean)} ± {format_error(sd)}" if sd is not None else f"{format_error(mean)} (n=1)"


def seed_stats(cell: dict) -> str:
    """One cell of the seed-statistics table: ``n seeds; acc mean ± sd; err mean ± sd (k/n)``."""
    if not cell["n_runs"]:
        return "n/a"
    n, acc = cell["n_seeds"], cell.get("accuracy")
    accuracy = DASH if acc is None else (f"{acc:.3f} ± {cell['accuracy_sd']:.3f}" if cell.get("accuracy_sd")
                                         is not None else f"{acc:.3f}")
    sd = cell.get("error_seed_sd")
    error = (f"; err {format_error(cell['error'])}{'' if sd is None else ' ± ' + format_error(sd)} "
             f"({cell['n_seeds_defined']}/{n})" if cell["n_seeds_defined"] else f"; err {DASH} (0/{n})")
    return f"{n} seed{'s' if n != 1 else ''}; acc {accuracy}{error}"


def format_table(cells: list[dict], meta: dict | None = None) -> str:
    """``table1.md`` from :func:`aggregate`'s cells: the tasks and both label maps, the reproduced table (rows:
    tasks keyed by id; columns: hidden × L2), the count-matched table, the seed statistics (mean ± sd over seeds),
    and ``reproduced | published`` for every cell docs/science.md §4.1 shows. ``meta``: optional
    ``sweep_dir``/``counts``/``threshold`` for the header."""
    from twm.tasks import TABLE1_TASKS

    meta = meta or {}
    tasks = sorted({c["task_id"] for c in cells} | {task_id_str(t) for t in PUBLISHED_TABLE1}, key=_task_order)
    info: dict[str, dict] = {}
    for name, (tid, labels, about) in TABLE1_TASKS.items():
        info[task_id_str(tid)] = {"task": name, "label_table": labels["table"], "label_demo": labels["demo"],
                                  "about": about}
    for c in cells:
        info.setdefault(c["task_id"], {"task": c.get("task") or "", "label_table": c["label_table"],
                                       "label_demo": c["label_demo"], "about": ""})
    by_key = {(c["task_id"], c.get("model", ELMAN), c["hidden"], c["l2"]): c for c in cells}
    columns = sorted({(c.get("model", ELMAN), c["hidden"], c["l2"]) for c in cells}, key=_column_order)
    present = [t for t in tasks if any(k[0] == t for k in by_key)]
    threshold = meta.get("threshold", 0.9)

    lines = ["# Table 1, reproduced", ""]
    if meta.get("sweep_dir"):
        lines.append(f"Sweep: `{meta['sweep_dir']}`" + (f", generated {meta['generated_at']}"
                                                         if meta.get("generated_at") else "") + ".")
    if meta.get("counts"):
        lines.append("Run folders: " + ", ".join(f"{v} {k}" for k, v in meta["counts"].items()) + ".")
    lines += [
        "",
        f"Cells: spectral error in radians between the eigenvalues with |λ| > {threshold:g} of the learned Jacobian "
        "and of Φ (docs/science.md §4, greedy matching), and in brackets the test accuracy at H = 200. Per seed: the "
        "minimum "
        "defined error and the maximum accuracy over the curriculum thresholds; then the mean over seeds (the error "
        f"over the seeds that have one). {DASH}: no seed has a defined error (eigenvalue counts differ); n/a: no "
        "completed, analysed run.",
        "",
        "## Tasks and their labels",
        "",
        "The authors' table notebook and their demo label the two compose tasks differently (docs/science.md §1.2); "
        "rows are "
        "keyed by task id and show both, as `table label / demo label`.",
        "",
    ]
    lines += _md_table(
        ["task id", "task", "label (table notebook)", "label (demo)", "rule"],
        [[f"({t.replace(',', ', ')})", info.get(t, {}).get("task", ""), info.get(t, {}).get("label_table", ""),
          info.get(t, {}).get("label_demo", ""), info.get(t, {}).get("about", "")] for t in tasks])

    def label(t):
        i = info.get(t, {})
        return _row_label(t, i.get("label_table", ""), i.get("label_demo", ""))

    lines += ["", "## Reproduced", ""]
    if columns:
        lines += _md_table(["task"] + [_col(*c) for c in columns],
                           [[label(t)] + [by_key[(t, *c)]["cell"] if (t, *c) in by_key else "" for c in columns]
                            for t in present])
    else:
        lines.append("(no runs)")
    lines += [
        "",
        "## Count-matched runs",
        "",
        "Per cell: runs whose eigenvalue counts matched (and were nonzero) / completed analysed runs, over all seeds "
        "and thresholds; then mean ± sd (sample sd) of their error, greedy and optimal (Hungarian) matching.",
        "",
    ]

    def matched(c):
        if not c["n_runs"]:
            return "n/a"
        return (f"{c['n_defined']}/{c['n_runs']}; {_sd(c['error_mean'], c['error_sd'])}; "
                f"opt {_sd(c['error_optimal_mean'], c['error_optimal_sd'])}")

    if columns:
        lines += _md_table(["task"] + [_col(*c) for c in columns],
                           [[label(t)] + [matched(by_key[(t, *c)]) if (t, *c) in by_key else "" for c in columns]
                            for t in present])
    if columns:
        lines += [
            "",
            "## Seed statistics",
            "",
            "Per cell, over seeds (each seed's value is the one the reproduced table averages: the maximum accuracy "
            "and the minimum defined error over the thresholds): the seeds, the test accuracy mean ± sd, and the error "
            "mean ± sd over the seeds that have one (k of n seeds); sample sd.",
            "",
        ]
        lines += _md_table(["task"] + [_col(*c) for c in columns],
                           [[label(t)] + [seed_stats(by_key[(t, *c)]) if (t, *c) in by_key else "" for c in columns]
                            for t in present])
    if columns and any(c.get("mechanisms") for c in cells):
        lines += [
            "",
            "## Mechanisms across seeds",
            "",
            "Per cell, over its completed analysed runs (all seeds and thresholds; docs/science.md §5, Fig. 4): how "
            "many learned Φ exactly (the sign pattern of Ψ* W_hh Ψ on the kept coordinates equals Φ's and the "
            f"persistent-mode counts match), how many compressed it (some, but fewer eigenvalues with |λ| > "
            f"{threshold:g} than Φ has: for repeat copy fewer than s·d, the paper's bottleneck superposition), the "
            "others (more modes, another pattern, or no persistent mode at all), and "
            "those analysed before patterns were stored (no pattern); then each run's persistent-mode count / Φ's.",
            "",
        ]
        lines += _md_table(["task"] + [_col(*c) for c in columns],
                           [[label(t)] + [format_mechanisms(by_key[(t, *c)].get("mechanisms")) if (t, *c) in by_key
                                          else "" for c in columns] for t in present])
    lines += [
        "",
        "## Reproduced vs published (docs/science.md §4.1)",
        "",
        "Each cell: `reproduced | published`; n/a: not in this sweep.",
        "",
    ]
    rows = []
    for tid in PUBLISHED_TABLE1:
        t = task_id_str(tid)
        row = [label(t)]
        for hidden, l2 in PUBLISHED_COLUMNS:
            mine = by_key.get((t, ELMAN, hidden, l2))
            row.append(f"{mine['cell'] if mine else 'n/a'} \\| {format_cell(*PUBLISHED_TABLE1[tid][(hidden, l2)])}")
        rows.append(row)
    lines += _md_table(["task"] + [_col(ELMAN, *c) for c in PUBLISHED_COLUMNS], rows)
    incomplete = [c for c in cells if c["n_failed"] or c["n_unfinished"] or c["n_unanalysed"]]
    if incomplete:
        lines += ["", "## Cells with runs left out", ""]
        lines += [f"- {label(c['task_id'])} {_col(c.get('model', ELMAN), c['hidden'], c['l2'])}: "
                  f"{c['n_failed']} failed, "
                  f"{c['n_unfinished']} unfinished, {c['n_unanalysed']} not analysed" for c in incomplete]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Rows from a sweep folder
# --------------------------------------------------------------------------------------------------------------
def _run_info(run_dir: Path) -> dict:
    """What a run is (from summary.json, else from its spec)."""
    from twm.run.folder import Damaged, RunFolder
    from twm.run.spec import RunSpec

    folder = RunFolder(run_dir)
    try:
        summary = folder.read_summary()
    except Damaged:
        summary = None
    if summary is not None and summary.get("task_id") is not None:
        return summary
    try:
        spec = RunSpec.from_config(folder.config())
    except Exception:  # noqa: BLE001  (no config: a folder Hydra made but never filled)
        return summary or {}
    task = spec.task
    return {**(summary or {}), "task": task.name, "task_id": list(task.task_id) if task.task_id else None,
            "s": task.s, "d": task.d, "seed": spec.seed, "hidden_size": spec.model.hidden_size, "l2": spec.optim.l2,
            "threshold": spec.curriculum.threshold}


def run_row(run_dir: Path, state: str, analysis: dict | None, analysis_state: str) -> dict:
    """One ``table1.csv`` row (:data:`CSV_COLUMNS`) of a run folder."""
    info = _run_info(run_dir)
    tid = task_id_str(info.get("task_id"))
    labels = labels_for(tid, info.get("s", 8), info.get("d", 8)) if tid else {}
    sp = (analysis or {}).get("spectral") or {}
    lg = (analysis or {}).get("length_generalisation") or {}
    return {
        "task": info.get("task"), "task_id": tid, "label_table": labels.get("table", ""),
        "label_demo": labels.get("demo", ""), "hidden": info.get("hidden_size"), "l2": info.get("l2"),
        "threshold": info.get("threshold"), "seed": info.get("seed"), "test_accuracy": info.get("test_accuracy"),
        "spectral_error": sp.get("error"), "spectral_error_optimal": sp.get("error_optimal"),
        "n_learned": sp.get("n_learned"), "n_theory": sp.get("n_theory"),
        "defined": sp.get("defined") if analysis else None, "first_below": lg.get("first_below"),
        "final_horizon": info.get("final_horizon"), "step_reached_max_horizon": info.get("step_reached_max_horizon"),
        "steps": info.get("steps"), "status": state, "analysis": analysis_state, "run": run_dir.name,
        "mechanism": run_mechanism(analysis, tid, info.get("s", 8), info.get("d", 8)) if tid else None,
        "model": _run_model(run_dir, analysis),
    }


def _run_model(run_dir: Path, analysis: dict | None) -> str:
    """:func:`model_label` of a run: from its analysis, else from its spec (``elman`` when neither says)."""
    model = (analysis or {}).get("model")
    if model:
        return model_label(model.get("arch"), model.get("options"))
    from twm.run.folder import RunFolder
    from twm.run.spec import RunSpec

    try:
        spec = RunSpec.from_config(RunFolder(run_dir).config()).model
    except Exception:  # noqa: BLE001  (no readable config: an older or empty folder)
        return ELMAN
    return model_label(spec.arch, dict(spec.options))


def run_mechanism(analysis: dict | None, task_id: str, s: int, d: int) -> str | None:
    """What one run learned (:func:`twm.analysis.mechanisms.mechanism_kind`: ``"exact"``, ``"compressed"``,
    ``"other"``, ``"no pattern"``) from its ``analysis.json`` alone; ``None`` without an analysis."""
    from twm.analysis.mechanisms import mechanism_kind, pattern_from_entries
    from twm.tasks import operator_from_id

    if analysis is None:
        return None
    entries = (analysis.get("basis") or {}).get("pattern")
    pattern = None if entries is None else pattern_from_entries(entries, s * d)
    return mechanism_kind(pattern, (analysis.get("spectral") or {}).get("n_learned"),
                          operator_from_id(task_id_tuple(task_id), s, d), s)


def collect_rows(sweep_dir, options=None, analyze_missing: bool = True, workers: int = 1,
                 stale_minutes: float = 10.0) -> list[dict]:
    """Rows of every job folder of ``sweep_dir`` (job order). Completed runs get their up-to-date
    ``analysis.json`` (analysed now when there is none and ``analyze_missing``); ``analysis`` is "ok",
    "missing" (not analysed), "error: ..." (the analysis failed) or "" (run not completed)."""
    return collect(sweep_dir, options, analyze_missing, workers, stale_minutes)[0]


def collect(sweep_dir, options=None, analyze_missing: bool = True, workers: int = 1,
            stale_minutes: float = 10.0) -> tuple[list[dict], dict[str, tuple[str, dict | None]]]:
    """:func:`collect_rows`'s rows and the analyses behind them: ``{job: (analysis state, analysis dict or
    None)}`` for the completed jobs (the ``analyses`` of :func:`twm.results.results_rows`)."""
    from twm.analyze import AnalyzeOptions, analyze_runs, up_to_date
    from twm.sweep import run_dirs, run_state

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReportError(f"sweep_dir={sweep_dir} is not a folder: give the multirun folder that holds the numbered "
                          "job folders 0/ 1/ ... (e.g. outputs/sweeps/table1)")
    options = options or AnalyzeOptions(plots=False)
    runs = run_dirs(sweep_dir)
    states = {p: run_state(p, stale_minutes) for p in runs}
    completed = [p for p in runs if states[p] == "completed"]
    analyses: dict[Path, tuple[str, object]] = {}
    if analyze_missing:
        todo = [p for p in completed if options.force or up_to_date(p, options) is None]
        if todo:
            log.info("analysing %d of %d completed runs that have no up-to-date analysis.json", len(todo),
                     len(completed))
        results = analyze_runs(todo, options, workers) if todo else {}
        analyses = {Path(k): v for k, v in results.items()}
    rows, found = [], {}
    for p in runs:
        analysis, astate = None, ""
        if states[p] == "completed":
            if p in analyses:
                outcome, payload = analyses[p]
                analysis, astate = (payload, "ok") if outcome != "error" else (None, f"error: {payload['error']}")
            else:
                analysis = up_to_date(p, options)
                astate = "ok" if analysis is not None else "missing"
            found[p.name] = (astate, analysis)
        rows.append(run_row(p, states[p], analysis, astate))
    return rows, found


def write_report(sweep_dir, out_dir=None, options=None, analyze_missing: bool = True, workers: int = 1,
                 stale_minutes: float = 10.0, format: str = "md") -> dict[str, Path]:
    """Write ``table1.csv``, ``table1.md``, ``table1.json`` and ``results.csv`` (:mod:`twm.results`) for
    ``sweep_dir`` into ``out_dir`` (default: the sweep folder), and with ``format="html"`` also ``report.html``
    (:func:`write_sweep_page`); returns their paths."""
    from collections import Counter

    from twm.analyze import AnalyzeOptions
    from twm.results import RESULTS, results_rows, save_results
    from twm.run.folder import write_json

    check_format(format)
    options = options or AnalyzeOptions(plots=False)
    rows, analyses = collect(sweep_dir, options, analyze_missing, workers, stale_minutes)
    cells = aggregate(rows)
    out = Path(out_dir) if out_dir is not None else Path(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = dict(Counter(r["status"] for r in rows))
    not_analysed = sum(1 for r in rows if r["status"] == "completed" and r["analysis"] != "ok")
    if not_analysed:
        counts["completed but not analysed"] = not_analysed
    from twm.sweep import expected_jobs

    expected = expected_jobs(Path(sweep_dir))
    if expected is not None and expected > len(rows):
        counts["missing (no job folder)"] = expected - len(rows)
    meta = {"sweep_dir": str(sweep_dir), "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "counts": counts, "threshold": options.threshold}
    paths = {"csv": out / "table1.csv", "md": out / "table1.md", "json": out / "table1.json"}
    tmp = paths["csv"].with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in CSV_COLUMNS} for r in rows)
    tmp.replace(paths["csv"])
    tmp = paths["md"].with_suffix(".md.tmp")
    tmp.write_text(format_table(cells, meta))
    tmp.replace(paths["md"])
    published = {task_id_str(tid): [{"hidden": h, "l2": l2, "error": e, "accuracy": a, "cell": format_cell(e, a)}
                                    for (h, l2), (e, a) in table.items()] for tid, table in PUBLISHED_TABLE1.items()}
    write_json(paths["json"], {**meta, "analysis_options": {k: getattr(options, k) for k in
                                                              ("threshold", "length_horizon", "length_batches",
                                                               "length_threshold", "rate_tol")},
                               "cells": cells, "published": published})
    columns, results = results_rows(sweep_dir, analyses)
    paths["results"] = save_results(out / RESULTS, columns, results)
    if format == "html":
        paths["html"] = write_sweep_page(sweep_dir, out / "report.html", counts, paths["md"].read_text(), columns,
                                         results, analyses, options)
    return paths


FORMATS = ("md", "html")


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise ReportError(f"format={format!r}: choose md (the default: table1.md / .csv / .json and results.csv) or "
                          "html (also a self-contained report.html)")


# --------------------------------------------------------------------------------------------------------------
# HTML pages
# --------------------------------------------------------------------------------------------------------------
def _short(column: str) -> str:
    return column.rsplit(".", 1)[-1]


def sweep_figures(columns: list[str], rows: list[dict], analyses: dict, options) -> list:
    """The sweep page's figures from ``results.csv``'s rows and the analyses: length generalisation with one panel
    per task and one mean curve per configuration (the config keys that vary across jobs, but the seed), and the
    spectral error of every run per configuration."""
    import numpy as np

    from twm.analysis import plot_length_generalisation, plot_spectral_errors
    from twm.pages import Image, png_of_figure
    from twm.results import config_part, varying

    analysed = [r for r in rows if r.get("analysis") == "ok" and analyses.get(r["job"], ("", None))[1]]
    if not analysed:
        return []
    changing = [c for c in varying(config_part(columns), rows) if c != "seed"]
    task_keys = [c for c in changing if c.startswith("task.")]
    other = [c for c in changing if not c.startswith("task.")]

    def panel(r):
        name = r.get("summary.task") or r.get("task.name") or "task"
        return ", ".join([str(name)] + [f"{_short(c)}={r.get(c)}" for c in task_keys if c != "task.name"])

    def series(r):
        return ", ".join(f"{_short(c)}={r.get(c)}" for c in other) or "all runs"

    curves: dict = {}
    errors: dict = {}
    for r in analysed:
        analysis = analyses[r["job"]][1]
        acc = (analysis.get("length_generalisation") or {}).get("accuracy")
        if acc:
            curves.setdefault(panel(r), {}).setdefault(series(r), []).append(np.asarray(acc, dtype=float))
        errors.setdefault(f"{panel(r)}; {series(r)}" if other else panel(r), []).append(
            (analysis.get("spectral") or {}).get("error"))
    horizons = [r.get("summary.final_horizon") for r in analysed if r.get("summary.final_horizon")]
    figures = []
    if curves:
        means = {p: {f"{label} (mean of {len(c)})": np.mean(c, axis=0) for label, c in s.items()}
                 for p, s in sorted(curves.items())}
        fig = plot_length_generalisation(means, threshold=options.length_threshold,
                                         train_horizon=max(horizons) if horizons else None,
                                         title="accuracy per output step (mean over seeds per configuration)")
        figures.append(Image(png_of_figure(fig), "Length generalisation: accuracy per output step, one panel per "
                             "task, the mean over seeds of each configuration.", "length_generalisation"))
    fig = plot_spectral_errors(dict(sorted(errors.items())), threshold=options.threshold)
    figures.append(Image(png_of_figure(fig), "Spectral error against Φ (Table 1's metric, docs/science.md §4) of "
                         "every analysed run, per configuration; undefined: the eigenvalue counts differ.",
                         "spectral_errors"))
    return figures


def write_sweep_page(sweep_dir, path, counts: dict, table_md: str, columns: list[str], rows: list[dict],
                     analyses: dict, options) -> Path:
    """Write the sweep's self-contained ``report.html`` (:func:`twm.pages.sweep_sections`) to ``path``."""
    from omegaconf import OmegaConf

    from twm.pages import render_html, sweep_sections
    from twm.results import config_part, varying
    from twm.tasks import task_by_id

    sweep_dir = Path(sweep_dir)
    tasks = {}
    for r in rows:
        tid, s, d = r.get("summary.task_id"), r.get("task.s"), r.get("task.d")
        if tid and s and d and (tuple(tid), s, d) not in tasks:
            tasks[(tuple(tid), s, d)] = task_by_id(tuple(tid), int(s), int(d))
    multirun = sweep_dir / "multirun.yaml"
    if multirun.exists():
        cfg = OmegaConf.load(multirun)

        def plain(key):
            node = OmegaConf.select(cfg, key)
            return OmegaConf.to_container(node) if OmegaConf.is_config(node) else node

        sweep_config = OmegaConf.to_yaml({"sweeper params": plain("hydra.sweeper.params") or {},
                                          "command-line overrides": plain("hydra.overrides.task") or [],
                                          "launcher": plain("hydra.launcher._target_")})
    else:
        sweep_config = "(no multirun.yaml in the sweep folder)"
    config = config_part(columns)
    changing = varying(config, rows)
    present = [r for r in rows if r.get("state") != "missing"]
    constant = {c: present[0].get(c) for c in config if present and c not in changing}
    shown = ["job", "state", "analysis", *changing, "summary.test_accuracy",
             "summary.final_horizon", "spectral.error", "spectral.error_optimal", "spectral.n_learned",
             "spectral.n_theory", "basis.support_match", "length_generalisation.first_below"]
    sections = sweep_sections(sweep_dir, counts, list(tasks.values()), table_md, shown, rows,
                              sweep_figures(columns, rows, analyses, options), sweep_config, constant)
    path = Path(path)
    path.write_text(render_html(f"twm sweep report: {sweep_dir.name}", sections))
    return path


def write_run_report(run_dir, out_dir=None, options=None, format: str = "html") -> Path:
    """The report page of one trained run: ``report.html`` (self-contained) or ``report.md`` in ``out_dir``
    (default: the run folder). The run is analysed first (with its figures) unless its ``analysis.json`` is up
    to date (:func:`twm.analyze.up_to_date`). Returns the path written."""
    from dataclasses import replace

    from twm.analyze import AnalyzeOptions, analyze_run
    from twm.pages import render_html, render_markdown, run_sections
    from twm.run.folder import CONFIG, RunFolder

    check_format(format)
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    if not folder.checkpoint_path.exists() or not (run_dir / CONFIG).exists():
        raise ReportError(f"run_dir={run_dir} is not a trained run folder: it needs {CONFIG} and "
                          "checkpoints/last.ckpt (for a multirun folder use sweep_dir=)")
    options = replace(options or AnalyzeOptions(), plots=True)
    analysis = analyze_run(run_dir, options).to_dict()
    state, reason = folder.state()
    summary = folder.read_summary() or {}
    task = folder.spec().task.task()
    sections = run_sections(run_dir, state + (f" ({reason})" if reason else ""), summary, analysis,
                            (run_dir / CONFIG).read_text(), task)
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    title = f"twm run report: {task.name}, hidden {summary.get('hidden_size')}, seed {summary.get('seed')}"
    path = out / f"report.{format}"
    path.write_text(render_html(title, sections) if format == "html" else render_markdown(title, sections, path))
    return path


def run_from_config(cfg) -> dict[str, Path]:
    """The CLI's work on a composed ``conf/report.yaml`` (raises :class:`ReportError` on a bad request)."""
    from twm.analyze import AnalyzeOptions, boolean, number

    if cfg.get("run_dir") is not None:
        if cfg.get("sweep_dir") is not None:
            raise ReportError("give one of run_dir= (one run's page) or sweep_dir= (the sweep's tables); both were "
                              "given")
        path = write_run_report(cfg.run_dir, cfg.get("out_dir"), AnalyzeOptions.from_config(cfg),
                                str(cfg.get("format") or "html"))
        return {str(path.suffix[1:]): path}
    if cfg.get("sweep_dir") is None:
        raise ReportError("sweep_dir= is required: the multirun folder of a sweep "
                          "(e.g. python -m twm.report sweep_dir=outputs/sweeps/table1), or run_dir= for one run")
    options = AnalyzeOptions.from_config(cfg)
    return write_report(cfg.sweep_dir, cfg.get("out_dir"), options, number(cfg, "analyze_missing", boolean, True),
                        number(cfg, "workers", int, 1), number(cfg, "stale_minutes", float, 10.0),
                        str(cfg.get("format") or "md"))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="report")
def main(cfg: DictConfig) -> None:
    from twm.analyze import AnalyzeError

    try:
        paths = run_from_config(cfg)
    except (ReportError, AnalyzeError) as err:
        sys.stderr.write(f"twm.report: {err}\nNothing was written. See conf/report.yaml for the options.\n")
        sys.exit(2)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if "csv" not in paths:  # one run's page
        return
    print(paths["md"].read_text().split("## Count-matched runs")[0].split("## Reproduced\n")[-1].strip())
    with open(paths["csv"], newline="") as fh:
        damaged = [r["run"] for r in csv.DictReader(fh) if r["status"] == "damaged"]
    if damaged:
        from twm.run.folder import RunFolder

        for run in damaged:
            print(f"  damaged: job {run}: {RunFolder(Path(cfg.sweep_dir) / run).state()[1]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
