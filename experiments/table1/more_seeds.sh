#!/usr/bin/env bash
# Seeds 3-5 for every learnable hidden-64/128 cell of Table 1 (L2 0 and 1e-3, threshold 0.98) that table1_seeds
# does not already hold, and the 48-run core grid (table1_cpu) retrained with its final checkpoints kept for the
# post-hoc gradient-decay section (experiments/table1/README.md). Run it twice, once per core:
# `more_seeds.sh 0` and `more_seeds.sh 1` (each trains every other ensemble); relaunching resumes.
#   MATMUL=bf16 (default here): the batched engine's matmul variant for the new seeds, the fastest on the 2-core
#   AMD EPYC (Zen 4) this ran on (benchmarks/README.md); the retrained core grid keeps the default variant, so it can
#   be compared with the committed runs digit for digit, and its hidden-64 signed-shuffle cells are trained once
#   more with MATMUL as a fidelity check on cells whose spectral error is defined (runs/bf16_<job>).
# Then analyse each sweep and collect the runs:
#   twm-analyze sweep_dir=outputs/sweeps/table1_cpu workers=2   (and table1_cpu_seeds_h64, _seeds_h128, _bf16)
#   python experiments/table1/make_tables.py --collect outputs/sweeps/table1_cpu outputs/sweeps/table1_cpu_seeds_h64 \
#       outputs/sweeps/table1_cpu_seeds_h128 outputs/sweeps/table1_cpu_bf16
set -euo pipefail
shard=${1:?shard 0 or 1}
PY=${PY:-.venv/bin/python}
MATMUL=${MATMUL:-bf16}
shards=(launcher=ensemble num_threads=1 hydra.launcher.n_shards=2 hydra.launcher.shard="$shard")
# the 48-run core grid again (same configs as the committed runs/<job>), default matmul
$PY -m twm.train experiment=table1_cpu "${shards[@]}" hydra.launcher.max_members=8
# seeds 3-5 at hidden 64: the four tasks x L2 {0, 1e-3} (24 runs, two ensembles of 12)
$PY -m twm.train experiment=table1_seeds "${shards[@]}" hydra.launcher.max_members=12 hydra.launcher.matmul="$MATMUL" \
    sweep_name=table1_cpu_seeds_h64 task=repeat_copy,staggered_copy,signed_shuffle_48,signed_shuffle_70 \
    model.hidden_size=64
# seeds 3-5 at hidden 128 for T1 and T3 (T2 and T4 are table1_seeds' runs): 12 runs, two ensembles of 6
$PY -m twm.train experiment=table1_seeds "${shards[@]}" hydra.launcher.max_members=6 hydra.launcher.matmul="$MATMUL" \
    sweep_name=table1_cpu_seeds_h128 task=repeat_copy,signed_shuffle_48
# fidelity of MATMUL where the spectral error is defined: T3 and T4 at hidden 64, L2 {0, 1e-3}, seeds 1-2 (8 runs,
# one ensemble, the same jobs as in table1_cpu)
$PY -m twm.train experiment=table1_cpu "${shards[@]}" hydra.launcher.max_members=8 hydra.launcher.matmul="$MATMUL" \
    sweep_name=table1_cpu_bf16 task=signed_shuffle_48,signed_shuffle_70 model.hidden_size=64 optimizer.l2=0.0,0.001
