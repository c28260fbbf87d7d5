"""Uniform against Gaussian initialisation (paper App. B.3, Fig. 14), from the committed runs (no training).

    python experiments/init_study/make_figures.py [--collect outputs/sweeps/init_study]

``--collect`` first copies each run of a finished, analysed sweep here (``runs/<job>/``: config, summary,
analysis and the trained weights without optimiser state). Then, from ``runs/``: ``results.csv`` (one row per
run: the eigenvalues of W_hh above 0.9 — count, mean and largest radius —, the length-generalisation step and the
accuracies), ``results.md`` (per initialisation, and the rank correlation the paper's sentence is about, with a
permutation p-value and a bootstrap interval) and ``init_study.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from twm.run.folder import RunFolder  # noqa: E402
from twm.sweep import run_dirs  # noqa: E402
from twm.tasks import get_task  # noqa: E402
from twm.theory import phi  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
THRESHOLD = 0.9  # |λ| above which an eigenvalue counts as persistent (docs/science.md §4)
COLOURS = {"uniform": "tab:red", "gaussian": "tab:blue"}
SEED = 0  # of the permutation test and the bootstrap


def collect(sweep_dir: Path) -> None:
    for job in run_dirs(sweep_dir):
        RunFolder(job).export(RUNS / job.name, weights=True)


def load_runs() -> list[dict]:
    rows = []
    for run in sorted((p for p in RUNS.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        model, spec = RunFolder(run).load_model()
        eig = np.linalg.eigvals(model.operator().numpy())
        persistent = np.abs(eig[np.abs(eig) > THRESHOLD])
        analysis = json.loads((run / "analysis.json").read_text())
        lg = analysis["length_generalisation"]
        rows.append({
            "run": run.name, "init": spec.model.init, "seed": spec.seed, "s": spec.task.s, "d": spec.task.d,
            "hidden": spec.model.hidden_size, "test_accuracy": analysis["run"]["test_accuracy"],
            "n_persistent": int(persistent.size), "n_theory": analysis["spectral"]["n_theory"],
            "spectral_error": analysis["spectral"]["error"],
            "mean_radius": float(persistent.mean()) if persistent.size else None,
            "max_radius": float(np.abs(eig).max()), "first_below": lg["first_below"], "horizon": lg["horizon"],
            "mean_accuracy": lg["mean_accuracy"], "eigenvalues": eig,
        })
    return rows


def spearman_with_uncertainty(x, y, n: int = 10_000) -> dict:
    """Spearman's ρ of (x, y), a two-sided permutation p-value and a 95 % percentile bootstrap interval (``n``
    resamples each, seeded)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = float(stats.spearmanr(x, y).statistic)
    rng = np.random.default_rng(SEED)
    perm = np.array([stats.spearmanr(x, rng.permutation(y)).statistic for _ in range(n)])
    boot = []
    for _ in range(n):
        i = rng.integers(0, x.size, x.size)
        if np.unique(x[i]).size > 1 and np.unique(y[i]).size > 1:
            boot.append(stats.spearmanr(x[i], y[i]).statistic)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"rho": rho, "p_permutation": float(np.mean(np.abs(perm) >= abs(rho) - 1e-12)), "ci95": [lo, hi],
            "n": int(x.size)}


def _steps(r: dict) -> float:
    """The length-generalisation step, with "never below 0.94 in the test" counted as one past its horizon."""
    return float(r["first_below"]) if r["first_below"] is not None else float(r["horizon"] + 1)


def figure(rows: list[dict], path: Path) -> None:
    fig, (a_spec, a_rad, a_len) = plt.subplots(1, 3, figsize=(15, 4.8))
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 400))
    a_spec.plot(circle.real, circle.imag, color="grey", lw=0.8)
    s, d = rows[0]["s"], rows[0]["d"]
    theory = np.linalg.eigvals(phi(get_task("repeat_copy", s, d).F, s))
    a_spec.scatter(theory.real, theory.imag, marker="o", s=160, facecolors="none", edgecolors="black", lw=1.2,
                   label="Φ (4 at each angle)", zorder=2)
    for init in COLOURS:
        eig = np.concatenate([r["eigenvalues"] for r in rows if r["init"] == init])
        a_spec.scatter(eig.real, eig.imag, s=5, alpha=0.5, color=COLOURS[init], label=f"{init} (all seeds)",
                       zorder=3)
    a_spec.set_aspect("equal")
    a_spec.set_title(f"W_hh eigenvalues, repeat copy s = {s}, d = {d}")
    a_spec.legend(fontsize=8, loc="lower left")
    for k, init in enumerate(COLOURS):
        for r in (r for r in rows if r["init"] == init):
            radii = np.abs(r["eigenvalues"])
            radii = radii[radii > THRESHOLD]
            a_rad.scatter(np.full(radii.size, k) + 0.25 * (r["seed"] - 3.5) / 3.5, radii, s=6,
                          color=COLOURS[init], alpha=0.6)
    a_rad.axhline(1.0, color="grey", ls=":")
    a_rad.set_xticks(range(len(COLOURS)), [f"{i}\n(seeds left to right)" for i in COLOURS])
    a_rad.set_ylabel(f"|λ| of the eigenvalues above {THRESHOLD}")
    a_rad.set_title("radii of the persistent eigenvalues")
    for init in COLOURS:
        sub = [r for r in rows if r["init"] == init]
        a_len.scatter([r["mean_radius"] for r in sub], [_steps(r) for r in sub], color=COLOURS[init], label=init)
    horizon = rows[0]["horizon"]
    a_len.axhline(horizon + 1, color="grey", ls="--", lw=0.8)
    a_len.text(a_len.get_xlim()[0], horizon + 1, f" never below 0.94 (to step {horizon})", va="bottom", fontsize=8)
    a_len.set_xlabel(f"mean |λ| of the eigenvalues above {THRESHOLD}")
    a_len.set_ylabel("first output step below 0.94")
    a_len.set_title("larger eigenvalues, longer generalisation?")
    a_len.legend(fontsize=8)
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
    keys = [k for k in rows[0] if k != "eigenvalues"]
    with (HERE / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows({k: r[k] for k in keys} for r in rows)
    lines = [f"| init | runs | test accuracy | eigenvalues > 0.9 (per seed; Φ: {rows[0]['n_theory']}) | mean radius of "
             "those | largest |λ| | first step < 0.94 (per seed) | "
             f"mean accuracy to output step {rows[0]['horizon']} |",
             "|---|---|---|---|---|---|---|---|"]
    for init in COLOURS:
        sub = sorted((r for r in rows if r["init"] == init), key=lambda r: r["seed"])
        lines.append(
            f"| {init} | {len(sub)} | {np.mean([r['test_accuracy'] for r in sub]):.4f} | "
            f"{', '.join(str(r['n_persistent']) for r in sub)} | "
            f"{np.mean([r['mean_radius'] for r in sub]):.4f} ± {np.std([r['mean_radius'] for r in sub], ddof=1):.4f} | "
            f"{np.mean([r['max_radius'] for r in sub]):.4f} | "
            f"{', '.join(str(r['first_below'] or 'never') for r in sub)} | "
            f"{np.mean([r['mean_accuracy'] for r in sub]):.4f} |")
    by = {i: [r["mean_radius"] for r in rows if r["init"] == i] for i in COLOURS}
    u = stats.mannwhitneyu(by["gaussian"], by["uniform"], alternative="two-sided")
    corr = {"first_below": spearman_with_uncertainty([r["mean_radius"] for r in rows], [_steps(r) for r in rows]),
            "mean_accuracy": spearman_with_uncertainty([r["mean_radius"] for r in rows],
                                                       [r["mean_accuracy"] for r in rows])}
    lines += ["", f"Mean persistent radius, Gaussian against uniform: Mann–Whitney U = {u.statistic:.1f}, "
                  f"p = {u.pvalue:.4f} (two-sided, {len(by['gaussian'])} + {len(by['uniform'])} runs).", ""]
    for name, c in corr.items():
        lines.append(f"Spearman ρ(mean persistent radius, {name.replace('_', ' ')}) over all {c['n']} runs: "
                     f"{c['rho']:.3f}, permutation p = {c['p_permutation']:.4f}, bootstrap 95 % interval "
                     f"[{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}].")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    (HERE / "results.json").write_text(json.dumps({"mann_whitney": {"U": float(u.statistic), "p": float(u.pvalue)},
                                                   "spearman": corr}, indent=2) + "\n")
    figure(rows, HERE / "init_study.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
