"""Checks before Hydra writes anything (a Hydra callback, ``conf/hydra/default.yaml``): an output folder that cannot
be written or has no space, ``trainer=gpu`` without CUDA, ``launcher=slurm`` without SLURM. Each ends the command
with one line naming the problem and the fix (exit status 2), before any file is touched."""

from __future__ import annotations

import errno
import os
import shutil
import sys
import uuid
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

MIN_FREE_MB = 16  # a run at hidden 128 writes about 3 MB; TWM_MIN_FREE_MB overrides


def _fail(message: str) -> None:
    sys.stderr.write(f"twm.train: {message}\n")
    sys.exit(2)


def writable(folder: Path) -> str | None:
    """Why ``folder`` cannot take a run (read-only, not creatable, full), or ``None``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".twm-write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as err:
        reason = {errno.EROFS: "is on a read-only file system", errno.EACCES: "is not writable (permission denied)",
                  errno.ENOSPC: "has no space left: free space"}.get(err.errno, f"cannot be written ({err.strerror})")
        return f"the output folder {folder} {reason}"
    free = shutil.disk_usage(folder).free
    if free < float(os.environ.get("TWM_MIN_FREE_MB", MIN_FREE_MB)) * 2**20:
        return f"the output folder {folder} has only {free // 1024} KiB free: free space"
    return None


def check_device(config: DictConfig) -> None:
    accelerator = str(config.get("trainer", {}).get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            _fail("trainer=gpu, but this machine has no CUDA device (torch.cuda.is_available() is False); use "
                  "trainer=cpu, or run where a GPU is")


def check_sweep_keys(config: DictConfig) -> None:
    """A sweep grid (``hydra.sweeper.params`` of a preset or search space) over a moved key (``model.l2``)."""
    from twm.train.config import MovedKeyError, check_moved_config

    try:
        check_moved_config(config.hydra.sweeper.get("params") or {})
    except MovedKeyError as err:
        _fail(f"hydra.sweeper.params: {err}")


class Preflight(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        check_device(config)
        problem = writable(Path(str(config.hydra.run.dir)))
        if problem:
            _fail(f"{problem}, or choose another folder with hydra.run.dir=...")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        check_device(config)
        check_sweep_keys(config)
        target = str(config.hydra.launcher.get("_target_", ""))
        if target.endswith("SlurmLauncher") and shutil.which("sbatch") is None:
            _fail("launcher=slurm, but SLURM is not installed here (no sbatch on PATH); run on the cluster's login "
                  "node, or use launcher=submitit_local (the same code path, local processes) or launcher=basic")
        problem = writable(Path(str(config.hydra.sweep.dir)))
        if problem:
            _fail(f"{problem}, or choose another folder with hydra.sweep.dir=...")



