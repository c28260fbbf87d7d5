"""The Lightning module: an Elman RNN trained on a binary HDS with MSE on the output phase (SPEC §1.3, §3).

Batches are generated in ``training_step`` itself, in the main process, from a generator seeded with the run's
data seed, at the horizon the curriculum holds *now*: so the curriculum's decision after step k governs batch
k + 1 exactly, and the generator state saved in a checkpoint is the state an uninterrupted run would have.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from twm.model import ElmanRNN
from twm.tasks import Task, sample
from twm.train.artifacts import run_seeds
from twm.train.metrics import output_mse, sign_accuracy


class _Ticks(IterableDataset):
    """An endless stream of placeholders: the data itself is drawn in ``training_step``."""

    def __iter__(self):
        while True:
            yield 0


class HDSModule(pl.LightningModule):
    """``model`` is an :class:`ElmanRNN`; ``horizon`` is set by the curriculum callback."""

    def __init__(
        self,
        task: Task,
        seed: int,
        hidden_size: int = 128,
        l2: float = 0.0,
        lr: float = 1e-3,
        bias: bool = False,
        init: str = "uniform",
        batch_size: int = 64,
    ):
        super().__init__()
        self.task, self.s, self.task_F = task, task.s, task.F
        self.l2, self.lr, self.batch_size = float(l2), float(lr), int(batch_size)
        seeds = run_seeds(seed)
        self.model = ElmanRNN(task.d, hidden_size, task.d, bias=bias, init=init,
                              generator=torch.Generator().manual_seed(seeds.init))
        self.data_generator = torch.Generator().manual_seed(seeds.data)
        self.horizon = 10
        self.max_horizon = 100

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(u)[0]

    def training_step(self, batch, batch_idx):
        horizon = self.horizon
        u, y = sample(self.task_F, self.s, horizon, self.batch_size, self.data_generator, device=self.device)
        pred = self(u)
        loss = output_mse(pred, y, self.s)
        accuracy = sign_accuracy(pred.detach(), y, self.s)
        self.log_dict({"train/loss": loss.detach(), "train/accuracy": accuracy, "curriculum/horizon": float(horizon)},
                      on_step=True, on_epoch=False, batch_size=self.batch_size)
        return {"loss": loss, "accuracy": accuracy.item()}

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.l2)

    def train_dataloader(self):
        return DataLoader(_Ticks(), batch_size=None, num_workers=0)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["twm_data_generator"] = self.data_generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.data_generator.set_state(checkpoint["twm_data_generator"])
