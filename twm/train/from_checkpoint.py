"""``ckpt_path=<checkpoint file or run folder>``: start a run from a checkpoint of either engine (the one format of
:mod:`twm.run.folder`). What it means depends on whose checkpoint it is:

- **continue** — a checkpoint of this very run (the same identity, apart from ``trainer.max_steps``, which may be
  larger than the checkpoint's step, e.g. to train a finished run further): the run folder starts from a copy of it
  (and of the metrics rows before its step, when it sits in a run folder), and training continues from that step with
  its optimiser state, curriculum and data stream, exactly as a resumed run does: the result equals the
  uninterrupted run bitwise;
- **initialise** — a checkpoint of any other run with the same parameter shapes (task ``d``, ``model.hidden_size``,
  ``model.bias``): only its weights are taken. The run starts at step 0 with a fresh optimiser, curriculum and data
  stream of its own seed, from a step-0 checkpoint holding those weights, and the checkpoint becomes part of its
  identity (:class:`twm.run.spec.InitSpec`: the file's sha256 and step), so relaunching the run with a changed file
  is refused.

Either way a run folder that already has a checkpoint of its own resumes from it: relaunching the same command
continues the run, never restarts it. A missing, damaged or foreign file, a checkpoint past this run's last step and
one of another shape are refused in one line naming ``ckpt_path``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from twm.run.folder import CHECKPOINTS, METRICS, AdamState, RunFolder, TrainState, checkpoint_payload, lightning_loops
from twm.run.spec import InitSpec, RunSpec
from twm.train.config import ConfigError

log = logging.getLogger("twm.train")


@dataclass
class StartFrom:
    """Where a run starts, resolved from ``ckpt_path`` (:func:`resolve`); :meth:`seed` writes it into the run
    folder. ``mode``: "continue" or "initialise"."""

    mode: str
    path: Path
    checkpoint: dict
    spec: RunSpec

    def seed(self, folder: RunFolder) -> None:
        """Give a run folder without a checkpoint of its own its first one (call with the folder's lock held)."""
        if folder.is_completed() or folder.resume_path()[0] is not None:
            log.info("%s: resuming from its own checkpoint (ckpt_path=%s only starts the run)", folder.path,
                     self.path)
            return
        step = int(self.checkpoint["global_step"])
        if self.mode == "continue":
            payload = dict(self.checkpoint)
            payload["hyper_parameters"] = {"spec": self.spec.to_dict()}
            payload["loops"] = lightning_loops(step)
            payload["callbacks"] = {k: v for k, v in (payload.get("callbacks") or {}).items()
                                    if not k.startswith("ModelCheckpoint")}  # it names the other run's folder
            source = self.path.parent.parent
            if self.path.parent.name == CHECKPOINTS and (source / METRICS).exists() and source != folder.path:
                shutil.copyfile(source / METRICS, folder.metrics_path)  # the rows from the step on are dropped
        else:
            weights = {k.removeprefix("model."): v for k, v in self.checkpoint["state_dict"].items()
                       if k.startswith("model.")}
            zeros = {k: torch.zeros_like(v) for k, v in weights.items()}
            state = TrainState(steps=0, curriculum=self.spec.curriculum.build().state_dict(),
                               data_generator=torch.Generator().manual_seed(self.spec.seeds.data).get_state())
            payload = checkpoint_payload(self.spec, weights, AdamState(0, zeros, dict(zeros)), state)
        folder.save_checkpoint(payload)
        log.info("%s: %s from %s (step %d)", folder.path, "continuing" if self.mode == "continue" else
                 "initialised with the weights", self.path, step)


def resolve(ckpt_path, spec: RunSpec) -> StartFrom | None:
    """The start of the run ``spec`` from ``ckpt_path`` (``None``: no ``ckpt_path``); its ``spec`` is the run's,
    with :class:`InitSpec` set when the checkpoint only initialises it. Raises :class:`ConfigError`."""
    if ckpt_path in (None, ""):
        return None
    path, checkpoint = _load(Path(str(ckpt_path)).expanduser())
    source = RunSpec.from_dict(checkpoint["hyper_parameters"]["spec"])
    step = int(checkpoint["global_step"])
    candidate = spec.replace(init=source.init)
    if _without_steps(candidate) == _without_steps(source):
        if step > spec.steps:
            raise ConfigError("ckpt_path", str(ckpt_path), f"a checkpoint at most at this run's last step: it is at "
                              f"step {step}, after trainer.max_steps={spec.steps}")
        return StartFrom("continue", path, checkpoint, candidate)
    expected = {f"model.{k}": tuple(v.shape) for k, v in spec.make_model().state_dict().items()}
    found = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    if found != expected:
        diff = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        where = ", ".join(f"{k.removeprefix('model.')} {found.get(k)} there, {expected.get(k)} here" for k in diff)
        raise ConfigError("ckpt_path", str(ckpt_path), f"a checkpoint with this run's parameter shapes (task.d, "
                          f"model.hidden_size, model.bias): {where}")
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return StartFrom("initialise", path, checkpoint, spec.replace(init=InitSpec(sha256, step)))


def _without_steps(spec: RunSpec) -> dict:
    identity = spec.identity()
    identity.pop("steps")
    return identity


def _load(path: Path) -> tuple[Path, dict]:
    """The checkpoint at ``path`` (a file, or a run folder: its latest good checkpoint), checked and loaded."""
    if path.is_dir():
        found, _ = RunFolder(path).resume_path()
        if found is None:
            raise ConfigError("ckpt_path", str(path), f"a run folder with a good checkpoint ({CHECKPOINTS}/last.ckpt "
                              "or prev.ckpt); this one has none")
        path = found
    if not path.is_file():
        raise ConfigError("ckpt_path", str(path), "an existing checkpoint file (<run>/checkpoints/last.ckpt) or run "
                          "folder")
    damage = RunFolder(path.parent.parent).checkpoint_damage(path)
    if damage is not None:
        raise ConfigError("ckpt_path", str(path), f"an intact checkpoint: {damage}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001  (any unreadable file)
        raise ConfigError("ckpt_path", str(path), f"a readable checkpoint ({type(err).__name__})") from None
    if not (isinstance(checkpoint, dict) and "state_dict" in checkpoint and "twm" in checkpoint
            and "spec" in (checkpoint.get("hyper_parameters") or {})):
        raise ConfigError("ckpt_path", str(path), "a checkpoint written by twm (either engine): this file has no "
                          "state_dict, run spec and training state")
    return path, checkpoint
