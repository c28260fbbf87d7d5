"""Table 1's aggregation (docs/science.md §4) on synthetic per-run rows, its formatting, and the published table
(§4.1)."""

import pytest
from omegaconf import OmegaConf

from twm.report import (
    DIAGONAL,
    PUBLISHED_COLUMNS,
    PUBLISHED_TABLE1,
    ReportError,
    aggregate,
    format_cell,
    format_table,
    published_cell,
    run_from_config,
    short_id,
    task_id_str,
)
from twm.tasks import DIAGONAL_ID1, TABLE1_TASKS

T1 = "255,0,0"
T4 = f"{DIAGONAL},38637,145"


def row(seed, threshold=0.9, err=None, acc=1.0, task_id=T1, hidden=128, l2=0.0, opt=None, **extra):
    return {"task": "repeat_copy", "task_id": task_id, "label_table": "T1", "label_demo": "T1", "hidden": hidden,
            "l2": l2, "threshold": threshold, "seed": seed, "test_accuracy": acc, "spectral_error": err,
            "spectral_error_optimal": err if opt is None else opt, "defined": err is not None,
            "status": "completed", "analysis": "ok", **extra}


def only(cells):
    assert len(cells) == 1
    return cells[0]


def test_min_error_and_max_accuracy_over_thresholds_then_mean_over_seeds():
    rows = [row(1, 0.9, 0.002, 0.95), row(1, 0.98, 0.001, 0.97), row(2, 0.9, 0.003, 0.99), row(2, 0.98, 0.005, 0.90)]
    c = only(aggregate(rows))
    assert c["error"] == pytest.approx((0.001 + 0.003) / 2)
    assert c["accuracy"] == pytest.approx((0.97 + 0.99) / 2)
    assert c["n_seeds"] == 2 and c["n_runs"] == 4 and c["thresholds"] == [0.9, 0.98]
    assert c["cell"] == "0.0020 (0.98)"


def test_dash_when_no_seed_is_defined_and_accuracy_still_shown():
    c = only(aggregate([row(1, 0.9, None, 0.91), row(1, 0.98, None, 0.93), row(2, 0.9, None, 0.93)]))
    assert c["error"] is None and c["error_optimal"] is None and c["n_seeds_defined"] == 0
    assert c["accuracy"] == pytest.approx(0.93) and c["cell"] == "— (0.93)"
    assert c["defined_fraction"] == 0 and c["error_mean"] is None


def test_a_seed_takes_its_defined_threshold_and_undefined_seeds_leave_the_error_mean():
    rows = [row(1, 0.9, None, 0.99), row(1, 0.98, 0.004, 0.90), row(2, 0.9, None, 0.80), row(2, 0.98, None, 0.85)]
    c = only(aggregate(rows))
    assert c["error"] == pytest.approx(0.004) and c["n_seeds_defined"] == 1
    assert c["accuracy"] == pytest.approx((0.99 + 0.85) / 2)  # the accuracy is a max whatever the error


def test_count_matched_fraction_and_mean_sd():
    rows = [row(1, 0.9, 0.001, opt=0.0005), row(1, 0.98, 0.002, opt=0.001), row(2, 0.9, 0.003, opt=0.0015),
            row(2, 0.98, None)]
    c = only(aggregate(rows))
    assert c["n_defined"] == 3 and c["defined_fraction"] == pytest.approx(0.75)
    assert c["error_mean"] == pytest.approx(0.002) and c["error_sd"] == pytest.approx(0.001)  # sample sd
    assert c["error_optimal_mean"] == pytest.approx(0.001) and c["error_optimal_sd"] == pytest.approx(0.0005)
    assert c["error_optimal"] == pytest.approx((0.0005 + 0.0015) / 2)  # per-seed min of the optimal error
    assert only(aggregate([row(1, 0.9, 0.001)]))["error_sd"] is None


def test_seed_statistics_are_over_the_per_seed_values_the_table_averages():
    from twm.report import seed_stats

    rows = [row(1, 0.9, 0.002, 0.95), row(1, 0.98, 0.001, 0.97), row(2, 0.9, 0.003, 0.99), row(3, 0.98, None, 0.85)]
    c = only(aggregate(rows))
    # per seed: accuracy 0.97, 0.99, 0.85 (max over thresholds), error 0.001, 0.003 and none (min over thresholds)
    assert c["accuracy"] == pytest.approx(2.81 / 3) and c["accuracy_sd"] == pytest.approx(0.0757188, abs=1e-7)
    assert c["error"] == pytest.approx(0.002) and c["error_seed_sd"] == pytest.approx(0.00141421, abs=1e-8)
    assert seed_stats(c) == "3 seeds; acc 0.937 ± 0.076; err 0.0020 ± 0.0014 (2/3)"
    one = only(aggregate([row(1, 0.9, None, 0.5)]))
    assert one["accuracy_sd"] is None and seed_stats(one) == "1 seed; acc 0.500; err — (0/1)"
    assert seed_stats(only(aggregate([row(1, 0.9, 0.004, 0.9), row(2, 0.9, None, 0.7)]))) == (
        "2 seeds; acc 0.800 ± 0.141; err 0.0040 (1/2)")
    md = format_table(aggregate(rows)).split("## Seed statistics")[1].split("##")[0]
    assert "| T1 / T1 (255,0,0) | 3 seeds; acc 0.937 ± 0.076; err 0.0020 ± 0.0014 (2/3) |" in md


def test_compare_cells_by_outcome_error_factor_and_accuracy():
    from twm.report import compare_cells

    def cell(error, accuracy):
        return {"error": error, "accuracy": accuracy}

    assert compare_cells(cell(0.001, 0.99), cell(0.0019, 0.975)) == {
        "same_outcome": True, "error_ratio": pytest.approx(1.9), "accuracy_diff": pytest.approx(0.015), "pass": True}
    assert not compare_cells(cell(0.001, 0.99), cell(0.0021, 0.99))["pass"]  # x2.1: outside the factor 2
    assert not compare_cells(cell(0.0021, 0.99), cell(0.001, 0.99))["pass"]  # either way round
    assert not compare_cells(cell(0.001, 0.99), cell(0.001, 0.965))["pass"]  # accuracies 0.025 apart
    outcome = compare_cells(cell(0.001, 0.99), cell(None, 0.99))
    assert outcome["same_outcome"] is False and outcome["error_ratio"] is None and not outcome["pass"]
    assert compare_cells(cell(None, 0.97), cell(None, 0.96))["pass"]


def test_failed_unfinished_and_unanalysed_runs_are_left_out_but_counted():
    rows = [row(1, err=0.001), row(2, err=None, acc=None, status="failed"), row(3, status="interrupted"),
            row(4, err=None, analysis="missing")]
    c = only(aggregate(rows))
    assert (c["n_runs"], c["n_failed"], c["n_unfinished"], c["n_unanalysed"]) == (1, 1, 1, 1)
    assert c["seeds"] == [1] and c["cell"] == "0.0010 (1.00)"


def test_cells_are_keyed_by_task_hidden_l2_in_published_order():
    rows = [row(1, err=0.01, task_id=T4, hidden=64), row(1, err=0.02, task_id=T1, hidden=64, l2=0.001),
            row(1, err=0.03, task_id=T1, hidden=32), row(1, err=0.04, task_id=[255, 0, 0], hidden=32)]
    cells = aggregate(rows)
    assert [(c["task_id"], c["hidden"], c["l2"]) for c in cells] == [(T1, 32, 0.0), (T1, 64, 0.001), (T4, 64, 0.0)]
    assert cells[0]["n_runs"] == 2  # a list id and its string are the same task
    assert cells[2]["published"] == {"error": 0.0112, "accuracy": 0.94, "cell": "0.0112 (0.94)"}
    assert cells[0]["published"] is None  # hidden 32 is not in the paper


def test_rows_read_back_from_csv_aggregate_the_same():
    rows = [row(1, 0.9, 0.002, 0.95), row(1, 0.98, None, 0.97)]
    as_csv = [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in rows]
    a, b = only(aggregate(rows)), only(aggregate(as_csv))
    assert (a["error"], a["accuracy"], a["n_defined"]) == (b["error"], b["accuracy"], b["n_defined"])


def test_format_cell():
    assert format_cell(0.00049, 0.9999) == "0.0005 (1.00)"
    assert format_cell(None, 0.5) == "— (0.50)"
    assert format_cell(4.7e-9, 1.0) == "4.7e-09 (1.00)"
    assert format_cell(None, None) == "n/a"


def test_published_table_transcription():
    assert DIAGONAL == DIAGONAL_ID1
    assert set(PUBLISHED_TABLE1) == {tid for tid, _, _ in TABLE1_TASKS.values()}
    assert all(set(cells) == set(PUBLISHED_COLUMNS) for cells in PUBLISHED_TABLE1.values())
    assert format_cell(*published_cell("255,0,0", 128, 0.0)) == "0.0005 (1.00)"
    assert format_cell(*published_cell(T4, 64, 0.0)) == "0.0112 (0.94)"
    assert published_cell((DIAGONAL, 0, 0), 128, 0.001) == (0.0031, 0.98)
    assert published_cell((DIAGONAL, 262676, 189), 64, 0.001) == (0.0010, 0.97)
    assert published_cell((255, 0, 0), 64, 0.0) == (None, 0.97)
    for tid in PUBLISHED_TABLE1:
        for hidden in (64, 128):
            assert format_cell(*published_cell(tid, hidden, 0.1)) == "— (0.50)"
    defined = [v for cells in PUBLISHED_TABLE1.values() for v in cells.values() if v[0] is not None]
    assert len(defined) == 12
    assert task_id_str((DIAGONAL, 38637, 145)) == T4 and short_id(T4) == "(…,38637,145)"


def test_markdown_layout_labels_and_side_by_side():
    staggered = f"{DIAGONAL},0,0"
    rows = [row(1, err=0.0005, acc=1.0), row(1, err=None, acc=0.93, l2=0.001),
            row(1, err=0.006, acc=0.98, task_id=staggered, label_table="T2", label_demo="T3")]
    md = format_table(aggregate(rows), {"sweep_dir": "S", "counts": {"completed": 3}})
    assert "label (table notebook)" in md and "label (demo)" in md
    assert "| T2 / T3 (…,0,0) |" in md and "| T3 / T2 (…,262676,189) |" in md  # both label maps, keyed by id
    repro = md.split("## Reproduced\n")[1].split("##")[0]
    assert "| task | h128 L2=0 | h128 L2=0.001 |" in repro
    assert "| T1 / T1 (255,0,0) | 0.0005 (1.00) | — (0.93) |" in repro
    assert "| T2 / T3 (…,0,0) | 0.0060 (0.98) |  |" in repro
    assert "1/1; 0.0005 (n=1)" in md.split("## Count-matched runs")[1]
    side = md.split("## Reproduced vs published")[1]
    assert "0.0005 (1.00) \\| 0.0005 (1.00)" in side and "— (0.93) \\| — (0.93)" in side
    assert "n/a \\| 0.0112 (0.94)" in side


def test_report_needs_a_sweep_dir(tmp_path):
    with pytest.raises(ReportError, match="sweep_dir= is required"):
        run_from_config(OmegaConf.create({"sweep_dir": None}))
    with pytest.raises(ReportError, match="not a folder"):
        run_from_config(OmegaConf.create({"sweep_dir": str(tmp_path / "nope")}))


def test_architectures_of_the_same_width_are_separate_cells_and_only_the_elman_rnn_meets_the_paper():
    rows = [row(1, err=0.001, acc=0.99), row(2, err=0.003, acc=0.97, model="elman"),
            row(1, err=None, acc=0.60, model="gru"), row(2, err=None, acc=0.70, model="gru"),
            row(1, err=None, acc=0.75, model="attention positional=True")]
    cells = {c["model"]: c for c in aggregate(rows)}
    assert list(cells) == ["elman", "attention positional=True", "gru"]  # the Elman RNN first, then by name
    assert cells["elman"]["n_runs"] == 2 and cells["elman"]["error"] == pytest.approx(0.002)
    assert cells["gru"]["accuracy"] == pytest.approx(0.65) and cells["gru"]["n_runs"] == 2
    assert cells["elman"]["published"]["cell"] == format_cell(*PUBLISHED_TABLE1[(255, 0, 0)][(128, 0.0)])
    assert cells["gru"]["published"] is None
    md = format_table(aggregate(rows))
    reproduced = md.split("## Reproduced\n")[1].split("##")[0]
    assert "| task | h128 L2=0 | attention positional=True h128 L2=0 | gru h128 L2=0 |" in reproduced
    assert "| 0.0020 (0.98) | — (0.75) | — (0.65) |" in reproduced


def test_a_run_names_its_architecture_by_the_options_that_differ_from_the_defaults():
    from twm.report import model_label

    assert model_label(None) == "elman"
    assert model_label("attention", {"positional": False}) == "attention"
    assert model_label("attention", {"positional": True}) == "attention positional=True"
    assert model_label("wave_rnn", {"channels": 4, "kernel_size": 5}) == "wave_rnn kernel_size=5"
