"""``ckpt_path``: continuing a run from its own checkpoint equals the uninterrupted run; initialising from another
run's checkpoint takes its weights only and makes the file part of the run's identity; bad files are refused in
one line."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY, compose_train
from twm.metrics import output_mse
from twm.run.folder import AdamState, RunFolder, TrainState, checkpoint_payload
from twm.run.spec import RunSpec
from twm.tasks import sample
from twm.train.config import ConfigError
from twm.train.pipeline import prepare, run_lightning, train_packed

BASE = [*TINY, "optimizer.lr=0.005"]  # s = d = 4, hidden 16, ladder [2, 4, 8], a checkpoint every 10 steps


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _run(folder: Path, *extra) -> dict:
    return run_lightning(prepare(compose_train([*BASE, *extra], folder)))


def _weights(folder: Path) -> dict:
    return RunFolder(folder).load_model()[0].state_dict()


def _rows(folder: Path) -> list[dict]:
    with open(folder / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_continuing_from_a_step_k_checkpoint_equals_the_uninterrupted_run(tmp_path):
    _run(tmp_path / "whole", "trainer.max_steps=40")
    _run(tmp_path / "first", "trainer.max_steps=20")
    summary = _run(tmp_path / "rest", "trainer.max_steps=40", f"ckpt_path={tmp_path / 'first/checkpoints/last.ckpt'}")
    for k, w in _weights(tmp_path / "whole").items():
        assert torch.equal(_weights(tmp_path / "rest")[k], w), k
    assert _rows(tmp_path / "rest") == _rows(tmp_path / "whole")  # the first 20 rows come from the first run
    assert summary["steps"] == 40 and summary["resumed_at"] == [20]
    assert (tmp_path / "rest/fingerprint.json").read_text() == (tmp_path / "whole/fingerprint.json").read_text()


def test_the_batched_engine_continues_a_lightning_checkpoint(tmp_path):
    """A run folder given as ckpt_path; the ensemble continues it as the uninterrupted run trains (to rounding)."""
    _run(tmp_path / "first", "trainer.max_steps=20")
    cfgs = [compose_train([*BASE, "trainer.max_steps=40"], tmp_path / "whole"),
            compose_train([*BASE, "trainer.max_steps=40", f"ckpt_path={tmp_path / 'first'}"], tmp_path / "rest")]
    (whole, rest) = train_packed([prepare(cfg) for cfg in cfgs], 8, "cpu")
    assert rest["resumed_at"] == [20] and whole["resumed_at"] == []
    for k, w in _weights(tmp_path / "whole").items():
        torch.testing.assert_close(_weights(tmp_path / "rest")[k], w, atol=1e-5, rtol=0, msg=k)


def _file_with_weights(path: Path, spec: RunSpec, weights: dict) -> Path:
    zeros = {k: torch.zeros_like(v) for k, v in weights.items()}
    state = TrainState(steps=0, curriculum=spec.curriculum.build().state_dict(),
                       data_generator=torch.Generator().get_state())
    torch.save(checkpoint_payload(spec, weights, AdamState(0, zeros, zeros), state), path)
    return path


def test_initialising_with_the_runs_own_initial_weights_trains_the_same_run(tmp_path):
    """Another run's checkpoint (other lr, same seed and shapes) holding exactly the weights this run starts from:
    the run trains as if started plainly; the file's sha256 becomes part of its identity."""
    plain = _run(tmp_path / "plain")
    other = RunSpec.from_config(compose_train([*BASE, "optimizer.lr=0.001"], tmp_path))
    source = _file_with_weights(tmp_path / "other.ckpt", other, other.make_model().state_dict())
    started = _run(tmp_path / "init", f"ckpt_path={source}")
    for k, w in _weights(tmp_path / "plain").items():
        assert torch.equal(_weights(tmp_path / "init")[k], w), k
    assert started["train_loss"] == plain["train_loss"] and started["resumed_at"] == [0]
    identity = json.loads((tmp_path / "init/fingerprint.json").read_text())
    assert identity["init"] == {"sha256": hashlib.sha256(source.read_bytes()).hexdigest(), "step": 0}
    assert "init" not in json.loads((tmp_path / "plain/fingerprint.json").read_text())
    weights = {k: v + 0.01 for k, v in other.make_model().state_dict().items()}
    _file_with_weights(source, other, weights)  # the same path, other weights: not this run's start
    with pytest.raises(ConfigError, match="differs in init"):
        prepare(compose_train([*BASE, f"ckpt_path={source}"], tmp_path / "init"))


def test_initialising_takes_the_weights_and_nothing_else(tmp_path):
    """From a trained run of another seed: step 0, the first rung of the curriculum, this run's own data; the first
    loss is that of the checkpoint's weights on this run's first batch."""
    _run(tmp_path / "source", "seed=7")
    source = tmp_path / "source/checkpoints/last.ckpt"
    spec = RunSpec.from_config(compose_train([*BASE, "seed=3"], tmp_path))
    _run(tmp_path / "run", "seed=3", f"ckpt_path={source}")
    rows = _rows(tmp_path / "run")
    assert [int(r["step"]) for r in rows] == list(range(20)) and float(rows[0]["curriculum/horizon"]) == 2
    model = spec.make_model()
    model.load_state_dict(_weights(tmp_path / "source"))
    u, y = sample(spec.task.F, spec.task.s, 2, spec.data.batch_size,
                  torch.Generator().manual_seed(spec.seeds.data))
    with torch.no_grad():
        first = float(output_mse(model(u)[0], y, spec.task.s))
    np.testing.assert_allclose(float(rows[0]["train/loss"]), first, rtol=0, atol=1e-6)


def test_bad_checkpoints_are_refused_in_one_line(tmp_path):
    _run(tmp_path / "source")
    good = tmp_path / "source/checkpoints/last.ckpt"
    damaged = tmp_path / "damaged/checkpoints/last.ckpt"
    damaged.parent.mkdir(parents=True)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    RunFolder.checksum_path(damaged).write_text(RunFolder.checksum_path(good).read_text())
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    cases = [
        ([f"ckpt_path={tmp_path / 'missing.ckpt'}"], "an existing checkpoint file"),
        ([f"ckpt_path={tmp_path}"], "a run folder with a good checkpoint"),
        ([f"ckpt_path={damaged}"], "does not match its checksum"),
        ([f"ckpt_path={foreign}"], "written by twm"),
        (["model.hidden_size=8", f"ckpt_path={good}"], r"rnn.weight_hh_l0 \(16, 16\) there, \(8, 8\) here"),
        (["trainer.max_steps=10", f"ckpt_path={good}"], "at step 20, after trainer.max_steps=10"),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            prepare(compose_train([*BASE, *extra], tmp_path / "new"))
        assert err.value.key == "ckpt_path" and "\n" not in str(err.value), extra
