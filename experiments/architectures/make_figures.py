"""Architectures on the same tasks, from the committed run files (no training).

    python experiments/architectures/make_figures.py [--collect outputs/sweeps/architectures]

``--collect`` first copies the small files of a finished, analysed sweep (per run: ``summary.json``,
``analysis.json``, ``.hydra/overrides.yaml``, ``.hydra/config.yaml``; the sweep's ``results.csv`` and
``mechanisms.json``) here. Then, from ``runs/``: ``results.md`` (one row per task × model, means and per-seed
values), ``architectures.png`` (test accuracy, steps to the largest horizon, length generalisation) and
``eq8.md`` (the attention decoder's first output step against the bound eq. 8 sets without positions).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from collections import defaultdict
from math import comb
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from twm.report import model_label  # noqa: E402
from twm.run.folder import RunFolder  # noqa: E402
from twm.sweep import run_dirs  # noqa: E402
from twm.tasks import custom_task  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
MODEL_ORDER = ("elman", "lstm", "gru", "wave_rnn", "diag_linear", "attention", "attention positional=True")
SHORT = {"attention positional=True": "attention+pos"}
TASK_TITLE = {"repeat_copy": "repeat copy (s = d = 4)", "linear": "signed shuffle (s = d = 4, period 20)"}


def collect(sweep_dir: Path) -> None:
    for job in run_dirs(sweep_dir):
        RunFolder(job).export(RUNS / job.name)
    for name in ("results.csv", "mechanisms.json"):
        if (sweep_dir / name).exists():
            shutil.copyfile(sweep_dir / name, HERE / name)


def permutation_invariant_bound(F: np.ndarray, s: int) -> float:
    """The best mean per-dimension sign accuracy at the first output step of any function of the window that does
    not change when the s - 1 older tokens are permuted (the attention decoder without positions, eq. 8,
    docs/science.md §2.3), for i.i.d. uniform ±1 inputs. An output dim that copies the newest token (lag 1, the
    query) can be exact; one that reads an older token sees only the multiset of the s - 1 older ones, so its best
    guess of a bit is the majority among them: accuracy E[max(k, m - k) / m], k ~ Binomial(m = s - 1, 1/2)."""
    d = F.shape[1]
    m = s - 1
    older = sum(comb(m, k) * max(k, m - k) / m for k in range(m + 1)) / 2**m if m else 1.0
    lags = [s - int(np.flatnonzero(F[:, j])[0]) // d for j in range(d)]
    return float(np.mean([1.0 if lag == 1 else older for lag in lags]))


def load_runs() -> list[dict]:
    rows = []
    for path in sorted(RUNS.glob("*/analysis.json"), key=lambda p: int(p.parent.name)):
        a = json.loads(path.read_text())
        summary = json.loads((path.parent / "summary.json").read_text())
        run, sp, lg, model = a["run"], a["spectral"], a["length_generalisation"], a["model"]
        basis = a.get("basis") or {}
        acc = np.asarray(lg["accuracy"], dtype=float)
        rows.append({
            "run": path.parent.name, "task": run["task"], "task_id": run["task_id"], "s": run["s"], "d": run["d"],
            "model": model_label(model["arch"], model.get("options")), "hidden": model["hidden_size"],
            "state": model["state_size"], "parameters": model["parameters"], "seed": run["seed"],
            "test_accuracy": run["test_accuracy"], "reached": run["step_reached_max_horizon"],
            "final_horizon": run["final_horizon"], "first_below": lg["first_below"], "acc_curve": acc,
            "acc_step1": float(acc[0]), "n_learned": sp.get("n_learned"), "n_theory": sp.get("n_theory"),
            "defined": sp.get("defined"), "error": sp.get("error"), "radius": sp.get("spectral_radius"),
            "support_match": basis.get("support_match"), "wall": summary.get("wall_seconds"),
            "steps": summary.get("steps"), "horizon": lg["horizon"],
        })
    return rows


def _mean_sd(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def _per_seed(values, fmt="{}") -> str:
    return ", ".join("never" if v is None else fmt.format(v) for v in values)


def results_table(groups: dict) -> list[str]:
    lines = ["| task | model | hidden → state | parameters | test accuracy, H = 200 | steps to H = 100 (per seed) | "
             "first step < 0.94 (per seed) | |λ| > 0.9: learned / Φ (per seed) | spectral error (rad, where counts "
             "match) | support match | wall s / run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (task, model), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        counts = ", ".join(f"{r['n_learned'] if r['n_learned'] is not None else '—'}/{r['n_theory']}" for r in rs)
        errors = [r["error"] for r in rs if r["defined"]]
        error = (f"{_mean_sd(errors)} ({len(errors)}/{len(rs)})" if errors else f"— (0/{len(rs)})")
        if all(r["n_learned"] is None for r in rs):
            counts, error = "no operator", "—"
        support = _mean_sd([r["support_match"] for r in rs])
        lines.append(f"| {TASK_TITLE.get(task, task)} | {SHORT.get(model, model)} | {rs[0]['hidden']} → "
                     f"{rs[0]['state']} | {rs[0]['parameters']} | {_mean_sd([r['test_accuracy'] for r in rs])} | "
                     f"{_per_seed([r['reached'] for r in rs])} | {_per_seed([r['first_below'] for r in rs])} | "
                     f"{counts} | {error} | {support} | {statistics.fmean(r['wall'] for r in rs):.0f} |")
    return lines


def eq8_table(groups: dict) -> list[str]:
    lines = ["| task | model | bound without positions | accuracy at output step 1 (per seed) | mean | "
             "test accuracy, H = 200 |", "|---|---|---|---|---|---|"]
    for (task, model), rs in groups.items():
        if not model.startswith("attention"):
            continue
        rs = sorted(rs, key=lambda r: r["seed"])
        F = custom_task(rs[0]["s"], rs[0]["d"], task_id=rs[0]["task_id"]).F
        bound = permutation_invariant_bound(F, rs[0]["s"])
        lines.append(f"| {TASK_TITLE.get(task, task)} | {SHORT.get(model, model)} | {bound:.4f} | "
                     f"{_per_seed([r['acc_step1'] for r in rs], '{:.3f}')} | "
                     f"{statistics.fmean(r['acc_step1'] for r in rs):.3f} | "
                     f"{_mean_sd([r['test_accuracy'] for r in rs])} |")
    return lines


def figure(groups: dict, path: Path) -> None:
    tasks = sorted({t for t, _ in groups}, key=lambda t: list(TASK_TITLE).index(t) if t in TASK_TITLE else 9)
    models = [m for m in MODEL_ORDER if any(m == k[1] for k in groups)]
    colours = dict(zip(models, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(len(tasks), 3, figsize=(15, 4.2 * len(tasks)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 1.5]})
    x = np.arange(len(models))
    for row, task in enumerate(tasks):
        a_acc, a_steps, a_curve = axes[row]
        steps_max = 1
        for i, m in enumerate(models):
            rs = groups.get((task, m), [])
            if not rs:
                continue
            jitter = np.linspace(-0.15, 0.15, len(rs))
            acc = [r["test_accuracy"] for r in rs]
            a_acc.scatter(x[i] + jitter, acc, color=colours[m], s=28, zorder=3)
            a_acc.hlines(np.mean(acc), x[i] - 0.3, x[i] + 0.3, color=colours[m], lw=2)
            steps_max = max(steps_max, rs[0]["steps"])
            reached = [r["reached"] if r["reached"] is not None else np.nan for r in rs]
            never = [j for j, v in enumerate(reached) if np.isnan(v)]
            a_steps.scatter(x[i] + jitter, reached, color=colours[m], s=28, zorder=3)
            a_steps.scatter(x[i] + jitter[never], [1.08 * rs[0]["steps"]] * len(never), marker="x",
                            color=colours[m], s=36, zorder=3)
            curve = np.mean([r["acc_curve"] for r in rs], axis=0)
            a_curve.plot(np.arange(1, curve.size + 1), curve, color=colours[m], lw=1.6, label=SHORT.get(m, m))
        labels = [SHORT.get(m, m) for m in models]
        for ax in (a_acc, a_steps):
            ax.set_xticks(x, labels, rotation=30, ha="right")
            ax.grid(axis="y", alpha=0.3)
        a_acc.axhline(0.5, color="grey", ls=":", lw=1)
        a_acc.set_ylim(0.45, 1.02)
        a_acc.set_ylabel("test accuracy, H = 200")
        a_acc.set_title(f"{TASK_TITLE.get(task, task)}: accuracy (dots: seeds)")
        a_steps.axhline(steps_max, color="grey", ls="--", lw=1)
        a_steps.set_ylim(0, 1.15 * steps_max)
        a_steps.set_ylabel("step the curriculum reached H = 100")
        a_steps.set_title("steps to H = 100 (x: never, in the run)")
        a_curve.axhline(0.94, color="grey", ls="--", lw=1)
        a_curve.axhline(0.5, color="grey", ls=":", lw=1)
        a_curve.axvline(100, color="black", lw=0.8, alpha=0.5)
        a_curve.set_xscale("log")
        a_curve.set_ylim(0.45, 1.02)
        a_curve.set_xlabel("output step (log; trained to 100)")
        a_curve.set_ylabel("accuracy (mean over seeds)")
        a_curve.set_title("length generalisation")
        a_curve.legend(fontsize=8, loc="lower left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collect", type=Path, help="a finished, analysed sweep folder to copy runs/ from")
    args = parser.parse_args()
    if args.collect:
        collect(args.collect)
    rows = load_runs()
    groups: dict[tuple, list] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (list(TASK_TITLE).index(r["task"]) if r["task"] in TASK_TITLE else 9,
                                         MODEL_ORDER.index(r["model"]) if r["model"] in MODEL_ORDER else 99)):
        groups[(r["task"], r["model"])].append(r)
    (HERE / "results.md").write_text("\n".join(results_table(groups)) + "\n")
    (HERE / "eq8.md").write_text("\n".join(eq8_table(groups)) + "\n")
    figure(groups, HERE / "architectures.png")
    print((HERE / "results.md").read_text())
    print((HERE / "eq8.md").read_text())


if __name__ == "__main__":
    main()
