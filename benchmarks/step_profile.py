"""Where one step of the batched ensemble goes, and what the variants of ``EnsembleTrainer(matmul=...)`` buy.

Setting: the Table-1 grid's heavy case, K = 40 members, s = d = 8, repeat copy at a fixed horizon H = 100 (T = 108
time steps), batch 64, no biases (``train_throughput.fixed_spec``); hidden 128, 64, 32. For each hidden size:

(a) **Profile** of one ``EnsembleTrainer.step()``, for the default and each variant:

- ``wall``/``cpu``: median milliseconds per step (``time.perf_counter`` / ``time.process_time``; on a shared machine
  CPU time is the steadier clock with one thread, with two it also counts the threads' spin-waits);
- the share of the profiled time (``torch.profiler``, self CPU time of each ATen op) in ``matmul`` (bmm, baddbmm),
  ``elementwise`` (sigmoid, add, mul, addcmul, copies, the readout's arithmetic, Adam), ``reduce`` (sums, norms),
  ``data`` (random bits, the target gather), and ``python``: wall time under the profiler not inside any ATen op
  (the Python of the time loop, the dispatcher, the profiler itself);
- ``floor``: the step with tiny tensors (batch 1, hidden 2, the same K and T, so the same ops and Python), the fixed
  cost per step; ``floor %`` = its CPU time / the step's;
- ``matmul GFLOP/s``: the matmuls' flops (counted per call) over their time, in two clocks: profiled wall time, and
  CPU time x the matmul share (the steadier one on a shared machine with one thread); the same for the element-wise
  ops' bytes;
- traffic: bytes each op reads and writes (its tensor operands and results, counted per call by a
  ``TorchDispatchMode``; views move nothing) per step, by category, and the element-wise ops' achieved bandwidth
  against ``copy_`` bandwidth measured here on a cache-sized (1 MB) and a memory-sized (256 MB) tensor.

(b) **A/B** of every ``matmul`` variant against the default, in the same process: one trainer per variant on the
same members, stepped in turn (the order rotates every round), many rounds; the ratio default / variant per round,
its median, min and max, in wall and CPU time. At H = 100, and (full mode) at H = 40 and 10 in buffers sized for 100,
as during a curriculum (:func:`members`).

(c) **Element-wise alternatives** per time step (K = 40, batch 64): the forward's ``2*sigmoid - 1`` in two passes
(what the step does) against ``torch.compile`` of it (full mode only: compiling takes about a minute); the backward's
``t * (1 - h^2)`` in two passes (mul, addcmul) against one (``aten.tanh_backward``). Microseconds per time step, and
what the saving would be per step (x T).

(d) **Kernel rates**: GFLOP/s of the step's two matmul shapes (the recurrent product, the weight gradient) with
PyTorch's default float32 kernel, oneDNN's float32 kernel (what ``matmul="onednn"`` selects) and bfloat16 operands.

    python benchmarks/step_profile.py --quick            # about 2 minutes on a 2-core CPU
    python benchmarks/step_profile.py                    # about 5 minutes
    python benchmarks/step_profile.py --threads 1 --hidden 128

The last line is JSON: ``{"threads", "profile": [...], "ab": [...], "elementwise": [...], "kernels": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from train_throughput import L2S, B, H, fixed_spec

from twm.run.spec import CurriculumSpec
from twm.tasks import get_task
from twm.train.batched import MATMULS, EnsembleTrainer

K = 40
MATMUL_OPS = {"bmm", "baddbmm", "mm", "addmm", "matmul"}
REDUCE_OPS = {"sum", "linalg_vector_norm", "mean", "norm"}
DATA_OPS = {"random_", "gather", "randint"}
NO_TRAFFIC = {"empty", "empty_like", "empty_strided", "zeros", "zeros_like", "lift_fresh", "detach", "alias",
              "resolve_conj", "resolve_neg", "_local_scalar_dense", "set_", "resize_"}


def category(op: str) -> str:
    op = op.removeprefix("aten::")
    if op in MATMUL_OPS:
        return "matmul"
    if op in REDUCE_OPS:
        return "reduce"
    if op in DATA_OPS:
        return "data"
    return "elementwise"


def members(n: int, batch: int = B, horizon: int = H) -> list:
    """K members at hidden ``n``. At ``horizon`` < H they sit on the ladder [horizon, H] with threshold 1 (never
    passed: the accuracy must exceed it), so they train at ``horizon`` in buffers sized for H, as a curriculum run
    does before its last rung."""
    F = get_task("repeat_copy", 8, 8).F
    specs = [fixed_spec(F, n, seed, L2S[seed % len(L2S)]).replace(data={"batch_size": batch})
             for seed in range(1, K + 1)]
    if horizon != H:
        specs = [spec.replace(curriculum=CurriculumSpec.of("ladder", ladder=[horizon, H], threshold=1.0))
                 for spec in specs]
    return specs


def step_times(trainer: EnsembleTrainer, steps: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``steps`` steps."""
    wall, cpu = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        trainer.step()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


class Traffic(TorchDispatchMode):
    """Bytes read and written, and matmul flops, of every ATen op run inside, by :func:`category`."""

    def __init__(self):
        super().__init__()
        self.bytes: Counter = Counter()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op = func.overloadpacket.__name__
        if func.is_view or op in NO_TRAFFIC:
            return out
        tensors = {}
        for t in tree_flatten((args, kwargs, out))[0]:
            if isinstance(t, torch.Tensor):
                tensors[(t.data_ptr(), tuple(t.shape), t.stride(), t.dtype)] = t.numel() * t.element_size()
        self.bytes[category(op)] += sum(tensors.values())
        if op in ("bmm", "baddbmm"):
            a, b = (args[0], args[1]) if op == "bmm" else (args[1], args[2])
            self.flops += 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        return out


def copy_bandwidth(nbytes: int, seconds: float = 0.3) -> float:
    """GB/s of ``dst.copy_(src)`` on float32 tensors of ``nbytes`` (read + write counted)."""
    src, dst = torch.ones(nbytes // 4), torch.empty(nbytes // 4)
    dst.copy_(src)
    reps, best = max(1, int(seconds * 1e9 / nbytes / 20)), 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            dst.copy_(src)
        best = max(best, 2 * nbytes * reps / (time.perf_counter() - t0))
    return best / 1e9


def floor_step(steps: int) -> tuple[float, float]:
    """Median wall and CPU seconds of a step with tiny tensors (batch 1, hidden 2; the same K, T, ops and Python)."""
    tiny = EnsembleTrainer([spec.replace(model={"hidden_size": 2}) for spec in members(2, batch=1)])
    tiny.step()
    return step_times(tiny, steps)


def profile_step(n: int, matmul: str, steps: int, bandwidth: dict, floor: tuple[float, float]) -> dict:
    """(a) for hidden ``n``. Rates come in two clocks: profiled wall time, and CPU time x the profiled share."""
    trainer = EnsembleTrainer(members(n), matmul=matmul)
    trainer.step()
    trainer.step()
    wall, cpu = step_times(trainer, steps)
    profiled = max(2, steps // 3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(profiled):
            trainer.step()
        prof_wall = (time.perf_counter() - t0) / profiled * 1e6  # us per step
    by_cat: Counter = Counter()
    for evt in prof.key_averages():
        if evt.key.startswith("aten::"):
            by_cat[category(evt.key)] += evt.self_cpu_time_total / profiled
    traffic = Traffic()
    with traffic:
        trainer.step()
    del trainer
    share = {c: by_cat[c] / prof_wall for c in ("matmul", "elementwise", "reduce", "data")}
    share["python"] = max(0.0, 1.0 - sum(share.values()))

    def rate(amount: float, cat: str) -> tuple[float, float]:  # per second: profiled wall, CPU x share
        if not by_cat[cat]:
            return float("nan"), float("nan")
        return amount / (by_cat[cat] * 1e-6), amount / (share[cat] * cpu)

    gflops = rate(traffic.flops / 1e9, "matmul")
    ew_gbs = rate(traffic.bytes["elementwise"] / 1e9, "elementwise")
    return {
        "hidden": n, "matmul": matmul, "wall_ms": round(wall * 1e3, 2), "cpu_ms": round(cpu * 1e3, 2),
        "share": {k: round(v, 3) for k, v in share.items()},
        "floor_wall_ms": round(floor[0] * 1e3, 2), "floor_cpu_ms": round(floor[1] * 1e3, 2),
        "floor_fraction": round(floor[1] / cpu, 3),
        "matmul_gflop_per_step": round(traffic.flops / 1e9, 2),
        "matmul_gflops_wall": round(gflops[0], 1), "matmul_gflops_cpu": round(gflops[1], 1),
        "gb_per_step": {k: round(v / 1e9, 3) for k, v in sorted(traffic.bytes.items())},
        "elementwise_gbs_wall": round(ew_gbs[0], 1), "elementwise_gbs_cpu": round(ew_gbs[1], 1),
        "copy_gbs": bandwidth,
    }


def ab(n: int, variants: list[str], rounds: int, horizon: int = H) -> dict:
    """(b) for hidden ``n`` at ``horizon``: the median per-round ratio default / variant, wall and CPU."""
    specs = members(n, horizon=horizon)
    trainers, skipped = {"default": EnsembleTrainer(specs)}, {}
    for v in variants:
        try:
            trainers[v] = EnsembleTrainer(specs, matmul=v)
        except ValueError as err:
            skipped[v] = str(err)
    for trainer in trainers.values():
        trainer.step()
        trainer.step()
    names = list(trainers)
    wall: dict[str, list[float]] = {v: [] for v in names}
    cpu: dict[str, list[float]] = {v: [] for v in names}
    for r in range(rounds):
        for v in names[r % len(names):] + names[: r % len(names)]:
            w, c = time.perf_counter(), time.process_time()
            trainers[v].step()
            wall[v].append(time.perf_counter() - w)
            cpu[v].append(time.process_time() - c)
    out = {"hidden": n, "horizon": horizon, "rounds": rounds,
           "default_wall_ms": round(statistics.median(wall["default"]) * 1e3, 2),
           "default_cpu_ms": round(statistics.median(cpu["default"]) * 1e3, 2), "variants": {}}
    for v in names[1:]:
        rw = [a / b for a, b in zip(wall["default"], wall[v])]
        rc = [a / b for a, b in zip(cpu["default"], cpu[v])]
        out["variants"][v] = {
            "wall_ms": round(statistics.median(wall[v]) * 1e3, 2), "cpu_ms": round(statistics.median(cpu[v]) * 1e3, 2),
            "ratio_wall": round(statistics.median(rw), 3), "ratio_wall_range": [round(min(rw), 2), round(max(rw), 2)],
            "ratio_cpu": round(statistics.median(rc), 3), "ratio_cpu_range": [round(min(rc), 2), round(max(rc), 2)],
        }
    for v, why in skipped.items():
        out["variants"][v] = {"skipped": why}
    return out


def _bench_us(fn, seconds: float = 0.3) -> tuple[float, float]:
    """Median wall and CPU microseconds of one call."""
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    fn()
    reps = max(3, int(seconds / 7 / max(time.perf_counter() - t0, 1e-7)))
    wall, cpu = [], []
    for _ in range(7):
        w, c = time.perf_counter(), time.process_time()
        for _ in range(reps):
            fn()
        wall.append((time.perf_counter() - w) / reps)
        cpu.append((time.process_time() - c) / reps)
    return round(statistics.median(wall) * 1e6, 1), round(statistics.median(cpu) * 1e6, 1)


def elementwise(n: int, compiled: bool) -> dict:
    """(c) for hidden ``n``: microseconds per time step of the loop's element-wise work, as the step does it and
    fused; ``saving_ms_per_step`` = (two passes - fused) x T for forward and backward together."""
    d, T = 8, 8 + H
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(K, B, n + d, generator=g)  # the forward's matmul output [z | y]
    z = pre[:, :, :n]
    hs = torch.zeros(K, T + 2, B, n)[:, 5]  # a position of the hidden-state buffer
    neg1 = torch.full((K, B, n), -1.0)
    t = torch.randn(K, B, n, generator=g)  # the backward's matmul output
    q = torch.empty(K, B, n)
    dz = torch.zeros(K, T + 2, B, n + d)[:, 5, :, :n]

    def fwd_two():
        torch.sigmoid(z, out=z)
        torch.add(neg1, z, alpha=2.0, out=hs)

    def bwd_two():
        torch.mul(hs, hs, out=q)
        torch.addcmul(t, t, q, value=-1.0, out=dz)

    out = {"hidden": n, "forward_two_passes_us": _bench_us(fwd_two), "backward_two_passes_us": _bench_us(bwd_two),
           "backward_tanh_backward_us": _bench_us(lambda: torch.ops.aten.tanh_backward.grad_input(t, hs,
                                                                                                   grad_input=dz))}
    saving = [a - b for a, b in zip(out["backward_two_passes_us"], out["backward_tanh_backward_us"])]
    if compiled:
        def fused(zz, h):
            h.copy_(2.0 * torch.sigmoid(zz) - 1.0)

        fn = torch.compile(fused, dynamic=False, fullgraph=True)
        t0 = time.perf_counter()
        fn(z, hs)
        out["compile_s"] = round(time.perf_counter() - t0, 1)
        out["forward_compiled_us"] = _bench_us(lambda: fn(z, hs))
        saving = [x + a - b for x, a, b in zip(saving, out["forward_two_passes_us"], out["forward_compiled_us"])]
    out["saving_ms_per_step"] = [round(x * T / 1e3, 2) for x in saving]
    return out


def kernel_rates(n: int) -> dict:
    """(d) for hidden ``n``: GFLOP/s (wall, CPU) of the step's two matmul shapes with each variant's kernels: the
    recurrent product (K, B, n) @ (K, n, n+d) and the weight gradient (K, n+d, T*B) @ (K, T*B, n), its first
    operand a transposed view as in the step."""
    d, T = 8, 8 + H
    g = torch.Generator().manual_seed(0)
    shapes = {"recurrent": (torch.randn(K, B, n, generator=g), torch.randn(K, n, n + d, generator=g)),
              "weight_grad": (torch.randn(K, T * B, n + d, generator=g).transpose(1, 2),
                              torch.randn(K, T * B, n, generator=g))}
    out = {"hidden": n}
    for name, (a, b) in shapes.items():
        flops = 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        for kernel in ("default", "onednn", "bf16"):
            x, y = (a.bfloat16(), b.bfloat16()) if kernel == "bf16" else (a, b)
            before = torch.backends.mkldnn.matmul.fp32_precision
            if kernel == "onednn":
                torch.backends.mkldnn.matmul.fp32_precision = "bf16"  # as EnsembleTrainer(matmul="onednn") does
            try:
                wall, cpu = _bench_us(lambda x=x, y=y: torch.bmm(x, y))
            finally:
                torch.backends.mkldnn.matmul.fp32_precision = before
            out[f"{name}_{kernel}_gflops"] = [round(flops / wall / 1e3, 1), round(flops / cpu / 1e3, 1)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds, no torch.compile")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 64, 32])
    parser.add_argument("--variants", nargs="+", default=[m for m in MATMULS if m != "default"],
                        choices=[m for m in MATMULS if m != "default"])
    parser.add_argument("--rounds", type=int, default=None, help="A/B rounds (default 8 with --quick, else 30)")
    parser.add_argument("--horizons", type=int, nargs="+", default=None,
                        help=f"A/B horizons (default {H} with --quick, else {H} 40 10: curriculum rungs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = 5 if args.quick else 12
    rounds = args.rounds or (8 if args.quick else 30)
    horizons = args.horizons or ([H] if args.quick else [H, 40, 10])
    print(f"K = {K}, s = d = 8, H = {H} (T = {8 + H}), batch {B}, repeat copy; {args.threads} threads; "
          f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}", flush=True)

    bandwidth = {"1MB": round(copy_bandwidth(1 << 20), 1), "256MB": round(copy_bandwidth(1 << 28), 1)}
    floor = floor_step(steps)
    print(f"\n(a) profile of one step; copy_ bandwidth {bandwidth['1MB']} GB/s (1 MB), "
          f"{bandwidth['256MB']} GB/s (256 MB); floor (tiny tensors) {floor[0] * 1e3:.2f} ms wall, "
          f"{floor[1] * 1e3:.2f} ms cpu. Rates: profiled wall | cpu x share")
    print(f"{'hidden':>6} {'matmul=':>8} {'wall ms':>8} {'cpu ms':>8} {'matmul':>7} {'elemw':>6} {'reduce':>6} "
          f"{'data':>5} {'python':>6} {'floor%':>6} {'matmul GFLOP/s':>14} {'GB/step mm|ew|other':>20} "
          f"{'elemw GB/s':>11}")
    profiles = []
    for n, matmul in [(n, m) for n in args.hidden for m in ["default", *args.variants]]:
        try:
            p = profile_step(n, matmul, steps, bandwidth, floor)
        except ValueError as err:
            print(f"{n:>6} {matmul:>8} skipped: {err}")
            continue
        profiles.append(p)
        sh, gb = p["share"], p["gb_per_step"]
        other = gb.get("reduce", 0) + gb.get("data", 0)
        print(f"{n:>6} {matmul:>8} {p['wall_ms']:>8.1f} {p['cpu_ms']:>8.1f} {sh['matmul']:>7.0%} "
              f"{sh['elementwise']:>6.0%} {sh['reduce']:>6.0%} {sh['data']:>5.0%} {sh['python']:>6.0%} "
              f"{p['floor_fraction']:>6.1%} "
              f"{p['matmul_gflops_wall']:>6.1f} | {p['matmul_gflops_cpu']:<5.1f} "
              f"{gb.get('matmul', 0):>7.2f}|{gb.get('elementwise', 0):.2f}|{other:.2f}"
              f" {p['elementwise_gbs_wall']:>5.1f} | {p['elementwise_gbs_cpu']:<5.1f}", flush=True)

    print(f"\n(b) A/B against matmul='default', {rounds} alternating rounds: median ratio default/variant "
          "(> 1: the variant is faster) [min-max]")
    abs_ = []
    for n, horizon in [(n, h) for h in horizons for n in args.hidden]:
        r = ab(n, args.variants, rounds, horizon)
        abs_.append(r)
        parts = [f"default {r['default_wall_ms']:.1f} ms wall, {r['default_cpu_ms']:.1f} ms cpu"]
        for v, x in r["variants"].items():
            if "skipped" in x:
                parts.append(f"{v}: skipped ({x['skipped']})")
            else:
                parts.append(f"{v}: x{x['ratio_wall']:.2f} wall [{x['ratio_wall_range'][0]}-{x['ratio_wall_range'][1]}]"
                             f", x{x['ratio_cpu']:.2f} cpu")
        print(f"hidden {n}, H = {horizon}: " + "; ".join(parts), flush=True)

    print("\n(c) element-wise work per time step, K = 40, batch 64: microseconds wall / cpu")
    ews = []
    for n in args.hidden:
        e = elementwise(n, compiled=not args.quick)
        ews.append(e)

        def us(key, e=e):
            return f"{e[key][0]} / {e[key][1]}"

        line = (f"hidden {n}: forward 2 passes {us('forward_two_passes_us')}"
                + (f", compiled {us('forward_compiled_us')} (compile {e['compile_s']} s)" if "compile_s" in e else "")
                + f"; backward 2 passes {us('backward_two_passes_us')}, tanh_backward "
                + f"{us('backward_tanh_backward_us')}; saving per step {us('saving_ms_per_step')} ms")
        print(line, flush=True)

    print("\n(d) the step's matmul shapes with each variant's kernels: GFLOP/s wall / cpu")
    kernels = []
    for n in args.hidden:
        k = kernel_rates(n)
        kernels.append(k)
        print(f"hidden {n}: " + "; ".join(
            f"{name} " + ", ".join(f"{kern} {k[f'{name}_{kern}_gflops'][0]} / {k[f'{name}_{kern}_gflops'][1]}"
                                   for kern in ("default", "onednn", "bf16"))
            for name in ("recurrent", "weight_grad")), flush=True)
    print(json.dumps({"threads": args.threads, "profile": profiles, "ab": abs_, "elementwise": ews,
                      "kernels": kernels}))


if __name__ == "__main__":
    main()
