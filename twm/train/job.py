"""A job: what an engine receives for one run — its spec, its folder, and the Lightning loggers and callbacks the
config asked for (both engines call them through the same interface)."""

from __future__ import annotations

from dataclasses import dataclass, field

from twm.run.folder import RunFolder
from twm.run.spec import RunSpec


@dataclass
class Job:
    spec: RunSpec
    folder: RunFolder | None = None
    loggers: list = field(default_factory=list)
    callbacks: list = field(default_factory=list)
