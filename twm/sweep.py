"""``python -m twm.sweep status sweep_dir=...``: where a sweep stands (completed, running, interrupted, failed,
missing), read from the run folders' ``summary.json``, checkpoints and the sweep's ``multirun.yaml``.

A run folder with a checkpoint but no summary counts as *running* while its files changed in the last
``stale_minutes`` minutes, else as *interrupted* (relaunching the sweep resumes it); a prepared folder with neither
checkpoint nor metrics is *not started* (e.g. waiting for its turn in an ensemble launch).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from pathlib import Path

from omegaconf import OmegaConf

from twm.run.folder import CHECKPOINTS, LAST, METRICS, RunFolder

log = logging.getLogger("twm.sweep")
STATES = ("completed", "running", "interrupted", "not started", "failed", "missing")


def grid_jobs(params, cli_overrides=()) -> list[list[str]]:
    """The jobs (override lists) Hydra's basic sweeper makes of ``hydra.sweeper.params`` and CLI overrides; the
    CLI wins over the preset for the same key, as in Hydra."""
    from itertools import product

    from hydra.core.override_parser.overrides_parser import OverridesParser

    cli = [str(o) for o in cli_overrides]
    overridden = {o.split("=", 1)[0].lstrip("+~") for o in cli}
    overrides = cli + [f"{k}={v}" for k, v in (params or {}).items() if str(k) not in overridden]
    axes = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_sweep_override():
            axes.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            axes.append([f"{key}={override.get_value_element_as_str()}"])
    return [list(job) for job in product(*axes)]


def expected_jobs(sweep_dir: Path) -> int | None:
    """Number of jobs the sweep launched, from its ``multirun.yaml``."""
    path = sweep_dir / "multirun.yaml"
    if not path.exists():
        return None
    cfg = OmegaConf.load(path)
    params = {str(k): str(v) for k, v in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items()}
    return len(grid_jobs(params, OmegaConf.select(cfg, "hydra.overrides.task") or []))


def run_state(run_dir: Path, stale_minutes: float = 10.0) -> str:
    summary = RunFolder(run_dir).read_summary()
    if summary is not None and summary.get("status") in ("completed", "failed"):
        return summary["status"]
    files = [p for p in (run_dir / CHECKPOINTS / LAST, run_dir / METRICS) if p.exists()]
    if not files:
        return "not started" if (run_dir / ".hydra").exists() else "missing"
    newest = max(p.stat().st_mtime for p in files)
    return "running" if time.time() - newest < stale_minutes * 60 else "interrupted"


def run_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a Hydra multirun folder, in job order."""
    return sorted((p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def status(sweep_dir, stale_minutes: float = 10.0) -> dict:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep folder at {sweep_dir}")
    states = {p.name: run_state(p, stale_minutes) for p in run_dirs(sweep_dir)}
    counts = Counter(states.values())
    expected = expected_jobs(sweep_dir)
    if expected is not None:
        counts["missing"] += max(0, expected - len(states))
    return {"sweep_dir": str(sweep_dir), "expected": expected, "counts": {s: counts.get(s, 0) for s in STATES},
            "failed": sorted((k for k, v in states.items() if v == "failed"), key=int),
            "interrupted": sorted((k for k, v in states.items() if v == "interrupted"), key=int)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    verbs = [a for a in argv if "=" not in a]
    if verbs != ["status"] or "sweep_dir" not in args:
        sys.stderr.write("usage: python -m twm.sweep status sweep_dir=PATH [stale_minutes=10]\n")
        return 2
    try:
        report = status(args["sweep_dir"], float(args.get("stale_minutes", 10)))
    except FileNotFoundError as err:
        sys.stderr.write(f"twm.sweep: {err}\n")
        return 2
    counts = report["counts"]
    total = report["expected"] if report["expected"] is not None else sum(counts.values())
    print(f"{report['sweep_dir']}: {total} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES))
    for state in ("failed", "interrupted"):
        if report[state]:
            print(f"  {state}: jobs {', '.join(report[state])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
