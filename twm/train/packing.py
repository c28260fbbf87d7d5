"""Packing the jobs of a multirun into batched ensembles (the ``launcher=ensemble`` path, issue 5).

``prepare_member`` runs inside Hydra's ``run_job`` for each job (so its folder, ``.hydra/`` and overrides are
exactly a normal job's) and turns the composed config into a :class:`~twm.train.ensemble.Member`;
``train_packed`` groups compatible members (same s, d, hidden size, bias, batch size) and trains each group.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from hydra.utils import instantiate
from omegaconf import DictConfig

from twm.train import artifacts
from twm.train.config import validate
from twm.train.ensemble import Member, train_ensemble
from twm.train.run import _check_fingerprint

log = logging.getLogger("twm.ensemble")


def member_from_config(cfg: DictConfig, run_dir) -> Member:
    """The ensemble member that trains exactly what ``python -m twm.train`` would train for ``cfg``."""
    validate(cfg)
    task = instantiate(cfg.task)
    return Member(
        F=task.F, s=task.s, hidden_size=int(cfg.model.hidden_size), seed=int(cfg.seed), l2=float(cfg.model.l2),
        curriculum=instantiate(cfg.curriculum), lr=float(cfg.model.lr), bias=bool(cfg.model.bias),
        init=str(cfg.model.init), batch_size=int(cfg.data.batch_size), max_steps=int(cfg.trainer.max_steps),
        clip=float(cfg.trainer.gradient_clip_val), run_dir=str(run_dir), task_name=task.name, task_id=task.task_id,
        test_horizon=int(cfg.data.test_horizon), test_batches=int(cfg.data.test_batches),
        test_batch_size=int(cfg.data.test_batch_size),
    )


def prepare_member(cfg: DictConfig) -> Member:
    """Hydra task function of the ensemble launcher: checks the job and returns its member (no training)."""
    from pathlib import Path

    out = Path(cfg.paths.output_dir)
    _check_fingerprint(out, cfg)
    return member_from_config(cfg, out)


def compatibility_key(member: Member) -> tuple:
    return (member.s, member.d, member.hidden_size, member.bias, member.batch_size)


def pack(members: list[Member], max_members: int) -> list[list[int]]:
    """Indices of ``members`` in groups of compatible members, each at most ``max_members`` long. Within a group,
    members are ordered by curriculum threshold and L2 so that runs likely to stay at short horizons train together
    (the batch is generated at the group's largest horizon)."""
    groups = defaultdict(list)
    for i, m in enumerate(members):
        groups[compatibility_key(m)].append(i)
    packed = []
    for key in sorted(groups, key=str):
        order = sorted(groups[key], key=lambda i: (-members[i].l2, i))
        packed.extend(order[k : k + max_members] for k in range(0, len(order), max_members))
    return packed


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def train_packed(members: list[Member], max_members: int, device: str = "auto", checkpoint_every: int = 500,
                 shard: int = 0, n_shards: int = 1) -> list:
    """Train all members in packed ensembles (only the ensembles ``g % n_shards == shard``: several processes can
    share one sweep); returns their summaries in input order (``None`` for members of other shards)."""
    device = resolve_device(device)
    results: list = [None] * len(members)
    groups = pack(members, max_members)
    for g, idx in enumerate(groups):
        if g % n_shards != shard:
            continue
        group = [members[i] for i in idx]
        todo = [m for m in group if (artifacts.read_summary(m.run_dir) or {}).get("status") != "completed"]
        log.info("ensemble %d/%d: %d runs (%d to train), hidden %d, on %s", g + 1, len(groups), len(group), len(todo),
                 group[0].hidden_size, device)
        start = time.perf_counter()

        def progress(step, max_steps, info, g=g, start=start):
            if step % 1000 == 0 or step == max_steps:
                rate = step / max(time.perf_counter() - start, 1e-9)
                log.info("ensemble %d/%d: step %d/%d, %.1f steps/s, eta %dm", g + 1, len(groups), step, max_steps,
                         rate, (max_steps - step) / max(rate, 1e-9) // 60)

        summaries = train_ensemble(group, device=device, checkpoint_every=checkpoint_every, progress=progress)
        for i, summary in zip(idx, summaries):
            results[i] = summary
    return results
