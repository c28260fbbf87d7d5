"""The run-folder contract that training writes and analysis reads (issue 3, item 5).

``<run>/.hydra/config.yaml``, ``<run>/metrics.csv``, ``<run>/checkpoints/last.ckpt`` (a Lightning checkpoint: the
model's weights under ``state_dict["model.*"]``), ``<run>/summary.json`` (``status`` "completed" or "failed").
Single runs and ensemble members write the same files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from twm.model import ElmanRNN
from twm.tasks import Task

SUMMARY = "summary.json"
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
