"""The test chain: a hand-computed Adam step ← the bare reference loop ← the Lightning engine (bitwise) and the
batched engine (to rounding); checkpoints of either engine resumed by the other; both launchers on one sweep.

The configurations are held out: drawn by the suite from a fixed random stream, with L2 > 0, clipping active, a
curriculum that advances at least twice and at least 200 steps (the first test checks those properties)."""

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import compose_train
from twm.metrics import output_mse
from twm.run.folder import RunFolder, lightning_loops
from twm.run.spec import CurriculumSpec, DataSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec
from twm.tasks import custom_task, get_task, sample
from twm.train.batched import EnsembleTrainer
from twm.train.pipeline import prepare, run_lightning, train_packed
from twm.train.reference import train_reference

ROOT = Path(__file__).resolve().parents[1]
S = D = 4
N = 16
STEPS = 200
_rng = random.Random(20261201)
SIGNED = (sum(1 << (5 * k) for k in range(4)), _rng.randrange(1, 24), _rng.randrange(1, 16))  # a signed shuffle
HELD_OUT = {  # one configuration per engine comparison, drawn once from the stream above
    "lr": _rng.choice([2e-3, 3e-3, 5e-3]),
    "l2": _rng.choice([1e-3, 3e-3]),
    "clip": _rng.choice([0.05, 0.1]),
    "threshold": _rng.choice([0.55, 0.6]),
    "seed": _rng.randrange(1, 100),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def overrides(c=HELD_OUT, steps=STEPS, checkpoint_every=50):
    return ["task.s=4", "task.d=4", "model.hidden_size=16", f"trainer.max_steps={steps}", "data.test_batches=2",
            f"callbacks.checkpoint.every_n_train_steps={checkpoint_every}", "curriculum.ladder=[2,4,8]",
            f"curriculum.threshold={c['threshold']}", f"optimizer.lr={c['lr']}", f"optimizer.l2={c['l2']}",
            f"trainer.gradient_clip_val={c['clip']}", f"seed={c['seed']}"]


def spec_by_hand(c=HELD_OUT, steps=STEPS, F=None, curriculum=None, bias=False) -> RunSpec:
    """The spec of :func:`overrides`, written without the config (so a config → spec slip shows)."""
    name = "repeat_copy" if F is None else "custom"
    F = get_task("repeat_copy", S, D).F if F is None else F
    curriculum = curriculum or CurriculumSpec.of("ladder", ladder=[2, 4, 8], threshold=c["threshold"])
    return RunSpec(TaskSpec.from_operator(F, S, name),
                   ModelSpec(hidden_size=N, bias=bias), OptimSpec(lr=c["lr"], l2=c["l2"], clip=c["clip"]),
                   curriculum, DataSpec(test_batches=2), steps=steps, seed=c["seed"])


def _metrics(run: Path) -> dict[str, list[float]]:
    import csv

    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: [float(r[k]) for r in rows] for k in ("step", "train/loss", "train/accuracy", "curriculum/horizon")}


def _lightning(run: Path, extra=()) -> dict:
    return run_lightning(prepare(compose_train(overrides() + list(extra), run)))


def _batched(runs, extra=(), progress=None, progress_every=1000):
    jobs = [prepare(compose_train(overrides() + list(extra), run)) for run in runs]
    return train_packed(jobs, 64, "cpu", on_progress=progress, progress_every=progress_every)


# ----------------------------------------------------------------------------------------------------------------
# the spec: config → RunSpec
# ----------------------------------------------------------------------------------------------------------------
def test_spec_from_config_is_the_spec_by_hand(tmp_path):
    spec = RunSpec.from_config(compose_train(overrides(), tmp_path))
    assert spec.identity() == spec_by_hand().identity()
    assert spec.checkpoint_every == 50 and spec.device == "cpu"
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_the_held_out_configuration_exercises_l2_clipping_and_the_curriculum():
    spec = spec_by_hand()
    assert spec.optim.l2 > 0 and spec.steps >= 200
    model = spec.make_model()
    u, y = sample(spec.task.F, S, 2, 64, torch.Generator().manual_seed(spec.seeds.data))
    output_mse(model(u)[0], y, S).backward()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm > spec.optim.clip, "the first gradient must be clipped"
    _, history = train_reference(spec)
    assert len(set(history["horizon"])) >= 3, "the curriculum must advance at least twice"


# ----------------------------------------------------------------------------------------------------------------
# reference loop ← hand-computed Adam
# ----------------------------------------------------------------------------------------------------------------
def _adam_by_hand(spec: RunSpec, steps: int, lrs=None) -> dict[str, torch.Tensor]:
    """``steps`` Adam steps written out (float64 moments): coupled L2 added to the clipped gradient, bias
    correction, eps outside the square root (Kingma & Ba; ``torch.optim.Adam``'s documented algorithm); step t
    uses ``lrs[t - 1]`` (default: the spec's constant learning rate)."""
    model = spec.make_model()
    gen = torch.Generator().manual_seed(spec.seeds.data)
    curriculum = spec.curriculum.build()
    m = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in model.named_parameters()}
    v = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in model.named_parameters()}
    for t in range(1, steps + 1):
        u, y = sample(spec.task.F, S, curriculum.horizon, spec.data.batch_size, gen)
        model.zero_grad()
        pred = model(u)[0]
        loss = torch.mean((pred[S:] - y[S:]) ** 2)
        loss.backward()
        grads = {k: p.grad.double() for k, p in model.named_parameters()}
        total = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
        scale = min(1.0, spec.optim.clip / (total + 1e-6))
        with torch.no_grad():
            for k, p in model.named_parameters():
                g = grads[k] * scale + spec.optim.l2 * p.double()
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                m_hat, v_hat = m[k] / (1 - 0.9 ** t), v[k] / (1 - 0.999 ** t)
                lr = spec.optim.lr if lrs is None else lrs[t - 1]
                p.copy_((p.double() - lr * m_hat / (v_hat.sqrt() + 1e-8)).float())
        sign = torch.where(pred[S:] >= 0, 1.0, -1.0) == y[S:]
        curriculum.update(float(sign.float().mean()), float(loss.detach()))
    return {k: p.detach() for k, p in model.state_dict().items()}


def test_reference_loop_is_adam_with_coupled_l2_and_clipping():
    spec = spec_by_hand(steps=3)
    model, _ = train_reference(spec)
    for k, w in _adam_by_hand(spec, 3).items():
        torch.testing.assert_close(model.state_dict()[k], w, atol=2e-6, rtol=0, msg=k)


# ----------------------------------------------------------------------------------------------------------------
# Lightning engine ≡ reference loop (bitwise)
# ----------------------------------------------------------------------------------------------------------------
def test_lightning_engine_equals_the_reference_loop_bitwise(tmp_path):
    summary = _lightning(tmp_path / "run")
    model, history = train_reference(spec_by_hand())
    trained, _ = RunFolder(tmp_path / "run").load_model()
    for k, w in model.state_dict().items():
        assert torch.equal(trained.state_dict()[k], w), k
    rows = _metrics(tmp_path / "run")
    assert rows["step"] == list(range(STEPS))
    assert rows["train/loss"] == history["loss"] and rows["curriculum/horizon"] == history["horizon"]
    assert summary["train_loss"] == history["loss"][-1] and summary["steps"] == STEPS


# ----------------------------------------------------------------------------------------------------------------
# batched engine ≡ reference loop (to rounding)
# ----------------------------------------------------------------------------------------------------------------
def _members():
    """Members that differ in task, seed, L2, lr, threshold and curriculum."""
    signed = custom_task(S, D, task_id=SIGNED).F
    base = dict(HELD_OUT)
    return [
        spec_by_hand(base),
        spec_by_hand({**base, "seed": base["seed"] + 1, "l2": 0.0, "lr": 1e-3, "threshold": 0.65}, F=signed),
        spec_by_hand({**base, "seed": base["seed"] + 2, "l2": 0.1}),
        spec_by_hand({**base, "seed": base["seed"] + 3}, F=signed,
                     curriculum=CurriculumSpec.of("adaptive", gamma=1.5, epsilon=1.5, h0=2, h_max=9, window=3)),
    ]


def _run_batched(specs, steps, **kw):
    trainer = EnsembleTrainer(specs, **kw)
    history = {i: {"loss": [], "accuracy": [], "horizon": []} for i in range(len(specs))}
    for _ in range(steps):
        for i, r in trainer.step().items():
            for key in ("loss", "accuracy", "horizon"):
                history[i][key].append(r[key])
    return trainer, history


@pytest.mark.parametrize("fast_tanh", [True, False], ids=["cpu_tanh", "torch_tanh"])
def test_batched_engine_equals_the_reference_loop_to_rounding(fast_tanh):
    specs = _members()
    trainer, history = _run_batched(specs, STEPS, fast_tanh=fast_tanh)
    assert not trainer.active
    for i, spec in enumerate(specs):
        model, ref = train_reference(spec)
        assert history[i]["horizon"] == ref["horizon"], i
        np.testing.assert_allclose(history[i]["loss"], ref["loss"], rtol=0, atol=1e-5, err_msg=str(i))
        if spec.optim.l2 < 0.1:  # at L2 = 0.1 the outputs shrink to ~1e-4: their signs are rounding noise
            np.testing.assert_allclose(history[i]["accuracy"], ref["accuracy"], rtol=0, atol=2e-3, err_msg=str(i))
        for k, w in model.state_dict().items():
            torch.testing.assert_close(trainer.state_dict(i)[k], w, atol=1e-4, rtol=0, msg=f"{i} {k}")
    assert len(set(history[3]["horizon"])) > 2, "the adaptive curriculum should move"


def test_batched_engine_with_biases_and_a_non_binary_operator():
    F_half = np.zeros((S * D, D))  # x_{t+1} = (x_{t-3} + x_t) / 2: not binary, sampled by twm.tasks.sample
    for j in range(D):
        F_half[j, j] = F_half[(S - 1) * D + j, j] = 0.5
    specs = [spec_by_hand(steps=40, bias=True), spec_by_hand({**HELD_OUT, "seed": 7}, steps=40, F=F_half, bias=True)]
    trainer, history = _run_batched(specs, 40)
    for i, spec in enumerate(specs):
        model, ref = train_reference(spec)
        assert history[i]["horizon"] == ref["horizon"]
        np.testing.assert_allclose(history[i]["loss"], ref["loss"], rtol=0, atol=1e-5)
        for k, w in model.state_dict().items():
            torch.testing.assert_close(trainer.state_dict(i)[k], w, atol=1e-5, rtol=0)


def test_members_of_different_length_leave_the_stack():
    specs = [s.replace(steps=n) for s, n in zip(_members()[:3], (12, 30, 21))]
    trainer, history = _run_batched(specs, 30)
    assert not trainer.active and trainer.step() == {}
    for i, spec in enumerate(specs):
        assert trainer.steps[i] == spec.steps == len(history[i]["loss"])
        model, ref = train_reference(spec)
        np.testing.assert_allclose(history[i]["loss"], ref["loss"], rtol=0, atol=1e-5)


def test_incompatible_members_are_refused():
    with pytest.raises(ValueError, match="incompatible"):
        EnsembleTrainer([spec_by_hand(), spec_by_hand().replace(model={"hidden_size": N + 1})])


@pytest.mark.slow
def test_long_runs_reach_the_same_outcome():
    """Over 2 400 steps trajectories drift by rounding; what a user relies on is the same: the accuracy class
    and whether the spectrum's count above 0.9 matches Φ's."""
    from twm.analysis import spectral_comparison

    c = {"lr": 3e-3, "l2": 0.0, "clip": 1.0, "threshold": 0.9, "seed": HELD_OUT["seed"]}
    F = get_task("repeat_copy", 2, 2).F
    spec = RunSpec(TaskSpec.from_operator(F, 2, "repeat_copy"), ModelSpec(hidden_size=N), OptimSpec(**{
        k: c[k] for k in ("lr", "l2", "clip")}), CurriculumSpec.of("ladder", ladder=[4, 8, 16], threshold=0.9),
        DataSpec(test_batches=2), steps=2400, seed=c["seed"])
    trainer, history = _run_batched([spec], spec.steps)
    model, ref = train_reference(spec)
    outcomes = []
    for net in (model, trainer.model(0)):
        from twm.metrics import test_accuracy

        acc = test_accuracy(net, F, 2, 50, 2, 64, spec.seeds.test)
        comparison = spectral_comparison(net.W_hh.double().numpy(), F, 2)
        outcomes.append((acc > 0.99, comparison.counts_match, comparison.n_learned))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] and outcomes[0][1], "this configuration learns repeat copy"


# ----------------------------------------------------------------------------------------------------------------
# one checkpoint format: either engine resumes the other's run
# ----------------------------------------------------------------------------------------------------------------
class _Kill(RuntimeError):
    pass


def _kill_at(step):
    def progress(done, max_steps, info):
        if done >= step:
            raise _Kill("simulated kill")
    return progress


def _close_runs(a: Path, b: Path, atol=1e-4):
    ra, rb = _metrics(a), _metrics(b)
    assert ra["step"] == rb["step"] == list(range(STEPS))  # every step once: nothing lost, nothing twice
    assert ra["curriculum/horizon"] == rb["curriculum/horizon"]
    np.testing.assert_allclose(ra["train/loss"], rb["train/loss"], rtol=0, atol=atol)
    wa, wb = RunFolder(a).load_model()[0].state_dict(), RunFolder(b).load_model()[0].state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0)
    sa, sb = RunFolder(a).read_summary(), RunFolder(b).read_summary()
    for key in ("status", "steps", "final_horizon", "step_reached_max_horizon"):
        assert sa[key] == sb[key], key


def test_batched_run_resumed_by_lightning(tmp_path):
    _lightning(tmp_path / "clean")
    with pytest.raises(_Kill):
        _batched([tmp_path / "run"], progress=_kill_at(120), progress_every=1)
    assert RunFolder(tmp_path / "run").checkpoint_step() == 100
    assert RunFolder(tmp_path / "run").read_summary()["status"] == "failed"
    summary = _lightning(tmp_path / "run")
    assert summary["status"] == "completed" and summary["engine"] == "lightning"
    _close_runs(tmp_path / "clean", tmp_path / "run")


def test_lightning_run_resumed_by_the_batched_engine(tmp_path):
    _batched([tmp_path / "clean"])
    crash = ["+callbacks.crash._target_=tests.helpers.callbacks.CrashAt", "+callbacks.crash.step=130"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        _lightning(tmp_path / "run", crash)
    ckpt = RunFolder(tmp_path / "run").load_checkpoint()
    assert ckpt["global_step"] == 100 and ckpt["loops"] == lightning_loops(100)  # the format the batched engine writes
    (summary,) = _batched([tmp_path / "run"])
    assert summary["status"] == "completed" and summary["engine"] == "batched"
    _close_runs(tmp_path / "clean", tmp_path / "run")


def test_batched_kill_and_resume_equals_uninterrupted(tmp_path):
    _batched([tmp_path / "clean"])
    with pytest.raises(_Kill):
        _batched([tmp_path / "run"], progress=_kill_at(77), progress_every=1)
    _batched([tmp_path / "run"])
    _close_runs(tmp_path / "clean", tmp_path / "run", atol=0)
    assert (tmp_path / "clean" / "metrics.csv").read_text() == (tmp_path / "run" / "metrics.csv").read_text()


def test_checkpoints_load_with_lightning(tmp_path):
    from twm.train.lightning import HDSModule

    _batched([tmp_path / "run"], extra=["trainer.max_steps=20"])
    module = HDSModule.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    model, spec = RunFolder(tmp_path / "run").load_model()
    assert module.spec == spec
    for k, w in model.state_dict().items():
        assert torch.equal(module.model.state_dict()[k], w)


def test_both_engines_write_the_same_files(tmp_path):
    _lightning(tmp_path / "a", ["trainer.max_steps=30"])
    _batched([tmp_path / "b"], extra=["trainer.max_steps=30"])
    files = [{p.relative_to(root) for p in root.rglob("*") if not p.name.startswith("prev.ckpt")}
             for root in (tmp_path / "a", tmp_path / "b")]
    assert files[0] == files[1]  # prev.ckpt (the previous good checkpoint) exists once a run has saved twice
    ca, cb = (torch.load(p / "checkpoints" / "last.ckpt", weights_only=False) for p in (tmp_path / "a", tmp_path / "b"))
    assert ca.keys() == cb.keys() and ca["loops"] == cb["loops"] and ca["hyper_parameters"] == cb["hyper_parameters"]
    assert ca["optimizer_states"][0]["param_groups"] == cb["optimizer_states"][0]["param_groups"]
    assert ca["twm"].keys() == cb["twm"].keys()
    sa, sb = (RunFolder(p).read_summary() for p in (tmp_path / "a", tmp_path / "b"))
    assert sa.keys() - {"ensemble_size"} == sb.keys() - {"ensemble_size"}


def test_summary_is_rebuilt_from_the_checkpoint(tmp_path):
    """A kill between the last checkpoint and the summary changes nothing: the relaunch writes the same summary."""
    first = _lightning(tmp_path / "run", ["trainer.max_steps=30"])
    (tmp_path / "run" / "summary.json").unlink()
    again = _lightning(tmp_path / "run", ["trainer.max_steps=30"])
    assert {k: v for k, v in again.items()} == first


# ----------------------------------------------------------------------------------------------------------------
# the two launchers on one sweep: tests/test_wandb.py (with W&B on)
# ----------------------------------------------------------------------------------------------------------------
def test_batched_run_folders_follow_the_contract_and_completed_ones_are_skipped(tmp_path):
    from twm.run.folder import SUMMARY_KEYS

    summaries = _batched([tmp_path / "a", tmp_path / "b"], extra=["trainer.max_steps=30"])
    for run, summary in zip(("a", "b"), summaries):
        on_disk = RunFolder(tmp_path / run).read_summary()
        assert on_disk == summary and tuple(on_disk)[: len(SUMMARY_KEYS)] == SUMMARY_KEYS
        assert on_disk["ensemble_size"] == 2 and on_disk["status"] == "completed" and on_disk["steps"] == 30
        assert _metrics(tmp_path / run)["step"] == list(range(30))
    again = _batched([tmp_path / "a", tmp_path / "b"], extra=["trainer.max_steps=30"],
                     progress=lambda *a: pytest.fail("trained again"), progress_every=1)
    assert again == summaries


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batched_engine_matches_the_cpu_reference():
    specs = _members()[:3]
    trainer, history = _run_batched(specs, 30, device="cuda")
    assert not trainer.fast_tanh
    for i, spec in enumerate(specs):
        model, ref = train_reference(spec.replace(steps=30))
        assert history[i]["horizon"] == ref["horizon"]
        np.testing.assert_allclose(history[i]["loss"], ref["loss"], rtol=1e-4)


def test_the_gradient_probe_sees_the_same_run_in_both_engines(tmp_path):
    probe = ["callbacks=grad_probe", "callbacks.grad_probe.every_n_steps=50", "callbacks.grad_probe.batch_size=16"]
    _lightning(tmp_path / "a", probe)
    _batched([tmp_path / "b"], extra=probe)
    from twm.analysis import load_probe_csv

    a, b = (load_probe_csv(tmp_path / run / "grad_probe.csv") for run in ("a", "b"))
    assert list(a["steps"]) == list(b["steps"]) == [0, 50, 100, 150, 200]
    np.testing.assert_allclose(a["G"], b["G"], rtol=1e-3)
    np.testing.assert_allclose(a["max_abs_eig"], b["max_abs_eig"], rtol=1e-4)
    assert "grad/decay_rate" in (tmp_path / "b" / "metrics.csv").read_text().splitlines()[0]
