"""Batched ensembles (twm.train.ensemble) against the single run they must reproduce step for step."""

import csv
import json

import numpy as np
import pytest
import torch

from twm.model import ElmanRNN
from twm.tasks import custom_task, get_task, sample
from twm.train.artifacts import SUMMARY_KEYS, run_seeds
from twm.train.curriculum import Adaptive, Fixed, Ladder
from twm.train.ensemble import EnsembleTrainer, Member, train_ensemble, train_single_reference

S = D = 4
N = 16
F_COPY = get_task("repeat_copy", S, D).F
F_CUSTOM = custom_task(S, D, task_id=(sum(1 << (5 * k) for k in range(4)), 3, 5)).F  # signed, shuffled diagonal
ATOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ladder(threshold):
    return Ladder([2, 4, 8], threshold)


# (F, seed, l2, curriculum factory): different tasks, seeds, L2 and thresholds; thresholds low enough to climb
SPECS = [
    (F_COPY, 1, 0.0, lambda: _ladder(0.6)),
    (F_CUSTOM, 2, 1e-3, lambda: _ladder(0.55)),
    (F_COPY, 3, 0.1, lambda: _ladder(0.7)),
]


def _members(specs, max_steps=40, **kw):
    if isinstance(max_steps, int):
        max_steps = [max_steps] * len(specs)
    return [Member(F, S, N, seed, l2, cur(), max_steps=ms, **kw) for (F, seed, l2, cur), ms in zip(specs, max_steps)]


def _reference(spec, max_steps, every=10, **kw):
    F, seed, l2, cur = spec
    snaps = {}

    def cb(step, model):
        if step % every == 0 or step == max_steps:
            snaps[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    model, history = train_single_reference(F, S, N, seed, l2, cur(), max_steps=max_steps, callback=cb, **kw)
    return model, history, snaps


def _run_trainer(trainer, steps, every=10):
    history = {i: {"loss": [], "accuracy": [], "horizon": []} for i in range(len(trainer.members))}
    snaps = {}
    for k in range(steps):
        for i, r in trainer.step().items():
            assert r["step"] == len(history[i]["loss"])
            for key in ("loss", "accuracy", "horizon"):
                history[i][key].append(r[key])
        if (k + 1) % every == 0:
            snaps[k + 1] = {i: trainer.state_dict(i) for i in range(len(trainer.members))}
    return history, snaps


def _assert_weights_close(a, b, atol=ATOL):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m, k=k: f"{k}: {m}")


def _assert_history(ref, ens):
    assert ens["horizon"] == ref["horizon"]
    assert ens["accuracy"] == ref["accuracy"]  # counts of sign matches: exact
    np.testing.assert_allclose(ens["loss"], ref["loss"], rtol=1e-5, atol=1e-7)


def test_ensemble_matches_single_runs_step_for_step():
    steps = 40
    trainer = EnsembleTrainer(_members(SPECS, steps))
    history, snaps = _run_trainer(trainer, steps)
    assert not trainer.active
    climbed = 0
    for i, spec in enumerate(SPECS):
        _, ref_hist, ref_snaps = _reference(spec, steps)
        _assert_history(ref_hist, history[i])
        climbed += ref_hist["horizon"][-1] > 2
        for step in (10, 20, 30, 40):
            _assert_weights_close(ref_snaps[step], {k: v for k, v in snaps[step][i].items()})
    assert climbed >= 2, "the curriculum should move in this test"


def test_torch_tanh_path_matches_single_runs():
    """The activation CUDA uses (torch.tanh instead of 2*sigmoid(2z) - 1), exercised on CPU."""
    steps = 20
    trainer = EnsembleTrainer(_members(SPECS, steps), fast_tanh=False)
    history, snaps = _run_trainer(trainer, steps)
    for i, spec in enumerate(SPECS):
        _, ref_hist, ref_snaps = _reference(spec, steps)
        _assert_history(ref_hist, history[i])
        _assert_weights_close(ref_snaps[steps], snaps[steps][i])


def test_bias_adaptive_curriculum_and_non_binary_operator():
    F_half = np.zeros((S * D, D))  # x_{t+1} = (x_{t-3} + x_t) / 2: not binary, sampled by twm.tasks.sample
    for j in range(D):
        F_half[j, j] = F_half[(S - 1) * D + j, j] = 0.5
    specs = [
        (F_COPY, 5, 1e-3, lambda: Adaptive(gamma=1.5, epsilon=1.5, h0=2, h_max=9, window=3)),
        (F_half, 6, 0.0, lambda: _ladder(0.6)),
        (F_CUSTOM, 7, 0.0, lambda: Fixed(5)),
    ]
    steps = 30
    trainer = EnsembleTrainer(_members(specs, steps, bias=True))
    history, snaps = _run_trainer(trainer, steps)
    for i, spec in enumerate(specs):
        _, ref_hist, ref_snaps = _reference(spec, steps, bias=True)
        _assert_history(ref_hist, history[i])
        _assert_weights_close(ref_snaps[steps], snaps[steps][i])
    assert len(set(history[0]["horizon"])) > 2, "the adaptive curriculum should move"


def test_k1_and_different_max_steps():
    trainer = EnsembleTrainer(_members(SPECS[:1], 25))
    history, snaps = _run_trainer(trainer, 25, every=25)
    _, ref_hist, ref_snaps = _reference(SPECS[0], 25, every=25)
    _assert_history(ref_hist, history[0])
    _assert_weights_close(ref_snaps[25], snaps[25][0])

    max_steps = [12, 30, 21]
    trainer = EnsembleTrainer(_members(SPECS, max_steps))
    history, _ = _run_trainer(trainer, max(max_steps), every=1000)
    assert not trainer.active and trainer.step() == {}
    for i, spec in enumerate(SPECS):
        assert trainer.steps[i] == max_steps[i] == len(history[i]["loss"])
        _, ref_hist, ref_snaps = _reference(spec, max_steps[i], every=1000)
        _assert_history(ref_hist, history[i])
        _assert_weights_close(ref_snaps[max_steps[i]], trainer.state_dict(i))


def test_inputs_are_what_sample_draws():
    """Each member draws its batch from its own generator exactly as twm.tasks.sample would (targets are checked
    end to end by the step-for-step tests: equal losses and accuracies)."""
    members = _members(SPECS[:2], 3)
    trainer = EnsembleTrainer(members)
    gens = [torch.Generator().manual_seed(run_seeds(m.seed).data) for m in members]
    horizons = [m.curriculum.horizon for m in members]
    trainer.step()
    for i, m in enumerate(members):
        u, _ = sample(m.F, S, horizons[i], m.batch_size, gens[i])
        assert torch.equal(trainer._U[trainer.slots.index(i)], u[:S])


def test_incompatible_members_rejected():
    a = Member(F_COPY, S, N, 1, 0.0, _ladder(0.9))
    b = Member(F_COPY, S, N + 1, 2, 0.0, _ladder(0.9))
    with pytest.raises(ValueError, match="incompatible"):
        EnsembleTrainer([a, b])


# --------------------------------------------------------------------------------------------------------------
# run folders
# --------------------------------------------------------------------------------------------------------------
def _folder_members(root, max_steps=(25, 18)):
    return [
        Member(F_COPY, S, N, 1, 0.0, _ladder(0.6), max_steps=max_steps[0], run_dir=root / "a",
               task_name="repeat_copy", task_id=(15, 0, 0)),
        Member(F_CUSTOM, S, N, 2, 1e-3, _ladder(0.55), max_steps=max_steps[1], run_dir=root / "b",
               task_name="custom", task_id=(sum(1 << (5 * k) for k in range(4)), 3, 5)),
    ]


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_folders(tmp_path):
    members = _folder_members(tmp_path)
    summaries = train_ensemble(members, checkpoint_every=10)
    for m, summary in zip(members, summaries):
        run = m.run_dir
        on_disk = json.loads((run / "summary.json").read_text())
        assert on_disk == summary
        assert tuple(on_disk)[: len(SUMMARY_KEYS)] == SUMMARY_KEYS and on_disk["ensemble_size"] == 2
        assert on_disk["status"] == "completed" and on_disk["steps"] == m.max_steps
        assert on_disk["task"] == m.task_name and on_disk["task_id"] == list(m.task_id)
        assert (on_disk["s"], on_disk["d"], on_disk["hidden_size"]) == (S, D, N)
        assert on_disk["curriculum"] == "ladder" and on_disk["threshold"] == m.curriculum.threshold
        assert on_disk["final_horizon"] == m.curriculum.horizon
        assert 0.0 <= on_disk["test_accuracy"] <= 1.0 and 0.0 <= on_disk["train_accuracy"] <= 1.0

        rows = _read_csv(run / "metrics.csv")
        assert [int(r["step"]) for r in rows] == list(range(m.max_steps))
        assert set(rows[0]) == {"epoch", "step", "train/loss", "train/accuracy", "curriculum/horizon"}
        assert float(rows[-1]["train/loss"]) == pytest.approx(on_disk["train_loss"])

        ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert ckpt["global_step"] == m.max_steps and "twm_member" in ckpt
        model = ElmanRNN(D, N, D)
        model.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
        spec = (m.F, m.seed, m.l2, lambda m=m: _ladder(m.curriculum.threshold))
        ref_model, ref_hist, _ = _reference(spec, m.max_steps)
        _assert_weights_close(ref_model.state_dict(), model.state_dict())
        assert [float(r["curriculum/horizon"]) for r in rows] == [float(h) for h in ref_hist["horizon"]]

    # a completed folder is skipped
    again = train_ensemble(_folder_members(tmp_path), progress=lambda *a: pytest.fail("trained again"),
                           progress_every=1)
    assert again == summaries


class _Kill(RuntimeError):
    pass


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    clean = _folder_members(tmp_path / "clean", max_steps=(40, 33))
    train_ensemble(clean, checkpoint_every=5)

    def kill_at_23(step, max_steps, info):
        if step >= 23:
            raise _Kill("simulated kill")

    runs = _folder_members(tmp_path / "killed", max_steps=(40, 33))
    with pytest.raises(_Kill):
        train_ensemble(runs, checkpoint_every=5, progress=kill_at_23, progress_every=1)
    failed = json.loads((runs[0].run_dir / "summary.json").read_text())
    assert failed["status"] == "failed" and "simulated kill" in failed["error"] and failed["steps"] == 23
    ckpt = torch.load(runs[0].run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 20

    resumed = train_ensemble(_folder_members(tmp_path / "killed", max_steps=(40, 33)), checkpoint_every=5)
    for a, b, summary in zip(clean, runs, resumed):
        assert summary["status"] == "completed" and summary["steps"] == a.max_steps
        ca = torch.load(a.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        cb = torch.load(b.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        _assert_weights_close(ca["state_dict"], cb["state_dict"], atol=1e-6)
        ra, rb = _read_csv(a.run_dir / "metrics.csv"), _read_csv(b.run_dir / "metrics.csv")
        assert [r["step"] for r in rb] == [r["step"] for r in ra]
        assert [r["curriculum/horizon"] for r in rb] == [r["curriculum/horizon"] for r in ra]
        np.testing.assert_allclose([float(r["train/loss"]) for r in rb], [float(r["train/loss"]) for r in ra],
                                   rtol=1e-6)
        sa = json.loads((a.run_dir / "summary.json").read_text())
        for key in ("final_horizon", "step_reached_max_horizon", "train_accuracy", "test_accuracy"):
            assert summary[key] == sa[key]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_ensemble_matches_cpu_reference(tmp_path):
    steps = 30
    trainer = EnsembleTrainer(_members(SPECS, steps), device="cuda")
    assert not trainer.fast_tanh
    history, snaps = _run_trainer(trainer, steps)
    for i, spec in enumerate(SPECS):
        _, ref_hist, ref_snaps = _reference(spec, steps)
        assert history[i]["horizon"] == ref_hist["horizon"]
        np.testing.assert_allclose(history[i]["accuracy"], ref_hist["accuracy"], atol=2e-3)
        np.testing.assert_allclose(history[i]["loss"], ref_hist["loss"], rtol=1e-4)
        _assert_weights_close(ref_snaps[steps], snaps[steps][i], atol=1e-4)
    summaries = train_ensemble(_folder_members(tmp_path, max_steps=(12, 9)), device="cuda", checkpoint_every=5)
    assert [s["status"] for s in summaries] == ["completed", "completed"]
