"""Training throughput: the bare single-run loop against batched ensembles (twm.train.batched).

One model-step = one optimizer step of one run. Setting: s = d = 8, repeat copy, fixed horizon H = 100
(``Fixed(100)``), batch 64, no biases; hidden 128, 64, 32. For each hidden size the script times

- the single run: ``twm.train.reference.train_reference`` (nn.RNN + autograd + torch.optim.Adam, one process);
- ensembles of K members (``EnsembleTrainer``, seeds 1..K, L2 cycling through 0, 1e-3, 0.1, 10);
- with ``--engine``: the batched engine end to end (``train_ensemble``: CSV logging every step, checkpoints,
  callbacks, summaries) at K = 40, against the bare trainer in the same run;
- a matmul peak: the best of repeated ``torch.bmm`` of the recurrent matmul's shape (K, 64, n) @ (K, n, n) at the
  largest K, in GFLOP/s. The ensemble's achieved recurrent-matmul rate counts 6*B*n^2*T flops per model-step
  (forward, backward and weight gradient of W_hh; T = s + H); ``peak_fraction`` is achieved / peak.

Each configuration is warmed up, then timed over several chunks; the rate reported is the best chunk (the machine is
shared, the best chunk is the least disturbed). Prints a table, optional grid projection, and as the LAST line a
JSON list with one object per hidden size.

    python benchmarks/train_throughput.py --quick          # < 3 minutes on a 2-core CPU
    python benchmarks/train_throughput.py --grid-projection
    python benchmarks/train_throughput.py --device cuda    # adds K up to 512
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from twm.run.spec import CurriculumSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec
from twm.tasks import get_task
from twm.train.batched import EnsembleTrainer
from twm.train.reference import train_reference

S = D = 8
H = 100
B = 64
T = S + H
L2S = (0.0, 1e-3, 0.1, 10.0)
GRID_RUNS_PER_HIDDEN = 640  # 4 tasks x 4 L2 x 2 thresholds x 20 seeds (docs/science.md §3)
GRID_STEPS = 20000


def fixed_spec(F, n: int, seed: int = 1, l2: float = 1e-3, steps: int = 10**9) -> RunSpec:
    """Repeat copy at s = d = 8, hidden ``n``, a fixed horizon H = 100."""
    return RunSpec(TaskSpec.from_operator(F, S, "repeat_copy"), ModelSpec(hidden_size=n), OptimSpec(l2=l2),
                   CurriculumSpec.of("none", horizon=H), steps=steps, seed=seed)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def single_rate(F, n: int, device: torch.device, chunk_s: float, chunks: int) -> float:
    """Best-chunk steps/s of the bare single-run loop."""
    stamps: list[float] = []

    def stamp(step, model):
        stamps.append(time.perf_counter())

    warmup = 5
    train_reference(fixed_spec(F, n, steps=warmup + 1), callback=stamp, device=device)
    per_step = max((stamps[-1] - stamps[1]) / (len(stamps) - 2), 1e-4)
    per_chunk = max(3, int(chunk_s / per_step))
    stamps.clear()
    train_reference(fixed_spec(F, n, steps=warmup + per_chunk * chunks), callback=stamp, device=device)
    t = stamps[warmup - 1 :]
    return max(per_chunk / (t[(c + 1) * per_chunk] - t[c * per_chunk]) for c in range(chunks))


def ensemble_rate(F, n: int, K: int, device: torch.device, chunk_s: float, chunks: int) -> tuple[float, float]:
    """Best-chunk model-steps/s of a K-member ensemble, and its bytes per member."""
    trainer = EnsembleTrainer([fixed_spec(F, n, seed, L2S[seed % len(L2S)]) for seed in range(1, K + 1)],
                              device=device)
    trainer.step()  # first touch of the buffers
    _sync(device)
    t0 = time.perf_counter()
    trainer.step()
    _sync(device)
    per_step = time.perf_counter() - t0
    per_chunk = max(1, int(chunk_s / per_step))
    best = 0.0
    for _ in range(chunks):
        t0 = time.perf_counter()
        for _ in range(per_chunk):
            trainer.step()
        _sync(device)
        best = max(best, K * per_chunk / (time.perf_counter() - t0))
    mem = trainer.buffer_bytes() / K
    del trainer
    return best, mem


def bmm_peak(n: int, K: int, device: torch.device, seconds: float) -> float:
    """Best GFLOP/s of torch.bmm (K, B, n) @ (K, n, n), the recurrent matmul's shape."""
    a = torch.randn(K, B, n, device=device)
    w = torch.randn(K, n, n, device=device)
    out = torch.empty(K, B, n, device=device)
    flops = 2 * K * B * n * n
    for _ in range(3):
        torch.bmm(a, w, out=out)
    _sync(device)
    t0 = time.perf_counter()
    torch.bmm(a, w, out=out)
    _sync(device)
    reps = max(5, int(seconds / 10 / max(time.perf_counter() - t0, 1e-6)))
    best = 0.0
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.bmm(a, w, out=out)
        _sync(device)
        best = max(best, flops * reps / (time.perf_counter() - t0))
    return best / 1e9


def lightning_rate(n: int, steps: int) -> float:
    """Best-chunk steps/s of the Lightning engine exactly as ``python -m twm.train`` builds it (the pipeline's job:
    HDSModule, CSV logger, progress line, checkpoint every 500 steps), at a fixed horizon H = 100."""
    import tempfile

    import lightning.pytorch as pl

    from twm.train.config import compose_train_config
    from twm.train.pipeline import prepare, run_lightning

    stamps: list[float] = []

    class Stamp(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            stamps.append(time.perf_counter())

    overrides = ["curriculum=none", "logger=csv", f"model.hidden_size={n}", f"trainer.max_steps={steps}",
                 "callbacks.progress.every_n_steps=100000"]
    with tempfile.TemporaryDirectory() as tmp:
        job = prepare(compose_train_config(overrides, tmp))
        job.callbacks.append(Stamp())
        run_lightning(job)
    warm = 5
    chunk = max(3, (len(stamps) - warm) // 3)
    return max(chunk / (stamps[k + chunk] - stamps[k]) for k in range(warm, len(stamps) - chunk, chunk))


def engine_vs_trainer(n: int, K: int, steps: int) -> dict:
    """The batched engine end to end (``train_ensemble`` on K jobs prepared by the pipeline: CSV logging every
    step, progress lines, checkpoints every 500 steps, summaries) against the bare ``EnsembleTrainer`` loop."""
    import tempfile

    from twm.train.config import compose_train_config
    from twm.train.pipeline import prepare, train_packed

    F = get_task("repeat_copy", S, D).F
    trainer = EnsembleTrainer([fixed_spec(F, n, seed, L2S[seed % len(L2S)]) for seed in range(1, K + 1)])
    trainer.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    bare = K * steps / (time.perf_counter() - t0)
    del trainer
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [prepare(compose_train_config(["curriculum=none", f"model.hidden_size={n}",
                                              f"trainer.max_steps={steps + 1}", f"seed={seed}",
                                              f"optimizer.l2={L2S[seed % len(L2S)]}", "data.test_batches=1"],
                                             f"{tmp}/{seed}")) for seed in range(1, K + 1)]
        t0 = time.perf_counter()
        train_packed(jobs, K, "cpu", progress_every=10**9)  # starts each job: its loggers and callbacks
        engine = K * (steps + 1) / (time.perf_counter() - t0)
    return {"hidden": n, "K": K, "steps": steps, "trainer_model_steps_per_s": round(bare, 1),
            "engine_model_steps_per_s": round(engine, 1), "engine_fraction": round(engine / bare, 3)}


def logger_overhead(n: int, K: int, steps: int, every: int = 10) -> dict:
    """The batched engine end to end with ``logger=csv`` and with ``logger=wandb`` (offline; every member its own
    W&B run): steady model-steps/s between the first and the last progress call (every ``every`` steps), and the
    whole wall time including the fixed per-job costs (W&B run start and finish, final tests)."""
    import tempfile

    from twm.train.config import compose_train_config
    from twm.train.pipeline import prepare, train_packed

    out = {"hidden": n, "K": K, "steps": steps}
    for logger in ("csv", "wandb"):
        with tempfile.TemporaryDirectory() as tmp:
            jobs = [prepare(compose_train_config(["curriculum=none", f"model.hidden_size={n}", f"logger={logger}",
                                                  f"trainer.max_steps={steps}", f"seed={seed}",
                                                  f"optimizer.l2={L2S[seed % len(L2S)]}", "data.test_batches=1"],
                                                 f"{tmp}/{seed}")) for seed in range(1, K + 1)]
            stamps: list[tuple[int, float]] = []

            def stamp(step, *_, stamps=stamps):
                stamps.append((step, time.perf_counter()))

            t0 = time.perf_counter()
            train_packed(jobs, K, "cpu", on_progress=stamp, progress_every=every)
            wall = time.perf_counter() - t0
        (s0, t_0), (s1, t_1) = stamps[0], stamps[-1]
        out[f"{logger}_model_steps_per_s"] = round(K * (s1 - s0) / (t_1 - t_0), 1)
        out[f"{logger}_wall_s"] = round(wall, 2)
    out["wandb_fraction"] = round(out["wandb_model_steps_per_s"] / out["csv_model_steps_per_s"], 3)
    return out


def lightning_vs_bare(n: int, steps: int) -> dict:
    """The Lightning engine against the bare loop on the same model and data (hidden n, H = 100)."""
    F = get_task("repeat_copy").F
    bare = single_rate(F, n, torch.device("cpu"), chunk_s=steps / 30 / 3, chunks=3)
    lightning = lightning_rate(n, steps)
    return {
        "hidden": n,
        "lightning_steps_per_s": round(lightning, 2),
        "bare_steps_per_s": round(bare, 2),
        "slowdown": round(bare / lightning, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short timings (< 3 minutes on a 2-core CPU)")
    parser.add_argument(
        "--lightning",
        action="store_true",
        help="only compare the Lightning path with the bare loop (hidden 128, H = 100, CPU)",
    )
    parser.add_argument("--engine", action="store_true",
                        help="only compare the batched engine end to end with its bare trainer (K = 40, CPU)")
    parser.add_argument("--loggers", action="store_true",
                        help="only compare the batched engine with logger=csv and logger=wandb (K = 40, CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 64, 32])
    parser.add_argument(
        "--K",
        type=int,
        nargs="+",
        default=None,
        help="ensemble sizes (default 1 4 8 20 40; on cuda also 64 128 256 512)",
    )
    parser.add_argument(
        "--grid-projection",
        action="store_true",
        help="project the wall time of the 1 920-run Table-1 grid (20 000 steps each)",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.lightning:
        steps = 150 if args.quick else 600
        result = lightning_vs_bare(128, steps)
        print(
            f"hidden 128, H = {H}, batch {B}, cpu, {args.threads} threads: Lightning path "
            f"{result['lightning_steps_per_s']:.1f} steps/s, bare loop {result['bare_steps_per_s']:.1f} steps/s, "
            f"bare/Lightning = {result['slowdown']:.3f} (target <= 1.25)"
        )
        print(json.dumps(result))
        return
    if args.loggers:
        from twm.run.wandb import ensure_offline

        ensure_offline()
        for n in args.hidden:
            result = logger_overhead(n, 40, 60 if args.quick else 300)
            print(f"hidden {n}, K = 40: W&B {result['wandb_model_steps_per_s']:.1f} vs CSV "
                  f"{result['csv_model_steps_per_s']:.1f} model-steps/s ({100 * result['wandb_fraction']:.0f}%); "
                  f"wall {result['wandb_wall_s']:.1f} vs {result['csv_wall_s']:.1f} s", flush=True)
            print(json.dumps(result))
        return
    if args.engine:
        for n in args.hidden:
            result = engine_vs_trainer(n, 40, 30 if args.quick else 120)
            print(f"hidden {n}, K = 40: engine {result['engine_model_steps_per_s']:.1f} model-steps/s, bare trainer "
                  f"{result['trainer_model_steps_per_s']:.1f} ({100 * result['engine_fraction']:.0f}%)", flush=True)
            print(json.dumps(result))
        return
    device = torch.device(args.device)
    Ks = args.K or ([1, 4, 8, 20, 40] + ([64, 128, 256, 512] if device.type == "cuda" else []))
    chunk_s, chunks = (0.8, 3) if args.quick else (4.0, 5)
    F = get_task("repeat_copy", S, D).F
    flops_per_model_step = {n: 6 * B * n * n * T for n in args.hidden}

    label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads"
    print(f"device: {label}; s = d = {S}, H = {H} (Fixed), batch {B}; rate = best of {chunks} chunks of ~{chunk_s} s")
    print(
        f"{'hidden':>6} {'config':>10} {'K':>4} {'model-steps/s':>14} {'ms/model-step':>14} {'GFLOP/s':>8} "
        f"{'MB/member':>9}"
    )
    results = []
    for n in args.hidden:
        single = single_rate(F, n, device, chunk_s, chunks)
        gf = flops_per_model_step[n] * single / 1e9
        print(f"{n:>6} {'single':>10} {1:>4} {single:>14.1f} {1e3 / single:>14.2f} {gf:>8.1f} {'':>9}", flush=True)
        best_k, best_rate, best_mem = None, 0.0, 0.0
        for K in Ks:
            rate, mem = ensemble_rate(F, n, K, device, chunk_s, chunks)
            gf = flops_per_model_step[n] * rate / 1e9
            print(
                f"{n:>6} {'ensemble':>10} {K:>4} {rate:>14.1f} {1e3 / rate:>14.2f} {gf:>8.1f} {mem / 1e6:>9.1f}",
                flush=True,
            )
            if rate > best_rate:
                best_k, best_rate, best_mem = K, rate, mem
        peak = bmm_peak(n, max(Ks), device, seconds=1.0 if args.quick else 3.0)
        achieved = flops_per_model_step[n] * best_rate / 1e9
        results.append(
            {
                "hidden": n,
                "single_model_steps_per_s": round(single, 2),
                "ensemble_model_steps_per_s": round(best_rate, 2),
                "K": best_k,
                "ratio": round(best_rate / single, 2),
                "achieved_gflops": round(achieved, 1),
                "peak_gflops": round(peak, 1),
                "peak_fraction": round(achieved / peak, 3),
                "mb_per_member": round(best_mem / 1e6, 2),
            }
        )
        print(
            f"{n:>6} best ensemble K = {best_k}: ratio {best_rate / single:.2f} over the single run; "
            f"recurrent matmul {achieved:.1f} GFLOP/s of a {peak:.1f} GFLOP/s bmm peak "
            f"({100 * achieved / peak:.0f}%); {best_mem / 1e6:.1f} MB per member",
            flush=True,
        )

    if args.grid_projection:
        total = 0.0
        for r in results:
            seconds = GRID_RUNS_PER_HIDDEN * GRID_STEPS / r["ensemble_model_steps_per_s"]
            single_s = GRID_RUNS_PER_HIDDEN * GRID_STEPS / r["single_model_steps_per_s"]
            total += seconds
            print(
                f"grid projection, hidden {r['hidden']}: {GRID_RUNS_PER_HIDDEN} runs x {GRID_STEPS} steps = "
                f"{seconds / 3600:.1f} h as ensembles of {r['K']} (single runs one after another: "
                f"{single_s / 3600:.1f} h)"
            )
        print(
            f"grid projection, all {GRID_RUNS_PER_HIDDEN * len(results)} runs: {total / 3600:.1f} h on this device "
            f"at H = {H} throughout (an upper bound: the ladder curriculum starts at H = 10)"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
