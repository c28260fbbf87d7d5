"""The batched engine's ``matmul`` variants against autograd, step by step.

At every step the variant's gradient (read back from Adam's first moment: with no clipping and no L2,
``g_k = (m_k - beta1 m_{k-1}) / (1 - beta1)``) is compared with autograd's gradient of the same loss at the variant's
own current weights and batch (``nn.RNN``, ``twm.metrics.output_mse``), so rounding cannot accumulate along the
trajectory and each step is checked on its own. The members' horizons differ and change (:func:`_specs`), so both
ways of forming the weight gradient (whole blocks for the longest members, slices for the others) run, on buffer
layouts that grow and shrink between steps.

Stated tolerances, per parameter tensor, as a fraction of the tensor's largest autograd gradient entry:
``onednn`` (float32 throughout; the default path is within 1e-6) 1e-5; ``bf16`` (bfloat16 operands of the recurrent
and weight-gradient products, float32 accumulation; measured 6e-3) 2e-2: bfloat16 keeps 8 significant bits (relative
rounding 2^-9 = 2e-3) and the hidden state is rounded at every one of the T steps. The per-step loss, relative: 1e-6
and 1e-3 (measured 1e-7 and 1e-4).
"""

import pytest
import torch

from tests.conftest import TINY, compose_train
from twm.metrics import output_mse
from twm.run.folder import RunFolder
from twm.run.spec import CurriculumSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec
from twm.tasks import get_task, sample
from twm.train.batched import BETA1, EnsembleTrainer
from twm.train.pipeline import prepare, train_packed

S = D = 4
N = 16
STEPS = 4
TOL = {"onednn": (1e-5, 1e-6), "bf16": (2e-2, 1e-3)}  # (gradient, loss)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _specs(bias: bool) -> list[RunSpec]:
    """Four members whose horizons make the step's longest sequence grow and shrink: horizons per step
    (2, 8) then done; (3, 3, 3, 3); (2, 6, 6, 6) twice — the longest is 3, 8, 6, 6, two members long after the
    shrink (the second member's block starts where the previous layout held hidden states)."""
    F = get_task("repeat_copy", S, D).F

    def spec(seed, curriculum, steps):
        return RunSpec(TaskSpec.from_operator(F, S, "repeat_copy"), ModelSpec(hidden_size=N, bias=bias),
                       OptimSpec(lr=3e-3, l2=0.0, clip=1e9), curriculum, steps=steps, seed=seed)

    advance = {"threshold": 0.01}  # every step's accuracy exceeds it: one rung per step
    return [spec(3, CurriculumSpec.of("ladder", ladder=[2, 8], **advance), 2),
            spec(4, CurriculumSpec.of("none", horizon=3), STEPS),
            spec(5, CurriculumSpec.of("ladder", ladder=[2, 6], **advance), STEPS),
            spec(6, CurriculumSpec.of("ladder", ladder=[2, 6], **advance), STEPS)]


def _autograd(trainer: EnsembleTrainer, i: int, spec: RunSpec) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and gradient of member ``i``'s next step, by autograd at its current weights and next batch."""
    model = trainer.model(i).train()
    gen = torch.Generator()
    gen.set_state(trainer.train_state(i, 0.0).data_generator)
    u, y = sample(spec.task.F, S, int(trainer.curricula[i].horizon), spec.data.batch_size, gen)
    loss = output_mse(model(u)[0], y, S)
    loss.backward()
    return float(loss.detach()), {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("matmul", ["onednn", "bf16"])
def test_variant_loss_and_gradients_match_autograd_every_step(matmul, bias):
    specs = _specs(bias)
    setting = torch.backends.mkldnn.matmul.fp32_precision
    trainer = EnsembleTrainer(specs, matmul=matmul)
    grad_tol, loss_tol = TOL[matmul]
    previous = [{k: torch.zeros_like(v) for k, v in trainer.adam_state(i).exp_avg.items()} for i in range(len(specs))]
    horizons = {i: [] for i in range(len(specs))}
    for step in range(STEPS):
        expected = {i: _autograd(trainer, i, specs[i]) for i in trainer.active}
        results = trainer.step()
        assert torch.backends.mkldnn.matmul.fp32_precision == setting, "the trainer must leave the global setting"
        for i, (loss, grads) in expected.items():
            horizons[i].append(results[i]["horizon"])
            assert results[i]["loss"] == pytest.approx(loss, rel=loss_tol), (step, i)
            m = trainer.adam_state(i).exp_avg
            for name, g in grads.items():
                got = (m[name] - BETA1 * previous[i][name]) / (1 - BETA1)
                err = (got - g).abs().max().item() / g.abs().max().item()
                assert err <= grad_tol, f"step {step}, member {i}, {name}: error {err:.2e} of max |grad|"
            previous[i] = m
    assert horizons == {0: [2, 8], 1: [3] * STEPS, 2: [2, 6, 6, 6], 3: [2, 6, 6, 6]}


def test_onednn_is_refused_where_oneDNN_rounds_to_bfloat16(monkeypatch):
    """On CPUs with bf16 matrix units oneDNN rounds float32 operands under the setting "onednn" relies on; there
    the variant would not be float32, so construction must fail. Simulated: every bmm rounds its operands."""
    bmm = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda a, b, **kw: bmm(a.bfloat16().float(), b.bfloat16().float(), **kw))
    with pytest.raises(ValueError, match="rounds fp32 matmuls to bf16"):
        EnsembleTrainer(_specs(False), matmul="onednn")


def test_bad_matmul_values_are_one_line_errors():
    with pytest.raises(ValueError, match="matmul must be one of default, onednn, bf16, got 'fp16'"):
        EnsembleTrainer(_specs(False), matmul="fp16")
    with pytest.raises(ValueError, match="a CPU option"):
        EnsembleTrainer(_specs(False), device="cuda", matmul="bf16")


def test_the_pipeline_and_the_launcher_pass_the_variant_on(tmp_path):
    from hydra_plugins.twm_ensemble_launcher.ensemble_launcher import EnsembleLauncher

    jobs = [prepare(compose_train(TINY + [f"seed={seed}"], tmp_path / str(seed))) for seed in (1, 2)]
    assert [s["matmul"] for s in train_packed(jobs[:1], 8, "cpu", matmul="bf16")] == ["bf16"]
    assert RunFolder(tmp_path / "1").read_summary()["matmul"] == "bf16"
    assert "matmul" not in train_packed(jobs[1:], 8, "cpu")[0]  # the default leaves summaries as they were
    assert EnsembleLauncher(matmul="onednn").matmul == "onednn"
    with pytest.raises(ValueError, match="hydra.launcher.matmul must be one of default, onednn, bf16, got 'fp16'"):
        EnsembleLauncher(matmul="fp16")
