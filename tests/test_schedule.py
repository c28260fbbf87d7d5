"""The learning-rate schedule (``conf/scheduler``) in every engine: hand-computed learning rates and Adam steps ←
the reference loop ← the Lightning engine (bitwise) and the batched engine (to rounding), with the drop inside a
short run; resuming across the drop, by the same engine and by the other one."""

import json

import numpy as np
import pytest
import torch

from tests.conftest import compose_train
from tests.test_engines import HELD_OUT, _adam_by_hand, _Kill, _kill_at, _metrics, overrides, spec_by_hand
from twm.run.folder import RunFolder
from twm.run.spec import RunSpec, SchedulerSpec
from twm.train.config import ConfigError, validate
from twm.train.pipeline import prepare, run_lightning, train_packed
from twm.train.reference import train_reference

STEPS, DROP, EVERY = 60, 30, 20
SCHEDULE = ["scheduler=step", f"scheduler.milestones=[{DROP}]", "scheduler.gamma=0.1"]
CRASH = ["+callbacks.crash._target_=tests.helpers.callbacks.CrashAt"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def scheduled_spec(steps=STEPS, milestones=(DROP,), gamma=0.1) -> RunSpec:
    return spec_by_hand(steps=steps).replace(scheduler=SchedulerSpec("step", milestones, gamma))


def _config(run, extra=()):
    return compose_train(overrides(steps=STEPS, checkpoint_every=EVERY) + SCHEDULE + list(extra), run)


def _lightning(run, extra=()) -> dict:
    return run_lightning(prepare(_config(run, extra)))


def _batched(run, progress=None):
    return train_packed([prepare(_config(run))], 64, "cpu", on_progress=progress, progress_every=1)


def _lrs() -> list[float]:
    """The learning rate of every step, by hand: constant, then a tenth of it from step 30 (0-based) on."""
    return [HELD_OUT["lr"]] * DROP + [HELD_OUT["lr"] * 0.1] * (STEPS - DROP)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """One uninterrupted run per engine."""
    root = tmp_path_factory.mktemp("clean")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        torch.set_num_threads(1)
        _lightning(root / "lightning")
        _batched(root / "batched")
    return root


# ----------------------------------------------------------------------------------------------------------------
# the spec and the config
# ----------------------------------------------------------------------------------------------------------------
def test_the_spec_reads_the_schedule_and_leaves_constant_runs_as_they_were(tmp_path):
    spec = RunSpec.from_config(_config(tmp_path))
    assert spec.identity() == scheduled_spec().identity() and spec.identity()["scheduler"]["milestones"] == [DROP]
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    constant = RunSpec.from_config(compose_train(overrides(), tmp_path))
    assert "scheduler" not in constant.to_dict() and constant.scheduler == SchedulerSpec()
    assert spec.replace(scheduler=SchedulerSpec()).identity() == constant.replace(steps=STEPS).identity()


def test_the_paper_recipe_preset(tmp_path):
    """App. B.2, Table 2: 45 000 steps, the rate changed after 36 000 (by the decided 0.1), the adaptive curriculum
    with γ = 1.2, ε = 0.03 and H in [10, 100]."""
    cfg = compose_train(["experiment=paper_recipe", "task=signed_shuffle_48"], tmp_path)
    validate(cfg)
    spec = RunSpec.from_config(cfg)
    assert spec.steps == 45000 and spec.task.name == "signed_shuffle_48" and spec.optim.lr == 1e-3
    assert [spec.scheduler.lr_at(1e-3, k) for k in (0, 35999, 36000, 44999)] == [1e-3, 1e-3, 1e-3 * 0.1, 1e-3 * 0.1]
    assert spec.curriculum.kind == "adaptive"
    assert {k: v for k, v in spec.curriculum.params if k != "window"} == {"gamma": 1.2, "epsilon": 0.03, "h0": 10,
                                                                           "h_max": 100}


@pytest.mark.parametrize(("override", "key"), [
    ("scheduler.name=cosine", "scheduler.name"),
    ("scheduler.milestones=[]", "scheduler.milestones"),
    ("scheduler.milestones=[30,10]", "scheduler.milestones"),
    ("scheduler.gamma=0", "scheduler.gamma"),
])
def test_a_bad_schedule_is_named(tmp_path, override, key):
    with pytest.raises(ConfigError, match=f"Invalid configuration: {key}="):
        validate(compose_train(overrides() + SCHEDULE + [override], tmp_path))


# ----------------------------------------------------------------------------------------------------------------
# learning rates and Adam steps by hand
# ----------------------------------------------------------------------------------------------------------------
def test_learning_rates_by_hand():
    lr = 0.004
    spec = SchedulerSpec("step", (2, 5), 0.5)
    by_hand = [lr, lr, lr / 2, lr / 2, lr / 2, lr / 4, lr / 4]
    assert [spec.lr_at(lr, k) for k in range(7)] == by_hand  # what the batched engine uses
    _, history = train_reference(spec_by_hand({**HELD_OUT, "lr": lr}, steps=7).replace(scheduler=spec))
    assert history["lr"] == by_hand  # torch.optim.lr_scheduler.MultiStepLR in the reference loop
    assert SchedulerSpec().lr_at(lr, 10 ** 6) == lr


def test_reference_loop_is_adam_at_the_scheduled_rate():
    spec = scheduled_spec(steps=4, milestones=(2,))
    lr = spec.optim.lr
    model, _ = train_reference(spec)
    for k, w in _adam_by_hand(spec, 4, lrs=[lr, lr, lr * 0.1, lr * 0.1]).items():
        torch.testing.assert_close(model.state_dict()[k], w, atol=2e-6, rtol=0, msg=k)


# ----------------------------------------------------------------------------------------------------------------
# the engines across the drop
# ----------------------------------------------------------------------------------------------------------------
def test_engines_follow_the_reference_across_the_drop(clean):
    model, history = train_reference(scheduled_spec())
    assert history["lr"] == _lrs()
    lightning, batched = _metrics(clean / "lightning"), _metrics(clean / "batched")
    trained, _ = RunFolder(clean / "lightning").load_model()
    for k, w in model.state_dict().items():
        assert torch.equal(trained.state_dict()[k], w), k
    assert lightning["train/loss"] == history["loss"] and lightning["curriculum/horizon"] == history["horizon"]
    assert batched["curriculum/horizon"] == history["horizon"]
    np.testing.assert_allclose(batched["train/loss"], history["loss"], rtol=0, atol=1e-5)
    for run in ("lightning", "batched"):
        assert _lr_column(clean / run) == _lrs(), run
        summary = RunFolder(clean / run).read_summary()
        assert summary["scheduler"] == {"name": "step", "milestones": [DROP], "gamma": 0.1}
        assert summary["lr"] == _lrs()[0]


def test_an_ensemble_mixes_schedules():
    from twm.train.batched import EnsembleTrainer

    specs = [scheduled_spec(), spec_by_hand({**HELD_OUT, "seed": 3}, steps=STEPS),
             scheduled_spec(milestones=(10, 40), gamma=0.5)]
    trainer = EnsembleTrainer(specs)
    losses = {i: [] for i in range(len(specs))}
    while trainer.active:
        for i, r in trainer.step().items():
            losses[i].append(r["loss"])
    for i, spec in enumerate(specs):
        _, history = train_reference(spec)
        np.testing.assert_allclose(losses[i], history["loss"], rtol=0, atol=1e-5, err_msg=str(i))


def test_both_engines_checkpoint_the_schedule_alike(clean):
    ca, cb = (torch.load(clean / run / "checkpoints" / "last.ckpt", weights_only=False)
              for run in ("lightning", "batched"))
    assert ca["lr_schedulers"] == cb["lr_schedulers"] and len(ca["lr_schedulers"]) == 1
    assert ca["optimizer_states"][0]["param_groups"] == cb["optimizer_states"][0]["param_groups"]
    assert cb["optimizer_states"][0]["param_groups"][0]["lr"] == _lrs()[-1]
    assert ca["loops"] == cb["loops"]


def _lr_column(run) -> list[float]:
    import csv

    with open(run / "metrics.csv", newline="") as fh:
        return [float(r["train/lr"]) for r in csv.DictReader(fh)]


def _same_run(a, b, atol=0.0):
    ra, rb = _metrics(a), _metrics(b)
    assert ra["step"] == rb["step"] == list(range(STEPS))
    assert ra["curriculum/horizon"] == rb["curriculum/horizon"]
    np.testing.assert_allclose(ra["train/loss"], rb["train/loss"], rtol=0, atol=atol)
    assert _lr_column(a) == _lr_column(b) == _lrs()
    wa, wb = RunFolder(a).load_model()[0].state_dict(), RunFolder(b).load_model()[0].state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0)


def test_lightning_resumes_across_the_drop_bitwise(clean, tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        _lightning(tmp_path / "run", CRASH + ["+callbacks.crash.step=25"])
    assert RunFolder(tmp_path / "run").checkpoint_step() == EVERY  # before the drop
    _lightning(tmp_path / "run")
    _same_run(clean / "lightning", tmp_path / "run")


def test_batched_resumes_across_the_drop_bitwise(clean, tmp_path):
    with pytest.raises(_Kill):
        _batched(tmp_path / "run", progress=_kill_at(25))
    assert RunFolder(tmp_path / "run").checkpoint_step() == EVERY
    _batched(tmp_path / "run")
    _same_run(clean / "batched", tmp_path / "run")


@pytest.mark.parametrize("kill", [25, 45], ids=["before_the_drop", "after_the_drop"])
def test_lightning_resumes_a_batched_run(clean, tmp_path, kill):
    with pytest.raises(_Kill):
        _batched(tmp_path / "run", progress=_kill_at(kill))
    assert RunFolder(tmp_path / "run").checkpoint_step() == kill // EVERY * EVERY
    assert _lightning(tmp_path / "run")["engine"] == "lightning"
    _same_run(clean / "lightning", tmp_path / "run", atol=1e-4)


def test_the_batched_engine_resumes_a_lightning_run_after_the_drop(clean, tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        _lightning(tmp_path / "l2b", CRASH + ["+callbacks.crash.step=45"])
    assert RunFolder(tmp_path / "l2b").checkpoint_step() == 2 * EVERY
    (summary,) = _batched(tmp_path / "l2b")
    assert summary["engine"] == "batched"
    _same_run(clean / "batched", tmp_path / "l2b", atol=1e-4)
