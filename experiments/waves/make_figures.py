"""Figs. 3 and 4 from the committed trained weights (no training): Algorithm 1 on two runs of the Table-1 grid.

    python experiments/waves/make_figures.py [--collect outputs/sweeps/table1_cpu]

``--collect`` copies the config and the weights (not the optimiser state) of the chosen runs from the sweep into
``run_<name>/``. Then ``twm.analyze.analyze_run`` writes each run's ``analysis.json`` and PNGs, and the figures are
copied here as ``<name>_{weights_in_basis,hidden_waves,spectrum}.png``; ``results.json`` holds the numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from twm.analyze import AnalyzeOptions, analyze_run
from twm.run.folder import RunFolder

HERE = Path(__file__).resolve().parent
# job numbers of conf/experiment/table1_cpu.yaml: seed 1, hidden 128, L2 0
RUNS = {"repeat_copy": 6, "signed_shuffle_48": 30}


def collect(sweep_dir: Path) -> None:
    for name, job in RUNS.items():
        RunFolder(sweep_dir / str(job)).export(HERE / f"run_{name}", weights=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collect", type=Path)
    args = parser.parse_args()
    if args.collect:
        collect(args.collect)
    results = {}
    for name in RUNS:
        run_dir = HERE / f"run_{name}"
        analysis = analyze_run(run_dir, AnalyzeOptions(length_batches=2, force=True))
        for png in ("weights_in_basis", "hidden_waves", "spectrum"):
            shutil.copyfile(run_dir / "analysis" / f"{png}.png", HERE / f"{name}_{png}.png")
        results[name] = {"run": analysis["run"], "spectral": analysis["spectral"], "basis": analysis["basis"],
                         "hidden_waves": {k: v for k, v in analysis["hidden_waves"].items() if k != "pattern"}}
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps({k: {"spectral_error": v["spectral"]["error"], "n_kept": v["basis"]["n_kept"],
                          "support_match": v["basis"]["support_match"], "boundary_match": v["basis"]["boundary_match"]}
                      for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
