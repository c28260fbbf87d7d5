"""Experiment presets: one per paper experiment, each composing the runs its experiments/ README reports (checked
against the committed run folders, which earlier commands trained); the sweep group as aliases; fingerprints of runs
recorded before these presets and ``data.fixed_batch`` existed stay valid."""

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, compose_train
from twm.run.spec import RunSpec
from twm.sweep import grid_jobs
from twm.train.config import validate

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_JOBS = {"table1": 1920, "table1_cpu": 48, "smoke": 4, "gradient_flow": 1, "gradient_flow_early": 1,
                 "waves": 2, "length_generalisation": 48, "paper_recipe": 1, "architectures": 42,
                 "init_study": 12, "recipe_study": 12, "table1_seeds": 12, "compression": 3}


def _options(group):
    return sorted(p.stem for p in Path(CONF, group).glob("*.yaml"))


def _jobs(cfg) -> list[list[str]]:
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    return grid_jobs({str(k): str(v) for k, v in params.items()})


def test_every_experiment_preset_is_listed_here():
    assert set(_options("experiment")) == set(EXPECTED_JOBS)


@pytest.mark.parametrize("preset", sorted(EXPECTED_JOBS))
def test_experiment_preset_composes_its_jobs(preset, tmp_path):
    cfg = compose_train([f"experiment={preset}"], tmp_path)
    jobs = _jobs(cfg)
    assert len(jobs) == EXPECTED_JOBS[preset]
    assert (cfg.hydra.mode is not None and cfg.hydra.mode.name == "MULTIRUN") == (len(jobs) > 1)
    for job in (jobs[0], jobs[-1]):
        validate(compose_train([f"experiment={preset}", *job], tmp_path))


def _identity(cfg) -> dict:
    return RunSpec.from_config(cfg).identity()


def test_table1_cpu_jobs_are_the_committed_runs(tmp_path):
    """Job i of ``experiment=table1_cpu`` (and of ``experiment=length_generalisation``) is run i of
    experiments/table1/runs, trained with ``sweep=table1_cpu`` in the config layout of its day: a sample of jobs that
    covers every axis position."""
    cfg = compose_train(["experiment=table1_cpu"], tmp_path)
    jobs = _jobs(cfg)
    assert jobs == _jobs(compose_train(["experiment=length_generalisation"], tmp_path))
    for i in (0, 7, 14, 21, 28, 35, 42, 47):
        committed = OmegaConf.load(ROOT / f"experiments/table1/runs/{i}/.hydra/config.yaml")
        assert _identity(compose_train(["experiment=table1_cpu", *jobs[i]], tmp_path)) == _identity(committed), i


def test_architectures_jobs_are_the_committed_runs_at_one_budget(tmp_path):
    """Job i of ``experiment=architectures`` is run i of experiments/architectures/runs (one job per model and
    task), and every model's parameters are within 3 % of the budget."""
    jobs = _jobs(compose_train(["experiment=architectures"], tmp_path))
    for i in (0, 3, 6, 9, 12, 15, 18, 24, 41):
        folder = ROOT / f"experiments/architectures/runs/{i}"
        spec = RunSpec.from_config(compose_train(["experiment=architectures", *jobs[i]], tmp_path))
        assert spec.identity() == _identity(OmegaConf.load(folder / ".hydra/config.yaml")), i
        model = json.loads((folder / "analysis.json").read_text())["model"]
        assert model["hidden_size"] == spec.model.hidden_size and abs(model["parameters"] / 4608 - 1) < 0.03, i


def test_recipe_study_arms_are_the_paper_recipe_and_the_table1_runs(tmp_path):
    """``recipe=paper`` jobs are ``experiment=paper_recipe`` at hidden 128; ``recipe=released`` jobs are the
    committed Table-1 runs of the same task and seed (hidden 128, L2 0, threshold 0.98: table1_cpu jobs 6 and 30)."""
    jobs = _jobs(compose_train(["experiment=recipe_study"], tmp_path))
    table1 = {("repeat_copy", "1"): 6, ("signed_shuffle_48", "1"): 30}
    for job in jobs:
        options = dict(item.split("=") for item in job)
        spec = RunSpec.from_config(compose_train(["experiment=recipe_study", *job], tmp_path))
        if options["recipe"] == "paper":
            paper = compose_train(["experiment=paper_recipe", f"task={options['task']}", f"seed={options['seed']}"],
                                  tmp_path)
            assert spec.identity() == _identity(paper) and spec.steps == 45000, job
        else:
            assert spec.steps == 20000 and spec.curriculum.kind == "ladder" and not spec.scheduler.active, job
            if (options["task"], options["seed"]) in table1:
                folder = ROOT / f"experiments/table1/runs/{table1[options['task'], options['seed']]}"
                assert spec.identity() == _identity(OmegaConf.load(folder / ".hydra/config.yaml")), job


def test_waves_jobs_are_the_committed_runs(tmp_path):
    jobs = _jobs(compose_train(["experiment=waves"], tmp_path))
    for job, name in zip(jobs, ("repeat_copy", "signed_shuffle_48")):
        committed = OmegaConf.load(ROOT / f"experiments/waves/run_{name}/.hydra/config.yaml")
        assert _identity(compose_train(["experiment=waves", *job], tmp_path)) == _identity(committed), name


@pytest.mark.parametrize(("preset", "run"), [("gradient_flow", "run_h200"), ("gradient_flow_early", "run_early")])
def test_gradient_flow_presets_are_the_committed_runs(preset, run, tmp_path):
    """The committed fingerprints (an earlier format: the config's task, model, curriculum, data, seed, max_steps)
    and the probe spacing of the committed grad_probe.csv."""
    folder = ROOT / "experiments/gradient_flow" / run
    old = json.loads((folder / "fingerprint.json").read_text())
    committed = OmegaConf.create({**{k: old[k] for k in ("task", "model", "curriculum", "data", "seed")},
                                  "trainer": {"max_steps": old["max_steps"]}})
    cfg = compose_train([f"experiment={preset}"], tmp_path)
    assert _identity(cfg) == _identity(committed)
    with open(folder / "grad_probe.csv", newline="") as fh:
        steps = [int(row["step"]) for row in csv.DictReader(fh)]
    assert cfg.callbacks.grad_probe.every_n_steps == steps[1] - steps[0]


@pytest.mark.parametrize("name", _options("sweep"))
def test_sweep_presets_are_the_experiment_presets(name, tmp_path):
    """``sweep=X`` composes exactly ``experiment=X`` (only Hydra's record of the command line differs)."""
    def composed(override):
        cfg = OmegaConf.to_container(compose_train([override], tmp_path))
        for key in ("runtime", "overrides"):
            cfg["hydra"].pop(key)
        cfg["hydra"]["job"].pop("override_dirname")
        return cfg

    assert composed(f"sweep={name}") == composed(f"experiment={name}")


def test_fingerprints_of_earlier_runs_are_unchanged(tmp_path):
    """tests/data/fingerprints.json: identities recorded by the code before the experiment group and
    ``data.fixed_batch`` existed (a sweep preset job, a smoke job, an adaptive-curriculum run)."""
    for case in json.loads((ROOT / "tests/data/fingerprints.json").read_text()):
        assert _identity(compose_train(case["overrides"], tmp_path)) == case["identity"], case["overrides"]
