"""The architectures behind ``model=...`` (docs/science.md §9): each trains through the pipeline, is killed and
resumed to the same bits, has the operator its docstring promises (against finite differences or values set by
hand), and is analysed; the attention decoder is eq. 8's boundary and is blind to the order of its window without
positions."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import compose_train
from twm.analyze import AnalyzeOptions, analyze_run
from twm.model import MODELS, AttentionDecoder, NoOperator, build_model, matched_hidden_size, parameter_count
from twm.run.folder import RunFolder
from twm.run.spec import ModelSpec, RunSpec
from twm.tasks import get_task
from twm.theory import sbc_step
from twm.train.batched import EnsembleTrainer
from twm.train.callbacks import GradientProbe
from twm.train.config import ConfigError, validate
from twm.train.pipeline import prepare, train, train_packed
from twm.train.reference import train_reference

ROOT = Path(__file__).resolve().parents[1]
ARCHS = tuple(MODELS)
S = D = 3
BASE = [f"task.s={S}", f"task.d={D}", "trainer.max_steps=30", "callbacks.checkpoint.every_n_train_steps=10",
        "data.batch_size=16", "data.test_batches=1", "data.test_batch_size=16", "curriculum.ladder=[2,4,8]",
        "curriculum.threshold=0.6", "optimizer.lr=0.01", "logger=wandb"]
OPTIONS = {"wave_rnn": ["model.channels=2"], "attention": ["model.positional=true"]}


def overrides(arch: str) -> list[str]:
    return [*BASE, f"model={arch}", "model.hidden_size=8", *OPTIONS.get(arch, [])]


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """``clean_run(arch)``: the folder of an uninterrupted tiny run of ``arch`` (trained once per module)."""
    runs = {}

    def get(arch: str) -> Path:
        if arch not in runs:
            runs[arch] = tmp_path_factory.mktemp(arch) / "clean"
            assert train(compose_train(overrides(arch), runs[arch]))["status"] == "completed"
        return runs[arch]

    return get


def _weights(run: Path) -> dict:
    return RunFolder(run).load_model()[0].state_dict()


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text()
    sa, sb = RunFolder(a).read_summary(), RunFolder(b).read_summary()
    for key in ("status", "steps", "final_horizon", "step_reached_max_horizon", "train_loss", "test_accuracy"):
        assert sa[key] == sb[key], key


# ----------------------------------------------------------------------------------------------------------------
# training: kill and resume, the ensemble launcher, configs, fingerprints
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_a_run_killed_mid_way_resumes_to_the_bits_of_an_uninterrupted_one(arch, clean_run, tmp_path):
    clean = clean_run(arch)
    run = tmp_path / "run"
    crash = ["+callbacks.crash._target_=tests.helpers.callbacks.CrashAt", "+callbacks.crash.step=25"]
    with pytest.raises(RuntimeError, match="simulated crash at step 25"):
        train(compose_train(overrides(arch) + crash, run))
    folder = RunFolder(run)
    assert folder.read_summary()["status"] == "failed" and folder.checkpoint_step() == 20
    assert train(compose_train(overrides(arch), run))["resumed_at"] == [20]
    _assert_same_run(clean, run)
    with open(run / "metrics.csv", newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == list(range(30))


@pytest.mark.parametrize("arch", ARCHS)
def test_the_bare_reference_loop_gives_the_lightning_weights(arch, clean_run):
    spec = RunFolder(clean_run(arch)).spec()
    model, history = train_reference(spec)
    assert len(history["loss"]) == spec.steps
    trained = _weights(clean_run(arch))
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())


def test_the_command_line_trains_a_gated_model_until_a_signal_and_the_pipeline_resumes_it(clean_run, tmp_path):
    """``python -m twm.train model=lstm``, SIGUSR1 inside step 17: checkpointed there; the relaunch (in this
    process, the same composed config) ends where an uninterrupted run does."""
    arch = "lstm"
    clean = clean_run(arch)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    sig = ["+callbacks.sig._target_=tests.helpers.callbacks.SignalAt", "+callbacks.sig.step=17",
           f"+callbacks.sig.signum={int(signal.SIGUSR1)}"]
    command = [sys.executable, "-m", "twm.train", *overrides(arch), *sig, f"hydra.run.dir={tmp_path}"]
    stopped = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 128 + signal.SIGUSR1 and "Traceback" not in stopped.stderr, stopped.stderr
    assert RunFolder(tmp_path).checkpoint_step() == 17
    assert train(compose_train(overrides(arch), tmp_path))["resumed_at"] == [17]
    _assert_same_run(clean, tmp_path)


def test_the_ensemble_launcher_trains_other_architectures_with_lightning(clean_run, tmp_path):
    arch = "gru"
    clean = clean_run(arch)
    job = prepare(compose_train(overrides(arch), tmp_path / "run"))
    with pytest.raises(ValueError, match="batched engine trains elman only"):
        EnsembleTrainer([job.spec])
    [summary] = train_packed([job], max_members=4, device="cpu")
    assert summary["status"] == "completed" and summary["engine"] == "lightning"
    _assert_same_run(clean, tmp_path / "run")


def test_bad_architecture_options_end_in_one_line_naming_the_key():
    cfg = compose_train([*BASE, "model=wave_rnn", "model.hidden_size=8", "model.channels=3"])
    with pytest.raises(ConfigError, match=r"model\.channels=3\. Allowed: a divisor of hidden_size=8"):
        validate(cfg)
    cfg = compose_train([*BASE, "model=diag_linear", "model.r_max=1.0"])
    with pytest.raises(ConfigError, match=r"model\.r_max=1\.0"):
        validate(cfg)


def test_elman_specs_keep_their_format_and_every_spec_round_trips():
    elman = RunSpec.from_config(compose_train(BASE))
    assert elman.to_dict()["model"] == {"arch": "elman", "hidden_size": 128, "bias": False, "init": "uniform"}
    for arch in ARCHS:
        spec = elman.replace(model=ModelSpec.of(arch, 8, **({"channels": 2} if arch == "wave_rnn" else {})))
        assert RunSpec.from_dict(spec.to_dict()) == spec
    wave = RunSpec.from_config(compose_train(overrides("wave_rnn"))).model
    assert wave == ModelSpec("wave_rnn", 8, options=(("channels", 2),))  # unset options recorded at their defaults
    assert dict(wave.options) == {"channels": 2, "kernel_size": 3}


# ----------------------------------------------------------------------------------------------------------------
# the contract and the operators
# ----------------------------------------------------------------------------------------------------------------
def _model(arch: str, n: int = 6, seed: int = 0, **options):
    options = {"channels": 2, **options} if arch == "wave_rnn" else options
    return build_model(arch, D, n, S, generator=generator(seed), **options).double()


@torch.no_grad()
def _finite_differences(model, eps: float = 1e-6) -> torch.Tensor:
    """The Jacobian of the zero-input state update at the origin, column by column through ``forward(u, h0)``."""
    u = torch.zeros(1, 1, D, dtype=torch.float64)
    cols = []
    for j in range(model.state_size):
        e = torch.zeros(1, model.state_size, dtype=torch.float64)
        e[0, j] = eps
        cols.append((model(u, e)[1][0, 0] - model(u, -e)[1][0, 0]) / (2 * eps))
    return torch.stack(cols, dim=1)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_model_keeps_the_contract(arch):
    model = _model(arch)
    u = torch.randn(7, 5, D, generator=generator(1), dtype=torch.float64)
    y, states = model(u)
    assert y.shape == (7, 5, D) and states.shape == (7, 5, model.state_size)
    assert model.num_parameters() == parameter_count(arch, D, 6, S, **({"channels": 2} if arch == "wave_rnn" else {}))
    again, other = _model(arch), _model(arch, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))
    W_r = model.readout_matrix()
    if arch == "attention":
        assert W_r is None
    else:  # the output is the linear readout of the returned state (what Algorithm 1 assumes)
        torch.testing.assert_close(y, states @ W_r.T, rtol=1e-12, atol=1e-12)


def test_parameter_counts_by_hand_and_the_matched_size_by_brute_force():
    n, k = 8, 3  # d = s = 3
    by_hand = {"elman": n * D + n * n + D * n, "lstm": 4 * (n * D + n * n) + D * n,
               "gru": 3 * (n * D + n * n) + D * n, "wave_rnn": n * D + 2 * 2 * k + D * n,
               "diag_linear": 2 * n + 2 * n * D + D * 2 * n, "attention": n * D + 3 * n * n + D * n}
    for arch, count in by_hand.items():
        options = {"channels": 2} if arch == "wave_rnn" else {}
        assert parameter_count(arch, D, n, S, **options) == count, arch
    assert parameter_count("attention", D, n, S, positional=True) == by_hand["attention"] + S * n
    assert parameter_count("lstm", D, n, S, bias=True) == by_hand["lstm"] + 8 * n + D
    for arch, budget in (("lstm", 1000), ("gru", 777), ("wave_rnn", 300), ("attention", 2000)):
        sizes = range(12, 61, 4) if arch == "wave_rnn" else range(1, 61)  # wave: 4 channels, >= 3 positions
        best = min(sizes, key=lambda m: (abs(parameter_count(arch, D, m, S) - budget), m))
        assert matched_hidden_size(arch, budget, D, S) == best, arch


@pytest.mark.parametrize("arch", [*ARCHS, "attention_positional"])
def test_a_budget_sets_the_hidden_size_with_the_parameter_count_closest_to_it(arch):
    budget, s = 700, 5  # a window longer than d, so that mixing them up changes the positional count
    cfg = compose_train([*BASE, f"task.s={s}", f"model={arch}", "model.hidden_size=${budget:700}",
                         *OPTIONS.get(arch, [])[:1]])
    validate(cfg)
    options = {k: cfg.model[k] for k in MODELS[cfg.model.arch].OPTIONS}
    step, smallest = (options["channels"], 3) if arch == "wave_rnn" else (1, 1)

    def trainable(m: int) -> int:  # the parameters of a built model, counted directly
        return sum(p.numel() for p in build_model(cfg.model.arch, D, m, s, **options).parameters())

    best = min(range(smallest * step, 400, step), key=lambda m: (abs(trainable(m) - budget), m))
    assert cfg.model.hidden_size == best
    assert RunSpec.from_config(cfg).model.hidden_size == best


def test_a_budget_that_cannot_be_met_ends_in_one_line_naming_the_key():
    for bad in ("${budget:0}", "${budgt:700}"):
        with pytest.raises(ConfigError, match=r"model\.hidden_size='\$\{budg.*Allowed: a positive integer or"):
            validate(compose_train([*BASE, "model=lstm", f"model.hidden_size={bad}"]))


@pytest.mark.parametrize("arch", ["elman", "lstm", "gru", "wave_rnn", "diag_linear"])
def test_the_operator_is_the_jacobian_of_the_state_update_at_the_origin(arch):
    model = _model(arch)
    if arch == "wave_rnn":  # away from the shift it starts as
        with torch.no_grad():
            model.conv.weight.copy_(torch.randn(model.conv.weight.shape, generator=generator(2)))
    J = model.operator()
    assert J.shape == (model.state_size, model.state_size) and J.dtype == torch.float64
    torch.testing.assert_close(J, _finite_differences(model), rtol=0, atol=1e-8)


def test_the_lstm_state_carries_the_cell_state_torch_computes():
    model = _model("lstm")
    u = torch.randn(9, 4, D, generator=generator(3), dtype=torch.float64)
    _, states = model(u)
    _, (h_n, c_n) = model.rnn(u)
    torch.testing.assert_close(states[-1], torch.cat([h_n[0], c_n[0]], dim=-1), rtol=1e-12, atol=1e-12)


def test_gated_and_wave_models_with_biases_have_no_operator():
    for arch in ("lstm", "gru", "wave_rnn"):
        options = {"channels": 2} if arch == "wave_rnn" else {}
        with pytest.raises(NoOperator, match="origin is not a fixed point"):
            build_model(arch, D, 6, S, bias=True, **options).operator()
    with pytest.raises(NoOperator, match="no recurrent operator"):
        _model("attention").operator()


def test_the_wave_rnn_starts_as_a_shift_toward_position_zero_in_every_channel():
    model = build_model("wave_rnn", D, 12, S, generator=generator(4), channels=3, kernel_size=3)
    shift = torch.zeros(12, 12, dtype=torch.float64)
    for c in range(3):
        for p in range(4):
            shift[4 * c + p, 4 * c + (p + 1) % 4] = 1.0  # position p takes what position p+1 held
    assert torch.equal(model.operator(), shift)


@pytest.mark.parametrize("dense_max", [10**6, 0], ids=["matmul", "convolution"])
def test_the_wave_rnn_is_a_circular_convolution_of_its_state(dense_max):
    model = build_model("wave_rnn", D, 12, S, bias=True, generator=generator(14), channels=3, kernel_size=3).double()
    model.DENSE_MAX = dense_max  # the forward pass's two ways of applying K: an (n, n) matmul, or the convolution
    with torch.no_grad():
        model.conv.weight.copy_(torch.randn(model.conv.weight.shape, generator=generator(15)))
    u = torch.randn(6, 2, D, generator=generator(16), dtype=torch.float64)
    h, expected = torch.zeros(2, 12, dtype=torch.float64), []
    for t in range(6):  # torch.nn.Conv1d with circular padding, one step at a time
        h = torch.tanh(model.encoder(u[t]) + model.conv(h.view(2, 3, 4)).flatten(1))
        expected.append(h)
    expected = torch.stack(expected)
    states = model(u)[1]
    torch.testing.assert_close(states, expected, rtol=1e-12, atol=1e-12)
    weights = [w for name, w in model.named_parameters() if not name.startswith("readout")]
    for got, want in zip(torch.autograd.grad(states.sin().sum(), weights),
                         torch.autograd.grad(expected.sin().sum(), weights)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_the_diagonal_recurrence_is_the_complex_recursion():
    model = _model("diag_linear", n=4)
    u = torch.randn(6, 2, D, generator=generator(17), dtype=torch.float64)
    B = model.input.weight[:4] + 1j * model.input.weight[4:]
    h, expected = torch.zeros(2, 4, dtype=torch.complex128), []
    for t in range(6):
        h = model.eigenvalues() * h + u[t].to(torch.complex128) @ B.T
        expected.append(torch.cat([h.real, h.imag], dim=-1))
    torch.testing.assert_close(model(u)[1], torch.stack(expected).detach(), rtol=1e-12, atol=1e-12)


def test_the_diagonal_recurrence_has_the_eigenvalues_set_by_hand():
    model = _model("diag_linear", n=4)
    modulus = torch.tensor([0.3, 0.95, 0.7, 0.999], dtype=torch.float64)
    angle = torch.tensor([0.0, 2.0, -1.0, np.pi / 4], dtype=torch.float64)
    with torch.no_grad():
        model.nu.copy_(torch.log(-torch.log(modulus)))
        model.theta.copy_(angle)
    lam = modulus * torch.exp(1j * angle)
    torch.testing.assert_close(model.eigenvalues(), lam, rtol=0, atol=1e-12)
    got = np.sort_complex(np.linalg.eigvals(model.operator().numpy()))
    np.testing.assert_allclose(got, np.sort_complex(np.concatenate([lam.numpy(), lam.numpy().conj()])), atol=1e-12)
    torch.testing.assert_close(model.operator(), _finite_differences(model), rtol=0, atol=1e-8)
    fresh = build_model("diag_linear", D, 500, S, generator=generator(5), r_min=0.6, r_max=0.8)
    radii = fresh.eigenvalues().abs()
    assert radii.min() >= 0.6 - 1e-6 and radii.max() <= 0.8 + 1e-6 and radii.max() - radii.min() > 0.15


# ----------------------------------------------------------------------------------------------------------------
# the attention decoder and eq. 8
# ----------------------------------------------------------------------------------------------------------------
def test_one_decoder_step_is_the_self_attention_boundary_of_eq_8():
    model = AttentionDecoder(D, D, window=S, generator=generator(6)).double()
    with torch.no_grad():
        model.embed.weight.copy_(torch.eye(D))
        model.readout.weight.copy_(torch.eye(D))
    H = torch.randn(5, S, D, generator=generator(7), dtype=torch.float64)
    expected = sbc_step(H, model.query.weight, model.key.weight, model.value.weight)[:, -1]
    torch.testing.assert_close(model.attend(H), expected.detach(), rtol=1e-12, atol=1e-12)


def test_without_positions_the_decoder_is_blind_to_the_order_of_its_window():
    window = torch.randn(5, 4, D, generator=generator(8), dtype=torch.float64)
    swapped = window[:, [2, 0, 1, 3]]  # the older tokens permuted, the newest (the query) in place
    plain = AttentionDecoder(D, 8, window=4, generator=generator(9)).double()
    torch.testing.assert_close(plain.attend(swapped), plain.attend(window), rtol=1e-12, atol=1e-12)
    positional = AttentionDecoder(D, 8, window=4, generator=generator(9), positional=True).double()
    assert (positional.attend(swapped) - positional.attend(window)).abs().max() > 1e-3


def test_the_decoder_reads_s_inputs_then_feeds_back_its_own_outputs():
    model = AttentionDecoder(D, 8, window=S, generator=generator(10), positional=True).double()
    u = torch.randn(S + 4, 2, D, generator=generator(11), dtype=torch.float64)
    y, states = model(u)
    noisy = u.clone()
    noisy[S:] = torch.randn(4, 2, D, generator=generator(12), dtype=torch.float64)
    assert torch.equal(model(noisy)[0], y)  # inputs after the first s steps are never read
    torch.testing.assert_close(y[S], model.attend(u[:S].transpose(0, 1)))
    by_hand = torch.cat([u[1:S], y[S:S + 1]]).transpose(0, 1)  # the window one step later
    torch.testing.assert_close(y[S + 1], model.attend(by_hand))
    torch.testing.assert_close(states[S], by_hand.reshape(2, -1))


# ----------------------------------------------------------------------------------------------------------------
# analysis
# ----------------------------------------------------------------------------------------------------------------
def test_the_gradient_probe_reads_each_models_operator():
    task = SimpleNamespace(task_F=get_task("repeat_copy", S, D).F, s=S, max_horizon=4, device=torch.device("cpu"))
    for arch in ("lstm", "attention"):
        model = build_model(arch, D, 6, S, generator=generator(13))
        row = GradientProbe(every_n_steps=1, batch_size=4).probe(SimpleNamespace(model=model, **vars(task)), 0)
        if arch == "attention":
            assert np.isnan(row["max_abs_eig"])
        else:
            radius = np.abs(np.linalg.eigvals(_finite_differences(model.double()).numpy())).max()
            assert abs(row["max_abs_eig"] - radius) < 1e-6
        assert np.all(np.isfinite([row[f"G_{t}"] for t in range(1, S + 1)]))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_is_analysed(arch, clean_run):
    run = clean_run(arch)
    result = analyze_run(run, AnalyzeOptions(length_horizon=20, length_batches=1, plots=False, force=True))
    assert (run / "analysis.json").exists()
    model, _ = RunFolder(run).load_model()
    assert result.model["arch"] == arch and result.model["parameters"] == model.num_parameters()
    assert result.model["state_size"] == model.state_size
    assert len(result.length_generalisation["accuracy"]) == 20
    sp = result.spectral
    if arch == "attention":
        assert sp["operator"] is None and sp["defined"] is False and "no recurrent operator" in sp["failure"]
        assert "no recurrent operator" in result.basis["skipped"] and result.hidden_waves == result.basis
        return
    eig = np.linalg.eigvals(_finite_differences(model.double()).numpy())
    assert sp["operator"] == MODELS[arch].OPERATOR and abs(sp["spectral_radius"] - np.abs(eig).max()) < 1e-6
    assert sp["n_learned"] == int(np.sum(np.abs(eig) > 0.9)) and sp["n_theory"] == S * D
    assert result.basis["n_coordinates"] == S * D and result.hidden_waves["steps"] == 4 * S
