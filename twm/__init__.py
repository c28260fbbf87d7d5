"""twm: traveling-wave working memory in RNNs (Karuvally, Sejnowski & Siegelmann, ICML 2024)."""

from pathlib import Path

# The Hydra config tree of the apps (twm-train, twm-analyze, twm-report): given to hydra.main as an absolute path, so
# the console commands and `python -m` find it alike.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
