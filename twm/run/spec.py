"""The run specification: one typed, frozen description of a training run, built once from the composed config.

Every engine (the Lightning path, the batched ensembles, the bare reference loop), the ensemble launcher, the
benchmarks and the experiment scripts receive a :class:`RunSpec`; none of them reads config keys of its own. A new
field is added here (and to the config schema in ``twm.train.config``) and used where it matters.

Config → spec (``RunSpec.from_config``):

==================  ==========================================================================================
``task``            ``task.{name, s, d, task_id}`` → the operator ``F`` (``twm.tasks.make_task``)
``model``           ``model.{arch, hidden_size, bias, init}`` and the architecture's own keys (``twm.model.MODELS``)
``optim``           ``optimizer.{name, lr, l2}`` and ``trainer.gradient_clip_val`` (clipping of the total norm)
``scheduler``       ``scheduler.{name, milestones, gamma}``: the learning-rate schedule (``none`` or ``step``)
``curriculum``      the ``curriculum`` group: its kind (``ladder``, ``adaptive``, ``none``) and parameters
``data``            ``data.{batch_size, test_horizon, test_batches, test_batch_size, fixed_batch}``
``steps``, ``seed``  ``trainer.max_steps``, ``seed``
``device``          ``trainer.accelerator`` (``cpu``, ``gpu``/``cuda``, ``auto``); ``precision``, ``deterministic``
``checkpoint_every`` ``callbacks.checkpoint.every_n_train_steps`` (both engines refresh ``last.ckpt`` this often)
``init``            ``ckpt_path`` of another run: that checkpoint's sha256 and step (``twm.train.from_checkpoint``)
``tags``            ``tags``: labels for the summary and W&B (not part of the run's identity)
==================  ==========================================================================================

``model.hidden_size: ${budget:N}`` (a resolver registered here) sets the width of any architecture to the one whose
trainable parameters come closest to N (``twm.model.matched_hidden_size``), so one multirun over ``model=...``
compares architectures at a matched budget (docs/science.md §9).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from twm.curriculum import CURRICULA, build_curriculum
from twm.model import MODELS, RecurrentModel, build_model, matched_hidden_size
from twm.tasks import Task, custom_task, make_task, validate_operator

ARCHITECTURES = tuple(MODELS)
OPTIMIZERS = ("adam",)
SCHEDULERS = ("none", "step")
# (key path..., default) of the spec fields added after runs were recorded: omitted from to_dict() at the default
# (the learning-rate schedule too when it is constant: RunSpec.to_dict)
LATER_FIELDS = (("data", "fixed_batch", False), ("init", None), ("tags", []), ("model", "options", []))


@dataclass(frozen=True)
class RunSeeds:
    """Independent seeds derived from a run's ``seed`` (numpy ``SeedSequence``): weights, training data, test
    data, the probe batch of the analyses."""

    init: int
    data: int
    test: int
    probe: int


def run_seeds(seed: int) -> RunSeeds:
    children = np.random.SeedSequence(int(seed)).spawn(4)
    return RunSeeds(*(int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children))


@dataclass(frozen=True)
class TaskSpec:
    """The task: name, ``(s, d)``, the authors' id if it has one, and the operator ``F`` ``(s*d, d)`` itself
    (stored as nested tuples so the spec stays hashable and comparable)."""

    name: str
    s: int
    d: int
    task_id: tuple[int, ...] | None
    operator: tuple[tuple[float, ...], ...] = field(repr=False)

    @property
    def F(self) -> np.ndarray:
        """``(s*d, d)`` float64."""
        return np.asarray(self.operator, dtype=np.float64)

    @classmethod
    def from_task(cls, task: Task) -> TaskSpec:
        F = np.asarray(task.F, dtype=np.float64)
        return cls(task.name, int(task.s), int(task.d), None if task.task_id is None else tuple(map(int, task.task_id)),
                   tuple(tuple(float(v) for v in row) for row in F))

    @classmethod
    def from_operator(cls, F, s: int, name: str = "custom") -> TaskSpec:
        return cls.from_task(custom_task(s, F=np.asarray(F), name=name))

    def task(self) -> Task:
        """The :class:`twm.tasks.Task` (registered tasks keep their labels)."""
        if self.task_id is not None:
            try:
                task = make_task(self.name, self.s, self.d, list(self.task_id))
                if np.array_equal(np.asarray(task.F, dtype=np.float64), self.F):
                    return task
            except ValueError:
                pass
        return Task(self.name, self.s, self.d, self.F, self.task_id)


@dataclass(frozen=True)
class ModelSpec:
    """The architecture (``conf/model``): no optimiser settings here. ``options``: the architecture's own keys
    (``twm.model.MODELS[arch].OPTIONS``) as sorted pairs, every one recorded (unset ones at their defaults); none
    for the Elman RNN, and then absent from :meth:`RunSpec.to_dict` (so Elman fingerprints stay those of runs made
    before other architectures existed)."""

    arch: str = "elman"
    hidden_size: int = 128
    bias: bool = False
    init: str = "uniform"
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        known = MODELS[self.arch].OPTIONS if self.arch in MODELS else {}
        given = dict(self.options)
        unknown = set(given) - set(known)
        if unknown:
            raise ValueError(f"{self.arch} has no option {', '.join(sorted(unknown))}; its options: "
                             f"{', '.join(known) or 'none'}")
        object.__setattr__(self, "options", tuple(sorted({**known, **given}.items())))

    @classmethod
    def of(cls, arch: str = "elman", hidden_size: int = 128, bias: bool = False, init: str = "uniform",
           **options) -> ModelSpec:
        """``ModelSpec`` with the options as keywords; unset ones are recorded at the architecture's defaults."""
        return cls(arch, int(hidden_size), bool(bias), str(init), tuple(options.items()))


@dataclass(frozen=True)
class OptimSpec:
    """The optimiser (``conf/optimizer``) and gradient clipping: Adam with coupled L2 (``weight_decay``), the
    gradient's total norm clipped to ``clip`` before the step (docs/science.md §3)."""

    name: str = "adam"
    lr: float = 1e-3
    l2: float = 0.0
    clip: float = 1.0


@dataclass(frozen=True)
class SchedulerSpec:
    """The learning-rate schedule (``conf/scheduler``), stepped once per optimizer step in every engine.

    ``none``: the constant learning rate of the released experiments (docs/science.md §3). ``step``: the learning
    rate is multiplied by ``gamma`` once ``milestones[k]`` optimizer steps have been taken, for each k — PyTorch's
    ``MultiStepLR`` stepped per optimizer step; the paper's recipe drops it at 36 000 of 45 000 steps (App. B.2,
    Table 2).
    """

    name: str = "none"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        object.__setattr__(self, "gamma", float(self.gamma))

    @property
    def active(self) -> bool:
        return self.name != "none"

    def lr_at(self, lr: float, step: int) -> float:
        """The learning rate of the optimizer step taken after ``step`` steps (0-based), as ``MultiStepLR`` holds
        it after ``step`` scheduler steps: ``lr`` times ``gamma`` per milestone ``<= step``, multiplied in the same
        order and with the same Python floats (so an engine that uses it matches ``torch.optim`` exactly)."""
        if not self.active:
            return lr
        counts: dict[int, int] = {}
        for m in self.milestones:
            counts[int(m)] = counts.get(int(m), 0) + 1
        for m in sorted(counts):
            if m <= step:
                lr = lr * self.gamma ** counts[m]
        return lr

    def build(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The ``torch.optim.lr_scheduler`` of ``optimizer`` (``None`` for a constant learning rate)."""
        if self.name == "none":
            return None
        if self.name == "step":
            return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(self.milestones), gamma=self.gamma)
        raise ValueError(f"unknown scheduler {self.name!r}; known: {', '.join(SCHEDULERS)}")


@dataclass(frozen=True)
class CurriculumSpec:
    """A curriculum kind (a name in ``twm.curriculum.CURRICULA``) and its parameters, as sorted pairs."""

    kind: str = "ladder"
    params: tuple[tuple[str, Any], ...] = (("ladder", (10, 20, 40, 60, 100)), ("threshold", 0.98))

    def build(self):
        """A fresh state machine at its starting horizon."""
        return build_curriculum(self.kind, {k: list(v) if isinstance(v, tuple) else v for k, v in self.params})

    @property
    def threshold(self) -> float | None:
        return dict(self.params).get("threshold")

    @classmethod
    def of(cls, kind: str, **params) -> CurriculumSpec:
        return cls(kind, tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in params.items())))


@dataclass(frozen=True)
class DataSpec:
    """Training batch size and the test of docs/science.md §1.3 (horizon, batches, batch size). ``fixed_batch``:
    every step trains on the run's first batch again (its data generator is reseeded before each draw; the draw
    does not depend on the horizon, so the batch is the same sequences continued to the curriculum's current
    horizon): the overfit-one-batch check of a model and an engine."""

    batch_size: int = 64
    test_horizon: int = 200
    test_batches: int = 10
    test_batch_size: int = 64
    fixed_batch: bool = False


@dataclass(frozen=True)
class InitSpec:
    """Initial weights taken from another run's checkpoint (``ckpt_path``, ``twm.train.from_checkpoint``): the sha256
    of that file and the step it was saved at. Part of the run's identity; the weights themselves are the run
    folder's step-0 checkpoint (:meth:`RunSpec.make_model` stays the seed's initialisation)."""

    sha256: str
    step: int


@dataclass(frozen=True)
class RunSpec:
    """One training run. ``identity()`` is what makes a run this run (a folder holding another is refused)."""

    task: TaskSpec
    model: ModelSpec = ModelSpec()
    optim: OptimSpec = OptimSpec()
    curriculum: CurriculumSpec = CurriculumSpec()
    data: DataSpec = DataSpec()
    steps: int = 20000
    seed: int = 1
    device: str = "cpu"
    precision: str = "32-true"
    deterministic: bool = True
    checkpoint_every: int = 500
    scheduler: SchedulerSpec = SchedulerSpec()
    init: InitSpec | None = None
    tags: tuple[str, ...] = ()

    # -- derived ---------------------------------------------------------------------------------------------------
    @property
    def seeds(self) -> RunSeeds:
        return run_seeds(self.seed)

    def make_model(self) -> RecurrentModel:
        """The network at initialisation (``twm.model.build_model``): the same weights for the same seed in every
        engine (CPU)."""
        m = self.model
        return build_model(m.arch, self.task.d, m.hidden_size, self.task.s, bias=m.bias, init=m.init,
                           generator=torch.Generator().manual_seed(self.seeds.init), **dict(m.options))

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        """``torch.optim.Adam`` with the run's learning rate and coupled L2."""
        if self.optim.name != "adam":
            raise ValueError(f"unknown optimizer {self.optim.name!r}; known: {', '.join(OPTIMIZERS)}")
        return torch.optim.Adam(params, lr=self.optim.lr, weight_decay=self.optim.l2)

    def make_scheduler(self, optimizer: torch.optim.Optimizer):
        """The run's learning-rate scheduler on ``optimizer`` (``None`` at a constant learning rate)."""
        return self.scheduler.build(optimizer)

    def replace(self, **changes) -> RunSpec:
        """A copy with top-level fields replaced; nested ones as ``optim={"lr": 0.01}``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in changes.items():
            current = values[key]
            if isinstance(value, dict) and hasattr(current, "__dataclass_fields__"):
                value = type(current)(**{**asdict(current), **value})
            values[key] = value
        return RunSpec(**values)

    # -- serialisation ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able content (lists for tuples); :meth:`from_dict` inverts it. Fields added after runs were
        recorded (:data:`LATER_FIELDS`, and a constant learning rate) are left out at their default, so the
        fingerprints of those runs stay valid."""
        out = _plain(asdict(self))
        if not self.scheduler.active:
            out.pop("scheduler")
        for *path, default in LATER_FIELDS:
            parent = out
            for key in path[:-1]:
                parent = parent[key]
            if parent.get(path[-1]) == default:
                parent.pop(path[-1])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        task = dict(data["task"])
        task["task_id"] = None if task.get("task_id") is None else tuple(task["task_id"])
        task["operator"] = tuple(tuple(float(v) for v in row) for row in task["operator"])
        cur = data.get("curriculum", {})
        curriculum = CurriculumSpec.of(cur["kind"], **{k: v for k, v in cur["params"]}) if cur else CurriculumSpec()
        top = {k: data[k] for k in ("steps", "seed", "device", "precision", "deterministic", "checkpoint_every")
               if k in data}
        if data.get("tags"):
            top["tags"] = tuple(str(t) for t in data["tags"])
        model = dict(data.get("model", {}))
        model["options"] = tuple((k, v) for k, v in model.get("options", ()))
        init = InitSpec(**data["init"]) if data.get("init") else None
        return cls(TaskSpec(**task), ModelSpec(**model), OptimSpec(**data.get("optim", {})),
                   curriculum, DataSpec(**data.get("data", {})), scheduler=SchedulerSpec(**data.get("scheduler", {})),
                   init=init, **top)

    def identity(self) -> dict:
        """What makes a run this run: everything but where and how often it is computed and saved."""
        out = self.to_dict()
        for key in ("device", "precision", "deterministic", "checkpoint_every", "tags"):
            out.pop(key, None)
        return out

    @classmethod
    def from_config(cls, cfg) -> RunSpec:
        """The spec of a composed ``conf/train.yaml`` (call ``twm.train.config.validate`` first for errors that
        name the config key). Older run folders that kept ``lr`` and ``l2`` under ``model`` are read too."""
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        task = instantiate(cfg.task)
        validate_operator(task.F, task.s)
        model, opt = cfg.model, cfg.get("optimizer") or {}
        cur = OmegaConf.to_container(cfg.curriculum, resolve=True)
        kind = _curriculum_kind(cur.pop("_target_", None))
        sched = cfg.get("scheduler") or {}
        trainer = cfg.trainer
        checkpoint = (cfg.get("callbacks") or {}).get("checkpoint") or {}
        accelerator = str(trainer.get("accelerator", "cpu"))
        return cls(
            task=TaskSpec.from_task(task),
            model=_model_spec(model),
            optim=OptimSpec(str(opt.get("name", "adam")), float(opt.get("lr", model.get("lr", 1e-3))),
                            float(opt.get("l2", model.get("l2", 0.0))), float(trainer.get("gradient_clip_val", 1.0))),
            curriculum=CurriculumSpec.of(kind, **cur),
            data=DataSpec(**{k: bool(v) if k == "fixed_batch" else int(v) for k, v in cfg.data.items()}),
            steps=int(trainer.max_steps),
            seed=int(cfg.seed),
            device={"gpu": "cuda"}.get(accelerator, accelerator),
            precision=str(trainer.get("precision", "32-true")),
            deterministic=bool(trainer.get("deterministic", True)),
            checkpoint_every=int(checkpoint.get("every_n_train_steps") or 500),
            scheduler=SchedulerSpec(str(sched.get("name", "none")), tuple(sched.get("milestones") or ()),
                                    float(sched.get("gamma", 0.1))),
            tags=tuple(str(t) for t in (cfg.get("tags") or ())),
        )


def budget_hidden_size(budget, *, _root_) -> int:
    """The ``${budget:N}`` resolver: the ``hidden_size`` of ``_root_.model`` (its architecture, bias and options) at
    ``_root_.task``'s ``d`` and ``s`` whose parameter count is closest to ``N`` (docs/science.md §9, Budgets)."""
    model, task = _root_.model, _root_.task
    arch = str(model.get("arch", "elman"))
    if arch not in MODELS:
        raise ValueError(f"budget: unknown model.arch {arch!r}; known: {', '.join(MODELS)}")
    if int(budget) < 1:
        raise ValueError(f"budget: a parameter count >= 1, got {budget!r}")
    options = {k: model[k] for k in MODELS[arch].OPTIONS if model.get(k) is not None}
    return matched_hidden_size(arch, int(budget), int(task.d), int(task.s), bool(model.get("bias", False)), **options)


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("budget", budget_hidden_size, replace=True)


_register_resolvers()


def _model_spec(model) -> ModelSpec:
    """``cfg.model`` → :class:`ModelSpec`, with the architecture's options (older folders may hold other keys)."""
    arch = str(model.get("arch", "elman"))
    known = MODELS[arch].OPTIONS if arch in MODELS else {}
    options = {k: model[k] for k in known if model.get(k) is not None}
    return ModelSpec.of(arch, int(model.hidden_size), bool(model.get("bias", False)), str(model.get("init", "uniform")),
                        **options)


def _curriculum_kind(target: str | None) -> str:
    for name, cls in CURRICULA.items():
        if target in (f"{cls.__module__}.{cls.__qualname__}", f"twm.train.curriculum.{cls.__qualname__}"):
            return name
    raise ValueError(f"unknown curriculum target {target!r}; known: "
                     + ", ".join(f"{c.__module__}.{c.__qualname__}" for c in CURRICULA.values()))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
