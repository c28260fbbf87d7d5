"""The run-folder contract that training writes and analysis reads (issue 3, item 5).

``<run>/.hydra/config.yaml``, ``<run>/metrics.csv``, ``<run>/checkpoints/last.ckpt`` (a Lightning checkpoint: the
model's weights under ``state_dict["model.*"]``), ``<run>/summary.json`` (``status`` "completed" or "failed").
Single runs and ensemble members write the same files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from twm.model import ElmanRNN
from twm.tasks import Task

SUMMARY = "summary.json"
METRICS = "metrics.csv"
METRICS_BACKUP = "metrics.resume.csv"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
SUMMARY_KEYS = (
    "status", "steps", "seed", "task", "task_id", "s", "d", "hidden_size", "l2", "curriculum", "threshold",
    "final_horizon", "step_reached_max_horizon", "train_loss", "train_accuracy", "test_accuracy", "wall_seconds",
)


@dataclass(frozen=True)
class RunSeeds:
    """Independent seeds derived from a run's ``seed`` (numpy SeedSequence): weights, training data, test data,
    the gradient probe batch."""

    init: int
    data: int
    test: int
    probe: int


def run_seeds(seed: int) -> RunSeeds:
    children = np.random.SeedSequence(int(seed)).spawn(4)
    return RunSeeds(*(int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children))


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (a killed run never leaves half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def start_csv_logger(logger, resume_step: int | None) -> None:
    """Open Lightning's ``CSVLogger`` on a run folder without losing history. Its writer deletes an existing
    ``metrics.csv`` when it starts; the rows of steps before ``resume_step`` are first kept in a backup file (merged
    with one an earlier kill left behind, so no window loses them) and put back afterwards. ``resume_step=None``
    starts the metrics afresh."""
    out = Path(logger.log_dir)
    current, backup = out / METRICS, out / METRICS_BACKUP
    rows, header = {}, None
    if resume_step is not None:
        for path in (backup, current):  # a backup left by an earlier kill holds the oldest rows
            if path.exists():
                with path.open(newline="") as f:
                    reader = csv.DictReader(f)
                    header = header or reader.fieldnames
                    rows.update((int(float(r["step"])), r) for r in reader if int(float(r["step"])) < resume_step)
    if header is not None:
        tmp = backup.with_suffix(".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows[step] for step in sorted(rows))
        os.replace(tmp, backup)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "log directory exists and is not empty": the run's own folder
        logger.experiment  # noqa: B018  (creating the writer deletes metrics.csv)
    if header is not None:
        shutil.copyfile(backup, current)
    backup.unlink(missing_ok=True)


def read_summary(run_dir) -> dict | None:
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.exists() else None


def load_config(run_dir) -> DictConfig:
    return OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml")


def task_from_config(cfg: DictConfig) -> Task:
    return instantiate(cfg.task)


def model_from_config(cfg: DictConfig, task: Task) -> ElmanRNN:
    return ElmanRNN(task.d, int(cfg.model.hidden_size), task.d, bias=bool(cfg.model.bias), init=str(cfg.model.init))


def load_model(run_dir, checkpoint: str = LAST) -> tuple[ElmanRNN, Task, DictConfig]:
    """The trained model of a run folder, its task and its config."""
    cfg = load_config(run_dir)
    task = task_from_config(cfg)
    model = model_from_config(cfg, task)
    state = torch.load(Path(run_dir) / CHECKPOINTS / checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return model.eval(), task, cfg
