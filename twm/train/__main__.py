"""``python -m twm.train``: the Hydra entry point (thin: compose, check, hand over to
:func:`twm.train.pipeline.train`)."""

from __future__ import annotations

import sys

import hydra
import lightning.pytorch  # noqa: F401  (imported before Hydra configures logging, so conf/hydra quiets it)
from omegaconf import DictConfig

import twm.train.config  # noqa: F401  (registers the structured-config schemas)
from twm.train.config import ConfigError


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from twm.train.pipeline import train

    try:
        summary = train(cfg)
    except ConfigError as err:
        sys.stderr.write(
            f"twm.train: {err}\nThe run was not started. Fix the value on the command line (e.g. {err.key}=...) "
            "or in conf/, and see `python -m twm.train --help` for the config groups.\n"
        )
        sys.exit(2)
    return summary.get("test_accuracy")


if __name__ == "__main__":
    main()
