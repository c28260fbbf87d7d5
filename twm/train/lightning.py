"""The Lightning engine: one run as a ``LightningModule`` + ``Trainer``, reading only its :class:`RunSpec`.

Batches are drawn in ``training_step`` itself, in the main process, from a generator seeded with the run's data seed,
at the horizon the curriculum holds *now*; the curriculum is updated in the same step with that batch's accuracy
and loss, so its decision after step k governs batch k + 1 exactly (docs/science.md §3). Curriculum, generator and
the last step's metrics travel in the checkpoint's ``"twm"`` entry (:class:`twm.run.folder.TrainState`), so a
resumed run continues the stream an uninterrupted run would have drawn.
"""

from __future__ import annotations

import signal
import time

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, IterableDataset

from twm.metrics import output_mse, sign_accuracy
from twm.run.folder import RunFolder, TrainState, lightning_loops
from twm.run.spec import RunSpec
from twm.tasks import sample
from twm.train import signals
from twm.train.signals import StopRequested


class _Ticks(IterableDataset):
    """An endless stream of placeholders: the data itself is drawn in ``training_step``."""

    def __iter__(self):
        while True:
            yield 0


class HDSModule(pl.LightningModule):
    """The spec's network (any architecture of ``twm.model``) trained on a binary HDS with the output-phase MSE
    (docs/science.md §1.3, §3).

    ``HDSModule.load_from_checkpoint(run / "checkpoints/last.ckpt")`` restores a trained run of either engine.
    """

    def __init__(self, spec: RunSpec | dict):
        super().__init__()
        spec = spec if isinstance(spec, RunSpec) else RunSpec.from_dict(spec)
        self.save_hyperparameters({"spec": spec.to_dict()})
        self.spec = spec
        self.s, self.task_F = spec.task.s, spec.task.F
        self.model = spec.make_model()
        self.data_generator = torch.Generator().manual_seed(spec.seeds.data)
        self.curriculum = spec.curriculum.build()
        self.step_reached_max_horizon: int | None = None
        self.last: dict = {}
        self.resumed_at: list[int] = []
        self.wall_offset, self._t0 = 0.0, None

    @property
    def horizon(self) -> int:
        return int(self.curriculum.horizon)

    @property
    def max_horizon(self) -> int:
        return int(self.curriculum.max_horizon)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(u)[0]

    def training_step(self, batch, batch_idx):
        horizon = self.horizon
        if self.spec.data.fixed_batch:
            self.data_generator.manual_seed(self.spec.seeds.data)
        u, y = sample(self.task_F, self.s, horizon, self.spec.data.batch_size, self.data_generator,
                      device=self.device)
        pred = self(u)
        loss = output_mse(pred, y, self.s)
        accuracy = sign_accuracy(pred.detach(), y, self.s)
        metrics = {"train/loss": loss.detach(), "train/accuracy": accuracy, "curriculum/horizon": float(horizon)}
        if self.spec.scheduler.active:
            metrics["train/lr"] = torch.tensor(self.trainer.optimizers[0].param_groups[0]["lr"], dtype=torch.float64)
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=self.spec.data.batch_size)
        loss_f, acc_f = float(loss.detach()), float(accuracy)
        self.curriculum.update(acc_f, loss_f)
        if self.step_reached_max_horizon is None and self.curriculum.horizon >= self.curriculum.max_horizon:
            self.step_reached_max_horizon = self.trainer.global_step + 1
        self.last = {"train_loss": loss_f, "train_accuracy": acc_f, "last_horizon": horizon}
        return {"loss": loss, "accuracy": acc_f, "horizon": horizon}

    def configure_optimizers(self):
        """Adam and, with a schedule, its ``torch.optim.lr_scheduler`` stepped after every optimizer step."""
        optimizer = self.spec.make_optimizer(self.model.parameters())
        scheduler = self.spec.make_scheduler(optimizer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def train_dataloader(self):
        return DataLoader(_Ticks(), batch_size=None, num_workers=0)

    def on_train_start(self) -> None:
        self._t0 = time.perf_counter()

    def train_state(self) -> TrainState:
        wall = self.wall_offset + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)
        return TrainState(steps=int(self.trainer.global_step), curriculum=self.curriculum.state_dict(),
                          data_generator=self.data_generator.get_state(),
                          step_reached_max_horizon=self.step_reached_max_horizon, wall_seconds=wall,
                          engine="lightning", resumed_at=list(self.resumed_at), **self.last)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["twm"] = self.train_state().to_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = TrainState.from_dict(checkpoint["twm"])
        self.data_generator.set_state(state.data_generator)
        self.curriculum.load_state_dict(state.curriculum)
        self.step_reached_max_horizon = state.step_reached_max_horizon
        self.last = {"train_loss": state.train_loss, "train_accuracy": state.train_accuracy,
                     "last_horizon": state.last_horizon}
        self.wall_offset = float(state.wall_seconds)
        self.resumed_at = [*state.resumed_at, int(state.steps)]


class FolderCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, routed through :meth:`RunFolder.save_checkpoint` (atomic writes)."""

    def __init__(self, folder: RunFolder):
        self.folder = folder

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        self.folder.save_checkpoint(checkpoint, path)


def save_step_checkpoint(trainer: pl.Trainer, folder: RunFolder) -> None:
    """Checkpoint the step just taken with the loop state of a checkpoint saved in that step's batch-end hooks
    (what ``ModelCheckpoint`` writes and what a resume expects), whenever it is called."""
    scratch = folder.checkpoint_path.with_name("signal.ckpt")
    trainer.save_checkpoint(scratch)
    payload = torch.load(scratch, map_location="cpu", weights_only=False)
    payload["loops"] = lightning_loops(trainer.global_step, schedulers=len(trainer.lr_scheduler_configs))
    folder.save_checkpoint(payload)
    scratch.unlink()
    folder.checksum_path(scratch).unlink(missing_ok=True)


class StepCheckpoint(pl.Callback):
    """``last.ckpt`` every ``every_n_train_steps`` optimizer steps (``callbacks.checkpoint``), written when the next
    step starts rather than in the batch-end hooks of the step it records, as Lightning's ``ModelCheckpoint`` does:
    by then the step's metrics are logged, and the loggers are flushed before the checkpoint is written, so a kill
    at any instant leaves every metrics row before the checkpoint's step on disk. The checkpoint is the one
    ``ModelCheckpoint`` would have written (:func:`save_step_checkpoint`); the final one is :func:`fit`'s."""

    def __init__(self, every_n_train_steps: int = 500):
        if int(every_n_train_steps) < 1:
            raise ValueError(f"callbacks.checkpoint.every_n_train_steps must be >= 1, got {every_n_train_steps}")
        self.every_n_train_steps = int(every_n_train_steps)
        self._saved_step: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._saved_step = trainer.global_step  # a resumed run starts from this step's checkpoint

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every_n_train_steps or step == self._saved_step:
            return
        for logger in trainer.loggers:
            logger.save()
        save_step_checkpoint(trainer, trainer.strategy.checkpoint_io.folder)
        self._saved_step = step


class StopOnSignal(pl.Callback):
    """The step-boundary stop for the signals Lightning leaves alone (SIGUSR1/2, Ctrl-C; SIGTERM is Lightning's):
    before the next step starts, when the last step's metrics are logged, checkpoint it and stop."""

    def __init__(self, folder: RunFolder):
        self.folder = folder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if signals.requested() is not None:
            save_step_checkpoint(trainer, self.folder)
            signals.check(trainer.global_step)


def fit(spec: RunSpec, folder: RunFolder, loggers=(), callbacks=()) -> None:
    """Train ``spec`` into ``folder`` with Lightning, resuming from its checkpoint if it has one, and save the
    final checkpoint (the summary is :meth:`RunFolder.finalise`'s job)."""
    module = HDSModule(spec)
    resume, _ = folder.resume_path()
    plugins = [FolderCheckpointIO(folder)]
    if SLURMEnvironment.detect():  # the pipeline handles SLURM's signals (twm.train.signals), not Lightning
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = pl.Trainer(
        accelerator={"cuda": "gpu"}.get(spec.device, spec.device), devices=1, max_steps=spec.steps, max_epochs=-1,
        gradient_clip_val=spec.optim.clip, log_every_n_steps=1, deterministic=spec.deterministic,
        precision=spec.precision, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[*callbacks, StopOnSignal(folder)], logger=list(loggers) or False, default_root_dir=str(folder.path),
        plugins=plugins, enable_checkpointing=any(isinstance(cb, ModelCheckpoint) for cb in callbacks),
    )
    try:
        trainer.fit(module, ckpt_path=str(resume) if resume is not None else None)
    except SIGTERMException:  # Lightning stops at the end of the step in which SIGTERM arrived
        save_step_checkpoint(trainer, folder)
        raise StopRequested(signal.SIGTERM, trainer.global_step) from None
    trainer.save_checkpoint(folder.checkpoint_path)
