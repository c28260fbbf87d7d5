#!/usr/bin/env bash
# Seeds 3-5 for every learnable hidden-64/128 cell of Table 1 (L2 0 and 1e-3, threshold 0.98) that table1_seeds
# does not already hold, the 48-run core grid (table1_cpu) retrained with its final checkpoints kept for the post-hoc
# gradient-decay section, and the bf16 matmul variant's fidelity check (experiments/table1/README.md). Run it twice,
# once per core: `more_seeds.sh 0` and `more_seeds.sh 1` (each trains every other ensemble); relaunching resumes.
# Then analyse each sweep and collect the runs:
#   twm-analyze sweep_dir=outputs/sweeps/table1_cpu workers=2       (and each table1_cpu_seeds_* and table1_cpu_bf16)
#   python experiments/table1/make_tables.py --collect outputs/sweeps/table1_cpu outputs/sweeps/table1_cpu_seeds_* \
#       outputs/sweeps/table1_cpu_bf16
# The Table-1 runs use the default (float32) matmul; the bf16 sweeps are twins of them, collected into bf16_check/.
set -euo pipefail
shard=${1:?shard 0 or 1}
PY=${PY:-.venv/bin/python}
shards=(launcher=ensemble num_threads=1 hydra.launcher.n_shards=2 hydra.launcher.shard="$shard")
h64=(task=repeat_copy,staggered_copy,signed_shuffle_48,signed_shuffle_70
     model.hidden_size=64 hydra.launcher.max_members=12)   # 24 runs, two ensembles of 12
h128=(task=repeat_copy,signed_shuffle_48 hydra.launcher.max_members=6)  # 12 runs
# the 48-run core grid again (the same configs as the committed runs/<job>)
$PY -m twm.train experiment=table1_cpu "${shards[@]}" hydra.launcher.max_members=8
# seeds 3-5 at hidden 64 (the four tasks) and at hidden 128 (T1 and T3; T2 and T4 are table1_seeds' runs)
$PY -m twm.train experiment=table1_seeds "${shards[@]}" "${h64[@]}" sweep_name=table1_cpu_seeds_h64_fp32
$PY -m twm.train experiment=table1_seeds "${shards[@]}" "${h128[@]}" sweep_name=table1_cpu_seeds_h128_fp32
# the bf16 check: the same seeds 3-5, and T3, T4 at hidden 64, L2 {0, 1e-3}, seeds 1-2 (8 runs, one ensemble)
$PY -m twm.train experiment=table1_seeds "${shards[@]}" "${h64[@]}" sweep_name=table1_cpu_seeds_h64 hydra.launcher.matmul=bf16
$PY -m twm.train experiment=table1_seeds "${shards[@]}" "${h128[@]}" sweep_name=table1_cpu_seeds_h128 hydra.launcher.matmul=bf16
$PY -m twm.train experiment=table1_cpu "${shards[@]}" hydra.launcher.max_members=8 hydra.launcher.matmul=bf16 \
    sweep_name=table1_cpu_bf16 task=signed_shuffle_48,signed_shuffle_70 model.hidden_size=64 optimizer.l2=0.0,0.001
