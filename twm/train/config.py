"""Structured-config schemas for the Hydra groups (a wrong key or type fails at composition) and the semantic
checks that run before training (:func:`validate`), each naming the key and its allowed values."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

import twm.run.spec  # noqa: F401  (registers the ${budget:N} resolver of model.hidden_size)
from twm import CONF_DIR
from twm.model import OptionError


@dataclass
class TaskConfig:
    _target_: str = "twm.tasks.make_task"
    name: str = "repeat_copy"
    s: int = 8
    d: int = 8
    task_id: list[int] | None = None


@dataclass
class ModelConfig:
    arch: str = "elman"
    hidden_size: int = 128
    bias: bool = False
    init: str = "uniform"


@dataclass
class WaveRNNConfig(ModelConfig):
    arch: str = "wave_rnn"
    channels: int = 4
    kernel_size: int = 3


@dataclass
class DiagLinearConfig(ModelConfig):
    arch: str = "diag_linear"
    r_min: float = 0.5
    r_max: float = 0.99


@dataclass
class AttentionConfig(ModelConfig):
    arch: str = "attention"
    positional: bool = False


@dataclass
class OptimizerConfig:
    name: str = "adam"
    lr: float = 1e-3
    l2: float = 0.0


@dataclass
class SchedulerConfig:
    name: str = "none"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1


@dataclass
class LadderConfig:
    _target_: str = "twm.curriculum.Ladder"
    ladder: list[int] = field(default_factory=lambda: [10, 20, 40, 60, 100])
    threshold: float = 0.98


@dataclass
class AdaptiveConfig:
    _target_: str = "twm.curriculum.Adaptive"
    gamma: float = 1.2
    epsilon: float = 0.03
    h0: int = 10
    h_max: int = 100
    window: int = 50


@dataclass
class FixedConfig:
    _target_: str = "twm.curriculum.Fixed"
    horizon: int = 100


@dataclass
class TrainerConfig:
    _target_: str = "lightning.pytorch.Trainer"
    accelerator: str = "cpu"
    devices: int = 1
    max_steps: int = 20000
    max_epochs: int = -1
    gradient_clip_val: float = 1.0
    log_every_n_steps: int = 1
    deterministic: Any = True
    precision: Any = "32-true"
    enable_progress_bar: bool = False
    enable_model_summary: bool = False
    num_sanity_val_steps: int = 0


@dataclass
class DataConfig:
    batch_size: int = 64
    test_horizon: int = 200
    test_batches: int = 10
    test_batch_size: int = 64
    fixed_batch: bool = False  # every step trains on the run's first batch again (debug=overfit)


def register_schemas() -> None:
    cs = ConfigStore.instance()
    for name, node in [("task", TaskConfig), ("model", ModelConfig), ("model_wave_rnn", WaveRNNConfig),
                       ("model_diag_linear", DiagLinearConfig), ("model_attention", AttentionConfig),
                       ("optimizer", OptimizerConfig), ("scheduler", SchedulerConfig),
                       ("ladder", LadderConfig), ("adaptive", AdaptiveConfig), ("fixed", FixedConfig),
                       ("trainer", TrainerConfig), ("data", DataConfig)]:
        cs.store(group="schema", name=name, node=node)


register_schemas()


def compose_train_config(overrides: Sequence[str] = (), output_dir=None, config_name: str = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` composed as ``python -m twm.train`` would, for tests, benchmarks and notebooks:
    the Hydra config is included and registered (``${hydra:...}`` resolves), ``paths.output_dir`` points at
    ``output_dir`` (Hydra's run folder does not exist outside the CLI)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    check_moved_keys(overrides)
    GlobalHydra.instance().clear()
    extra = [f"paths.output_dir={output_dir}"] if output_dir is not None else []
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name, return_hydra_config=True, overrides=[*overrides, *extra])
        HydraConfig().set_config(cfg)
    return cfg


class ConfigError(ValueError):
    """A configuration that cannot be trained: ``key``, the value given, and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"Invalid configuration: {key}={value!r}. Allowed: {allowed}.")


class MovedKeyError(ConfigError):
    """A config key of an older layout (:data:`MOVED_KEYS`): the message names the key that replaced it."""

    def __init__(self, old: str, new: str, value: Any = None):
        shown = "..." if value is None else value
        ValueError.__init__(self, f"{old} has moved to {new} (the optimiser is its own config group, conf/optimizer/): "
                                  f"write {new}={shown} instead")
        self.key, self.value, self.allowed, self.old = new, value, f"the key {new}", old


# Keys of an older layout and the keys that replaced them: setting an old one is refused (a silently ignored
# learning rate or L2 would train another run than the one asked for); run folders written with them still load.
MOVED_KEYS = {"model.l2": "optimizer.l2", "model.lr": "optimizer.lr"}
_OVERRIDE = re.compile(r"^(?:~|\+\+|\+)?(?P<key>[\w.]+?)(?:=(?P<value>.*))?$")


def check_moved_keys(overrides: Sequence[str]) -> None:
    """Refuse command-line overrides (``key=v``, ``+key=v``, ``++key=v``, ``~key``) of a moved key, before Hydra
    composes them (raises :class:`MovedKeyError`)."""
    for override in overrides:
        match = _OVERRIDE.match(str(override))
        if match and match["key"] in MOVED_KEYS and (match["value"] is not None or str(override).startswith("~")):
            raise MovedKeyError(match["key"], MOVED_KEYS[match["key"]], match["value"])


def check_moved_config(cfg: DictConfig | dict) -> None:
    """Refuse a composed config (or a sweep's ``hydra.sweeper.params``) that still sets a moved key, from a YAML
    file or a ``+key=`` the schema let through (raises :class:`MovedKeyError`)."""
    for old, new in MOVED_KEYS.items():
        group, _, name = old.partition(".")
        node = cfg.get(group)
        if old in cfg or (hasattr(node, "get") and name in node):
            raise MovedKeyError(old, new, cfg[old] if old in cfg else node[name])


LOGGERS = ("csv", "wandb")


def validate(cfg: DictConfig) -> None:
    """Semantic checks of a composed training config, before anything is built (raises :class:`ConfigError`)."""
    from hydra.utils import instantiate

    from twm.run.spec import ARCHITECTURES, OPTIMIZERS, SCHEDULERS, RunSpec

    check_moved_config(cfg)
    if cfg.get("seed") is None or int(cfg.seed) < 0:
        raise ConfigError("seed", cfg.get("seed"), "an integer >= 0 (0 is a valid seed)")
    task = cfg.task
    if int(task.s) < 1 or int(task.d) < 1:
        raise ConfigError("task.s/task.d", (task.s, task.d), "positive integers")
    try:
        instantiate(task)
    except Exception as err:  # instantiate wraps the ValueError of operator_from_id
        cause = err.__cause__ or err
        key = "task.task_id" if task.get("task_id") is not None else "task.name"
        raise ConfigError(key, task.get("task_id") or task.name, f"{cause}") from None
    model, opt = cfg.model, cfg.optimizer
    if model.arch not in ARCHITECTURES:
        raise ConfigError("model.arch", model.arch, " | ".join(ARCHITECTURES))
    try:
        hidden_size = int(model.hidden_size)
    except Exception as err:  # a ${budget:N} that cannot be resolved
        from omegaconf import OmegaConf

        cause = str(err.__cause__ or err).splitlines()[0]
        raise ConfigError("model.hidden_size", OmegaConf.to_container(model)["hidden_size"],
                          f"a positive integer or ${{budget:N}} with N >= 1 ({cause})") from None
    if hidden_size <= 0:
        raise ConfigError("model.hidden_size", model.hidden_size, "a positive integer (the paper uses 32, 64, 128)")
    if opt.name not in OPTIMIZERS:
        raise ConfigError("optimizer.name", opt.name, " | ".join(OPTIMIZERS))
    if float(opt.l2) < 0:
        raise ConfigError("optimizer.l2", opt.l2, "a float >= 0 (Adam's coupled weight decay)")
    if float(opt.lr) <= 0:
        raise ConfigError("optimizer.lr", opt.lr, "a float > 0")
    sched = cfg.get("scheduler") or {}
    if sched.get("name", "none") not in SCHEDULERS:
        raise ConfigError("scheduler.name", sched.get("name"), " | ".join(SCHEDULERS) + " (choose scheduler=none|step)")
    if sched.get("name") == "step":
        milestones = list(sched.get("milestones") or [])
        if not milestones or any(int(m) < 1 for m in milestones) or any(b <= a for a, b in zip(milestones,
                                                                                               milestones[1:])):
            raise ConfigError("scheduler.milestones", milestones,
                              "a non-empty, strictly increasing list of positive optimizer-step counts")
        if not float(sched.get("gamma", 0.1)) > 0:
            raise ConfigError("scheduler.gamma", sched.get("gamma"), "a float > 0 (the factor at each milestone)")
    if float(cfg.trainer.gradient_clip_val) <= 0:
        raise ConfigError("trainer.gradient_clip_val", cfg.trainer.gradient_clip_val,
                          "a float > 0 (the total gradient norm is clipped to it; the paper uses 1.0)")
    if model.init not in ("uniform", "gaussian"):
        raise ConfigError("model.init", model.init, "'uniform' (PyTorch default) or 'gaussian' (N(0, 1/n))")
    try:
        RunSpec.from_config(cfg).make_model()
    except OptionError as err:
        raise ConfigError(f"model.{err.key}", err.value, f"{err.allowed} for model={model.arch}") from None
    cur = cfg.curriculum
    if "threshold" in cur and not 0.0 < float(cur.threshold) <= 1.0:
        raise ConfigError("curriculum.threshold", cur.threshold, "a float in (0, 1]")
    if "ladder" in cur:
        ladder = list(cur.ladder)
        if not ladder or any(int(h) <= 0 for h in ladder) or any(b <= a for a, b in zip(ladder, ladder[1:])):
            raise ConfigError("curriculum.ladder", ladder, "a non-empty, strictly increasing list of positive ints")
    try:
        instantiate(cur)
    except Exception as err:
        raise ConfigError("curriculum", dict(cur), str(err.__cause__ or err)) from None
    if int(cfg.trainer.max_steps) <= 0:
        raise ConfigError("trainer.max_steps", cfg.trainer.max_steps, "a positive integer (the table used 20000)")
    if int(cfg.data.batch_size) <= 0:
        raise ConfigError("data.batch_size", cfg.data.batch_size, "a positive integer")
    keep = ((cfg.get("callbacks") or {}).get("keep_weights") or {}).get("every_n_train_steps")
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 1):
        raise ConfigError("callbacks.keep_weights.every_n_train_steps", keep,
                          "null (off) or an integer K >= 1: keep the weights of step 0 and every K-th step")
    for name in cfg.get("logger") or {}:
        if name not in LOGGERS:
            raise ConfigError(f"logger.{name}", name, f"loggers {', '.join(LOGGERS)} (choose logger=csv|wandb|none)")
