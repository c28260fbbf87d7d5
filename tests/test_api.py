"""The README's Python API, executed as written (with a tiny run), and ``train_spec``'s config: composing the
overrides of a spec gives back that spec, and the run folder is one ``python -m twm.train`` would make."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from twm.run.spec import CurriculumSpec, DataSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec
from twm.tasks import custom_task, get_task
from twm.train.api import spec_overrides, train_spec
from twm.train.config import compose_train_config

ROOT = Path(__file__).resolve().parents[1]


def _snippets() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## From Python (a notebook)")[1].split("\n## ")[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_snippet_trains_analyses_and_plots(tmp_path, monkeypatch):
    code, load = _snippets()
    assert len(code.strip().splitlines()) <= 10 and len(load.strip().splitlines()) == 1
    options = "AnalyzeOptions(length_horizon=40, length_batches=1)"
    tiny = {'analyze_run("outputs/notebook")': f"analyze_run({str(tmp_path)!r}, {options})",
            "steps=2500": "steps=30", "hidden_size=64": "hidden_size=12", '"outputs/notebook"': repr(str(tmp_path))}
    for old, new in tiny.items():
        assert old in code, old
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    from twm.analyze import AnalyzeOptions

    scope = {"AnalyzeOptions": AnalyzeOptions}
    exec(compile(code, "README.md", "exec"), scope)
    summary, analysis, fig = scope["summary"], scope["analysis"], scope["fig"]
    assert summary["status"] == "completed" and summary["steps"] == 30
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert analysis.spectral["n_theory"] == 16 and len(analysis.length_generalisation["accuracy"]) == 40
    assert isinstance(fig, Figure) and (tmp_path / "analysis" / "hidden_waves.png").exists()
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), analysis.length_generalisation["accuracy"])
    # the run folder is a CLI one: its saved config composes back to the spec, the folder resumes as a no-op
    from twm.run.folder import RunFolder

    spec = scope["spec"]
    assert RunSpec.from_config(RunFolder(tmp_path).config()) == spec
    assert train_spec(spec, tmp_path) == summary
    # the one-line load reads a plain CSV
    assert re.fullmatch(r'df = pandas\.read_csv\("outputs/sweeps/[^"]+/results\.csv"\)\n', load)


@pytest.mark.parametrize("spec", [
    RunSpec(TaskSpec.from_task(get_task("signed_shuffle_48")), curriculum=CurriculumSpec.of("none", horizon=30)),
    RunSpec(TaskSpec.from_task(custom_task(3, 2, task_id=(3, 0, 1))),
            ModelSpec(hidden_size=12, bias=True, init="gaussian"), OptimSpec(lr=3e-4, l2=1e-5, clip=0.5),
            CurriculumSpec.of("adaptive", gamma=1.5, epsilon=0.02, h0=5, h_max=50, window=20),
            DataSpec(batch_size=8, test_horizon=30, test_batches=3, test_batch_size=16), steps=77, seed=0,
            checkpoint_every=7, deterministic=False),
    RunSpec(TaskSpec.from_task(get_task("repeat_copy", s=5, d=3)), device="cuda", precision="16-mixed"),
])
def test_spec_overrides_compose_back_to_the_spec(spec, tmp_path):
    assert RunSpec.from_config(compose_train_config(spec_overrides(spec), tmp_path)) == spec


def test_a_task_without_an_id_is_refused(tmp_path):
    F = np.zeros((4, 2))
    F[0, 0], F[0, 1] = 1.0, -1.0  # both outputs read one row: no task id
    spec = RunSpec(TaskSpec.from_operator(F, 2))
    with pytest.raises(ValueError, match="has no id"):
        train_spec(spec, tmp_path)
    assert not list(tmp_path.iterdir())


def test_train_spec_writes_the_cli_metrics(tmp_path):
    spec = RunSpec(TaskSpec.from_task(get_task("repeat_copy", s=2, d=2)), ModelSpec(hidden_size=8), steps=12,
                   data=DataSpec(test_batches=1), checkpoint_every=5)
    summary = train_spec(spec, tmp_path / "run", overrides=["callbacks=grad_probe",
                                                             "callbacks.grad_probe.every_n_steps=4"])
    with open(tmp_path / "run" / "metrics.csv", newline="") as fh:
        steps = sorted({int(float(r["step"])) for r in csv.DictReader(fh) if r.get("train/loss")})
    assert summary["steps"] == 12 and steps == list(range(12))
    assert (tmp_path / "run" / "grad_probe.csv").exists() and (tmp_path / "run" / ".hydra" / "config.yaml").exists()
