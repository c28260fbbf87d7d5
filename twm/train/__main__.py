"""``python -m twm.train``: the Hydra entry point (thin: compose, check, hand over to
:func:`twm.train.pipeline.train`). Ends with one line, never a traceback, for a bad config (exit 2), a signal
(checkpointed; exit 128 + the signal's number) and a full or read-only disk (exit 1)."""

from __future__ import annotations

import errno
import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import twm.help  # noqa: F401  (registers the resolvers of the --help page)
import twm.train.config  # noqa: F401  (registers the structured-config schemas)
from twm import CONF_DIR
from twm.train.config import ConfigError, MovedKeyError, check_moved_keys
from twm.train.signals import StopRequested

DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


def library_log_levels() -> None:
    """Set the levels ``hydra.job_logging.loggers`` asks for (conf/hydra: Lightning at WARNING) again. Lightning sets
    its loggers to INFO when it is first imported, and a job process of a launcher (submitit, joblib) imports it only
    now, after Hydra configured that job's logging: without this, its banner lines ("GPU available", "TPU
    available", tips) would open every job log."""
    for name, node in (HydraConfig.get().job_logging.get("loggers") or {}).items():
        if node.get("level") is not None:
            logging.getLogger(name).setLevel(node.level)


def main() -> float | None:
    """``twm-train``: refuse a moved config key (``model.l2`` is ``optimizer.l2``) in one line before Hydra composes
    the config (its own message would only say the key is not in the schema), then run :func:`hydra_main`."""
    try:
        check_moved_keys(sys.argv[1:])
    except MovedKeyError as err:
        sys.stderr.write(f"twm.train: {err}\n")
        sys.exit(2)
    return hydra_main()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    from twm.train.pipeline import train  # imports Lightning (slow): not needed for --help or tab completion

    library_log_levels()
    logging.raiseExceptions = False  # a full disk must not turn every log line into a traceback
    try:
        summary = train(cfg)
    except MovedKeyError as err:
        sys.stderr.write(f"twm.train: {err}\n")
        sys.exit(2)
    except ConfigError as err:
        sys.stderr.write(
            f"twm.train: {err}\nThe run was not started. Fix the value on the command line (e.g. {err.key}=...) "
            "or in conf/, and see `twm-train --help` for the config groups.\n"
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
