"""Hydra launcher ``twm_ensemble`` (``launcher=ensemble``): packs the jobs of a multirun into batched ensembles.

Hydra expands the grid and composes every job's config as usual; this launcher sets up each job's folder through
Hydra's own ``run_job`` (``.hydra/``, overrides, output dir), then trains compatible jobs together with
:func:`twm.train.pipeline.train_packed` (the batched engine). Every job gets its own run folder, loggers and
callbacks, exactly as ``python -m twm.train`` would give it, and its checkpoint cadence from
``callbacks.checkpoint.every_n_train_steps``.

Where the packs train (``hydra.launcher.executor``):

- ``null`` (default): in this process, one pack after the other (``shard``/``n_shards`` split the packs between
  several such processes);
- ``slurm`` or ``local``: each pack is one task of a submitit job array (SLURM, or submitit's local executor: the
  same code path without SLURM). The submitting process prepares every run folder, submits, and waits for the
  array. A task that gets SLURM's early-warning signal (``signal_delay_s`` before ``timeout_min``) or is preempted
  checkpoints every member at the step in progress and is requeued by submitit (up to ``max_num_timeout`` times),
  resuming from those checkpoints, as single runs are (conf/launcher/slurm.yaml). Completed runs are not packed.
  ``--cfg hydra -p hydra.launcher`` shows what would be submitted.
"""

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)

EXECUTORS = (None, "local", "slurm")
# submitit parameters every executor takes; the others are SLURM's (passed as slurm_<name>)
COMMON = ("timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name")


@dataclass
class EnsembleLauncherConf:
    _target_: str = "hydra_plugins.twm_ensemble_launcher.ensemble_launcher.EnsembleLauncher"
    max_members: int = 64  # runs per ensemble (one process trains them as one batched RNN)
    device: str = "auto"  # auto | cpu | cuda (auto: cuda where the pack runs has one)
    shard: int = 0  # train only the ensembles g with g % n_shards == shard: run n_shards processes
    n_shards: int = 1  # on one sweep folder to use several cores (set num_threads=1 in each)
    matmul: str = "default"  # default | onednn | bf16: CPU matmul variants (twm.train.batched.EnsembleTrainer)
    executor: Any = None  # null: train in this process | slurm | local: one submitit array task per ensemble
    # submitit (executor slurm or local), as in hydra-submitit-launcher
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"
    timeout_min: int = 120
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    tasks_per_node: int = 1
    mem_gb: int | None = None
    nodes: int = 1
    name: str = "${hydra.job.name}"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 64
    signal_delay_s: int = 120  # SIGUSR2 this long before timeout_min: checkpoint, then requeue
    max_num_timeout: int = 3  # requeues after a timeout
    setup: list[str] | None = None  # shell lines before the task (activate the environment)
    additional_parameters: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/launcher", name="twm_ensemble", node=EnsembleLauncherConf, provider="twm")


class PackTask:
    """One ensemble as a submitit task: ``PackTask(...)(jobs)`` trains the prepared jobs of one pack and returns
    their summaries. Picklable; :meth:`checkpoint` lets submitit requeue it after a signal (the members' own
    checkpoints hold the progress)."""

    def __init__(self, device: str, hydra_logging: Any = None, verbose: Any = False, matmul: str = "default"):
        self.device, self.hydra_logging, self.verbose, self.matmul = device, hydra_logging, verbose, matmul

    def __call__(self, jobs: list) -> list:
        import torch

        from twm.train.pipeline import train_packed

        configure_log(self.hydra_logging, self.verbose)
        threads = jobs[0].cfg.get("num_threads") if jobs and jobs[0].cfg is not None else None
        if threads:
            torch.set_num_threads(int(threads))
        return train_packed(jobs, len(jobs), self.device, matmul=self.matmul)

    def checkpoint(self, jobs: list):
        """The same pack again (fresh jobs: no open folders or loggers); the members resume from their
        checkpoints."""
        import submitit

        from twm.run.folder import RunFolder
        from twm.train.job import Job

        return submitit.helpers.DelayedSubmission(self, [Job(j.spec, RunFolder(j.folder.path), j.cfg) for j in jobs])


class EnsembleLauncher(Launcher):
    def __init__(self, max_members: int = 64, device: str = "auto", shard: int = 0, n_shards: int = 1,
                 matmul: str = "default", executor: str | None = None, **submitit_params) -> None:
        from twm.train.batched import MATMULS

        super().__init__()
        self.max_members, self.device = int(max_members), device
        if not 0 <= int(shard) < int(n_shards):
            raise ValueError(f"hydra.launcher.shard must lie in [0, n_shards = {n_shards}), got {shard}")
        if matmul not in MATMULS:
            raise ValueError(f"hydra.launcher.matmul must be one of {', '.join(MATMULS)}, got {matmul!r}")
        if executor not in EXECUTORS:
            raise ValueError(f"hydra.launcher.executor must be null, local or slurm; got {executor!r}")
        if executor is not None and int(n_shards) != 1:
            raise ValueError("hydra.launcher.n_shards splits the packs between processes you start yourself; with "
                             "an executor every pack is its own array task: leave n_shards at 1")
        self.shard, self.n_shards, self.executor, self.matmul = int(shard), int(n_shards), executor, matmul
        self.submitit_params = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                                for k, v in submitit_params.items()}
        self.config = self.task_function = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _prepare(self, job_overrides, initial_job_idx) -> tuple[list[JobReturn], list]:
        from twm.train.pipeline import prepare

        returns, prepared = [], []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            ret = run_job(hydra_context=self.hydra_context, task_function=prepare, config=sweep_config,
                          job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
            returns.append(ret)
            if ret.status == JobStatus.COMPLETED:
                prepared.append((len(returns) - 1, ret.return_value))
        return returns, prepared

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import torch

        from twm.train.pipeline import train_packed
        from twm.train.signals import StopRequested

        if self.config.get("num_threads"):
            torch.set_num_threads(int(self.config.num_threads))
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Preparing %d jobs for batched ensembles (up to %d per ensemble)", len(job_overrides),
                 self.max_members)
        returns, prepared = self._prepare(job_overrides, initial_job_idx)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        jobs = [p for _, p in prepared]
        try:
            if self.executor is None:
                results = train_packed(jobs, self.max_members, self.device, self.shard, self.n_shards,
                                       matmul=self.matmul)
            else:
                results = self._submit(jobs)
        except StopRequested as err:
            sys.stderr.write(f"twm.train: {err}; every run of the pack is checkpointed at that step and marked "
                             "interrupted: relaunch the same command to resume\n")
            sys.exit(128 + err.signum)
        for (position, _), summary in zip(prepared, results):
            returns[position].return_value = summary.get("test_accuracy") if summary else None
        return returns

    def _submit(self, jobs: list) -> list:
        """One submitit array task per pack (completed runs are not submitted); waits for the array and returns
        the summaries in job order."""
        import submitit

        from twm.train.pipeline import pack

        results: list = [job.folder.read_summary() if job.folder.is_completed() else None for job in jobs]
        todo = [i for i, summary in enumerate(results) if summary is None]
        packs = [[todo[i] for i in group] for group in pack([jobs[i] for i in todo], self.max_members)]
        if not packs:
            log.info("every run is completed: nothing to submit")
            return results
        params = dict(self.submitit_params)
        executor = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster=self.executor,
                                         slurm_max_num_timeout=int(params.pop("max_num_timeout")))
        executor.update_parameters(**{k if k in COMMON else f"slurm_{k}": v for k, v in params.items()
                                      if v is not None})
        task = PackTask(self.device, self.config.hydra.hydra_logging, self.config.hydra.verbose, self.matmul)
        array = executor.map_array(task, [[jobs[i] for i in group] for group in packs])
        log.info("submitted %d ensembles (%d runs) as %s array %s", len(packs), len(todo), self.executor,
                 array[0].job_id.split("_")[0] if array else "-")
        for g, (group, job) in enumerate(zip(packs, array)):
            try:
                job.results()
            except Exception as err:  # noqa: BLE001  (one failed pack must not hide the others' results)
                log.error("ensemble %d/%d (array task %s) ended without finishing: %s; its runs keep their "
                          "checkpoints: relaunch the same command to resume", g + 1, len(packs), job.job_id,
                          str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__)
            for i in group:
                results[i] = jobs[i].folder.read_summary()
        return results
