"""A job: what an engine receives for one run — its spec, its folder, and the Lightning loggers and callbacks the
config asked for (both engines call them through the same interface). ``cfg`` is the composed config they are
built from when the job starts (``twm.train.pipeline.start``); ``start_from``: the checkpoint it starts from
(``ckpt_path``, :mod:`twm.train.from_checkpoint`), written into its folder when the job starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twm.run.folder import RunFolder
from twm.run.spec import RunSpec


@dataclass
class Job:
    spec: RunSpec
    folder: RunFolder | None = None
    cfg: Any = None
    loggers: list = field(default_factory=list)
    callbacks: list = field(default_factory=list)
    start_from: Any = None
