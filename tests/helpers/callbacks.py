"""Test-only callbacks, instantiated through configs."""

import lightning.pytorch as pl


class CrashAt(pl.Callback):
    """Raise after ``step`` optimizer steps: a crash in the middle of training."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            raise RuntimeError(f"simulated crash at step {trainer.global_step}")


class SignalAt(pl.Callback):
    """Send ``signum`` to this process in the batch-end hooks of step ``step``: a signal at a known instant."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import os

        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class KillAfterCheckpoint(pl.Callback):
    """SIGKILL this process the instant the run folder has written the checkpoint of step ``step`` (a listener of
    the folder, called right after the rename): a kill -9 at the worst moment for what the loggers hold."""

    def __init__(self, step: int):
        self.step = step

    def setup(self, trainer, pl_module, stage):
        import os
        import signal

        def kill(step):
            if step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)

        trainer.strategy.checkpoint_io.folder.checkpoint_listeners.append(kill)
