"""The bare reference loop: one run of a :class:`RunSpec` as plain PyTorch (the spec's network + autograd +
``clip_grad_norm_`` + ``torch.optim.Adam`` + the run's ``torch.optim.lr_scheduler``, stepped after every optimizer
step), no Lightning, no run folder.

It is the definition both engines are tested against: the Lightning engine must give its weights bitwise, the
batched engine its per-step losses and horizons to rounding (``tests/test_engines.py``); the benchmarks time it as
"one run in one process".
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from twm.metrics import output_mse, sign_accuracy
from twm.model import RecurrentModel
from twm.run.spec import RunSpec
from twm.tasks import sample


def train_reference(spec: RunSpec, callback: Callable[[int, RecurrentModel], None] | None = None, device=None,
                    steps: int | None = None) -> tuple[RecurrentModel, dict]:
    """Train ``spec`` for ``steps`` (default ``spec.steps``) optimizer steps. ``callback(steps_done, model)`` runs
    after every step. Returns ``(model, history)`` with per-step lists ``history["loss"]``, ``["accuracy"]``,
    ``["horizon"]`` (the horizon used at that step) and ``["lr"]`` (the learning rate of that step)."""
    F, s = spec.task.F, spec.task.s
    model = spec.make_model().to(device)
    data_gen = torch.Generator().manual_seed(spec.seeds.data)
    opt = spec.make_optimizer(model.parameters())
    scheduler = spec.make_scheduler(opt)
    curriculum = spec.curriculum.build()
    history = {"loss": [], "accuracy": [], "horizon": [], "lr": []}
    for step in range(spec.steps if steps is None else steps):
        horizon = curriculum.horizon
        if spec.data.fixed_batch:
            data_gen.manual_seed(spec.seeds.data)
        u, y = sample(F, s, horizon, spec.data.batch_size, data_gen, device=device)
        pred, _ = model(u)
        loss = output_mse(pred, y, s)
        acc = sign_accuracy(pred.detach(), y, s)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optim.clip)
        history["lr"].append(float(opt.param_groups[0]["lr"]))
        opt.step()
        if scheduler is not None:
            scheduler.step()
        loss_f, acc_f = float(loss.detach()), float(acc)
        curriculum.update(acc_f, loss_f)
        history["loss"].append(loss_f)
        history["accuracy"].append(acc_f)
        history["horizon"].append(horizon)
        if callback is not None:
            callback(step + 1, model)
    return model, history
