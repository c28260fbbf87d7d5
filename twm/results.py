"""``<sweep>/results.csv``: one row per job of a sweep, whatever its grid (any task, s, d, model size, curriculum,
...): the job's config, its training summary and its analysis, for a notebook or a spreadsheet::

    import pandas as pd
    df = pd.read_csv("outputs/sweeps/table1/results.csv")

``python -m twm.analyze sweep_dir=...`` (not for one chunk: after the chunks, the same command without ``chunk``
finds every analysis up to date and writes it in seconds) and ``python -m twm.report sweep_dir=...`` write it. A
plain CSV (Python's ``csv`` module): an empty cell is unknown or not applicable, booleans are ``True``/``False``,
lists are JSON (``[10, 20, 40, 60, 100]``). Columns, in this order:

- ``job``: the job folder (``0``, ``1``, ...); ``state``: ``completed``, ``failed``, ``damaged``, unfinished
  (``running``, ``interrupted``, ``not started``; :meth:`twm.run.folder.RunFolder.state`), or ``missing`` (a job of
  the sweep's ``multirun.yaml`` with no folder); ``reason``: the error of a failed run, what is damaged;
  ``analysis``: ``ok``, ``missing`` (completed, not analysed), ``error: ...`` (the analysis failed), empty for a run
  that did not complete.
- the config: the job's ``.hydra/config.yaml``, resolved and flattened with dotted names (``model.hidden_size``,
  ``curriculum.threshold``): every key under ``seed``, ``sweep_name``, ``tags``, ``num_threads``, ``task``, ``model``,
  ``optimizer``, ``curriculum``, ``data`` and ``trainer`` except ``_target_``, and every other key (loggers,
  callbacks, ...) whose value differs between jobs. Keys that name the job's own folder (``paths``, values resolved
  from it) are left out. Which keys exist depends on the sweep's config.
- :data:`SUMMARY_COLUMNS`: ``summary.<key>`` from the run's ``summary.json`` (``summary.test_accuracy`` at the test
  horizon, ``summary.final_horizon``, ...).
- :data:`ANALYSIS_COLUMNS`: ``<section>.<key>`` from the run's ``analysis.json`` (schema in
  :class:`twm.analyze.RunAnalysis`): the spectral error (greedy and optimal matching), the eigenvalue counts and
  whether they match, the basis's support match, the first output step below the length threshold, and the
  gradient-flow summary when the run recorded one.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from twm.run.folder import Damaged, RunFolder

RESULTS = "results.csv"
LEADING_COLUMNS = ("job", "state", "reason", "analysis")
MAIN_CONFIG = ("seed", "sweep_name", "tags", "num_threads", "task", "model", "optimizer", "curriculum", "data",
               "trainer")
SUMMARY_COLUMNS = tuple(f"summary.{k}" for k in (
    "status", "task", "task_id", "steps", "final_horizon", "step_reached_max_horizon", "train_loss", "train_accuracy",
    "test_accuracy", "wall_seconds", "engine",
))
ANALYSIS_COLUMNS = (
    "spectral.error", "spectral.error_optimal", "spectral.n_learned", "spectral.n_theory", "spectral.defined",
    "spectral.counts_match", "spectral.threshold", "spectral.operator", "spectral.spectral_radius",
    "spectral.failure",
    "basis.method", "basis.n_kept", "basis.support_match", "basis.shift_match", "basis.boundary_match",
    "basis.off_support_max",
    "length_generalisation.first_below", "length_generalisation.threshold", "length_generalisation.horizon",
    "length_generalisation.mean_accuracy",
    "gradient_flow.decay_rate_start", "gradient_flow.decay_rate_end", "gradient_flow.max_abs_eig_start",
    "gradient_flow.max_abs_eig_end", "gradient_flow.step_max_abs_eig_above_1",
    "gradient_flow.step_decay_rate_below_tol", "gradient_flow.rate_tol",
)


def flatten_config(cfg) -> dict:
    """A composed run config (``OmegaConf``) as ``{dotted key: value}``, interpolations resolved where they can be;
    the ``hydra`` and ``paths`` nodes and values interpolated from them (the run's own folder) are left out, lists
    stay lists, a value that cannot be resolved outside Hydra keeps its ``${...}`` text."""
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(cfg, resolve=False)
    out: dict = {}

    def resolved(key: str, value):
        try:
            node = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
            return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        except Exception:  # noqa: BLE001  (e.g. ${hydra:...} outside Hydra: keep the text)
            return value

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        elif not (isinstance(node, str) and ("${paths." in node or "${hydra:" in node)):
            out[prefix] = resolved(prefix, node)

    walk({k: v for k, v in raw.items() if k not in ("hydra", "paths")}, "")
    return out


def config_columns(configs: list[dict]) -> list[str]:
    """The config columns of a sweep from its jobs' :func:`flatten_config` dicts (see the module docstring)."""
    keys: dict[str, None] = {}
    for flat in configs:
        keys.update(dict.fromkeys(flat))
    present = [c for c in configs if c]

    def varies(key):
        return len({json.dumps(c.get(key), sort_keys=True, default=str) for c in present}) > 1

    def main(key):
        return key.split(".")[0] in MAIN_CONFIG and not key.endswith("_target_")

    return [k for k in keys if main(k) or varies(k)]


def config_part(columns: list[str]) -> list[str]:
    """The config columns among ``results.csv``'s columns."""
    fixed = {*LEADING_COLUMNS, *SUMMARY_COLUMNS, *ANALYSIS_COLUMNS}
    return [c for c in columns if c not in fixed]


def varying(columns: list[str], rows: list[dict]) -> list[str]:
    """The ``columns`` whose values differ between the jobs that have a folder."""
    present = [r for r in rows if r.get("state") != "missing"]
    return [c for c in columns if len({json.dumps(r.get(c), sort_keys=True, default=str) for r in present}) > 1]


def _lookup(data: dict | None, dotted: str):
    section, key = dotted.split(".", 1)
    return ((data or {}).get(section) or {}).get(key)


def job_row(run_dir: Path, analysis_state: str = "", analysis: dict | None = None) -> tuple[dict, dict]:
    """``(row, config)`` of one job folder: the leading, summary and analysis columns, and its flattened config
    (``{}`` without a readable one)."""
    folder = RunFolder(run_dir)
    state, reason = folder.state()
    try:
        summary = folder.read_summary() or {}
    except Damaged:
        summary = {}
    try:
        config = flatten_config(folder.config())
    except Exception:  # noqa: BLE001  (no or an unreadable config: a folder Hydra made but never filled)
        config = {}
    row = {"job": run_dir.name, "state": state, "reason": reason, "analysis": analysis_state if state == "completed"
           else ""}
    row.update({c: summary.get(c.split(".", 1)[1]) for c in SUMMARY_COLUMNS})
    row.update({c: _lookup(analysis, c) for c in ANALYSIS_COLUMNS})
    return row, config


def results_rows(sweep_dir, analyses: dict | None = None) -> tuple[list[str], list[dict]]:
    """``(columns, rows)`` of ``results.csv`` for a sweep folder, in job order (see the module docstring).

    ``analyses``: ``{job name: (analysis state, analysis dict or None)}`` for the completed jobs, as the caller found
    them (``"ok"`` with the dict, ``"missing"``, ``"error: ..."``); a completed job not in it is ``"missing"``.
    Jobs of the sweep's ``multirun.yaml`` without a folder get a row with state ``missing``.
    """
    from twm.sweep import expected_jobs, run_dirs

    sweep_dir = Path(sweep_dir)
    analyses = analyses or {}
    rows, configs = [], []
    for run_dir in run_dirs(sweep_dir):
        astate, analysis = analyses.get(run_dir.name, ("missing", None))
        row, config = job_row(run_dir, astate, analysis)
        rows.append(row)
        configs.append(config)
    present = {r["job"] for r in rows}
    for job in range(expected_jobs(sweep_dir) or 0):
        if str(job) not in present:
            rows.append({"job": str(job), "state": "missing"})
            configs.append({})
    order = sorted(range(len(rows)), key=lambda i: int(rows[i]["job"]))
    rows, configs = [rows[i] for i in order], [configs[i] for i in order]
    columns = config_columns(configs)
    for row, config in zip(rows, configs):
        row.update({k: config.get(k) for k in columns})
    return [*LEADING_COLUMNS, *columns, *SUMMARY_COLUMNS, *ANALYSIS_COLUMNS], rows


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_results(sweep_dir, analyses: dict | None = None, out_dir=None) -> Path:
    """Write ``results.csv`` of ``sweep_dir`` (:func:`results_rows`) into ``out_dir`` (default: the sweep folder),
    atomically; returns its path."""
    columns, rows = results_rows(sweep_dir, analyses)
    return save_results(Path(out_dir if out_dir is not None else sweep_dir) / RESULTS, columns, rows)


def save_results(path, columns: list[str], rows: list[dict]) -> Path:
    """Write :func:`results_rows`'s ``(columns, rows)`` to ``path`` as CSV, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([_cell(row.get(c)) for c in columns] for row in rows)
    os.replace(tmp, path)
    return path
