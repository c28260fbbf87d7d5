"""The run folder: the one owner of what a training run leaves on disk, for both engines and for the analysis.

::

    <run>/.hydra/config.yaml      the composed config (Hydra writes it; programmatic runs get the same file)
    <run>/fingerprint.json        RunSpec.identity(): relaunching a folder that holds another run is refused
    <run>/metrics.csv             one row per step (CSVLogger): train/loss, train/accuracy, curriculum/horizon
    <run>/checkpoints/last.ckpt   the checkpoint (format below), refreshed every ``checkpoint_every`` steps
    <run>/checkpoints/weights/step_000500.pt   kept weights (``callbacks.keep_weights``): the network's state dict
                                  after that many optimizer steps, nothing else (:meth:`RunFolder.kept_weights`)
    <run>/summary.json            built from the checkpoint (:meth:`RunFolder.finalise`), never from memory

Checkpoint format (one for both engines, so either resumes a run the other started): a Lightning checkpoint —
``state_dict`` (``model.*``: the network, any architecture of ``twm.model``), ``optimizer_states``
(``torch.optim.Adam``'s state dict), ``lr_schedulers`` (the ``torch.optim.lr_scheduler`` state when the run has a
schedule, else empty), ``loops`` (the fit-loop progress at ``global_step``), ``callbacks``, ``hyper_parameters``
(``{"spec": ...}``) — plus a ``"twm"`` entry, :class:`TrainState`: the curriculum, the data generator, the last
step's metrics, the wall clock. ``HDSModule.load_from_checkpoint(path)`` (``twm.train.lightning``) loads it;
:meth:`RunFolder.load_model` gives the network without Lightning.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import socket
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from twm.metrics import test_accuracy
from twm.model import RecurrentModel
from twm.run.spec import RunSpec

SUMMARY = "summary.json"
METRICS = "metrics.csv"
METRICS_BACKUP = "metrics.resume.csv"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
PREVIOUS = "prev.ckpt"
WEIGHTS = "weights"
FINGERPRINT = "fingerprint.json"
CONFIG = ".hydra/config.yaml"
LOCK = "run.lock"
OWNER = "owner.json"
HEARTBEAT_SECONDS = 10.0
SUMMARY_KEYS = (
    "status", "steps", "seed", "task", "task_id", "s", "d", "hidden_size", "l2", "curriculum", "threshold",
    "final_horizon", "step_reached_max_horizon", "train_loss", "train_accuracy", "test_accuracy", "wall_seconds",
)
STATE_VERSION = 2


class FolderError(ValueError):
    """A run folder that cannot take this run (it holds another configuration)."""


class Damaged(ValueError):
    """A file of a run folder that cannot be trusted: unreadable JSON, a checkpoint whose checksum does not match."""


class Busy(RuntimeError):
    """The run folder is being trained by another live process; ``owner``: its pid, host and heartbeat."""

    def __init__(self, folder: RunFolder, owner: dict | None):
        self.owner = owner or {}
        where = (f"pid {self.owner.get('pid')} on host {self.owner.get('host')}" if owner else
                 "another process (no owner record yet)")
        super().__init__(f"running in {where}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Heartbeats:
    """One daemon thread per process that rewrites ``owner.json`` of every held run folder every
    ``HEARTBEAT_SECONDS``: a process that dies stops refreshing them (liveness across hosts)."""

    def __init__(self):
        self.folders: set = set()
        self.guard = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, folder: RunFolder) -> None:
        with self.guard:
            self.folders.add(folder)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="twm-heartbeat", daemon=True)
                self.thread.start()

    def discard(self, folder: RunFolder) -> None:
        with self.guard:
            self.folders.discard(folder)

    def _run(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self.guard:
                folders = list(self.folders)
            for folder in folders:
                try:
                    folder.write_owner()
                except OSError:
                    pass  # a full or vanished disk: the owner record ages, status says so


HEARTBEATS = _Heartbeats()


@dataclass
class TrainState:
    """The ``"twm"`` entry of a checkpoint: what a run needs besides weights and Adam moments to continue exactly,
    and what its summary is built from. ``last_horizon`` is the horizon of the last step taken; ``resumed_at``: the
    steps at which the run was resumed from a checkpoint (by either engine)."""

    steps: int
    curriculum: dict
    data_generator: torch.Tensor
    step_reached_max_horizon: int | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    last_horizon: int | None = None
    wall_seconds: float = 0.0
    engine: str = "lightning"
    resumed_at: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> TrainState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"checkpoint state version {data.get('version')!r}, expected {STATE_VERSION}")
        return cls(**{k: v for k, v in data.items() if k != "version"})


@dataclass
class AdamState:
    """Adam's moments per parameter name (the network's ``named_parameters()`` order) and its step count."""

    step: int
    exp_avg: dict[str, torch.Tensor]
    exp_avg_sq: dict[str, torch.Tensor]


def write_json(path, payload: dict) -> None:
    """Write JSON atomically: a temporary file, fsync, rename (a kill never leaves half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(payload, indent=2, default=_jsonable) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def lightning_loops(step: int, finished: bool = False, schedulers: int = 0) -> dict:
    """Lightning's fit-loop progress after ``step`` optimizer steps of one endless epoch (the ``loops`` entry that
    ``Trainer.fit(ckpt_path=...)`` resumes from); ``finished``: the fit has ended (the epoch counts as done);
    ``schedulers``: learning-rate schedulers stepped after every optimizer step (each step counts once per
    scheduler, before the batch-end hooks). Mid-run, Lightning saves from the batch-end hooks, before it counts the
    batch as completed."""

    def progress(n, started=True, processed=True):
        counts = {"ready": n, "completed": n}
        if started:
            counts["started"] = n
        if processed:
            counts["processed"] = n
        return {"total": dict(counts), "current": dict(counts)}

    def batches(n, completed=None):
        out = {**progress(n), "is_last_batch": False}
        for part in ("total", "current"):
            out[part]["completed"] = n if completed is None else completed
        return out

    counted = step if finished else max(step - 1, 0)

    done = int(finished)
    epoch = {"total": {"ready": 1, "completed": done, "started": 1, "processed": done},
             "current": {"ready": 1, "completed": done, "started": 1, "processed": done}}
    return {
        "fit_loop": {
            "state_dict": {},
            "epoch_loop.state_dict": {"_batches_that_stepped": counted},
            "epoch_loop.batch_progress": batches(step, counted),
            "epoch_loop.scheduler_progress": progress(step * schedulers, started=False, processed=False),
            "epoch_loop.automatic_optimization.state_dict": {},
            "epoch_loop.automatic_optimization.optim_progress": {
                "optimizer": {"step": progress(step, started=False, processed=False),
                              "zero_grad": progress(step, processed=False)}},
            "epoch_loop.manual_optimization.state_dict": {},
            "epoch_loop.manual_optimization.optim_step_progress": progress(0, started=False, processed=False),
            "epoch_loop.val_loop.state_dict": {},
            "epoch_loop.val_loop.batch_progress": batches(0),
            "epoch_progress": epoch,
        },
        "validate_loop": {"state_dict": {}, "batch_progress": batches(0)},
        "test_loop": {"state_dict": {}, "batch_progress": batches(0)},
        "predict_loop": {"state_dict": {}, "batch_progress": progress(0)},
    }


def checkpoint_payload(spec: RunSpec, weights: dict[str, torch.Tensor], adam: AdamState, state: TrainState,
                       callbacks: dict | None = None) -> dict:
    """A checkpoint in the format the Lightning engine writes, from an engine's raw state (CPU tensors).
    ``weights`` and ``adam`` are keyed by the network's parameter names."""
    names = list(weights)
    optimizer = spec.make_optimizer([torch.zeros(1) for _ in names])
    schedulers = scheduler_states(spec, optimizer, int(state.steps))
    template = optimizer.state_dict()["param_groups"]
    return {
        "epoch": 0,
        "global_step": int(state.steps),
        "pytorch-lightning_version": version("lightning"),
        "state_dict": {f"model.{k}": v for k, v in weights.items()},
        "loops": lightning_loops(int(state.steps), finished=state.steps >= spec.steps, schedulers=len(schedulers)),
        "callbacks": dict(callbacks or {}),
        "optimizer_states": [{
            "state": {i: {"step": torch.tensor(float(adam.step)), "exp_avg": adam.exp_avg[k],
                          "exp_avg_sq": adam.exp_avg_sq[k]} for i, k in enumerate(names)} if adam.step else {},
            "param_groups": template,
        }],
        "lr_schedulers": schedulers,
        "hparams_name": "kwargs",
        "hyper_parameters": {"spec": spec.to_dict()},
        "twm": state.to_dict(),
    }


def scheduler_states(spec: RunSpec, optimizer: torch.optim.Optimizer, steps: int) -> list[dict]:
    """The ``lr_schedulers`` entry of a checkpoint after ``steps`` optimizer steps: the state of the run's
    ``torch.optim.lr_scheduler`` stepped once per step (empty at a constant learning rate). ``optimizer``, fresh,
    is left holding the scheduled learning rate (its ``param_groups`` are the checkpoint's)."""
    scheduler = spec.make_scheduler(optimizer)
    if scheduler is None:
        return []
    lr = spec.scheduler.lr_at(spec.optim.lr, steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    state = scheduler.state_dict()
    state.update(last_epoch=steps, _step_count=steps + 1, _last_lr=[lr for _ in optimizer.param_groups])
    return [state]


def adam_state(checkpoint: dict, names: list[str]) -> AdamState:
    """The Adam moments of a checkpoint by parameter name (zeros before the first step)."""
    state = checkpoint["optimizer_states"][0]["state"]
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
    if not state:
        zeros = {k: torch.zeros_like(weights[k]) for k in names}
        return AdamState(0, zeros, {k: v.clone() for k, v in zeros.items()})
    step = int(float(state[0]["step"]))
    return AdamState(step, {k: state[i]["exp_avg"] for i, k in enumerate(names)},
                     {k: state[i]["exp_avg_sq"] for i, k in enumerate(names)})


class RunFolder:
    """One run's folder (see the module docstring for its files)."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock = None
        self._started = None
        self.checkpoint_listeners: list = []  # called with the step of every checkpoint written to last.ckpt

    # -- ownership: one process trains a folder at a time ----------------------------------------------------------
    def acquire(self) -> None:
        """Take the folder's lock (``run.lock``, an ``flock`` the kernel drops when the process dies, so a dead
        owner's lock is reclaimed at once) and record ``owner.json`` (pid, host, heartbeat). Raises :class:`Busy`
        when a live process holds it."""
        from filelock import FileLock, Timeout

        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path / LOCK))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise Busy(self, self.owner()) from None
        self._lock, self._started = lock, time.time()
        self.write_owner()
        HEARTBEATS.add(self)

    def release(self) -> None:
        if self._lock is None:
            return
        HEARTBEATS.discard(self)
        (self.path / OWNER).unlink(missing_ok=True)
        self._lock.release()
        self._lock = None

    def write_owner(self) -> None:
        write_json(self.path / OWNER, {"pid": os.getpid(), "host": socket.gethostname(), "started": self._started,
                                       "heartbeat": time.time()})

    def owner(self) -> dict | None:
        """The owner record, or ``None`` (no owner, or an unreadable record)."""
        try:
            return json.loads((self.path / OWNER).read_text())
        except (OSError, ValueError):
            return None

    def owner_alive(self, owner: dict | None = None) -> bool:
        """Whether the recorded owner still runs: on this host, its pid exists; elsewhere, its heartbeat is less
        than three periods old."""
        owner = self.owner() if owner is None else owner
        if not owner:
            return False
        if owner.get("host") == socket.gethostname():
            return _pid_alive(owner.get("pid", -1))
        return time.time() - float(owner.get("heartbeat", 0)) < 3 * HEARTBEAT_SECONDS

    def state(self) -> tuple[str, str | None]:
        """``(state, reason)``: completed, running, interrupted, failed, not started, missing or damaged (with the
        reason: an unreadable summary, a completed run whose checkpoint no longer matches its checksum)."""
        try:
            summary = self.read_summary()
        except Damaged as err:
            return "damaged", str(err)
        status = (summary or {}).get("status")
        if status == "completed":
            reason = self.checkpoint_damage(self.checkpoint_path)
            return ("damaged", f"completed, but {reason}") if reason else ("completed", None)
        if status == "failed":
            return "failed", summary.get("error")
        if self.owner_alive():
            return "running", None
        if status == "interrupted" or self.checkpoint_path.exists() or self.metrics_path.exists():
            return "interrupted", None
        return ("not started" if (self.path / ".hydra").exists() else "missing"), None

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINTS / LAST

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def name(self) -> str:
        return self.path.name

    # -- identity --------------------------------------------------------------------------------------------------
    def claim(self, spec: RunSpec, cfg=None) -> None:
        """Make the folder this run's: refuse one that holds another run (:class:`FolderError`), record the
        fingerprint, keep a copy of the config (``cfg`` without its ``hydra`` node) if Hydra did not."""
        from omegaconf import OmegaConf

        self.path.mkdir(parents=True, exist_ok=True)
        path, current = self.path / FINGERPRINT, spec.identity()
        if path.exists():
            previous = json.loads(path.read_text())
            if previous != current:
                diff = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
                raise FolderError(f"{self.path} holds a run with another configuration (differs in "
                                  f"{', '.join(diff)}); relaunch the original grid or choose a new folder")
        else:
            write_json(path, current)
        saved = self.path / CONFIG
        if cfg is not None and not saved.exists():
            saved.parent.mkdir(exist_ok=True)
            OmegaConf.save(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), saved)

    def config(self):
        from omegaconf import OmegaConf

        return OmegaConf.load(self.path / CONFIG)

    def spec(self) -> RunSpec:
        """The run's spec: from the checkpoint when it has one, else from the saved config."""
        ckpt = self.load_checkpoint()
        if ckpt is not None and "spec" in (ckpt.get("hyper_parameters") or {}):
            return RunSpec.from_dict(ckpt["hyper_parameters"]["spec"])
        return RunSpec.from_config(self.config())

    # -- summary ---------------------------------------------------------------------------------------------------
    def read_summary(self) -> dict | None:
        """The summary, ``None`` when there is none; raises :class:`Damaged` when it cannot be read."""
        path = self.path / SUMMARY
        if not path.exists():
            return None
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise Damaged(f"{SUMMARY} is unreadable ({type(err).__name__}: {err})") from None
        if not isinstance(summary, dict):
            raise Damaged(f"{SUMMARY} does not hold a JSON object")
        return summary

    def is_completed(self) -> bool:
        """A readable summary that says "completed" (a damaged summary is rebuilt from the checkpoint)."""
        try:
            return (self.read_summary() or {}).get("status") == "completed"
        except Damaged:
            return False

    def write_summary(self, summary: dict) -> None:
        write_json(self.path / SUMMARY, summary)

    def finalise(self, spec: RunSpec, status: str = "completed", error: str | None = None, **extra) -> dict:
        """Write ``summary.json`` from the checkpoint (the test accuracy from its weights, on the CPU) and return
        it; with no checkpoint (a run that failed before its first), from the spec alone."""
        ckpt = self.load_checkpoint()
        state = TrainState.from_dict(ckpt["twm"]) if ckpt is not None else None
        accuracy = None
        if status == "completed":
            model = self._model(spec, ckpt)
            d = spec.data
            accuracy = test_accuracy(model, spec.task.F, spec.task.s, d.test_horizon, d.test_batches,
                                     d.test_batch_size, spec.seeds.test)
        summary = build_summary(spec, state, status, accuracy)
        if error is not None:
            summary["error"] = error
        summary.update(extra)
        self.write_summary(summary)
        return summary

    # -- checkpoints -----------------------------------------------------------------------------------------------
    @staticmethod
    def checksum_path(path: Path) -> Path:
        return path.with_name(path.name + ".sha256")

    def save_checkpoint(self, payload: dict, path=None) -> None:
        """Write a checkpoint atomically (temporary file, fsync, rename) with its checksum beside it
        (``<name>.sha256``: sha256, bytes, step); the previous good ``last.ckpt`` is kept as ``prev.ckpt``."""
        path = Path(path or self.checkpoint_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: the last good checkpoint stays as it was
            raise
        meta = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                "step": int(payload.get("global_step", -1))}
        if path == self.checkpoint_path and path.exists() and self.checkpoint_damage(path) is None:
            previous = path.with_name(PREVIOUS)
            os.replace(path, previous)
            if self.checksum_path(path).exists():
                os.replace(self.checksum_path(path), self.checksum_path(previous))
            else:
                self.checksum_path(previous).unlink(missing_ok=True)
        os.replace(tmp, path)
        write_json(self.checksum_path(path), meta)
        if path == self.checkpoint_path:
            for listener in self.checkpoint_listeners:
                listener(meta["step"])

    def checkpoint_damage(self, path: Path) -> str | None:
        """Why ``path`` cannot be trusted (missing, checksum mismatch, unreadable), or ``None``. A checkpoint without
        a checksum file (written by an older version, or a kill between the two renames) counts as good when it
        loads."""
        if not path.exists():
            return f"{path.name} is missing"
        try:
            meta = json.loads(self.checksum_path(path).read_text())
        except FileNotFoundError:
            meta = None
        except (OSError, ValueError):
            return f"{path.name}'s checksum file is unreadable"
        if meta is not None:
            data = path.read_bytes()
            if len(data) != meta.get("bytes") or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
                return f"{path.name} does not match its checksum ({len(data)} bytes, {meta.get('bytes')} recorded)"
            return None
        try:
            torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001  (any unreadable file)
            return f"{path.name} is unreadable ({type(err).__name__})"
        return None

    def resume_path(self) -> tuple[Path | None, str | None]:
        """The checkpoint to continue from and, when it is not ``last.ckpt``, why: the latest if it is good, else
        the previous one, else none (a clean restart)."""
        last = self.checkpoint_path
        if not last.exists() and not last.with_name(PREVIOUS).exists():
            return None, None
        damage = self.checkpoint_damage(last)
        if damage is None:
            return last, None
        previous = last.with_name(PREVIOUS)
        if previous.exists() and self.checkpoint_damage(previous) is None:
            return previous, f"{damage}: resuming from {PREVIOUS}"
        return None, f"{damage} and no good previous checkpoint: restarting from scratch"

    def load_checkpoint(self) -> dict | None:
        """The checkpoint :meth:`resume_path` chooses, loaded on the CPU (``None`` without a good one)."""
        path, _ = self.resume_path()
        return None if path is None else torch.load(path, map_location="cpu", weights_only=False)

    def checkpoint_step(self) -> int | None:
        ckpt = self.load_checkpoint()
        return None if ckpt is None else int(ckpt["global_step"])

    # -- the trained network ---------------------------------------------------------------------------------------
    @staticmethod
    def _model(spec: RunSpec, ckpt: dict) -> RecurrentModel:
        model = spec.make_model()
        model.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()
                               if k.startswith("model.")})
        return model.eval()

    def weights_path(self, step: int) -> Path:
        return self.path / CHECKPOINTS / WEIGHTS / f"step_{int(step):06d}.pt"

    def save_weights(self, step: int, weights: dict[str, torch.Tensor]) -> None:
        """Keep the network's weights after ``step`` optimizer steps (parameter names, CPU copies), atomically."""
        path = self.weights_path(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({k: v.detach().to("cpu").clone() for k, v in weights.items()}, tmp)
        os.replace(tmp, path)

    def kept_weights(self) -> list[tuple[int, Path]]:
        """``[(step, path), ...]`` of the kept weights, by step (empty when training kept none)."""
        folder = self.path / CHECKPOINTS / WEIGHTS
        found = []
        for path in folder.glob("step_*.pt") if folder.is_dir() else ():
            digits = path.stem.removeprefix("step_")
            if digits.isdigit():
                found.append((int(digits), path))
        return sorted(found)

    def load_weights(self, step: int, spec: RunSpec | None = None) -> RecurrentModel:
        """The network (CPU, eval mode) as it was after ``step`` optimizer steps, from its kept weights."""
        model = (spec or self.spec()).make_model()
        model.load_state_dict(torch.load(self.weights_path(step), map_location="cpu", weights_only=True))
        return model.eval()

    def load_model(self) -> tuple[RecurrentModel, RunSpec]:
        """The trained network (CPU, eval mode) and the run's spec."""
        ckpt = self.load_checkpoint()
        if ckpt is None:
            raise FileNotFoundError(f"{self.path} has no checkpoint ({CHECKPOINTS}/{LAST})")
        spec = self.spec()
        return self._model(spec, ckpt), spec

    def export(self, dest, weights: bool = False) -> Path:
        """Copy what an experiment commits of this run into the folder ``dest``: its Hydra config and overrides,
        ``summary.json`` and ``analysis.json`` (those that exist) and, with ``weights``, the trained weights without
        the optimiser state (``checkpoints/last.ckpt`` with ``state_dict`` and ``global_step``, which
        :meth:`load_model` reads). Returns ``dest``."""
        dest = Path(dest)
        (dest / ".hydra").mkdir(parents=True, exist_ok=True)
        for name in (CONFIG, ".hydra/overrides.yaml", SUMMARY, "analysis.json"):
            if (self.path / name).exists():
                shutil.copyfile(self.path / name, dest / name)
        if weights:
            ckpt = self.load_checkpoint()
            if ckpt is None:
                raise FileNotFoundError(f"{self.path} has no checkpoint ({CHECKPOINTS}/{LAST})")
            (dest / CHECKPOINTS).mkdir(exist_ok=True)
            torch.save({"state_dict": ckpt["state_dict"], "global_step": ckpt["global_step"]},
                       dest / CHECKPOINTS / LAST)
        return dest

    # -- metrics ---------------------------------------------------------------------------------------------------
    def resume_csv(self, logger, resume_step: int | None) -> None:
        """Open Lightning's ``CSVLogger`` on this folder without losing history. Its writer deletes an existing
        ``metrics.csv`` when it starts; the rows of steps before ``resume_step`` are first kept in a backup file
        (merged with one an earlier kill left behind, so no window loses them) and put back afterwards; a torn last
        row is dropped. ``resume_step=None`` starts the metrics afresh."""
        current, backup = self.metrics_path, self.path / METRICS_BACKUP
        rows, header = {}, None
        if resume_step is not None:
            for path in (backup, current):  # a backup left by an earlier kill holds the oldest rows
                if path.exists():
                    with path.open(newline="") as f:
                        reader = csv.DictReader(f)
                        header = header or reader.fieldnames
                        for r in reader:
                            step = _row_step(r, header)
                            if step is not None and step < resume_step:
                                rows[step] = r
        if header is not None:
            tmp = backup.with_name(backup.name + ".tmp")
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=header)
                writer.writeheader()
                writer.writerows(rows[step] for step in sorted(rows))
            os.replace(tmp, backup)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "log directory exists and is not empty": the run's own folder
            logger.experiment  # noqa: B018  (creating the writer deletes metrics.csv)
        if header is not None:
            shutil.copyfile(backup, current)
        backup.unlink(missing_ok=True)


def _row_step(row: dict, header) -> int | None:
    """The step of a CSV row, or ``None`` for a torn row (missing fields, unparsable step)."""
    if None in row or any(row.get(k) is None for k in header):
        return None
    try:
        return int(float(row["step"]))
    except (TypeError, ValueError):
        return None


def build_summary(spec: RunSpec, state: TrainState | None, status: str, test_accuracy: float | None) -> dict:
    """``summary.json`` of a run (keys :data:`SUMMARY_KEYS`, then ``lr`` (the initial learning rate), ``engine``,
    ``resumed_at``, ``tags`` and, with a learning-rate schedule, ``scheduler``) from its spec and its checkpointed
    state."""
    curriculum = spec.curriculum.build()
    if state is not None:
        curriculum.load_state_dict(state.curriculum)
    task = spec.task
    return {
        "status": status,
        "steps": state.steps if state else 0,
        "seed": spec.seed,
        "task": task.name,
        "task_id": None if task.task_id is None else list(task.task_id),
        "s": task.s,
        "d": task.d,
        "hidden_size": spec.model.hidden_size,
        "l2": spec.optim.l2,
        "curriculum": spec.curriculum.kind,
        "threshold": spec.curriculum.threshold,
        "final_horizon": int(curriculum.horizon),
        "step_reached_max_horizon": state.step_reached_max_horizon if state else None,
        "train_loss": _finite(state.train_loss) if state else None,
        "train_accuracy": _finite(state.train_accuracy) if state else None,
        "test_accuracy": test_accuracy,
        "wall_seconds": round(state.wall_seconds, 3) if state else 0.0,
        "lr": spec.optim.lr,
        "engine": state.engine if state else None,
        "resumed_at": list(state.resumed_at) if state else [],
        "tags": list(spec.tags),
        **({"scheduler": _plain_scheduler(spec)} if spec.scheduler.active else {}),
    }


def _plain_scheduler(spec: RunSpec) -> dict:
    return {"name": spec.scheduler.name, "milestones": list(spec.scheduler.milestones), "gamma": spec.scheduler.gamma}


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def read_summary(run_dir) -> dict | None:
    return RunFolder(run_dir).read_summary()
