"""Regenerate this experiment's figures and numbers from the committed probe files (no training).

    python experiments/gradient_flow/make_figures.py

Reads ``run_h200/grad_probe.csv`` (20 000 steps, probe every 100) and ``run_early/grad_probe.csv`` (first 1 000
steps, probe every 10), writes ``gradient_flow.png``, ``gradient_flow_early.png`` and ``results.json``.
"""

import json
from pathlib import Path

from twm.analysis import load_probe_csv, plot_gradient_flow
from twm.analyze import gradient_summary

HERE = Path(__file__).resolve().parent


def main() -> None:
    results = {}
    for name, png in (("run_h200", "gradient_flow.png"), ("run_early", "gradient_flow_early.png")):
        path = HERE / name / "grad_probe.csv"
        if not path.exists():
            continue
        probe = load_probe_csv(path)
        plot_gradient_flow(probe["steps"], probe["G"], probe["decay_rate"], probe["max_abs_eig"], path=HERE / png,
                           title=f"T1 repeat copy, s = d = 8, hidden 128 ({name})")
        summary = json.loads((HERE / name / "summary.json").read_text())
        results[name] = {**gradient_summary(probe), "test_accuracy": summary["test_accuracy"],
                         "steps": summary["steps"], "step_reached_max_horizon": summary["step_reached_max_horizon"]}
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
