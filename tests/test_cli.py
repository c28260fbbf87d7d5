"""The console commands (``twm-train``, ``twm-analyze``, ``twm-report``, ``twm-sweep``): the same as ``python -m
twm.<x>``, an app ``--help`` that lists what a user chooses from (read against conf/ itself), and Hydra's bash tab
completion through the installed commands."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import CONF

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GROUPS = ("experiment", "task", "model", "optimizer", "curriculum", "trainer", "logger", "callbacks", "launcher",
          "debug", "hparams_search", "sweep")


def _run(args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, **kw)


def _options(group):
    return sorted(p.stem for p in Path(CONF, group).glob("*.yaml"))


def test_console_commands_are_the_modules(tmp_path):
    for command in ("twm-train", "twm-analyze", "twm-report", "twm-sweep"):
        assert (BIN / command).exists(), f"{command}: run `make setup` (pip install -e .) to install it"
    args = ["experiment=waves", "seed=3", "--cfg", "job"]
    script, module = _run(["twm-train", *args], cwd=tmp_path), _run([sys.executable, "-m", "twm.train", *args])
    assert script.returncode == module.returncode == 0, script.stderr[-2000:]
    assert script.stdout == module.stdout and "seed: 3" in script.stdout


def test_train_help_lists_every_group_and_option_and_the_keys():
    proc = _run(["twm-train", "experiment=waves", "--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = proc.stdout
    assert "Karuvally" in page and "Powered by Hydra" not in page and "schema" not in page
    primary = yaml.safe_load((ROOT / "conf/train.yaml").read_text())
    chosen = {k: v for entry in primary["defaults"] if isinstance(entry, dict) for k, v in entry.items()}
    chosen["experiment"] = "waves"
    for group in GROUPS:
        line = next(line for line in page.splitlines() if line.startswith(f"  {group} "))
        shown = [o for o in line.split()[1:] if o != "|"]
        assert [o.rstrip("*") for o in shown] == _options(group), group
        assert [o[:-1] for o in shown if o.endswith("*")] == ([chosen[group]] if chosen.get(group) else []), group
    keys = [k for k in primary if k not in ("defaults", "data")] + [f"data.{k}" for k in primary["data"]]
    for key in keys:
        assert f"  {key}=" in page, key


@pytest.mark.parametrize("app", ["analyze", "report"])
def test_analyze_and_report_help_list_their_keys(app):
    proc = _run([f"twm-{app}", "--help"])
    assert proc.returncode == 0 and "Powered by Hydra" not in proc.stdout, proc.stderr[-2000:]
    primary = yaml.safe_load((ROOT / f"conf/{app}.yaml").read_text())
    for key in (k for k in primary if k not in ("defaults", "hydra")):
        assert f"  {key}=" in proc.stdout, key
    assert _run(["twm-sweep", "--help"]).returncode == 0


def test_bash_tab_completion_answers_through_the_console_commands(tmp_path):
    """Hydra's own completion script, installed with ``eval "$(twm-train -sc install=bash)"`` and called as bash
    calls it on <TAB>, from a folder other than the repository."""
    lines = ["twm-train task=", "twm-train experiment=table", "twm-train debug=", "twm-analyze sweep_"]
    script = ['eval "$(twm-train -sc install=bash)"', "complete -p twm-train"]
    for line in lines:
        script += [f'COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}; read -ra COMP_WORDS <<< "$COMP_LINE"',
                   "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); hydra_bash_completion; echo \"${COMPREPLY[*]}\""]
    proc = _run(["bash", "-c", "\n".join(script)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    registered, *answers = [set(line.split()) for line in proc.stdout.splitlines()]
    assert "hydra_bash_completion" in registered and "twm-train" in registered
    assert answers[0] == {f"task={o}" for o in _options("task")}
    assert answers[1] == {f"experiment={o}" for o in _options("experiment") if o.startswith("table")}
    assert answers[2] == {f"debug={o}" for o in _options("debug")}
    assert answers[3] == {"sweep_dir="}
