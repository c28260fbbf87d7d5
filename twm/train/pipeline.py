"""One run's path: composed config → :class:`RunSpec` → :class:`Job` (folder, loggers, callbacks) → engine →
run folder. ``python -m twm.train`` calls :func:`train`; the ensemble launcher calls :func:`prepare` per job, then
:func:`train_packed`.

Idempotent and resumable on a fixed run folder: a folder whose ``summary.json`` says "completed" is left alone; one
with a checkpoint resumes from it (whichever engine wrote it) and ends with the same weights and numbers as an
uninterrupted run; one whose checkpoint already holds the last step only gets its summary written.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import defaultdict

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from twm.run import wandb as run_wandb
from twm.run.folder import Busy, FolderError, RunFolder
from twm.run.spec import RunSpec
from twm.train import from_checkpoint, signals
from twm.train.config import ConfigError, validate
from twm.train.job import Job
from twm.train.loggers import WandbLogger
from twm.train.signals import StopRequested

log = logging.getLogger("twm.train")


def build_loggers(cfg: DictConfig, folder: RunFolder, resume_step: int | None) -> list:
    """The configured Lightning loggers; a CSV logger resumes ``metrics.csv`` at ``resume_step``; a W&B logger
    (:class:`twm.train.loggers.WandbLogger`) sends its metrics as the folder checkpoints them."""
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if "Wandb" in str(node.get("_target_", "")):
            run_wandb.ensure_offline()  # no login, no network: never block
        logger = instantiate(node)
        if isinstance(logger, CSVLogger):
            folder.resume_csv(logger, resume_step)
        if isinstance(logger, WandbLogger):
            folder.checkpoint_listeners.append(logger.commit)
        loggers.append(logger)
    return loggers


def _logger_config(cfg: DictConfig, spec: RunSpec) -> dict:
    """The logger nodes, resolved, with what a W&B logger needs from the job: the flattened config, the spec and
    the tags (``tags`` plus the sweep name)."""
    nodes = OmegaConf.to_container(cfg.get("logger") or OmegaConf.create({}), resolve=True)
    if not any("Wandb" in str(node.get("_target_", "")) for node in nodes.values()):
        return nodes
    whole = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    flat = run_wandb.flatten(whole)
    tags = [str(t) for t in (cfg.get("tags") or [])]
    if cfg.get("sweep_name") and str(cfg.sweep_name) not in tags:
        tags.append(str(cfg.sweep_name))
    for node in nodes.values():
        if "Wandb" in str(node.get("_target_", "")):
            node.update(config=flat, spec=spec.to_dict(), tags=tags, _convert_="all")
    return nodes


def build_callbacks(cfg: DictConfig) -> list:
    return [instantiate(node) for node in (cfg.get("callbacks") or {}).values()
            if node is not None and "_target_" in node]


def prepare(cfg: DictConfig) -> Job:
    """Check the config (and ``ckpt_path``: :mod:`twm.train.from_checkpoint`), claim the run folder (its
    fingerprint) and describe the job; nothing is trained, opened or locked yet (:func:`start` does that)."""
    validate(cfg)
    spec = RunSpec.from_config(cfg)
    start_from = from_checkpoint.resolve(cfg.get("ckpt_path"), spec)
    spec = start_from.spec if start_from is not None else spec
    folder = RunFolder(cfg.paths.output_dir)
    try:
        folder.claim(spec, cfg)
    except FolderError as err:
        raise ConfigError("hydra.run.dir", str(folder.path), f"a fresh folder: {err}") from None
    # resolved now: the ensemble launcher starts jobs after Hydra's job context (``${hydra:...}``) has ended
    kept = {key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg.get(key), DictConfig)
            else cfg.get(key) for key in ("callbacks", "num_threads")}
    kept["logger"] = _logger_config(cfg, spec)
    return Job(spec, folder, OmegaConf.create(kept), start_from=start_from)


def start(job: Job) -> None:
    """Take the job's folder (:class:`twm.run.folder.Busy` if a live process holds it) and, unless it is
    completed, open its loggers (the CSV resumes at the checkpoint it will continue from) and callbacks."""
    signals.install()
    signals.check()  # a stop was requested earlier in this process: start nothing more
    job.folder.acquire()
    if job.folder.is_completed() or job.cfg is None:
        return
    if job.start_from is not None:
        job.start_from.seed(job.folder)
    path, note = job.folder.resume_path()
    if note:
        log.warning("%s: %s", job.folder.path, note)
    step = None if path is None else job.folder.checkpoint_step()
    if job.cfg.get("num_threads"):
        torch.set_num_threads(int(job.cfg.num_threads))
    job.loggers = build_loggers(job.cfg, job.folder, step)
    job.callbacks = build_callbacks(job.cfg)


def stop(job: Job) -> None:
    """Close the job's loggers (a W&B run gets the run's summary) and release its folder."""
    try:
        summary = job.folder.read_summary()
    except ValueError:  # a damaged summary: the loggers close without it
        summary = None
    for logger in job.loggers:
        logger.finalize("success")
        if isinstance(logger, WandbLogger):
            logger.close(summary)
    job.loggers = []
    job.folder.checkpoint_listeners.clear()
    job.folder.release()


def run_lightning(job: Job) -> dict:
    """Train one job with the Lightning engine (or only finalise it) and return its summary. A signal stops it at
    a step boundary with a checkpoint and the summary status "interrupted" (:class:`StopRequested` is re-raised
    after any earlier handler, e.g. submitit's requeue, has run)."""
    from twm.train.lightning import fit

    start(job)
    spec, folder = job.spec, job.folder
    try:
        if folder.is_completed():
            damage = folder.checkpoint_damage(folder.checkpoint_path)
            if damage:
                log.warning("%s: completed, but %s; left as it is (train it again in a fresh folder)", folder.path,
                            damage)
            else:
                log.info("run already completed (%s): nothing to do", folder.path / "summary.json")
            return folder.read_summary()
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message="Experiment logs directory")
        pl.seed_everything(spec.seed, workers=True, verbose=False)
        step = folder.checkpoint_step()
        if step is not None:
            log.info("resuming from step %d (%s)", step, folder.path)
        begin = time.perf_counter()
        try:
            if step is None or step < spec.steps:
                fit(spec, folder, job.loggers, job.callbacks)
            summary = folder.finalise(spec)
        except StopRequested as err:
            folder.finalise(spec, "interrupted", error=str(err))
            log.warning("%s: %s; checkpoint saved, relaunch to resume", folder.path, err)
            signals.chain(err)  # may exit (submitit's requeue): the finally below still releases the folder
            raise
        except BaseException as err:
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            try:
                folder.finalise(spec, status, error=f"{type(err).__name__}: {err}")
            except OSError as write_error:  # e.g. the disk that stopped the run is still full
                log.warning("%s: could not write the summary (%s)", folder.path, write_error)
            raise
        log.info("completed %d steps in %.1f s: test accuracy %.4f (H = %d), %s", summary["steps"],
                 time.perf_counter() - begin, summary["test_accuracy"], spec.data.test_horizon, folder.path)
        return summary
    finally:
        stop(job)


def train(cfg: DictConfig) -> dict:
    """Train one run into ``cfg.paths.output_dir``; returns its summary (also written as ``summary.json``). A
    folder that another live process is training is skipped (returned summary: status "skipped")."""
    job = prepare(cfg)
    try:
        return run_lightning(job)
    except Busy as err:
        log.warning("job %s: %s, skipped", job.folder.name, err)
        return {"status": "skipped", "reason": str(err)}


def pack(jobs: list[Job], max_members: int) -> list[list[int]]:
    """Indices of ``jobs`` in groups of compatible runs (``twm.train.batched.compatibility_key``), each at most
    ``max_members`` long; within a group by decreasing L2, so runs likely to stay at short horizons train
    together (a step costs the group's longest horizon)."""
    from twm.train.batched import compatibility_key

    groups = defaultdict(list)
    for i, job in enumerate(jobs):
        groups[compatibility_key(job.spec)].append(i)
    packed = []
    for key in sorted(groups, key=str):
        order = sorted(groups[key], key=lambda i: (-jobs[i].spec.optim.l2, i))
        packed.extend(order[k: k + max_members] for k in range(0, len(order), max_members))
    return packed


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def train_packed(jobs: list[Job], max_members: int, device: str = "auto", shard: int = 0, n_shards: int = 1,
                 on_progress=None, progress_every: int = 1000, matmul: str = "default") -> list[dict | None]:
    """Train all jobs in packed ensembles (only the ensembles ``g % n_shards == shard``: several processes can
    share one sweep); returns their summaries in input order (``None`` for jobs of other shards). ``matmul``: the
    batched engine's matmul variant (:class:`twm.train.batched.EnsembleTrainer`).
    ``on_progress(step, max_steps, info)`` runs with every progress line (every ``progress_every`` steps); an
    exception it raises stops training cleanly (every unfinished run keeps its last checkpoint). Jobs of an
    architecture the batched engine does not train (all but the Elman RNN) are trained one at a time by
    :func:`run_lightning`, in the same folders, on their own ``trainer.accelerator``."""
    from twm.train.batched import ARCHITECTURES, train_ensemble

    device = resolve_device(device)
    results: list = [None] * len(jobs)
    groups = pack(jobs, max_members)
    for g, idx in enumerate(groups):
        if g % n_shards != shard:
            continue
        if jobs[idx[0]].spec.model.arch not in ARCHITECTURES:  # no batched kernel: one at a time, with Lightning
            for i in idx:
                try:
                    results[i] = run_lightning(jobs[i])
                except Busy as err:
                    log.info("job %s: %s, skipped", jobs[i].folder.name, err)
            continue
        group, taken = [], []
        for i in idx:
            try:
                start(jobs[i])
            except Busy as err:
                log.info("job %s: %s, skipped", jobs[i].folder.name, err)
                continue
            group.append(jobs[i])
            taken.append(i)
        if not group:
            continue
        todo = sum(not job.folder.is_completed() for job in group)
        log.info("ensemble %d/%d: %d runs (%d to train), hidden %d, on %s", g + 1, len(groups), len(group), todo,
                 group[0].spec.model.hidden_size, device)
        begin = time.perf_counter()

        def progress(step, max_steps, info, g=g, begin=begin):
            rate = step / max(time.perf_counter() - begin, 1e-9)
            log.info("ensemble %d/%d: step %d/%d, %d active, %.1f model-steps/s, eta %dm", g + 1, len(groups), step,
                     max_steps, info["active"], info["model_steps_per_s"], (max_steps - step) / max(rate, 1e-9) // 60)
            if on_progress is not None:
                on_progress(step, max_steps, info)

        try:
            summaries = train_ensemble(group, device=device, progress=progress, progress_every=progress_every,
                                       matmul=matmul)
        except StopRequested as err:
            signals.chain(err)  # may exit (submitit's requeue): the finally below still releases the folders
            raise
        finally:
            for job in group:
                stop(job)
        for i, summary in zip(taken, summaries):
            results[i] = summary
    return results
