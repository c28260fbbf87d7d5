"""The CUDA path, checked on a GPU machine (prints a JSON line; see benchmarks/README.md).

1. A batched ensemble of 3 different runs on CUDA against each run trained alone on the CPU (the bare reference
   loop): max weight difference after 60 steps.
2. The Lightning single-run job on the GPU (``trainer=gpu``, cuDNN): steps/s at hidden 128, H = 100, and the
   projected GPU-hours of the 1 920-run grid trained one run at a time.
"""

from __future__ import annotations

import json
import tempfile
import time

import torch


def ensemble_vs_reference(steps: int = 60) -> dict:
    from twm.run.spec import CurriculumSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec
    from twm.tasks import get_task
    from twm.train.batched import EnsembleTrainer
    from twm.train.reference import train_reference

    specs = [RunSpec(TaskSpec.from_task(get_task(name)), ModelSpec(hidden_size=32), OptimSpec(l2=l2),
                     CurriculumSpec.of("ladder", ladder=[4, 8, 16], threshold=thr), steps=steps, seed=seed)
             for name, l2, thr, seed in [("repeat_copy", 0.0, 0.9, 1), ("signed_shuffle_48", 0.001, 0.98, 2),
                                         ("signed_shuffle_70", 0.1, 0.6, 3)]]
    trainer = EnsembleTrainer(specs, device="cuda")
    for _ in range(steps):
        trainer.step()
    worst = 0.0
    for i, spec in enumerate(specs):
        ref = train_reference(spec)[0].state_dict()
        got = trainer.state_dict(i)
        worst = max(worst, max((ref[k] - got[k].cpu()).abs().max().item() for k in ref))
    return {"ensemble_cuda_vs_cpu_reference_max_abs_diff": worst, "steps": steps}


def lightning_gpu(steps: int = 300) -> dict:
    from twm.train.config import compose_train_config
    from twm.train.pipeline import train

    overrides = ["trainer=gpu", f"trainer.max_steps={steps}", "logger=none", "curriculum=none",
                 "callbacks.progress.every_n_steps=100000"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train_config(overrides, tmp)
        start = time.perf_counter()
        summary = train(cfg)
        wall = time.perf_counter() - start
    rate = steps / wall
    return {
        "lightning_gpu_status": summary["status"],
        "lightning_gpu_steps_per_s_h128_H100": round(rate, 1),
        "per_run_grid_gpu_hours": round(1920 * 20000 / rate / 3600, 1),
    }


def main() -> None:
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for check in (ensemble_vs_reference, lightning_gpu):
        try:
            out.update(check())
        except Exception as err:  # report and go on: this runs once on a lent machine
            out[check.__name__ + "_error"] = f"{type(err).__name__}: {err}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
