"""Regenerate the README's figures (``docs/*.png``) from the committed run ``experiments/gradient_flow/run_h200``
(T1, s = d = 8, hidden 128, 20 000 steps; no training).

    python docs/make_figures.py

``twm.analyze.analyze_run`` analyses a temporary copy of the run (so nothing is written into ``experiments/``) with
the defaults of ``conf/analyze.yaml`` and its five figures are copied here.
"""

import shutil
import tempfile
from pathlib import Path

from twm.analyze import AnalyzeOptions, analyze_run

HERE = Path(__file__).resolve().parent
RUN = HERE.parent / "experiments" / "gradient_flow" / "run_h200"
FIGURES = ("spectrum", "weights_in_basis", "hidden_waves", "gradient_flow", "length_generalisation")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run_h200"
        shutil.copytree(RUN, run)
        analysis = analyze_run(run, AnalyzeOptions(force=True))
        for name in FIGURES:
            shutil.copyfile(run / analysis.plots[name], HERE / f"{name}.png")
            print(HERE / f"{name}.png")


if __name__ == "__main__":
    main()
