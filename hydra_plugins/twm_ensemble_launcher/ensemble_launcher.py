"""Hydra launcher ``twm_ensemble`` (``launcher=ensemble``): packs the jobs of a multirun into batched ensembles.

Hydra expands the grid and composes every job's config as usual; this launcher sets up each job's folder through
Hydra's own ``run_job`` (``.hydra/``, overrides, output dir), then trains compatible jobs together with
:func:`twm.train.pipeline.train_packed` (the batched engine). Every job gets its own run folder, loggers and
callbacks, exactly as ``python -m twm.train`` would give it, and its checkpoint cadence from
``callbacks.checkpoint.every_n_train_steps``.
"""

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import open_dict

log = logging.getLogger(__name__)


@dataclass
class EnsembleLauncherConf:
    _target_: str = "hydra_plugins.twm_ensemble_launcher.ensemble_launcher.EnsembleLauncher"
    max_members: int = 64  # runs per ensemble (one process trains them as one batched RNN)
    device: str = "auto"  # auto | cpu | cuda
    shard: int = 0  # train only the ensembles g with g % n_shards == shard: run n_shards processes
    n_shards: int = 1  # on one sweep folder to use several cores (set num_threads=1 in each)
    matmul: str = "default"  # default | onednn | bf16: CPU matmul variants (twm.train.batched.EnsembleTrainer)


ConfigStore.instance().store(group="hydra/launcher", name="twm_ensemble", node=EnsembleLauncherConf, provider="twm")


class EnsembleLauncher(Launcher):
    def __init__(
        self,
        max_members: int = 64,
        device: str = "auto",
        shard: int = 0,
        n_shards: int = 1,
        matmul: str = "default",
    ) -> None:
        from twm.train.batched import MATMULS

        super().__init__()
        self.max_members, self.device = int(max_members), device
        if not 0 <= int(shard) < int(n_shards):
            raise ValueError(f"hydra.launcher.shard must lie in [0, n_shards = {n_shards}), got {shard}")
        if matmul not in MATMULS:
            raise ValueError(f"hydra.launcher.matmul must be one of {', '.join(MATMULS)}, got {matmul!r}")
        self.shard, self.n_shards, self.matmul = int(shard), int(n_shards), matmul
        self.config = self.task_function = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import torch

        from twm.train.pipeline import prepare, train_packed
        from twm.train.signals import StopRequested

        if self.config.get("num_threads"):
            torch.set_num_threads(int(self.config.num_threads))
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(
            "Preparing %d jobs for batched ensembles (up to %d per ensemble)", len(job_overrides), self.max_members
        )
        returns, prepared = [], []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            ret = run_job(
                hydra_context=self.hydra_context,
                task_function=prepare,
                config=sweep_config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
            returns.append(ret)
            if ret.status == JobStatus.COMPLETED:
                prepared.append((len(returns) - 1, ret.return_value))
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        try:
            results = train_packed([p for _, p in prepared], self.max_members, self.device, self.shard,
                                   self.n_shards, matmul=self.matmul)
        except StopRequested as err:
            sys.stderr.write(f"twm.train: {err}; every run of the pack is checkpointed at that step and marked "
                             "interrupted: relaunch the same command to resume\n")
            sys.exit(128 + err.signum)
        for (position, _), summary in zip(prepared, results):
            returns[position].return_value = summary.get("test_accuracy") if summary else None
        return returns
