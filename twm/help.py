"""The ``--help`` pages of the Hydra apps (``twm-train``, ``twm-analyze``, ``twm-report``), through Hydra's own
``hydra/help`` group (``conf/hydra/help/twm_*.yaml``). Their templates call two OmegaConf resolvers registered here,
which read ``conf/`` when the page is printed, so a new preset or key shows up without editing the page:

- ``${twm_groups:train}``: the config groups a user chooses from, each with its options (``*`` marks the current
  choice, command-line overrides included) and one line on what it decides;
- ``${twm_keys:train}``: the top-level keys of ``conf/train.yaml`` (any primary config) with their defaults and the
  comments written beside them.

Internal groups (``schema``: the typed schemas; ``paths``; ``local``: your machine's settings; ``hydra``) are not
listed.
"""

from __future__ import annotations

import re

from omegaconf import OmegaConf

from twm import CONF_DIR

GROUPS = {
    "train": {
        "experiment": "a paper experiment: its run or grid, folder and settings (experiments/README.md)",
        "task": "the sequence task (docs/science.md §1); task=linear task.task_id=[...] for any binary HDS",
        "model": "the network: model.hidden_size, model.bias, model.init",
        "optimizer": "Adam: optimizer.lr, optimizer.l2 (coupled weight decay)",
        "scheduler": "the learning rate over training: constant, or step decay (scheduler.milestones, .gamma)",
        "curriculum": "how the training horizon grows (docs/science.md §3)",
        "recipe": "released (Table 1's: 20 000 steps, ladder) or paper (App. B.2: 45 000 steps, lr drop, adaptive)",
        "trainer": "device and length: trainer.max_steps, trainer.gradient_clip_val",
        "logger": "metrics.csv (always with csv), W&B offline beside it, or none",
        "callbacks": "checkpoint cadence, progress line, the gradient-flow probe of Fig. 5",
        "launcher": "where a multirun's jobs run: in this process, batched ensembles, local processes, SLURM",
        "debug": "a seconds-long run into outputs/debug/; overfit one fixed batch",
        "hparams_search": "a hyper-parameter search maximising the test accuracy (pip install -e '.[optuna]')",
        "sweep": "the earlier names of the experiment presets of the same name",
    },
    "analyze": {"launcher": "where the chunks of a multirun analysis (-m ... 'chunk=range(n)') run"},
    "report": {},
}


def groups(app: str) -> str:
    """One line per config group of ``app`` (``train``, ``analyze``, ``report``): name, options, what it decides."""
    choices = _choices()
    lines = []
    for group, what in GROUPS[app].items():
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        chosen = choices.get(group)
        shown = " | ".join(f"{o}*" if o == chosen else o for o in options)
        lines.append(f"  {group:<15} {shown}\n  {'':<15}   {what}")
    return _escaped("\n".join(lines) if lines else "  (none)")


def keys(app: str) -> str:
    """The top-level keys of ``conf/<app>.yaml`` (one level of nesting as ``parent.key``), outside its ``defaults``
    and ``hydra`` blocks: ``key=default`` and the comment beside it."""
    lines, parent = [], None
    for raw in (CONF_DIR / f"{app}.yaml").read_text().splitlines():
        match = re.match(r"^( *)([A-Za-z_][\w]*):\s*([^#]*?)\s*(?:#\s*(.*))?$", raw)
        if match is None:
            continue
        indent, key, value, comment = match.groups()
        if not indent:
            parent = None if value else key
            if parent in ("defaults", "hydra"):
                continue
        elif len(indent) != 2 or parent in (None, "defaults", "hydra"):
            continue
        else:
            key = f"{parent}.{key}"
        if value:
            lines.append(f"  {key + '=' + value:<28} {comment or ''}".rstrip())
    return _escaped("\n".join(lines))


def _escaped(text: str) -> str:
    """Hydra fills the page in with ``string.Template``: a literal ``$`` is written ``$$``."""
    return text.replace("$", "$$")


def _choices() -> dict:
    """The current group choices (``hydra.runtime.choices``), empty outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return dict(HydraConfig.get().runtime.choices)


OmegaConf.register_new_resolver("twm_groups", groups, replace=True)
OmegaConf.register_new_resolver("twm_keys", keys, replace=True)
