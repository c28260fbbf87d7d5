"""``twm-sweep status sweep_dir=...`` (or ``python -m twm.sweep``): where a sweep stands (completed, running,
interrupted, failed, damaged, not started, missing), read from the run folders (``RunFolder.state``) and the sweep's
``multirun.yaml``.

*Running* means a live process owns the folder (``owner.json``: on this host its pid exists, elsewhere its heartbeat
is fresh), so a run killed with ``kill -9`` reads *interrupted* at once (relaunching the sweep resumes it). *Damaged*
names the file and the reason (an unreadable summary, a completed run whose checkpoint no longer matches its
checksum); one damaged folder never stops the command, whose exit code is 1 when any folder is damaged.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path

from omegaconf import OmegaConf

from twm.run.folder import RunFolder

log = logging.getLogger("twm.sweep")
USAGE = "usage: twm-sweep status sweep_dir=PATH [stale_minutes=10]   (or python -m twm.sweep ...)"
STATES = ("completed", "running", "interrupted", "not started", "failed", "damaged", "missing")


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


def run_state(run_dir: Path, stale_minutes: float | None = None) -> str:
    """The state of one run folder (see the module docstring). ``stale_minutes`` is accepted for compatibility and
    unused: liveness comes from the owner record, not from file ages."""
    return RunFolder(run_dir).state()[0]


def run_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a Hydra multirun folder, in job order."""
    return sorted((p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def status(sweep_dir, stale_minutes: float = 10.0) -> dict:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep folder at {sweep_dir}")
    detail = {p.name: RunFolder(p).state() for p in run_dirs(sweep_dir)}
    states = {name: state for name, (state, _) in detail.items()}
    counts = Counter(states.values())
    expected = expected_jobs(sweep_dir)
    if expected is not None:
        counts["missing"] += max(0, expected - len(states))
    return {"sweep_dir": str(sweep_dir), "expected": expected, "counts": {s: counts.get(s, 0) for s in STATES},
            "failed": sorted((k for k, v in states.items() if v == "failed"), key=int),
            "interrupted": sorted((k for k, v in states.items() if v == "interrupted"), key=int),
            "damaged": {k: reason for k, (v, reason) in sorted(detail.items(), key=lambda kv: int(kv[0]))
                        if v == "damaged"}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    verbs = [a for a in argv if "=" not in a]
    if verbs in (["--help"], ["-h"]):
        print(f"{USAGE}\n\n{__doc__.strip()}")
        return 0
    if verbs != ["status"] or "sweep_dir" not in args:
        sys.stderr.write(f"{USAGE}\n")
        return 2
    try:
        stale = float(args.get("stale_minutes", 10))
    except ValueError:
        sys.stderr.write(f"twm.sweep: stale_minutes={args['stale_minutes']!r} is not a number (minutes, e.g. "
                         "stale_minutes=10)\n")
        return 2
    try:
        report = status(args["sweep_dir"], stale)
    except FileNotFoundError as err:
        sys.stderr.write(f"twm.sweep: {err}\n")
        return 2
    counts = report["counts"]
    total = report["expected"] if report["expected"] is not None else sum(counts.values())
    print(f"{report['sweep_dir']}: {total} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES))
    for state in ("failed", "interrupted"):
        if report[state]:
            print(f"  {state}: jobs {', '.join(report[state])}")
    for job, reason in report["damaged"].items():
        print(f"  damaged: job {job}: {reason}")
    return 1 if report["damaged"] else 0


if __name__ == "__main__":
    sys.exit(main())
