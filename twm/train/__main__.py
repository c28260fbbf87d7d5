"""``python -m twm.train``: the Hydra entry point (thin: compose, check, hand over to
:func:`twm.train.pipeline.train`). Ends with one line, never a traceback, for a bad config (exit 2), a signal
(checkpointed; exit 128 + the signal's number) and a full or read-only disk (exit 1)."""

from __future__ import annotations

import errno
import logging
import sys

import hydra
import lightning.pytorch  # noqa: F401  (imported before Hydra configures logging, so conf/hydra quiets it)
from omegaconf import DictConfig

import twm.train.config  # noqa: F401  (registers the structured-config schemas)
from twm.train.config import ConfigError
from twm.train.signals import StopRequested

DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from twm.train.pipeline import train

    logging.raiseExceptions = False  # a full disk must not turn every log line into a traceback
    try:
        summary = train(cfg)
    except ConfigError as err:
        sys.stderr.write(
            f"twm.train: {err}\nThe run was not started. Fix the value on the command line (e.g. {err.key}=...) "
            "or in conf/, and see `python -m twm.train --help` for the config groups.\n"
        )
        sys.exit(2)
    except StopRequested as err:
        sys.stderr.write(f"twm.train: {cfg.paths.output_dir}: {err}; the checkpoint of that step is saved and the "
                         "summary says interrupted: relaunch the same command to resume\n")
        sys.exit(128 + err.signum)
    except OSError as err:
        if err.errno not in DISK_ERRORS:
            raise
        sys.stderr.write(f"twm.train: cannot write {err.filename or cfg.paths.output_dir} ({err.strerror}); the "
                         "last checkpoint is intact: free space or fix permissions, then relaunch the same command "
                         "to resume\n")
        sys.exit(1)
    return summary.get("test_accuracy")


if __name__ == "__main__":
    main()
