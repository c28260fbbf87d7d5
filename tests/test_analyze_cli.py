"""``twm.analyze`` and ``twm.report`` on real (tiny) run folders: one run, a sweep with failed and unfinished runs,
chunks, a planted TWM, and the command lines (three subprocesses)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import twm.analyze as analyze
from tests.conftest import TINY, compose_train
from twm.analyze import AnalyzeError, AnalyzeOptions, analyze_run, analyze_sweep, run_from_config
from twm.run.folder import RunFolder, write_json

ROOT = Path(__file__).resolve().parents[1]
FAST = AnalyzeOptions(length_horizon=30, length_batches=1, plots=False)
PLOTS = ("spectrum", "weights_in_basis", "hidden_waves", "length_generalisation", "gradient_flow", "gradient_decay")


def _train(out, extra=()):
    from twm.train.pipeline import train

    train(compose_train(TINY + list(extra), out))
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """0, 1: completed (1 with grad_probe.csv and kept weights); 2: failed; 3: unfinished (checkpoint, no summary)."""
    root = tmp_path_factory.mktemp("sweep")
    _train(root / "0", ["seed=3"])
    _train(root / "1", ["seed=4", "callbacks=grad_probe", "callbacks.grad_probe.every_n_steps=5",
                        "callbacks.keep_weights.every_n_train_steps=5"])
    _train(root / "2", ["seed=5"])
    failed = RunFolder(root / "2").read_summary() | {"status": "failed", "test_accuracy": None, "error": "boom"}
    write_json(root / "2" / "summary.json", failed)
    _train(root / "3", ["seed=6"])
    (root / "3" / "summary.json").unlink()
    return root


def _plant_repeat_copy(out: Path, s=4, d=4, n=32, c=0.1, basis_seed=0, F=None, extra=()) -> Path:
    """A run folder holding the TWM of repeat copy embedded in an orthonormal basis (docs/science.md §2.1), inputs
    scaled by c so that tanh is nearly linear. ``basis_seed``: the random embedding; ``F``: plant Φ of this operator
    instead of repeat copy's (the run's task stays repeat copy); ``extra``: config overrides (seed, L2, ...)."""
    from twm.theory import embed, phi

    cfg = compose_train(TINY + [f"task.s={s}", f"task.d={d}", f"model.hidden_size={n}", *extra], out)
    (out / ".hydra").mkdir(parents=True)
    (out / "checkpoints").mkdir()
    OmegaConf.save(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), out / ".hydra" / "config.yaml")
    from hydra.utils import instantiate

    task = instantiate(cfg.task)
    Xi = np.linalg.qr(np.random.default_rng(basis_seed).standard_normal((n, s * d)))[0]
    W, Wu, Wr = embed(phi(task.F if F is None else F, s), Xi, d)
    state = {"model.rnn.weight_ih_l0": c * Wu, "model.rnn.weight_hh_l0": W, "model.readout.weight": Wr / c}
    torch.save({"state_dict": {k: torch.tensor(v, dtype=torch.float32) for k, v in state.items()}},
               out / "checkpoints" / "last.ckpt")
    return out


def test_analyze_run_writes_json_and_plots(sweep, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sweep / "1", run, ignore=shutil.ignore_patterns("analysis*"))  # a private copy
    result = analyze_run(run, AnalyzeOptions(length_horizon=60, length_batches=1))
    stored = json.loads((run / "analysis.json").read_text())
    assert stored == result.to_dict() and stored["schema"] == analyze.SCHEMA == 3
    assert set(stored) >= {"run", "spectral", "basis", "hidden_waves", "length_generalisation", "gradient_flow",
                           "plots", "options"}
    assert stored["run"]["seed"] == 4 and stored["run"]["task"] == "repeat_copy" and stored["run"]["test_accuracy"]
    sp = stored["spectral"]
    assert {"error", "error_optimal", "n_learned", "n_theory", "defined", "threshold"} <= set(sp)
    assert sp["operator"] == "W_hh" and sp["n_theory"] == 16 and sp["threshold"] == 0.9
    assert stored["basis"]["n_kept"] == 16 and "support_match" in stored["basis"]
    assert "off_support_max" in stored["basis"]
    assert np.array(stored["hidden_waves"]["pattern"]).shape == (4, 4) and stored["hidden_waves"]["steps"] == 16
    lg = stored["length_generalisation"]
    assert len(lg["accuracy"]) == 60 and lg["horizon"] == 60 and "first_below" in lg
    gf = stored["gradient_flow"]
    assert gf["n_probes"] == 5 and gf["step_start"] == 0 and gf["step_end"] == 20 and "decay_rate_end" in gf
    for name in PLOTS:
        png = run / "analysis" / f"{name}.png"
        assert stored["plots"][name] == f"analysis/{name}.png" and png.stat().st_size > 1000
        assert png.read_bytes()[:4] == b"\x89PNG"
    # up to date: not recomputed; other numeric options or force: recomputed
    assert analyze_run(run, AnalyzeOptions(length_horizon=60, length_batches=1))["skipped"] is True
    assert analyze_run(run, AnalyzeOptions(length_horizon=61, length_batches=1, plots=False)).skipped is False


def test_planted_twm_is_recognised(tmp_path):
    result = analyze_run(_plant_repeat_copy(tmp_path / "planted"), AnalyzeOptions(length_horizon=200, plots=False))
    sp, basis = result["spectral"], result["basis"]
    assert sp["defined"] and sp["n_learned"] == sp["n_theory"] == 16 and sp["error"] < 1e-6
    assert basis["support_match"] == basis["boundary_match"] == 1.0 and basis["off_support_max"] < 1e-6
    assert result["length_generalisation"]["first_below"] is None  # correct for 200 steps
    assert result["gradient_flow"] is None and result["plots"] == {}


def test_cross_seed_mechanisms_of_planted_networks(tmp_path, capsys):
    """Two configurations (L2 0 and 0.001) x two seeds of planted repeat copy networks: three exact TWMs in different
    random embeddings, and one whose Φ lacks the boundary entry of dim 0 (new dim 0 no longer copies variable 1), so
    the dim-0 chain is nilpotent: 4 of its 16 eigenvalues are 0 (12 persistent modes) and its pattern misses exactly
    that one of Φ's 16 entries (agreement 15/16 with an exact one)."""
    from twm.report import aggregate, format_table, run_row
    from twm.tasks import get_task

    broken = get_task("repeat_copy", s=4, d=4).F.copy()
    broken[0, 0] = 0
    root = tmp_path / "sweep"
    runs = [_plant_repeat_copy(root / "0", basis_seed=0, extra=["seed=1"]),
            _plant_repeat_copy(root / "1", basis_seed=1, extra=["seed=2"]),
            _plant_repeat_copy(root / "2", basis_seed=2, extra=["seed=2", "optimizer.l2=0.001"], F=broken),
            _plant_repeat_copy(root / "3", basis_seed=3, extra=["seed=1", "optimizer.l2=0.001"])]
    analyses = [analyze_run(run, FAST).to_dict() for run in runs]
    assert len(analyses[0]["basis"]["pattern"]) == 16 and analyses[0]["basis"]["kept"] == list(range(16))
    assert len(analyses[2]["basis"]["pattern"]) == 15 and [12, 0, 1] not in analyses[2]["basis"]["pattern"]

    run_from_config(OmegaConf.create({"sweep_dir": str(root), "length_horizon": 30, "length_batches": 1}))
    assert "mechanisms of 4 runs in 2 configurations: 3/4 exact, 1 compressed" in capsys.readouterr().out
    result = json.loads((root / "mechanisms.json").read_text())
    assert (root / "mechanisms.png").stat().st_size > 0
    exact, mixed = result["configurations"]  # sorted by name: l2_0 before l2_0.001
    assert (exact["l2"], mixed["l2"]) == (0.0, 0.001)
    assert exact["runs"] == ["0", "1"] and exact["seeds"] == [1, 2] and exact["kinds"] == ["exact", "exact"]
    assert exact["agreement"] == [[1.0, 1.0], [1.0, 1.0]] and exact["summary"]["text"] == "2/2 exact, 0 compressed"
    assert mixed["runs"] == ["3", "2"] and mixed["kinds"] == ["exact", "compressed"]
    assert mixed["n_learned"] == [16, 12] and mixed["n_theory"] == 16
    assert mixed["agreement"] == [[1.0, 15 / 16], [15 / 16, 1.0]]
    assert result["summary"]["text"] == "3/4 exact, 1 compressed"

    # an analysis from before the patterns were stored still loads and counts as "no pattern"
    old = json.loads((root / "1" / "analysis.json").read_text())
    old["schema"] = 2
    del old["basis"]["pattern"], old["basis"]["kept"]
    write_json(root / "1" / "analysis.json", old)
    assert analyze.RunAnalysis.from_dict(old).basis["support_match"] == 1.0
    first = analyze.sweep_mechanisms(root, plots=False, write=False)["configurations"][0]
    assert first["kinds"] == ["exact", "no pattern"] and first["agreement"] == [[1.0, None], [None, None]]

    # the Table-1 report: one cell per L2, its summary over seeds
    rows = [run_row(run, "completed", a, "ok") for run, a in zip(runs, analyses)]
    md = format_table(aggregate(rows))
    assert "## Mechanisms across seeds" in md
    assert "| 2/2 exact, 0 compressed; modes 16, 16 / 16 | 1/2 exact, 1 compressed; modes 12, 16 / 16 |" in md


def test_bias_run_linearises_at_a_fixed_point(tmp_path):
    run = _train(tmp_path / "bias", ["model.bias=true"])
    sp = analyze_run(run, FAST)["spectral"]
    assert sp["operator"] == "jacobian_at_fixed_point"
    assert "failure" not in sp and sp["fixed_point_residual"] < 1e-8 and sp["n_fixed_points"] >= 1


def test_sweep_lists_failed_and_unfinished_without_crashing(sweep, tmp_path, caplog):
    caplog.set_level("INFO", logger="twm.analyze")
    report = analyze_sweep(sweep, FAST)
    assert report["analysed"] == ["0", "1"] and report["errors"] == {}
    assert report["failed"] == {"2": "boom"} and set(report["unfinished"]) == {"3"}
    assert report["counts"] == {"runs": 4, "analysed": 2, "up_to_date": 0, "errors": 0, "failed": 1, "damaged": 0,
                                "unfinished": 1}
    assert json.loads((sweep / "analysis_status.json").read_text())["failed"] == {"2": "boom"}
    assert (sweep / "0" / "analysis.json").exists() and not (sweep / "2" / "analysis.json").exists()
    assert not (sweep / "3" / "analysis.json").exists()
    assert any("analysed 2/2" in r.getMessage() for r in caplog.records)
    # again: nothing to do
    assert analyze_sweep(sweep, FAST, write_status=False)["up_to_date"] == ["0", "1"]
    # one chunk: every n_chunks-th folder from chunk, its own status file
    chunk = analyze_sweep(sweep, FAST, chunk=1, n_chunks=2)
    assert chunk["up_to_date"] == ["1"] and chunk["unfinished"] == {"3": chunk["unfinished"]["3"]}
    assert (sweep / "analysis_status.chunk1of2.json").exists()
    with pytest.raises(AnalyzeError, match="chunk and n_chunks"):
        analyze_sweep(sweep, FAST, chunk=2, n_chunks=2)


def test_one_failing_analysis_does_not_stop_the_others(sweep, monkeypatch):
    real = analyze.analyze_run

    def flaky(run_dir, options=None):
        if Path(run_dir).name == "0":
            raise RuntimeError("corrupt checkpoint")
        return real(run_dir, options)

    monkeypatch.setattr(analyze, "analyze_run", flaky)
    report = analyze_sweep(sweep, AnalyzeOptions(length_horizon=30, length_batches=1, plots=False, force=True),
                           write_status=False)
    assert report["errors"] == {"0": "RuntimeError: corrupt checkpoint"} and report["analysed"] == ["1"]


def test_config_errors(tmp_path):
    both = OmegaConf.create({"run_dir": str(tmp_path), "sweep_dir": str(tmp_path)})
    with pytest.raises(AnalyzeError, match="exactly one of run_dir= .* both were given"):
        run_from_config(both)
    with pytest.raises(AnalyzeError, match="not a trained run folder"):
        run_from_config(OmegaConf.create({"run_dir": str(tmp_path)}))
    with pytest.raises(AnalyzeError, match="not a folder"):
        run_from_config(OmegaConf.create({"sweep_dir": str(tmp_path / "nope")}))
    with pytest.raises(AnalyzeError, match="waves_normalisation='rows': choose step"):
        AnalyzeOptions.from_config(OmegaConf.create({"waves_normalisation": "rows"}))
    memory = AnalyzeOptions.from_config(OmegaConf.create({"waves_normalisation": "memory"}))
    assert memory.waves_normalisation == "memory"


def _cli(module, *args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_needs_exactly_one_folder(tmp_path):
    proc = _cli("twm.analyze", "threshold=0.9", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "give exactly one of run_dir=" in proc.stderr and "neither was given" in proc.stderr
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []


def test_cli_analyses_a_run_and_writes_nothing_else(sweep, tmp_path):
    run, cwd = tmp_path / "run", tmp_path / "cwd"
    shutil.copytree(sweep / "0", run, ignore=shutil.ignore_patterns("analysis*"))
    cwd.mkdir()
    before = {p.relative_to(run) for p in run.rglob("*")}
    proc = _cli("twm.analyze", f"run_dir={run}", "length_horizon=40", "length_batches=1", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "analysed" in proc.stdout
    added = {p.relative_to(run) for p in run.rglob("*")} - before
    assert {str(p) for p in added} == {"analysis.json", "analysis", *(f"analysis/{n}.png" for n in PLOTS[:4])}
    assert list(cwd.iterdir()) == []  # no outputs/, .hydra/ or log file of the app itself


def test_report_cli_on_the_sweep(sweep, tmp_path):
    proc = _cli("twm.report", f"sweep_dir={sweep}", f"out_dir={tmp_path / 'out'}", "length_horizon=30",
                "length_batches=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out"
    import csv

    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert [r["status"] for r in rows][:3] == ["completed", "completed", "failed"] and len(rows) == 4
    assert rows[3]["status"] in ("running", "interrupted") and rows[0]["analysis"] == "ok"
    assert rows[0]["task_id"] == "15,0,0" and rows[0]["label_table"] == "T1" and rows[0]["hidden"] == "16"
    cells = json.loads((out / "table1.json").read_text())["cells"]
    assert len(cells) == 1 and cells[0]["n_runs"] == 2 and cells[0]["n_failed"] == 1 and cells[0]["n_unfinished"] == 1
    md = (out / "table1.md").read_text()
    assert "## Reproduced vs published" in md and "h16 L2=0" in md
    assert not (sweep / "table1.csv").exists() and list(tmp_path.iterdir()) == [out]
