"""A run: its specification (:mod:`twm.run.spec`) and its folder on disk (:mod:`twm.run.folder`)."""

from twm.run.folder import RunFolder, TrainState, build_summary
from twm.run.spec import RunSpec

__all__ = ["RunFolder", "RunSpec", "TrainState", "build_summary"]
