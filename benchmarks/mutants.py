"""Hand-made mutants of the training and analysis code (not a unit test): apply one single-behaviour break at a time
to a scratch copy of the committed tree (``git archive HEAD``) and run the tests that guard it; print which test
caught each break. Every break must be caught.

    python benchmarks/mutants.py [name fragment ...]
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRATCH = Path(tempfile.mkdtemp(prefix="twm-mutants-"))
SRC = SCRATCH / "base"
WORK = SCRATCH / "tree"
PY = sys.executable
TESTS = ["tests/test_engines.py", "tests/test_curriculum.py", "tests/test_analysis_spectra.py", "tests/test_train.py"]
MUTANTS = [
    ("Lightning optimizer drops L2", "twm/train/lightning.py",
     "return self.spec.make_optimizer(self.model.parameters())",
     "return torch.optim.Adam(self.model.parameters(), lr=self.spec.optim.lr)"),
    ("every optimizer drops L2 (RunSpec.make_optimizer)", "twm/run/spec.py",
     "lr=self.optim.lr, weight_decay=self.optim.l2)", "lr=self.optim.lr)"),
    ("ladder jumps two rungs", "twm/curriculum.py", "self.rung += 1", "self.rung = min(self.rung + 2, len(self.ladder) - 1)"),
    ("ladder moves down on a bad step", "twm/curriculum.py",
     "        return self.horizon\n\n    def state_dict(self) -> dict:\n        return {\"rung\"",
     "        elif accuracy < 0.5 and self.rung > 0:\n            self.rung -= 1\n        return self.horizon\n\n    def state_dict(self) -> dict:\n        return {\"rung\""),
    ("adaptive ignores clipping at h_max", "twm/curriculum.py",
     "self.current = min(self.h_max, math.ceil(self.current * self.gamma))", "self.current = math.ceil(self.current * self.gamma)"),
    ("config → spec drops optimizer.lr (the launcher's spec)", "twm/run/spec.py",
     'float(opt.get("lr", model.get("lr", 1e-3)))', '1e-3'),
    ("ensemble packing drops lr", "twm/train/pipeline.py",
     "            group.append(jobs[i])\n",
     "            jobs[i].spec = jobs[i].spec.replace(optim={\"lr\": 1e-3})\n            group.append(jobs[i])\n"),
    ("batched Adam ignores per-member lr", "twm/train/batched.py",
     "step_size = [optim[i].lr / (1 - BETA1**st)", "step_size = [1e-3 / (1 - BETA1**st)"),
    ("batched engine drops L2", "twm/train/batched.py", "        if any(l2):\n", "        if False:\n"),
    ("batched engine applies L2 before clipping", "twm/train/batched.py",
     "        G.mul_(coef.unsqueeze(1))\n        l2 = [optim[i].l2 for i in self.slots]\n        if any(l2):\n            G.addcmul_(P, torch.tensor(l2, device=dev).unsqueeze(1))\n",
     "        l2 = [optim[i].l2 for i in self.slots]\n        if any(l2):\n            G.addcmul_(P, torch.tensor(l2, device=dev).unsqueeze(1))\n        G.mul_(coef.unsqueeze(1))\n"),
    ("batched engine does not clip", "twm/train/batched.py", "coef = torch.clamp(clip / (total + 1e-6), max=1.0)", "coef = torch.ones_like(total)"),
    ("Lightning engine does not clip", "twm/train/lightning.py", "gradient_clip_val=spec.optim.clip,", "gradient_clip_val=None,"),
    ("config → spec ignores trainer.gradient_clip_val", "twm/run/spec.py",
     'float(trainer.get("gradient_clip_val", 1.0))', '1.0'),
    ("batched engine updates the curriculum with the previous step's accuracy", "twm/train/batched.py",
     "            cur.update(acc, loss)\n", "            cur.update(self.last_accuracy[i] if self.steps[i] > 1 else acc, loss)\n"),
    ("Lightning engine updates the curriculum only every other step", "twm/train/lightning.py",
     "        self.curriculum.update(acc_f, loss_f)\n", "        if batch_idx % 2 == 0:\n            self.curriculum.update(acc_f, loss_f)\n"),
    ("optimal matching is the greedy one", "twm/analysis/spectra.py",
     "rows_opt, cols_opt = linear_sum_assignment(cost)", "rows_opt, cols_opt = np.arange(len(matching)), matching"),
    ("optimal matching maximises", "twm/analysis/spectra.py",
     "rows_opt, cols_opt = linear_sum_assignment(cost)", "rows_opt, cols_opt = linear_sum_assignment(cost, maximize=True)"),
    ("batched checkpoint omits the data generator state", "twm/train/batched.py",
     "        self.gens[i].set_state(state.data_generator)\n", ""),
    ("the run folder lock is not taken", "twm/run/folder.py", "            lock.acquire(timeout=0)\n", "            pass\n",
     ["tests/test_survival.py::test_a_folder_held_by_a_live_process_is_skipped"]),
    ("a damaged latest checkpoint is used anyway", "twm/run/folder.py", "        damage = self.checkpoint_damage(last)\n        if damage is None:",
     "        damage = self.checkpoint_damage(last)\n        if True:",
     ["tests/test_survival.py::test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one"]),
    ("a torn metrics row is kept", "twm/run/folder.py", "    if None in row or any(row.get(k) is None for k in header):\n        return None\n", "",
     ["tests/test_survival.py::test_a_garbage_summary_and_a_torn_metrics_row_are_repaired_on_relaunch"]),
    ("the summary of a damaged completed run is rebuilt", "twm/train/pipeline.py", "        if folder.is_completed():\n            damage",
     "        if folder.is_completed() and not folder.checkpoint_damage(folder.checkpoint_path):\n            damage",
     ["tests/test_survival.py::test_a_damaged_completed_checkpoint_is_reported_not_retrained"]),
]
SRC.mkdir()
subprocess.run(f"git -C {REPO} archive HEAD | tar -x -C {SRC}", shell=True, check=True)
only = sys.argv[1:]
results = []
for name, path, old, new, *guards in MUTANTS:
    if only and not any(o in name for o in only):
        continue
    if WORK.exists():
        shutil.rmtree(WORK)
    shutil.copytree(SRC, WORK, ignore=shutil.ignore_patterns(".venv", ".git", "outputs"))
    f = WORK / path
    text = f.read_text()
    assert text.count(old) == 1, (name, text.count(old))
    f.write_text(text.replace(old, new))
    tests = guards[0] if guards else TESTS + (["tests/test_engines.py::test_ensemble_and_basic_launchers_give_equal_run_folders"] if "launcher" in name or "packing" in name else [])
    proc = subprocess.run([PY, "-m", "pytest", "-q", "-x", "-p", "no:randomly", *tests], cwd=WORK,
                          capture_output=True, text=True, timeout=1200)
    failed = [l.split(" ")[1] for l in proc.stdout.splitlines() if l.startswith("FAILED")]
    caught = proc.returncode != 0
    results.append({"mutant": name, "caught": caught, "by": failed[:1]})
    print(json.dumps(results[-1]), flush=True)
print(f"{sum(r['caught'] for r in results)}/{len(results)} caught")
shutil.rmtree(SCRATCH)
