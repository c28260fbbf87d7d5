"""The training pipeline for one run: config → task → model → trainer → checkpoint → summary (issue 3).

Idempotent and resumable on a fixed run folder: a folder whose ``summary.json`` says "completed" is left alone; one
with ``checkpoints/last.ckpt`` resumes from it and ends with the same weights and numbers as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from twm.train import artifacts
from twm.train.callbacks import CurriculumCallback
from twm.train.config import ConfigError, validate
from twm.train.metrics import per_step_accuracy

log = logging.getLogger("twm.train")


def _wandb_configured() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def build_loggers(cfg: DictConfig) -> list:
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if name == "wandb" and not _wandb_configured():
            os.environ["WANDB_MODE"] = "offline"  # no login, no network: never block
        loggers.append(instantiate(node))
    return loggers


def build_callbacks(cfg: DictConfig) -> list:
    callbacks = []
    for node in (cfg.get("callbacks") or {}).values():
        if node is not None and "_target_" in node:
            callbacks.append(instantiate(node))
    return callbacks


FINGERPRINT = "fingerprint.json"


def fingerprint(cfg: DictConfig) -> dict:
    """What makes a run this run: resuming or skipping a folder that holds another configuration is refused."""
    keep = {k: cfg[k] for k in ("task", "model", "curriculum", "data") if k in cfg}
    keep["seed"], keep["max_steps"] = cfg.seed, cfg.trainer.max_steps
    return OmegaConf.to_container(OmegaConf.create(keep), resolve=True)


def _check_fingerprint(out: Path, cfg: DictConfig) -> None:
    path, current = out / FINGERPRINT, fingerprint(cfg)
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != current:
            diff = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            raise ConfigError(
                "hydra.run.dir",
                str(out),
                f"a fresh folder: this one holds a run with another "
                f"configuration (differs in {', '.join(diff)}); relaunch the original grid or "
                "choose a new folder",
            )
    else:
        artifacts.write_json(path, current)


def _summary(cfg, task, module, curriculum_cb, status, steps, last, test_accuracy, wall, error=None) -> dict:
    cur = cfg.curriculum
    summary = {
        "status": status,
        "steps": int(steps),
        "seed": int(cfg.seed),
        "task": task.name,
        "task_id": list(task.task_id) if task.task_id is not None else None,
        "s": task.s,
        "d": task.d,
        "hidden_size": int(cfg.model.hidden_size),
        "l2": float(cfg.model.l2),
        "curriculum": curriculum_cb.curriculum.name,
        "threshold": float(cur.threshold) if "threshold" in cur else None,
        "final_horizon": int(module.horizon),
        "step_reached_max_horizon": curriculum_cb.step_reached_max_horizon,
        "train_loss": last.get("train/loss"),
        "train_accuracy": last.get("train/accuracy"),
        "test_accuracy": test_accuracy,
        "wall_seconds": round(wall, 3),
    }
    if error is not None:
        summary["error"] = error
    return summary


def train(cfg: DictConfig) -> dict:
    """Train one run into ``cfg.paths.output_dir``; returns its summary (also written as ``summary.json``)."""
    validate(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_fingerprint(out, cfg)
    saved = out / ".hydra" / "config.yaml"
    if not saved.exists():  # Hydra's CLI writes it; programmatic callers get the same file
        saved.parent.mkdir(exist_ok=True)
        OmegaConf.save(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), saved)
    done = artifacts.read_summary(out)
    if done and done.get("status") == "completed":
        log.info("run already completed (%s): nothing to do", out / artifacts.SUMMARY)
        return done
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message="Experiment logs directory")
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    start = time.perf_counter()
    task = instantiate(cfg.task)
    curriculum = instantiate(cfg.curriculum)
    module = instantiate(cfg.model, task=task, seed=int(cfg.seed), batch_size=int(cfg.data.batch_size))
    curriculum_cb = CurriculumCallback(curriculum)
    callbacks = [curriculum_cb, *build_callbacks(cfg)]
    ckpt = out / artifacts.CHECKPOINTS / artifacts.LAST
    resume_step = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] if ckpt.exists() else None
    if resume_step is not None:
        log.info("resuming from %s (step %d)", ckpt, resume_step)
    loggers = build_loggers(cfg)
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            artifacts.start_csv_logger(logger, resume_step)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(out))
    try:
        trainer.fit(module, ckpt_path=str(ckpt) if resume_step is not None else None)
        trainer.save_checkpoint(ckpt)
        last = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        test_acc = per_step_accuracy(
            module.model,
            task.F,
            task.s,
            int(cfg.data.test_horizon),
            int(cfg.data.test_batches),
            int(cfg.data.test_batch_size),
            artifacts.run_seeds(cfg.seed).test,
            device=module.device,
        ).mean()
        summary = _summary(
            cfg,
            task,
            module,
            curriculum_cb,
            "completed",
            trainer.global_step,
            last,
            float(test_acc),
            time.perf_counter() - start,
        )
        artifacts.write_json(out / artifacts.SUMMARY, summary)
        log.info(
            "completed %d steps: test accuracy %.4f (H = %d), %s",
            summary["steps"],
            summary["test_accuracy"],
            int(cfg.data.test_horizon),
            out,
        )
        return summary
    except BaseException as err:
        summary = _summary(
            cfg,
            task,
            module,
            curriculum_cb,
            "failed",
            trainer.global_step,
            {},
            None,
            time.perf_counter() - start,
            error=f"{type(err).__name__}: {err}",
        )
        artifacts.write_json(out / artifacts.SUMMARY, summary)
        raise
    finally:
        for logger in loggers:
            logger.finalize("success")
        if "wandb" in (cfg.get("logger") or {}):
            import wandb

            wandb.finish()
