"""Kept weights (``callbacks.keep_weights``) in both engines and the post-hoc gradient decay of ``twm.analyze``
(docs/science.md §6): the kept files hold the reference loop's weights at those steps; the post-hoc decay rate of
each kept network equals the training-time ``GradientProbe``'s on the same batch; the sweep summary by hand."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import compose_train
from tests.test_engines import overrides, spec_by_hand
from twm.analysis import decay_against_radius, input_gradient_profile, load_probe_csv, plot_decay_against_radius
from twm.analyze import AnalyzeOptions, analyze_run, run_from_config, sweep_gradient_decay
from twm.run.folder import RunFolder, write_json
from twm.tasks import sample
from twm.train.config import ConfigError, validate
from twm.train.pipeline import prepare, run_lightning, train_packed
from twm.train.reference import train_reference

STEPS, K = 35, 10  # the final network (step 35) is not among the kept ones
RUN = spec_by_hand(steps=STEPS)
KEEP = [f"callbacks.keep_weights.every_n_train_steps={K}", "callbacks=grad_probe",
        f"callbacks.grad_probe.every_n_steps={K}", f"callbacks.grad_probe.seed={RUN.seeds.probe}",
        "callbacks.grad_probe.batch_size=64"]
FAST = AnalyzeOptions(length_horizon=30, length_batches=1, plots=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run by each engine, keeping every 10th step's weights and probing gradients at those steps with
    the run's probe seed (the batch ``twm.analyze`` draws)."""
    root = tmp_path_factory.mktemp("kept")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        cfg = lambda run: compose_train(overrides(steps=STEPS, checkpoint_every=K) + KEEP, root / run)  # noqa: E731
        run_lightning(prepare(cfg("lightning")))
        train_packed([prepare(cfg("batched"))], 64, "cpu")
    torch.set_num_threads(threads)
    return root


def test_both_engines_keep_the_reference_weights(runs):
    reference = {0: RUN.make_model().state_dict()}

    def keep(step, model):
        if step % K == 0:
            reference[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    train_reference(RUN, callback=keep)
    for engine, atol in (("lightning", 0.0), ("batched", 1e-5)):
        folder = RunFolder(runs / engine)
        kept = folder.kept_weights()
        assert [step for step, _ in kept] == [0, 10, 20, 30], engine
        assert [p.name for _, p in kept] == ["step_000000.pt", "step_000010.pt", "step_000020.pt", "step_000030.pt"]
        for step, _ in kept:
            weights = folder.load_weights(step).state_dict()
            for k, w in reference[step].items():
                torch.testing.assert_close(weights[k], w, atol=atol, rtol=0, msg=f"{engine} step {step} {k}")


@pytest.mark.parametrize("engine", ["lightning", "batched"])
def test_post_hoc_decay_equals_the_training_probe(runs, tmp_path, engine):
    """Kept steps: the training-time probe on the batch of the run's probe seed. The final network: the profile
    computed here on that batch, drawn by hand (horizon 8, the ladder's last rung)."""
    import shutil

    run = tmp_path / engine
    shutil.copytree(runs / engine, run)
    decay = analyze_run(run, FAST).to_dict()["gradient_decay"]
    probe = load_probe_csv(run / "grad_probe.csv")
    kept = decay["kept"]
    assert list(probe["steps"]) == [0, 10, 20, 30] and kept["steps"] == [0, 10, 20, 30, STEPS]
    assert decay["probe"] == {"seed": RUN.seeds.probe, "horizon": 8, "batch_size": 64} and decay["step"] == STEPS
    for key in ("decay_rate", "decay_rate_first", "max_abs_eig", "G", "G_first"):
        np.testing.assert_allclose(np.array(kept[key][:4], dtype=float), probe[key], rtol=1e-6, atol=0, err_msg=key)
    model, _ = RunFolder(run).load_model()
    u, y = sample(RUN.task.F, 4, 8, 64, torch.Generator().manual_seed(RUN.seeds.probe))
    for key, loss in (("G", "output"), ("G_first", "first")):
        G = input_gradient_profile(model, u, y, 4, loss=loss)
        np.testing.assert_allclose(decay[key], G, rtol=1e-6, atol=0)
        np.testing.assert_allclose(kept[key][-1], G, rtol=1e-6, atol=0)
    assert decay["decay_rate"] == pytest.approx(np.polyfit(np.arange(1, 5), np.log(decay["G"]), 1)[0], rel=1e-9)
    assert kept["n_probes"] == 5 and kept["decay_rate_end"] == decay["decay_rate"]


def test_without_kept_weights_the_final_network_alone(tmp_path):
    from tests.conftest import TINY

    run_lightning(prepare(compose_train(TINY, tmp_path / "run")))
    assert RunFolder(tmp_path / "run").kept_weights() == [] and not (tmp_path / "run/checkpoints/weights").exists()
    decay = analyze_run(tmp_path / "run", FAST).to_dict()["gradient_decay"]
    assert decay["kept"] is None and decay["step"] == 20 and len(decay["G"]) == 4


def test_a_bad_keep_interval_is_named(tmp_path):
    for value in (0, -5, 2.5):
        with pytest.raises(ConfigError, match="callbacks.keep_weights.every_n_train_steps="):
            validate(compose_train(overrides() + [f"callbacks.keep_weights.every_n_train_steps={value}"], tmp_path))


# ----------------------------------------------------------------------------------------------------------------
# r against max|λ| over a sweep
# ----------------------------------------------------------------------------------------------------------------
POINTS = [  # (task, max|λ|, r): two below the unit circle, three above
    ("A", 0.8, 0.5), ("A", 0.9, 0.3), ("B", 1.05, 0.01), ("B", 1.2, -0.3), ("B", 1.1, 0.2),
]


def _fake_sweep(root):
    for i, (task, radius, rate) in enumerate(POINTS):
        (root / str(i)).mkdir(parents=True)
        write_json(root / str(i) / "analysis.json", {"run": {"task": task, "seed": i}, "gradient_decay": {
            "decay_rate": rate, "decay_rate_first": None, "max_abs_eig": radius}})
    (root / "5").mkdir()
    write_json(root / "5" / "analysis.json", {"run": {"task": "B"}, "gradient_decay": {  # G_t = 0: r undefined
        "decay_rate": None, "max_abs_eig": 1.3}})
    (root / "6").mkdir()  # not analysed
    return root


def test_decay_against_radius_by_hand():
    radius, rates = [p[1] for p in POINTS] + [np.nan], [p[2] for p in POINTS] + [0.0]
    out = decay_against_radius(radius, rates, rate_tol=0.05)
    assert out["n"] == 5 and out["n_undefined"] == 1
    assert out["above_1"] == {"n": 3, "n_flat": 1, "median_rate": 0.01}  # |-0.3| is not flat: it grows
    assert out["at_most_1"] == {"n": 2, "n_flat": 0, "median_rate": pytest.approx(0.4)}
    # ranks of max|λ| 1..5 against ranks of r 5, 4, 2, 3, 1: Σd² = 38, ρ = 1 - 6·38 / (5·24) = -0.9
    assert out["spearman"] == pytest.approx(-0.9)


def test_sweep_gradient_decay(tmp_path):
    sweep = _fake_sweep(tmp_path / "sweep")
    result = sweep_gradient_decay(sweep, rate_tol=0.05)
    assert [p["run"] for p in result["points"]] == ["0", "1", "2", "3", "4", "5"]
    assert result["points"][2]["task"] == "B" and result["points"][2]["max_abs_eig"] == 1.05
    assert result["summary"]["n"] == 5 and result["summary"]["n_undefined"] == 1
    assert result["by_task"]["A"]["at_most_1"]["n"] == 2 and result["by_task"]["B"]["above_1"]["n_flat"] == 1
    assert json.loads((sweep / "gradient_decay.json").read_text())["summary"]["above_1"]["n"] == 3
    assert (sweep / "gradient_decay.png").read_bytes()[:4] == b"\x89PNG"
    report = run_from_config(OmegaConf.create({"sweep_dir": str(sweep), "plots": False}))
    assert report["counts"]["runs"] == 7


def test_plot_decay_against_radius(tmp_path):
    radius, rates, tasks = ([p[i] for p in POINTS] for i in (1, 2, 0))
    fig = plot_decay_against_radius(radius + [np.nan], rates + [0.1], tasks + ["A"], tmp_path / "r.png")
    (ax,) = fig.axes
    by_label = {c.get_label(): c.get_offsets() for c in ax.collections if c.get_label().startswith(("A", "B"))}
    np.testing.assert_allclose(by_label["A (2)"], [[0.8, 0.5], [0.9, 0.3]])
    np.testing.assert_allclose(by_label["B (3)"], [[1.05, 0.01], [1.2, -0.3], [1.1, 0.2]])
    assert ax.get_legend().get_title().get_text() == "undefined r: 1"
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
