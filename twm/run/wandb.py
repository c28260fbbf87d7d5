"""A run folder's W&B run: its identity (stored in the folder, so every resume and the later analysis write to the
same W&B run), the names a dashboard groups by, and a reader for offline run files.

::

    <run>/wandb.json    {"id", "project", "group", "name", "job_type", "tags"}: written when the run first logs to W&B
    <run>/wandb/offline-run-<time>-<id>/run-<id>.wandb    what W&B wrote offline (one folder per process that
                        opened the run: training, each resume, each analysis); ``wandb sync`` merges them by id

W&B is offline unless the user configured it (``WANDB_MODE``, ``WANDB_API_KEY`` or a ``wandb login``): nothing here
ever waits for a login or a network. Several runs may be open in one process (the batched engine trains every
ensemble member as its own W&B run): every run is opened with ``reinit="create_new"`` and used through its own
``Run`` object, as W&B documents for multiple runs per process. W&B's system-metrics sampling and metadata
collection are off: one process holds up to hundreds of runs on the same machine, and sampling per run cost the
ensemble up to a fifth of its speed at hidden 32 (benchmarks/README.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
from pathlib import Path

from twm.run.spec import RunSpec

RUN_FILE = "wandb.json"
PROJECT = "twm"


def configured() -> bool:
    """Whether the user configured W&B (a mode, an API key or a login in ``~/.netrc``)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def ensure_offline() -> None:
    """Offline mode unless W&B is configured: no login prompt, no network."""
    if not configured():
        os.environ["WANDB_MODE"] = "offline"


def flatten(tree, prefix: str = "") -> dict:
    """A nested dict as one level with dotted keys (``{"model": {"hidden_size": 8}}`` → ``{"model.hidden_size":
    8}``); lists stay values."""
    out = {}
    for key, value in (tree or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def group_name(spec: RunSpec) -> str:
    """The W&B group of a run: everything that makes the run what it is except its seed (``RunSpec.identity()``
    without ``seed``), so grouping by it shows seed statistics per configuration. Readable fields first (task,
    s, d, architecture, hidden size, init, lr, L2, curriculum), then a hash of all of them (batch size, clipping,
    steps, the test, curriculum parameters, the operator ...) so that no two configurations share a group."""
    identity = spec.identity()
    identity.pop("seed")
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    cur = spec.curriculum
    threshold = "" if cur.threshold is None else f"{cur.threshold:g}"
    m, o = spec.model, spec.optim
    return (f"{spec.task.name}-s{spec.task.s}d{spec.task.d}-{m.arch}{m.hidden_size}-{m.init}-lr{o.lr:g}-l2_{o.l2:g}"
            f"-{cur.kind}{threshold}-{digest}")


def run_name(spec: RunSpec) -> str:
    """The W&B run name: the group and the seed (unique per job of a grid)."""
    return f"{group_name(spec)}-seed{spec.seed}"


def identity(run_dir, spec: RunSpec | None = None, project: str | None = None, tags=(),
             job_type: str = "train") -> dict:
    """The folder's W&B identity (``wandb.json``): read if stored, else created (a fresh random id) and stored;
    ``spec`` is needed to create it."""
    path = Path(run_dir) / RUN_FILE
    if path.exists():
        return json.loads(path.read_text())
    if spec is None:
        raise FileNotFoundError(f"{path}: this run has no W&B run")
    from twm.run.folder import write_json

    record = {"id": secrets.token_hex(4), "project": project or PROJECT, "group": group_name(spec),
              "name": run_name(spec), "job_type": job_type, "tags": [str(t) for t in tags]}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return record


def init(run_dir, record: dict, config: dict | None = None):
    """Open (or re-open) the folder's W&B run as a new ``Run`` object of this process."""
    import wandb

    ensure_offline()
    # the mode is passed on every call: W&B keeps the one of its first run in the process otherwise
    mode = {"dryrun": "offline"}.get(os.environ.get("WANDB_MODE", ""), os.environ.get("WANDB_MODE") or None)
    return wandb.init(id=record["id"], project=record["project"], group=record["group"], name=record["name"],
                      job_type=record["job_type"], tags=record["tags"], dir=str(run_dir), config=config,
                      resume="allow", reinit="create_new", mode=mode,
                      settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, x_disable_meta=True))


def update_run(run_dir, summary: dict, images: dict | None = None) -> bool:
    """Add ``summary`` to the folder's W&B run summary and log ``images`` ({key: PNG path}) to it; ``False``
    (nothing done) when the run was not logged to W&B. Offline runs are updated in place: sync later."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists():
        return False
    import wandb

    run = init(run_dir, identity(run_dir))
    try:
        run.summary.update(summary)
        pictures = {key: wandb.Image(str(path)) for key, path in (images or {}).items() if Path(path).exists()}
        if pictures:
            run.log(pictures)
    finally:
        run.finish()
    return True


# --------------------------------------------------------------------------------------------------------------
# Reading offline runs (no network, no wandb service)
# --------------------------------------------------------------------------------------------------------------
_BLOCK, _HEADER = 32768, 7  # W&B's transaction log: LevelDB's log format in 32 KiB blocks after a 7-byte header


def _records(path) -> list[bytes]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    out, buffer, pos = [], b"", _HEADER
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos: pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            pos += _BLOCK - pos % _BLOCK
            continue
        chunk, pos = data[pos: pos + length], pos + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            buffer = chunk
        elif kind == 3:
            buffer += chunk
        elif kind == 4:
            out.append(buffer + chunk)
            buffer = b""
    return out


def read_offline_run(path) -> dict:
    """What one offline run file (``run-<id>.wandb``) holds: ``id``, ``group``, ``name``, ``job_type``, ``tags``,
    ``config`` (dotted keys as stored), ``summary`` (the last value of every key), ``history`` (one dict per logged
    row) and ``images`` (keys of logged images)."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = {"id": None, "group": None, "name": None, "job_type": None, "tags": [], "config": {}, "summary": {},
           "history": [], "images": set()}
    for data in _records(path):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(id=run.run_id, group=run.run_group, name=run.display_name, job_type=run.job_type,
                       tags=list(run.tags))
            _apply(out["config"], run.config.update)
            _apply(out["summary"], run.summary.update)
        elif kind == "config":
            _apply(out["config"], record.config.update)
        elif kind == "summary":
            _apply(out["summary"], record.summary.update)
        elif kind == "history":
            row = {}
            _apply(row, record.history.item)
            out["history"].append(row)
            out["images"].update(k.removesuffix("/_type") for k, v in row.items()
                                 if k.endswith("/_type") and v == "image-file")
    out["config"] = {k: v.get("value", v) if isinstance(v, dict) else v for k, v in out["config"].items()
                     if not k.startswith("_wandb")}
    out["images"] = sorted(out["images"])
    return out


def _apply(target: dict, items) -> None:
    for item in items:
        key = item.key or "/".join(item.nested_key)
        target[key] = json.loads(item.value_json)


def offline_runs(run_dir) -> list[dict]:
    """Every offline run file under ``<run_dir>/wandb``, read (:func:`read_offline_run`), oldest first."""
    return [read_offline_run(p) for p in sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))]
