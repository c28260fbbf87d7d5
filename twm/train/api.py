"""Training from Python (a notebook, a script) without the command line: a :class:`~twm.run.spec.RunSpec` in, a run
folder out, exactly as ``python -m twm.train`` makes it (config copy, fingerprint, metrics, checkpoints, summary), so
``twm.analyze``, ``twm.report`` and a relaunch treat it like any other run::

    from twm.run.spec import ModelSpec, RunSpec, TaskSpec
    from twm.tasks import get_task
    from twm.train.api import train_spec

    spec = RunSpec(TaskSpec.from_task(get_task("repeat_copy", s=4, d=4)), ModelSpec(hidden_size=64), steps=2500)
    summary = train_spec(spec, "outputs/notebook")
"""

from __future__ import annotations

from pathlib import Path

from twm.run.spec import RunSpec
from twm.tasks import TASK_NAMES


def _value(value) -> str:
    """A Python value as a Hydra override value (lists as ``[a,b]``, floats exactly)."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def spec_overrides(spec: RunSpec) -> list[str]:
    """The command-line overrides of ``python -m twm.train`` that describe ``spec`` (the inverse of
    :meth:`RunSpec.from_config`); ``ValueError`` for a task that has neither a registered name nor an id."""
    task = spec.task
    if task.name in TASK_NAMES:
        head = [f"task={task.name}"]
    elif task.task_id is not None:
        head = ["task=linear", f"task.name={task.name}", f"task.task_id={_value(task.task_id)}"]
    else:
        raise ValueError(f"task {task.name!r} has no id (its operator is not binary with distinct rows): "
                         "train_spec needs a task a config can name (twm.tasks.custom_task with an encodable F)")
    params = dict(spec.curriculum.params)
    accelerator = {"cuda": "gpu"}.get(spec.device, spec.device)
    return [
        *head, f"task.s={task.s}", f"task.d={task.d}",
        f"model.arch={spec.model.arch}", f"model.hidden_size={spec.model.hidden_size}",
        f"model.bias={_value(spec.model.bias)}", f"model.init={spec.model.init}",
        f"optimizer.name={spec.optim.name}", f"optimizer.lr={_value(spec.optim.lr)}",
        f"optimizer.l2={_value(spec.optim.l2)}", f"trainer.gradient_clip_val={_value(spec.optim.clip)}",
        f"curriculum={spec.curriculum.kind}", *(f"curriculum.{k}={_value(v)}" for k, v in params.items()),
        *(f"data.{k}={v}" for k, v in vars(spec.data).items()),
        f"trainer.max_steps={spec.steps}", f"seed={spec.seed}",
        f"trainer.accelerator={accelerator}",
        f"trainer.precision={spec.precision}", f"trainer.deterministic={_value(spec.deterministic)}",
        f"callbacks.checkpoint.every_n_train_steps={spec.checkpoint_every}",
    ]


def train_spec(spec: RunSpec, out_dir, logger: str = "csv", overrides=()) -> dict:
    """Train ``spec`` into the run folder ``out_dir`` (created; resumed if it holds this run's checkpoint, left as it
    is if completed) with the Lightning engine, as ``python -m twm.train`` would; returns the summary (also in
    ``summary.json``).

    ``logger``: a ``conf/logger`` choice (``csv``, ``wandb``: offline unless configured, ``none``); ``overrides``:
    further ``python -m twm.train`` overrides that do not change the run (e.g. ``["callbacks=grad_probe"]``). The
    config is composed from ``conf/`` and checked to describe ``spec`` exactly (a ``ValueError`` names the fields
    that differ)."""
    from twm.train.config import compose_train_config
    from twm.train.pipeline import train

    out_dir = Path(out_dir)
    cfg = compose_train_config([f"logger={logger}", *overrides, *spec_overrides(spec)], output_dir=out_dir.resolve())
    composed = RunSpec.from_config(cfg)
    if composed != spec:
        mine, theirs = spec.to_dict(), composed.to_dict()
        differ = sorted(k for k in mine if mine[k] != theirs[k])
        raise ValueError(f"the composed config does not describe this spec (fields {', '.join(differ)} differ); "
                         "check the overrides")
    return train(cfg)
