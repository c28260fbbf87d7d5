#!/usr/bin/env bash
# The Table-1 columns the committed CPU grid lacks (experiments/table1/README.md): threshold 0.9, hidden 32 and
# L2 = 10 — 144 runs in three multiruns of the table1_cpu preset, trained as batched ensembles. Run it twice, once
# per core: `complete_grid.sh 0` and `complete_grid.sh 1` (each trains every other ensemble); relaunching resumes.
# Then analyse each sweep and collect the runs:
#   twm-analyze sweep_dir=outputs/sweeps/table1_cpu_t090 workers=2     (and table1_cpu_h32, table1_cpu_l2_10)
#   python experiments/table1/make_tables.py --collect outputs/sweeps/table1_cpu_t090 ...
# All three ran to completion on the 2-core development machine, in pieces over several sessions (each relaunch
# resumed); the threshold-0.9 multirun alone needs about an hour of both cores. A lent GPU trains all of it in
# minutes (benchmarks/gpu_session.sh).
set -euo pipefail
shard=${1:?shard 0 or 1}
PY=${PY:-.venv/bin/python}
common=(experiment=table1_cpu launcher=ensemble num_threads=1 hydra.launcher.max_members=8
        hydra.launcher.n_shards=2 hydra.launcher.shard="$shard")
# hidden 32, every L2, both thresholds (64 runs): the cheapest, first
$PY -m twm.train "${common[@]}" sweep_name=table1_cpu_h32 model.hidden_size=32 optimizer.l2=0.0,0.001,0.1,10.0 \
    curriculum.threshold=0.9,0.98
# L2 = 10 at threshold 0.98, hidden 64 and 128 (16 runs)
$PY -m twm.train "${common[@]}" sweep_name=table1_cpu_l2_10 optimizer.l2=10.0
# threshold 0.9 at hidden 64 and 128, every L2 (64 runs)
$PY -m twm.train "${common[@]}" sweep_name=table1_cpu_t090 curriculum.threshold=0.9 optimizer.l2=0.0,0.001,0.1,10.0
