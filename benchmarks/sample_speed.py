"""Time one batch of ``twm.tasks.sample`` (B = 64, s = d = 8, H = 100) on CPU for each Table-1 task.

Target: under 1 ms per batch. Prints one line per task and a JSON summary as the last line.
"""

import json
import time

import torch

from twm.tasks import TASK_NAMES, get_task, sample


def time_batches(F, s, horizon, batch, repeats=2000):
    gen = torch.Generator().manual_seed(0)
    sample(F, s, horizon, batch, gen)  # warm the unrolled-index cache
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats // 5):
            sample(F, s, horizon, batch, gen)
        best = min(best, (time.perf_counter() - start) / (repeats // 5))
    return best * 1e3


def main():
    torch.set_num_threads(1)
    results = {}
    for name in TASK_NAMES:
        ms = time_batches(get_task(name).F, 8, 100, 64)
        results[name] = round(ms, 4)
        print(f"{name:>18}: {ms:.3f} ms per batch of 64 (s = d = 8, H = 100)")
    print(json.dumps({"ms_per_batch": results, "target_ms": 1.0, "ok": max(results.values()) < 1.0}))


if __name__ == "__main__":
    main()
