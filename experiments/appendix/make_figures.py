"""The paper's appendix figures 6-11 from committed trained networks (no training): spectra with per-direction counts,
W_hh in the variable-memory basis (Algorithm 1) and the hidden state in that basis.

    python experiments/appendix/make_figures.py [--collect-tasks outputs/sweeps/table1_cpu_t090]
                                                [--collect-compression outputs/sweeps/compression]
                                                [--collect-compression-paper outputs/sweeps/compression_paper]

``--collect-*`` copies the config, summary and weights (not the optimiser state) of the chosen runs into
``tasks/<task>/``, ``compression/seed_<k>/`` and ``compression_paper/seed_<k>/`` (the same runs with the paper's
45 000-step recipe). Then ``twm.analyze.analyze_run`` writes each run's
``analysis.json`` and PNGs; this script tiles them into ``fig*.png`` and writes ``results.json``. Fig. 10 reuses the
committed s = d = 8 repeat-copy network of experiments/waves (its analysis is read, not redone).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from twm.analysis import angle_counts, angle_differences, plot_spectrum, spectral_comparison  # noqa: E402
from twm.analyze import AnalyzeOptions, analyze_run  # noqa: E402
from twm.run.folder import RunFolder  # noqa: E402
from twm.theory import predicted_eigenvalues  # noqa: E402

HERE = Path(__file__).resolve().parent
WAVES = HERE.parent / "waves"
THRESHOLD = 0.9  # |λ| above which an eigenvalue is persistent (docs/science.md §4)
# jobs of `experiment=table1_cpu curriculum.threshold=0.9 optimizer.l2=0.0,0.001,0.1,10.0` (complete_grid.sh):
# hidden 128, L2 0, seed 1 of each task
TASK_JOBS = {"repeat_copy": 8, "staggered_copy": 24, "signed_shuffle_48": 40, "signed_shuffle_70": 56}
LABELS = {"repeat_copy": "repeat copy (T1)", "staggered_copy": "staggered copy (T2; demo T3)",
          "signed_shuffle_48": "signed_shuffle_48 (T3; demo T2)", "signed_shuffle_70": "signed_shuffle_70 (T4)"}
COMPRESSION_SEEDS = (1, 2, 3)  # jobs 0-2 of experiment=compression
# folder here -> how it was trained (experiment=compression, then with recipe=paper)
COMPRESSION = {"compression": "20 000 steps, released recipe", "compression_paper": "45 000 steps, paper's recipe"}


def collect(tasks: Path | None, compression: dict[str, Path | None]) -> None:
    if tasks:
        for name, job in TASK_JOBS.items():
            RunFolder(tasks / str(job)).export(HERE / "tasks" / name, weights=True)
    for folder, sweep in compression.items():
        for job, seed in enumerate(COMPRESSION_SEEDS if sweep else ()):
            RunFolder(sweep / str(job)).export(HERE / folder / f"seed_{seed}", weights=True)


def describe(run_dir: Path, analysis: dict) -> dict:
    """The numbers each figure's claim rests on, from the run's analysis and its weights."""
    model, spec = RunFolder(run_dir).load_model()
    eig = np.linalg.eigvals(model.operator().double().numpy())
    theory = predicted_eigenvalues(spec.task.F, spec.task.s)
    counts = angle_counts(eig, theory, THRESHOLD)
    above = eig[np.abs(eig) > THRESHOLD]
    directions = np.exp(1j * np.radians([a for a, _, _ in counts]))
    deviation = float(angle_differences(above, directions).min(axis=1).max()) if above.size else None
    spectral, basis = analysis["spectral"], analysis["basis"]
    return {
        "task": spec.task.name, "s": spec.task.s, "d": spec.task.d, "hidden": spec.model.hidden_size,
        "seed": spec.seed, "steps": analysis["run"]["steps"], "threshold": analysis["run"]["threshold"],
        "wall_seconds": analysis["run"]["wall_seconds"], "test_accuracy": analysis["run"]["test_accuracy"],
        "spectral_error": spectral["error"], "n_learned": spectral["n_learned"], "n_theory": spectral["n_theory"],
        "counts_match": spectral["counts_match"], "n_at_least_1": int(np.sum(np.abs(eig) >= 1.0)),
        "spectral_radius": spectral["spectral_radius"],
        "max_angle_to_phi": deviation,
        "per_angle": [{"angle": a, "theory": t, "learned": k} for a, t, k in counts],
        "support_match": basis.get("support_match"), "boundary_match": basis.get("boundary_match"),
        "n_kept": basis.get("n_kept"), "first_below": analysis["length_generalisation"]["first_below"],
    }


def tile(pngs: list[Path], titles: list[str], path: Path, columns: int, suptitle: str, size: float = 5.0) -> None:
    rows = -(-len(pngs) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows * 1.05), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, png, title in zip(axes.ravel(), pngs, titles):
        ax.imshow(plt.imread(png))
        ax.set_title(title, fontsize=11)
    fig.suptitle(suptitle, fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cluster_counts(panels: dict[str, list[dict]], path: Path) -> None:
    """Fig. 9A as bars: learned eigenvalues above the threshold per direction of Φ, one bar per seed, one panel per
    training recipe."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
    for ax, (what, rows) in zip(axes[:, 0], panels.items()):
        _cluster_bars(ax, rows, what)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cluster_bars(ax, rows: list[dict], what: str) -> None:
    width = 0.8 / len(rows)
    for k, row in enumerate(rows):
        learned = [a["learned"] for a in row["per_angle"]]
        x = np.arange(len(learned)) + (k - (len(rows) - 1) / 2) * width
        ax.bar(x, learned, width=width, label=f"seed {row['seed']}: {row['n_learned']} above {THRESHOLD:g}")
    theory = [a["theory"] for a in rows[0]["per_angle"]]
    ax.step(np.arange(len(theory) + 1) - 0.5, theory + theory[-1:], where="post", color="k", lw=1.2,
            label=f"Φ: {sum(theory)} (s·d)")
    ax.set_xticks(np.arange(len(theory)), [f"{a['angle']:.1f}°" for a in rows[0]["per_angle"]], rotation=60,
                  fontsize=8)
    ax.set_ylabel("eigenvalues per direction")
    ax.set_title(f"repeat copy s = {rows[0]['s']}, d = {rows[0]['d']}, hidden {rows[0]['hidden']}, {what}: "
                 f"eigenvalues with |λ| > {THRESHOLD:g} per direction of Φ (paper Fig. 9A: 3-4 of 5, 63 in all)",
                 fontsize=9)
    ax.set_ylim(0, max(theory) + 1.6)
    ax.legend(fontsize=8, ncol=4, loc="upper center")


def analysed(run_dir: Path) -> dict:
    return analyze_run(run_dir, AnalyzeOptions(length_batches=2, force=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collect-tasks", type=Path)
    parser.add_argument("--collect-compression", type=Path)
    parser.add_argument("--collect-compression-paper", type=Path)
    args = parser.parse_args()
    collect(args.collect_tasks, {"compression": args.collect_compression,
                                 "compression_paper": args.collect_compression_paper})
    results: dict = {"tasks": {}, **{folder: [] for folder in COMPRESSION}, "repeat_copy_s8_d8": None}

    task_dirs = {name: HERE / "tasks" / name for name in TASK_JOBS}
    for name, run_dir in task_dirs.items():
        results["tasks"][name] = describe(run_dir, analysed(run_dir))
    titles = [LABELS[n] for n in task_dirs]
    tile([d / "analysis/spectrum.png" for d in task_dirs.values()], titles, HERE / "fig6_spectra.png", 2,
         "Fig. 6: Jacobian spectra of one network per task (hidden 128, seed 1); boxes: learned/Φ per direction")
    tile([d / "analysis/weights_in_basis.png" for d in task_dirs.values()], titles,
         HERE / "fig7_weights_in_basis.png", 2, "Fig. 7: Ψ* W_hh Ψ, the same four networks")
    t3 = task_dirs["signed_shuffle_48"]
    tile([t3 / "analysis/weights_in_basis.png", t3 / "analysis/spectrum.png", t3 / "analysis/hidden_waves.png"],
         ["A: Ψ* W_hh Ψ", "B: spectrum vs Φ", "C, D: hidden state, standard and variable-memory basis"],
         HERE / "fig11_signed_shuffle_48.png", 3, "Fig. 11: compose copy T3 (signed_shuffle_48), s = d = 8")

    trained = [folder for folder in COMPRESSION if (HERE / folder).is_dir()]
    for folder in trained:
        results[folder] = [describe(d, analysed(d)) for d in (HERE / folder / f"seed_{s}" for s in COMPRESSION_SEEDS)]
    plot_cluster_counts({COMPRESSION[f]: results[f] for f in trained}, HERE / "fig9a_cluster_counts.png")
    tile([HERE / f / f"seed_{s}" / "analysis/spectrum.png" for f in trained for s in COMPRESSION_SEEDS],
         [f"seed {s}, {COMPRESSION[f]}" for f in trained for s in COMPRESSION_SEEDS], HERE / "fig8b_9a_spectra.png", 3,
         "Figs. 8B, 9A: repeat copy s = 16, d = 5 (Φ: 80 eigenvalues on 16 directions)")
    first = HERE / "compression" / "seed_1"
    tile([first / "analysis/weights_in_basis.png", first / "analysis/hidden_waves.png"],
         ["A / 9B: Ψ* W_hh Ψ", "C, D: hidden state, standard and variable-memory basis"],
         HERE / "fig8_9_seed_1.png", 2, "Figs. 8, 9: repeat copy s = 16, d = 5, seed 1", size=6.0)

    waves = WAVES / "run_repeat_copy"
    results["repeat_copy_s8_d8"] = describe(waves, json.loads((waves / "analysis.json").read_text()))
    model, spec = RunFolder(waves).load_model()
    W_hh = model.operator().double().numpy()
    spectrum = HERE / "fig10_spectrum.png"
    plot_spectrum(np.linalg.eigvals(W_hh), spec.task.F, spec.task.s, spectrum,
                  comparison=spectral_comparison(W_hh, spec.task.F, spec.task.s),
                  title="repeat_copy, hidden 128, seed 1: spectrum vs Φ")
    tile([WAVES / "repeat_copy_weights_in_basis.png", spectrum, WAVES / "repeat_copy_hidden_waves.png"],
         ["A: Ψ* W_hh Ψ", "B: spectrum vs Φ", "C, D: hidden state, standard and variable-memory basis"],
         HERE / "fig10_repeat_copy_s8_d8.png", 3, "Fig. 10: repeat copy s = d = 8 (experiments/waves network)")

    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, row in [*results["tasks"].items(),
                      *((f"s16d5 {f} seed {r['seed']}", r) for f in trained for r in results[f]),
                      ("s8d8 (waves)", results["repeat_copy_s8_d8"])]:
        print(f"{name}: {row['n_learned']}/{row['n_theory']} modes, error {row['spectral_error']}, "
              f"support {row['support_match']}, test {row['test_accuracy']:.3f}")


if __name__ == "__main__":
    main()
