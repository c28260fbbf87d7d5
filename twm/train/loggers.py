"""Lightning loggers of the project. Both engines drive them through the same Lightning interface
(``log_hyperparams``, ``log_metrics``, ``save``, ``finalize``), plus two calls of the pipeline
(:mod:`twm.train.pipeline`): :meth:`WandbLogger.commit` when the run folder writes a checkpoint, and
:meth:`WandbLogger.close` with the run's summary when the job ends.
"""

from __future__ import annotations

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from twm.run import wandb as run_wandb


class WandbLogger(LightningWandbLogger):
    """Lightning's W&B logger, one W&B run per run folder across resumes, several runs per process.

    - The W&B identity (id, group, name, tags, job type) is the folder's ``wandb.json`` (:mod:`twm.run.wandb`):
      created on first use, reused by every resume (``resume="allow"``) and by ``twm.analyze``.
    - Every run is its own ``Run`` object (``reinit="create_new"``), never the process-global ``wandb.run``, so the
      members of an ensemble do not share a run.
    - Metrics are held back until the run folder has checkpointed the steps they belong to (:meth:`commit`): a run
      killed between checkpoints is resumed from its checkpoint and logs those steps again, so without this W&B
      would hold them twice.
    - ``config``: the job's whole resolved config, flattened (``model.hidden_size`` ...); the engines add the run
      spec (``spec``) through ``log_hyperparams``.
    """

    def __init__(self, save_dir: str, project: str = run_wandb.PROJECT, job_type: str = "train", tags=(),
                 config: dict | None = None, spec: dict | None = None, **kwargs):
        super().__init__(save_dir=save_dir, project=project, **kwargs)
        self._twm = {"job_type": job_type, "tags": list(tags or ()), "config": dict(config or {}), "spec": spec}
        self._pending: list[tuple[int, dict]] = []

    @property
    def experiment(self):
        if self._experiment is None:
            from twm.run.spec import RunSpec

            spec = None if self._twm["spec"] is None else RunSpec.from_dict(self._twm["spec"])
            record = run_wandb.identity(self._save_dir, spec, self._project, self._twm["tags"], self._twm["job_type"])
            self._experiment = run_wandb.init(self._save_dir, record, self._twm["config"])
            self._experiment.define_metric("trainer/global_step")
            self._experiment.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        return self._experiment

    @property
    def name(self) -> str | None:
        return self._experiment.name if self._experiment is not None else None

    @property
    def version(self) -> str | None:
        return self._experiment.id if self._experiment is not None else None

    def log_metrics(self, metrics, step: int | None = None) -> None:
        """Held until :meth:`commit` covers ``step``."""
        self._pending.append((-1 if step is None else int(step), dict(metrics)))

    def commit(self, checkpoint_step: int) -> None:
        """Send the held metrics of the steps a checkpoint at ``checkpoint_step`` covers (rows logged at steps
        ``< checkpoint_step``: a resume from that checkpoint logs the later ones again)."""
        ready = [row for row in self._pending if row[0] < checkpoint_step]
        if not ready:
            return
        self._pending = [row for row in self._pending if row[0] >= checkpoint_step]
        for step, metrics in ready:
            super().log_metrics(metrics, None if step < 0 else step)

    def close(self, summary: dict | None) -> None:
        """End the W&B run: the run's summary (status, final metrics, test accuracy) into the W&B summary, metrics
        no checkpoint covers dropped, the run finished."""
        if summary:
            self.experiment.summary.update(summary)
        self._pending = []
        if self._experiment is not None:
            self._experiment.finish()
            self._experiment = None
