#!/usr/bin/env bash
# One prepared session on a lent GPU machine (the device tool), run from the repo root with $OUT set:
#   CUDA checks (benchmarks/cuda_check.py), the GPU Table-1 grid (experiments/table1/gpu_grid.py, hidden 64 and 128
#   in two processes), the Fig. 5 run on the GPU (experiments/gradient_flow), then the throughput benchmark.
# Knobs for a dry run elsewhere: SEEDS, STEPS, DEADLINE, FIG5_STEPS, DEVICE, BENCH_ARGS.
set -u
SEEDS=${SEEDS:-20}; STEPS=${STEPS:-20000}; DEADLINE=${DEADLINE:-300}; FIG5_STEPS=${FIG5_STEPS:-20000}
DEVICE=${DEVICE:-cuda}; BENCH_ARGS=${BENCH_ARGS:---device cuda --quick}
PY=${PY:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
WORK=${WORK:-/tmp/twm_gpu}; rm -rf "$WORK"; mkdir -p "$WORK/grid"
(nvidia-smi -L || true) > "$OUT/device.txt" 2>&1
$PY benchmarks/cuda_check.py > "$OUT/cuda_check.json" 2> "$WORK/cuda_check.err"
trainer=$([ "$DEVICE" = cuda ] && echo gpu || echo cpu)
for h in 64 128; do
  $PY experiments/table1/gpu_grid.py --hidden $h --out "$WORK/grid" --seeds "$SEEDS" --steps "$STEPS" \
    --deadline "$DEADLINE" --device "$DEVICE" > "$WORK/grid/h$h.log" 2>&1 &
done
$PY -m twm.train task=repeat_copy callbacks=grad_probe trainer=$trainer trainer.max_steps="$FIG5_STEPS" \
  hydra.run.dir="$WORK/fig5" > "$WORK/fig5.log" 2>&1 &
wait
timeout 120 $PY benchmarks/train_throughput.py $BENCH_ARGS > "$OUT/bench.txt" 2>&1
tail -c 3000 "$WORK/cuda_check.err" > "$WORK/cuda_check.tail" 2>/dev/null
tar czf "$OUT/gpu_results.tgz" -C "$WORK" --exclude='grid/h64/*' --exclude='grid/h128/*' grid fig5 fig5.log cuda_check.tail
ls -la "$OUT"; cat "$OUT/cuda_check.json"; tail -3 "$WORK"/grid/*.log; tail -2 "$WORK/fig5.log"; tail -5 "$OUT/bench.txt"
