"""``python -m twm.analyze``: post-hoc analysis of trained run folders (docs/science.md §4–§6), one run or a
whole sweep.

    python -m twm.analyze run_dir=outputs/sweeps/table1/17
    python -m twm.analyze sweep_dir=outputs/sweeps/table1 workers=2
    python -m twm.analyze -m sweep_dir=outputs/sweeps/table1 n_chunks=8 'chunk=range(8)' launcher=slurm

Each analysed run gets ``<run>/analysis.json`` (schema in :func:`analyze_run`) and, with ``plots=true``, the PNGs
``<run>/analysis/{spectrum,weights_in_basis,hidden_waves,length_generalisation[,gradient_flow][,gradient_decay]}.png``.
A sweep also gets ``<sweep>/analysis_status.json`` (``analysis_status.chunk<i>of<n>.json`` for one chunk): which runs
were analysed, which were already up to date, which failed to train, which are unfinished, and any analysis errors;
a whole sweep also ``<sweep>/results.csv`` (:mod:`twm.results`: one row per job with its config, summary and
analysis, for ``pandas.read_csv``), ``<sweep>/gradient_decay.json`` and ``.png`` (:func:`sweep_gradient_decay`:
the decay rate r against ``max|λ(W_hh)|``, one point per run) and ``<sweep>/mechanisms.json`` and ``.png``
(:func:`sweep_mechanisms`: per configuration, the seed × seed agreement of the learned sign patterns of
``Ψ* W_hh Ψ`` and how many seeds learned Φ exactly). Nothing else is written: no Hydra output folder for
a single invocation (``hydra.run.dir: .``, no ``.hydra/``, logging to stdout only); a multirun keeps Hydra's own
bookkeeping under ``outputs/analysis/<date>/<time>/``.

The Hydra entry point is thin; the work is in plain functions: :func:`analyze_run`, :func:`analyze_runs`,
:func:`analyze_sweep`.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

import twm.help  # noqa: F401  (registers the resolvers of the --help page)
from twm import CONF_DIR
from twm.analysis.basis import support_summary
from twm.analysis.mechanisms import pattern_entries, sign_pattern
from twm.model import ElmanRNN, NoOperator
from twm.run import wandb as run_wandb
from twm.run.folder import CHECKPOINTS, LAST, RunFolder, write_json

log = logging.getLogger("twm.analyze")

ANALYSIS = "analysis.json"
PLOT_DIR = "analysis"
STATUS = "analysis_status.json"
SCHEMA = 3  # 3: basis.pattern and basis.kept (the cross-seed comparison); 1 and 2 still load
PROBE_BATCH_SIZE = 64  # the post-hoc gradient probe batch (docs/science.md §6), drawn with the run's probe seed
GRADIENT_DECAY = "gradient_decay"
MECHANISMS = "mechanisms"
# options that change the numbers: an analysis.json made with other values is stale
NUMERIC_OPTIONS = ("threshold", "length_horizon", "length_batches", "length_threshold", "rate_tol")


class AnalyzeError(ValueError):
    """A request that cannot be analysed (bad options, no such folder); the CLI prints it and exits 2."""


def boolean(value) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ValueError(value)


def number(cfg, key: str, kind, default):
    """``cfg[key]`` as ``kind`` (int, float or a boolean parser), ``default`` when unset; an :class:`AnalyzeError`
    naming the key when the value is not one (``workers=abc``)."""
    value = cfg.get(key)
    if value is None:
        return default
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        name = {int: "an integer", float: "a number"}.get(kind, "true or false")
        raise AnalyzeError(f"{key}={value!r} is not {name}") from None


@dataclass(frozen=True)
class AnalyzeOptions:
    """What :func:`analyze_run` computes (defaults = ``conf/analyze.yaml``).

    ``threshold``: |λ| cut of the spectral comparison (docs/science.md §4). ``length_horizon``/``length_batches``:
    the length generalisation test (output steps, batches of 64). ``length_threshold``: its ``first_below``
    accuracy level. ``rate_tol``: the gradient decay rate counted as "flat" (step where r first falls below it).
    ``plots``: write the PNGs. ``waves_normalisation``: the colours of the hidden-wave figure, ``step`` (each time
    step ÷ its max, docs/science.md §7) or ``memory`` (each variable ÷ its standard deviation, the paper's Fig. 8);
    a figure-only option (``force=true`` redraws existing figures). ``force``: analyse even when ``analysis.json`` is
    up to date.
    """

    threshold: float = 0.9
    length_horizon: int = 1000
    length_batches: int = 4
    length_threshold: float = 0.94
    rate_tol: float = 0.05
    plots: bool = True
    waves_normalisation: str = "step"
    force: bool = False

    @classmethod
    def from_config(cls, cfg) -> AnalyzeOptions:
        values = {f.name: number(cfg, f.name, {"float": float, "int": int, "bool": boolean, "str": str}[f.type], None)
                  for f in fields(cls) if cfg.get(f.name) is not None}
        opts = cls(**values)
        opts.check()
        return opts

    def check(self) -> None:
        if not self.threshold >= 0:
            raise AnalyzeError(f"threshold must be >= 0 (the |λ| cut, docs/science.md §4, default 0.9); "
                               f"got {self.threshold}")
        if int(self.length_horizon) < 1 or int(self.length_batches) < 1:
            raise AnalyzeError(f"length_horizon and length_batches must be >= 1; got {self.length_horizon}, "
                               f"{self.length_batches}")
        if self.waves_normalisation not in ("step", "memory"):
            raise AnalyzeError(f"waves_normalisation={self.waves_normalisation!r}: choose step (each time step ÷ its "
                               "max, the default) or memory (each variable ÷ its standard deviation, the paper's "
                               "Fig. 8)")

    def numeric(self) -> dict:
        return {k: getattr(self, k) for k in NUMERIC_OPTIONS}


# --------------------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------------------
def glyph(s: int, d: int) -> np.ndarray:
    """The input pattern of the hidden-wave figure, ``(s, d)`` ±1: a diagonal stroke ("\\"), +1 at
    ``j = round(i (d-1)/(s-1))`` in input step ``i`` (0-based), -1 elsewhere. Not symmetric under reversing time,
    so the direction the waves travel is visible."""
    X = -np.ones((s, d))
    for i in range(s):
        X[i, int(round(i * (d - 1) / (s - 1))) if s > 1 else 0] = 1.0
    return X


def _finite(value):
    """JSON-safe: non-finite floats become None, numpy scalars become Python ones, containers recursively."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def gradient_summary(probe: dict, rate_tol: float = 0.05) -> dict:
    """Fig. 5 in numbers from :func:`twm.analysis.load_probe_csv`'s dict: decay rate r and ``max|λ(W_hh)|`` at
    the first and last probe, the first step where ``max|λ|`` exceeds 1 and the first where ``r < rate_tol``
    (``None`` when it never happens)."""
    steps, rates, eig = probe["steps"], probe["decay_rate"], probe["max_abs_eig"]

    def first_step(mask):
        idx = np.flatnonzero(mask)
        return int(steps[idx[0]]) if idx.size else None

    out = {
        "n_probes": len(steps),
        "step_start": int(steps[0]),
        "step_end": int(steps[-1]),
        "decay_rate_start": float(rates[0]),
        "decay_rate_end": float(rates[-1]),
        "max_abs_eig_start": float(eig[0]),
        "max_abs_eig_end": float(eig[-1]),
        "step_max_abs_eig_above_1": first_step(eig > 1.0),
        "rate_tol": float(rate_tol),
        "step_decay_rate_below_tol": first_step(np.nan_to_num(rates, nan=np.inf) < rate_tol),
    }
    if "decay_rate_first" in probe:  # C = loss at the first output step alone
        out["first_output_decay_rate_start"] = float(probe["decay_rate_first"][0])
        out["first_output_decay_rate_end"] = float(probe["decay_rate_first"][-1])
    return out


def up_to_date(run_dir, options: AnalyzeOptions) -> dict | None:
    """The stored analysis of ``run_dir`` if it is newer than the checkpoint, made with the same numeric options
    and (when ``options.plots``) has its PNGs; else ``None``."""
    run_dir = Path(run_dir)
    path, ckpt = run_dir / ANALYSIS, run_dir / CHECKPOINTS / LAST
    if not path.exists() or not ckpt.exists() or path.stat().st_mtime < ckpt.stat().st_mtime:
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    made_with = {k: (stored.get("options") or {}).get(k) for k in NUMERIC_OPTIONS}
    if stored.get("schema") != SCHEMA or made_with != options.numeric():
        return None
    plots = stored.get("plots") or {}
    if options.plots and not (plots and all((run_dir / p).exists() for p in plots.values())):
        return None
    return stored


@dataclass
class RunAnalysis:
    """What :func:`analyze_run` found for one run; ``analysis.json`` is :meth:`to_dict` (schema below).

    - ``schema`` (:data:`SCHEMA`), ``run_dir``, ``analysed_at`` (UTC ISO), ``seconds``, ``options``
      (:class:`AnalyzeOptions` minus ``force``);
    - ``run``: the run's ``summary.json`` fields (status, steps, seed, task, task_id, s, d, hidden_size, l2,
      curriculum, threshold = the curriculum threshold, final_horizon, step_reached_max_horizon, train_loss,
      train_accuracy, test_accuracy, wall_seconds), from the run's spec where the summary lacks them;
    - ``model``: ``arch``, ``hidden_size``, ``state_size``, ``parameters`` (trainable), ``options`` (docs/science.md
      §9);
    - ``spectral``: docs/science.md §4 — ``error``, ``error_optimal`` (radians, ``None`` when undefined),
      ``n_learned``, ``n_theory``, ``defined``, ``counts_match``, ``threshold``, ``operator`` (``"W_hh"`` or
      ``"jacobian_at_fixed_point"`` for the Elman RNN; the model's ``OPERATOR`` name otherwise, e.g.
      ``"jacobian_at_origin"``; ``None`` without one), ``spectral_radius`` (of that operator), ``fixed_point_norm``,
      ``fixed_point_residual`` and ``n_fixed_points`` (with biases), ``failure`` (why the operator could not be
      formed, e.g. no fixed point found, or the model has none; then ``defined`` is false);
    - ``basis``: docs/science.md §5 — ``method``, ``n_kept``, ``n_coordinates`` (s*d), ``n_complement`` and
      :func:`support_summary` of ``Ψ* W_hh Ψ`` (``W_hh``: the operator), ``kept`` (the kept coordinate indices)
      and ``pattern``: the nonzero entries ``[[row, col, sign], ...]`` of its sign pattern at ``support_level``
      (:func:`twm.analysis.mechanisms.sign_pattern`; schema 3, absent before); ``{"skipped": why}`` for a model
      without an operator or a linear readout of its state;
    - ``hidden_waves``: the input shown (``input``: description, ``pattern``: the (s, d) ±1 glyph, ``steps``,
      ``normalisation``); ``{"skipped": why}`` as ``basis``;
    - ``length_generalisation``: ``first_below`` (1-based output step, ``None`` if never), ``threshold``,
      ``horizon``, ``mean_accuracy``, ``n_batches``, ``batch_size``, ``seed`` (the run's test seed), ``accuracy``
      (all ``horizon`` per-step accuracies);
    - ``gradient_flow``: :func:`gradient_summary` when the run has ``grad_probe.csv``, else ``None``;
    - ``gradient_decay``: :func:`gradient_decay_section` — docs/science.md §6 after training: ``probe`` (``seed``:
      the run's probe seed, ``horizon``: the curriculum's largest, ``batch_size``), ``step`` (of the final network),
      its ``G``, ``G_first``, ``decay_rate``, ``decay_rate_first``, ``max_abs_eig``, and ``kept``: the same per kept
      step (``steps``, ``G``, ``G_first``, ``decay_rate``, ``decay_rate_first``, ``max_abs_eig``, then the final
      network's step when it is later than the last kept one) with :func:`gradient_summary` of that curve, or
      ``None`` when training kept no weights;
    - ``plots``: name → path relative to the run folder (empty without plots).

    ``skipped`` (not stored) is true when the stored analysis was up to date and returned as it was.
    """

    run_dir: str
    analysed_at: str
    seconds: float
    options: dict
    run: dict
    spectral: dict
    basis: dict
    hidden_waves: dict
    length_generalisation: dict
    gradient_flow: dict | None
    plots: dict
    gradient_decay: dict | None = None
    model: dict | None = None
    skipped: bool = False

    def to_dict(self) -> dict:
        out = {"schema": SCHEMA, **asdict(self)}
        out.pop("skipped")
        return _finite(out)

    @classmethod
    def from_dict(cls, data: dict, skipped: bool = False) -> RunAnalysis:
        return cls(**{f.name: data.get(f.name) for f in fields(cls) if f.name != "skipped"}, skipped=skipped)

    def __getitem__(self, key: str):
        return getattr(self, key)


class _Run:
    """One run as the analysis sections see it: the network's weights, the task, the seeds, where plots go."""

    def __init__(self, run_dir: Path, options: AnalyzeOptions):
        from twm.run.folder import RunFolder

        folder = RunFolder(run_dir)
        self.model, self.spec = folder.load_model()
        self.summary = folder.read_summary() or {}
        self.task = self.spec.task.task()
        self.s, self.d, self.F = self.task.s, self.task.d, self.task.F
        self.seeds = self.spec.seeds
        try:  # the operator compared with Φ (docs/science.md §9); an Elman RNN with biases is linearised later
            self.W_hh, self.no_operator = self.model.operator().double().numpy(), None
        except NoOperator as err:
            self.W_hh, self.no_operator = None, str(err)
        readout = self.model.readout_matrix()
        self.W_r = None if readout is None else readout.double().numpy()
        self.b = self.model.b if isinstance(self.model, ElmanRNN) else None
        self.dir, self.options, self.plots = run_dir, options, {}
        self.label = f"{self.task.name}, hidden {self.spec.model.hidden_size}, seed {self.spec.seed}"

    def plot_path(self, name: str):
        if not self.options.plots:
            return None
        self.plots[name] = f"{PLOT_DIR}/{name}.png"
        return self.dir / PLOT_DIR / f"{name}.png"


def _visited_states(run: _Run) -> np.ndarray:
    """Hidden states ``(T, 16, n)`` on random inputs: fixed-point starts (with biases) and Algorithm 1's PCA."""
    from twm.tasks import sample

    gen = torch.Generator().manual_seed(run.seeds.probe)
    u, _ = sample(run.F, run.s, max(3 * run.s, int(run.summary.get("final_horizon") or 0)), 16, gen)
    return run.model(u)[1].double().numpy()


def spectral_section(run: _Run, hidden: np.ndarray) -> dict:
    """docs/science.md §4: the Jacobian at the origin (or at a fixed point, with biases) against Φ's spectrum."""
    from twm.analysis import compare_spectra, plot_spectrum
    from twm.analysis.spectra import FixedPointNotFound, jacobian
    from twm.theory import predicted_eigenvalues

    b = run.b
    spectral: dict = {"operator": run.model.OPERATOR if b is None or not torch.any(b) else "jacobian_at_fixed_point"}
    threshold = run.options.threshold
    if run.W_hh is None:
        spectral.update(error=None, error_optimal=None, n_learned=None, n_theory=None, defined=False,
                        counts_match=False, threshold=threshold, failure=run.no_operator)
        return spectral
    try:
        lin = jacobian(run.W_hh, b=None if b is None else b.double().numpy(), states=hidden)
    except FixedPointNotFound as err:
        spectral.update(error=None, error_optimal=None, n_learned=None, n_theory=None, defined=False,
                        counts_match=False, threshold=threshold, failure=str(err))
        return spectral
    eig = np.linalg.eigvals(lin.matrix)
    comparison = compare_spectra(eig, predicted_eigenvalues(run.F, run.s), threshold=threshold)
    spectral.update(comparison.to_dict())
    spectral["spectral_radius"] = float(np.max(np.abs(eig)))
    if spectral["operator"] != "W_hh":
        spectral.update(fixed_point_norm=float(np.linalg.norm(lin.fixed_point)), fixed_point_residual=lin.residual,
                        n_fixed_points=len(lin.fixed_points))
    if run.options.plots:
        plot_spectrum(eig, run.F, run.s, run.plot_path("spectrum"), threshold=threshold, comparison=comparison,
                      title=f"{run.label}: spectrum vs Φ")
    return spectral


def basis_sections(run: _Run, hidden: np.ndarray) -> tuple[dict, dict]:
    """docs/science.md §5: the variable-memory basis and ``Ψ* W_hh Ψ`` (Fig. 4); the hidden waves of one glyph
    (Fig. 3). Returns ``(basis, hidden_waves)``."""
    from twm.analysis import plot_hidden_waves, plot_weights_in_basis, states_in_basis, variable_memory_basis
    from twm.analysis import weights_in_basis as in_basis

    if run.W_hh is None or run.W_r is None:
        why = {"skipped": run.no_operator or f"{run.spec.model.arch}: the output is not a linear map of the state"}
        return why, dict(why)
    s, d = run.s, run.d
    pattern = glyph(s, d)
    T = 4 * s
    u_glyph = torch.zeros(T, 1, d)
    u_glyph[:s, 0] = torch.as_tensor(pattern, dtype=torch.float32)
    h_glyph = run.model(u_glyph)[1][:, 0].double().numpy()
    trajectory = np.concatenate([hidden.reshape(-1, hidden.shape[-1]), h_glyph])
    basis = variable_memory_basis(run.W_hh, run.W_r, s, F=run.F, hidden=trajectory)
    M = in_basis(run.W_hh, basis)
    info = {"method": basis.method, "n_kept": basis.n_kept, "n_coordinates": s * d,
            "n_complement": int(basis.complement.shape[1]), **support_summary(M, run.F, s, basis.kept)}
    info["kept"] = [int(i) for i in np.flatnonzero(basis.kept)]
    info["pattern"] = pattern_entries(sign_pattern(M, basis.kept, level=info["support_level"]))
    waves = {
        "input": f"diagonal glyph: input step i (0-based) is +1 at dim round(i*(d-1)/(s-1)), -1 elsewhere; "
                 f"inputs for the first s = {s} steps, then zeros for {T - s} steps (one sequence, h(0) = 0)",
        "pattern": pattern.astype(int).tolist(),
        "steps": T,
        "normalisation": "Ψ* h(t) reshaped to (s, d); " + (
            "each time step divided by its max |value| over all variables and dims (global per-timestep, "
            "docs/science.md §7)" if run.options.waves_normalisation == "step" else
            "each variable divided by its standard deviation over time and dims (per memory, the paper's Fig. 8)")
        + "; raw h(t) on one symmetric scale",
    }
    if run.options.plots:
        plot_weights_in_basis(M, s, d, run.plot_path("weights_in_basis"), kept=basis.kept,
                              title=f"Ψ* W_hh Ψ ({run.label}; {basis.n_kept} kept, support match "
                                    f"{info['support_match']:.2f})")
        plot_hidden_waves(states_in_basis(h_glyph, basis), run.plot_path("hidden_waves"), raw_hidden=h_glyph,
                          normalise=run.options.waves_normalisation, inputs=s,
                          title=f"hidden state in the variable-memory basis ({run.label}; diagonal glyph input)")
    return info, waves


def length_section(run: _Run) -> dict:
    """Accuracy per output step up to ``options.length_horizon`` on fresh batches of the run's test seed."""
    from twm.analysis import length_generalisation, plot_length_generalisation

    opts = run.options
    lg = length_generalisation(run.model, run.F, run.s, horizon=int(opts.length_horizon),
                               n_batches=int(opts.length_batches), batch_size=64, seed=run.seeds.test,
                               threshold=opts.length_threshold)
    if opts.plots:
        below = lg.first_below if lg.first_below is not None else "never"
        plot_length_generalisation({f"seed {run.spec.seed}": lg.accuracy}, run.plot_path("length_generalisation"),
                                   threshold=opts.length_threshold, train_horizon=run.summary.get("final_horizon"),
                                   title=f"length generalisation ({run.label}; first below "
                                         f"{opts.length_threshold:g}: {below})")
    return {**lg.to_dict(), "n_batches": int(opts.length_batches), "batch_size": 64, "seed": run.seeds.test,
            "accuracy": [round(float(a), 6) for a in lg.accuracy]}


def gradient_section(run: _Run) -> dict | None:
    """docs/science.md §6: gradient flow during training, when the run recorded ``grad_probe.csv``."""
    from twm.analysis import load_probe_csv, plot_gradient_flow

    path = run.dir / "grad_probe.csv"
    if not path.exists():
        return None
    probe = load_probe_csv(path)
    if run.options.plots:
        plot_gradient_flow(probe["steps"], probe["G"], probe["decay_rate"], probe["max_abs_eig"],
                           run.plot_path("gradient_flow"), title=f"gradient flow ({run.task.name}, seed "
                                                                  f"{run.spec.seed})")
    return gradient_summary(probe, run.options.rate_tol)


def probe_batch(run: _Run) -> tuple[torch.Tensor, torch.Tensor]:
    """The post-hoc probe batch ``(u, y)``, ``(s + H, 64, d)``: drawn with the run's probe seed at the largest
    horizon of its curriculum (as ``twm.train.callbacks.GradientProbe`` draws its batch from its own seed)."""
    from twm.tasks import sample

    horizon = int(run.spec.curriculum.build().max_horizon)
    return sample(run.F, run.s, horizon, PROBE_BATCH_SIZE, torch.Generator().manual_seed(run.seeds.probe))


def gradient_decay_section(run: _Run) -> dict:
    """docs/science.md §6 after training: the input-gradient profile, its decay rate r and ``max|λ(W_hh)|`` of the
    final network and of every kept weights file (``callbacks.keep_weights``: the Fig. 5 curves without
    retraining, plotted as ``gradient_decay.png``), on :func:`probe_batch`. Schema in :class:`RunAnalysis`."""
    from twm.analysis import gradient_probe, plot_gradient_flow

    folder = RunFolder(run.dir)
    u, y = probe_batch(run)
    final = gradient_probe(run.model, u, y, run.s)
    step = run.summary.get("steps")
    if step is None:
        step = (folder.load_checkpoint() or {}).get("global_step")
    out = {"probe": {"seed": run.seeds.probe, "horizon": int(u.shape[0]) - run.s, "batch_size": PROBE_BATCH_SIZE},
           "step": step, **final, "kept": None}
    kept = folder.kept_weights()
    if not kept:
        return out
    curve = [(k, gradient_probe(folder.load_weights(k, run.spec), u, y, run.s)) for k, _ in kept]
    if step is not None and step > kept[-1][0]:
        curve.append((step, final))
    series = {key: np.array([point[key] for _, point in curve]) for key in final}
    series["steps"] = np.array([k for k, _ in curve])
    out["kept"] = {**series, **gradient_summary(series, run.options.rate_tol)}
    if run.options.plots:
        plot_gradient_flow(series["steps"], series["G"], series["decay_rate"], series["max_abs_eig"],
                           run.plot_path("gradient_decay"), title=f"gradient decay from kept weights ({run.label})")
    return out


def model_section(run: _Run) -> dict:
    """The architecture: what a comparison across architectures at a parameter budget needs."""
    m = run.spec.model
    return {"arch": m.arch, "hidden_size": m.hidden_size, "state_size": run.model.state_size,
            "parameters": run.model.num_parameters(), "options": dict(m.options)}


def run_section(run: _Run) -> dict:
    """The run's summary fields (from its spec where the summary lacks them: an unfinished run)."""
    from twm.run.folder import SUMMARY_KEYS

    info = {k: run.summary.get(k) for k in SUMMARY_KEYS}
    if info["task"] is None:
        spec = run.spec
        info.update(task=run.task.name, task_id=list(run.task.task_id) if run.task.task_id else None, s=run.s,
                    d=run.d, seed=spec.seed, hidden_size=spec.model.hidden_size, l2=spec.optim.l2,
                    threshold=spec.curriculum.threshold)
    return info


@torch.no_grad()
def analyze_run(run_dir, options: AnalyzeOptions | None = None) -> RunAnalysis:
    """Analyse one trained run folder; writes ``<run_dir>/analysis.json`` (and the PNGs) and returns the
    :class:`RunAnalysis`. Returns the stored analysis (``skipped=True``) when :func:`up_to_date`, unless
    ``options.force``."""
    options = options or AnalyzeOptions()
    run_dir = Path(run_dir)
    if not options.force:
        stored = up_to_date(run_dir, options)
        if stored is not None:
            return RunAnalysis.from_dict(stored, skipped=True)
    start = time.perf_counter()
    run = _Run(run_dir, options)
    hidden = _visited_states(run)
    spectral = spectral_section(run, hidden)
    basis, waves = basis_sections(run, hidden)
    length = length_section(run)
    gradient = gradient_section(run)
    decay = gradient_decay_section(run)
    result = RunAnalysis(
        run_dir=str(run_dir), analysed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - start, 3),
        options={k: v for k, v in asdict(options).items() if k != "force"}, run=run_section(run),
        spectral=spectral, basis=basis, hidden_waves=waves, length_generalisation=length, gradient_flow=gradient,
        plots=run.plots, gradient_decay=decay, model=model_section(run),
    )
    write_json(run_dir / ANALYSIS, result.to_dict())
    try:
        run_wandb.update_run(run_dir, wandb_summary(result), {f"analysis/{name}": run_dir / path
                                                             for name, path in result.plots.items()})
    except Exception as err:  # noqa: BLE001  (the analysis stands; only its copy in W&B is missing)
        log.warning("%s: analysed, but its W&B run was not updated (%s: %s)", run_dir, type(err).__name__, err)
    return result


def wandb_summary(result: RunAnalysis) -> dict:
    """The analysis figures a W&B run summary gets (keys ``analysis/...``): the spectral error (greedy and optimal
    matching), the eigenvalue counts, whether they match, the Algorithm-1 support match, the first output step
    below the length threshold, and the input-gradient decay rate r of the final network (docs/science.md §6)."""
    spectral, basis = result.spectral or {}, result.basis or {}
    decay = result.gradient_decay or {}
    values = {
        "spectral_error": spectral.get("error"), "spectral_error_optimal": spectral.get("error_optimal"),
        "n_learned": spectral.get("n_learned"), "n_theory": spectral.get("n_theory"),
        "counts_match": spectral.get("counts_match"), "spectral_radius": spectral.get("spectral_radius"),
        "support_match": basis.get("support_match"),
        "first_below": (result.length_generalisation or {}).get("first_below"),
        "decay_rate": decay.get("decay_rate"), "max_abs_eig": decay.get("max_abs_eig"),
    }
    return {f"analysis/{k}": v for k, v in values.items()}


# --------------------------------------------------------------------------------------------------------------
# Many runs
# --------------------------------------------------------------------------------------------------------------
def _worker_init() -> None:
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def _analyse_one(run_dir: str, options: AnalyzeOptions) -> tuple[str, str, object]:
    """``(run_dir, outcome, payload)``: outcome "analysed" or "up_to_date" with the analysis dict, or "error" with
    ``{"error": ..., "traceback": ...}``. Never raises (one run's failure must not stop the others)."""
    try:
        result = analyze_run(run_dir, options)
        return run_dir, ("up_to_date" if result.skipped else "analysed"), result.to_dict()
    except Exception as err:  # noqa: BLE001  (recorded per run)
        return run_dir, "error", {"error": f"{type(err).__name__}: {err}",
                                  "traceback": "".join(traceback.format_exc(limit=6))[-3000:]}


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def analyze_runs(run_dirs, options: AnalyzeOptions, workers: int = 1, progress_seconds: float = 10.0,
                 progress_every: int = 0, context: str = "") -> dict[str, tuple[str, object]]:
    """Analyse ``run_dirs`` (in a process pool of ``workers`` when > 1, one torch thread each); returns
    ``{run_dir: (outcome, payload)}`` as :func:`_analyse_one`. Logs a progress line every ``progress_seconds``
    (and every ``progress_every`` runs when > 0) and at the end."""
    run_dirs = [str(p) for p in run_dirs]
    total = len(run_dirs)
    results: dict[str, tuple[str, object]] = {}
    counts = {"analysed": 0, "up_to_date": 0, "error": 0}
    start = last = time.monotonic()

    def record(run_dir, outcome, payload):
        nonlocal last
        results[run_dir] = (outcome, payload)
        counts[outcome] += 1
        if outcome == "error":
            log.warning("analysis of %s failed: %s", run_dir, payload["error"])
        done = len(results)
        now = time.monotonic()
        if done == total or now - last >= progress_seconds or (progress_every and done % progress_every == 0):
            last = now
            rate = done / max(now - start, 1e-9)
            eta = (total - done) / rate
            log.info("analysed %d/%d (%d up to date, %d errors%s) %.2f runs/s eta %s", done, total,
                     counts["up_to_date"], counts["error"], context, rate, _duration(eta))

    if workers <= 1 or total <= 1:
        for run_dir in run_dirs:
            record(*_analyse_one(run_dir, options))
        return results
    ctx = multiprocessing.get_context("spawn")  # no forked OpenMP/torch state in the workers
    with ProcessPoolExecutor(max_workers=min(workers, total), mp_context=ctx, initializer=_worker_init) as pool:
        futures = {pool.submit(_analyse_one, run_dir, options): run_dir for run_dir in run_dirs}
        for future in as_completed(futures):
            try:
                record(*future.result())
            except Exception as err:  # noqa: BLE001  (a worker died: record it, keep going)
                record(futures[future], "error", {"error": f"{type(err).__name__}: {err}", "traceback": ""})
    return results


def _chunk(items: list, chunk, n_chunks) -> list:
    if chunk is None and n_chunks is None:
        return items
    if chunk is None or n_chunks is None or not (int(n_chunks) >= 1 and 0 <= int(chunk) < int(n_chunks)):
        raise AnalyzeError(f"chunk and n_chunks go together, with 0 <= chunk < n_chunks (got chunk={chunk}, "
                           f"n_chunks={n_chunks}); e.g. -m n_chunks=8 'chunk=range(8)'")
    return items[int(chunk)::int(n_chunks)]


def gradient_decay_points(runs) -> list[dict]:
    """One point per run folder in ``runs`` whose ``analysis.json`` has a ``gradient_decay`` section (others are
    skipped): ``run`` (the folder name), task, task_id, hidden_size, l2, threshold, seed, test_accuracy,
    ``decay_rate``, ``decay_rate_first``, ``max_abs_eig``."""
    points = []
    for run in runs:
        try:
            stored = json.loads((Path(run) / ANALYSIS).read_text())
        except (OSError, ValueError):
            continue
        decay = stored.get(GRADIENT_DECAY)
        if not decay:
            continue
        info = stored.get("run") or {}
        points.append({"run": Path(run).name, **{k: info.get(k) for k in ("task", "task_id", "hidden_size", "l2",
                                                                            "threshold", "seed", "test_accuracy")},
                       **{k: decay.get(k) for k in ("decay_rate", "decay_rate_first", "max_abs_eig")}})
    return points


def sweep_gradient_decay(sweep_dir, rate_tol: float = 0.05, plots: bool = True, write: bool = True) -> dict:
    """Fig. 5's claim over a sweep: the final network's decay rate r against its ``max|λ(W_hh)|``, one point per run
    whose ``analysis.json`` has a ``gradient_decay`` section. Returns (and with ``write`` stores as
    ``<sweep>/gradient_decay.json``, with ``plots`` drawn as ``<sweep>/gradient_decay.png``, coloured by task):
    ``sweep_dir``, ``points`` (:func:`gradient_decay_points`), ``summary`` (:func:`twm.analysis.decay_against_radius`
    over all runs) and ``by_task`` (the same per task)."""
    from twm.analysis import decay_against_radius, plot_decay_against_radius
    from twm.sweep import run_dirs

    sweep_dir = Path(sweep_dir)
    points = gradient_decay_points(run_dirs(sweep_dir))

    def summary(rows):
        return decay_against_radius([_nan(p["max_abs_eig"]) for p in rows], [_nan(p["decay_rate"]) for p in rows],
                                    rate_tol)

    tasks = sorted({str(p["task"]) for p in points})
    result = {"sweep_dir": str(sweep_dir), "points": points, "summary": summary(points),
              "by_task": {t: summary([p for p in points if str(p["task"]) == t]) for t in tasks}}
    if write:
        write_json(sweep_dir / f"{GRADIENT_DECAY}.json", _finite(result))
    if plots and points:
        s = summary(points)
        plot_decay_against_radius([_nan(p["max_abs_eig"]) for p in points], [_nan(p["decay_rate"]) for p in points],
                                  [p["task"] for p in points], sweep_dir / f"{GRADIENT_DECAY}.png", rate_tol,
                                  title=f"{sweep_dir.name}: {s['n']} runs; |r| < {rate_tol:g} in "
                                        f"{s['above_1']['n_flat']}/{s['above_1']['n']} with max|λ| > 1, "
                                        f"{s['at_most_1']['n_flat']}/{s['at_most_1']['n']} with max|λ| ≤ 1")
    return result


def run_mechanism(run_dir, stored: dict) -> dict | None:
    """One run's entry of :func:`sweep_mechanisms` from its ``analysis.json`` (``stored``) and its spec; ``None``
    for a folder whose spec cannot be read. ``configuration``: the W&B group (:func:`twm.run.wandb.group_name`:
    ``RunSpec.identity()`` without the seed); ``pattern``: ``(s*d, s*d)`` or ``None`` (an analysis before schema 3,
    or a model without an operator); ``kind``: :func:`twm.analysis.mechanisms.mechanism_kind`."""
    from twm.analysis.mechanisms import mechanism_kind, pattern_from_entries

    try:
        spec = RunFolder(run_dir).spec()
        task = spec.task.task()
    except Exception as err:  # noqa: BLE001  (a folder without a readable config is left out, with a warning)
        log.warning("%s: no readable spec (%s: %s); left out of the mechanism comparison", run_dir,
                    type(err).__name__, err)
        return None
    entries = (stored.get("basis") or {}).get("pattern")
    pattern = None if entries is None else pattern_from_entries(entries, task.s * task.d)
    n_learned = (stored.get("spectral") or {}).get("n_learned")
    return {"run": Path(run_dir).name, "seed": spec.seed, "configuration": run_wandb.group_name(spec),
            "task": task.name, "task_id": list(task.task_id) if task.task_id else None, "s": task.s, "d": task.d,
            "arch": spec.model.arch, "hidden_size": spec.model.hidden_size, "l2": spec.optim.l2,
            "threshold": spec.curriculum.threshold, "n_learned": n_learned, "F": task.F, "pattern": pattern,
            "kind": mechanism_kind(pattern, n_learned, task.F, task.s)}


def sweep_mechanisms(sweep_dir, plots: bool = True, write: bool = True) -> dict:
    """The cross-seed mechanism comparison of a sweep (docs/science.md §5, Fig. 4), from the runs'
    ``analysis.json`` alone (no weights): per configuration (every config key but the seed, :func:`run_mechanism`),
    the seed × seed agreement of the sign patterns of ``Ψ* W_hh Ψ``
    (:func:`twm.analysis.mechanisms.mechanism_agreement`) and how many seeds learned Φ exactly, compressed it to
    fewer persistent modes, or did something else (:func:`twm.analysis.mechanisms.mechanism_summary`).

    Returns (and with ``write`` stores as ``<sweep>/mechanisms.json``; with ``plots`` the matrices of the
    configurations with two or more runs are drawn as ``<sweep>/mechanisms.png``): ``sweep_dir``, ``definition``,
    ``configurations`` (list, by configuration name: ``configuration``, task, task_id, s, d, arch, hidden_size, l2,
    threshold, ``n_theory`` (Φ's persistent modes), and per run in seed order ``runs``, ``seeds``, ``n_learned``,
    ``kinds``; ``agreement`` ``(k, k)`` with ``None`` where a run has no pattern; ``summary``) and ``summary`` (the
    same over all runs)."""
    from twm.analysis import mechanism_agreement, mechanism_summary, plot_mechanism_agreement
    from twm.sweep import run_dirs
    from twm.theory import cycle_coordinates

    sweep_dir = Path(sweep_dir)
    groups: dict[str, list[dict]] = {}
    for run in run_dirs(sweep_dir):
        try:
            stored = json.loads((run / ANALYSIS).read_text())
        except (OSError, ValueError):
            continue
        entry = run_mechanism(run, stored)
        if entry is not None:
            groups.setdefault(entry["configuration"], []).append(entry)
    configurations = []
    for name in sorted(groups):
        runs = sorted(groups[name], key=lambda e: (e["seed"], int(e["run"]) if e["run"].isdigit() else 0))
        first = runs[0]
        A = mechanism_agreement([e["pattern"] for e in runs])
        configurations.append({
            "configuration": name,
            **{k: first[k] for k in ("task", "task_id", "s", "d", "arch", "hidden_size", "l2", "threshold")},
            "n_theory": len(cycle_coordinates(first["F"], first["s"])),
            "runs": [e["run"] for e in runs], "seeds": [e["seed"] for e in runs],
            "n_learned": [e["n_learned"] for e in runs], "kinds": [e["kind"] for e in runs],
            "agreement": [[None if math.isnan(v) else round(float(v), 6) for v in row] for row in A],
            "summary": mechanism_summary([e["kind"] for e in runs]),
        })
    result = {
        "sweep_dir": str(sweep_dir),
        "definition": "agreement of two runs: over the union of the supports of their sign patterns of Ψ* W_hh Ψ "
                      "(|M| > basis.support_level on kept coordinates), the fraction of entries with the same sign; "
                      "exact: pattern = sign(Φ) on its cycle coordinates and n_learned = n_theory; compressed: "
                      "1 <= n_learned < n_theory (Φ's persistent modes, s*d for repeat copy); other: the rest; "
                      "no pattern: not exact or compressed, and analysed before patterns were stored",
        "configurations": configurations,
        "summary": mechanism_summary([k for c in configurations for k in c["kinds"]]),
    }
    if write:
        write_json(sweep_dir / f"{MECHANISMS}.json", _finite(result))
    several = [c for c in configurations if len(c["runs"]) > 1]
    if plots and several:
        panels = {f"{c['configuration']}\n{c['summary']['text']}": (
            np.array([[np.nan if v is None else v for v in row] for row in c["agreement"]]), c["seeds"], c["kinds"])
            for c in several}
        plot_mechanism_agreement(panels, sweep_dir / f"{MECHANISMS}.png",
                                 title=f"{sweep_dir.name}: seed × seed agreement of Ψ* W_hh Ψ sign patterns "
                                       f"({result['summary']['text']})")
    return result


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def status_path(sweep_dir, chunk=None, n_chunks=None) -> Path:
    name = STATUS if chunk is None else f"analysis_status.chunk{int(chunk)}of{int(n_chunks)}.json"
    return Path(sweep_dir) / name


def analyze_sweep(sweep_dir, options: AnalyzeOptions, workers: int = 1, chunk=None, n_chunks=None,
                  stale_minutes: float = 10.0, progress_seconds: float = 10.0, write_status: bool = True) -> dict:
    """Analyse every completed run of a multirun folder (or every ``n_chunks``-th from ``chunk``). Failed runs
    (``summary.json`` status failed) and unfinished ones (running, interrupted, missing: see
    :func:`twm.sweep.run_state`) are listed, not analysed; one run's analysis error is recorded and the others
    go on. Returns the status dict, also written to ``<sweep_dir>/analysis_status[.chunk<i>of<n>].json``:
    ``sweep_dir``, ``chunk``, ``n_chunks``, ``finished_at``, ``seconds``, ``options``, ``expected`` (jobs in
    ``multirun.yaml``), ``counts`` (runs, analysed, up_to_date, errors, failed, unfinished), ``analysed`` and
    ``up_to_date`` (job names), ``errors`` ({job: error}), ``failed`` ({job: the training error}),
    ``unfinished`` ({job: state}); for the whole sweep (no chunk) also ``results``, the path of
    ``<sweep_dir>/results.csv`` (:mod:`twm.results`: one row per job, config, summary and analysis), which is written
    with the status file."""
    from twm.sweep import expected_jobs, run_dirs

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise AnalyzeError(f"sweep_dir={sweep_dir} is not a folder: give the multirun folder that holds the numbered "
                           "job folders 0/ 1/ ... (e.g. outputs/sweeps/table1)")
    all_runs = run_dirs(sweep_dir)
    runs = _chunk(all_runs, chunk, n_chunks)
    start = time.perf_counter()
    detail = {p.name: RunFolder(p).state() for p in runs}
    states = {name: state for name, (state, _) in detail.items()}
    failed = {name: reason for name, (state, reason) in detail.items() if state == "failed"}
    damaged = {name: reason for name, (state, reason) in detail.items() if state == "damaged"}
    unfinished = {name: st for name, st in states.items() if st not in ("completed", "failed", "damaged")}
    todo = [p for p in runs if states[p.name] == "completed"]
    where = f" of {sweep_dir}" + (f" (chunk {chunk} of {n_chunks})" if chunk is not None else "")
    log.info("%d job folders%s: %d completed, %d failed, %d unfinished", len(runs), where, len(todo), len(failed),
             len(unfinished))
    for name, err in failed.items():
        log.info("  failed run %s: %s", name, err)
    for name, reason in damaged.items():
        log.warning("  damaged run %s: %s (not analysed)", name, reason)
    if unfinished:
        log.info("  unfinished runs: %s", ", ".join(f"{n} ({s})" for n, s in unfinished.items()))
    results = analyze_runs(todo, options, workers, progress_seconds,
                           context=f"; {len(failed)} failed, {len(unfinished)} unfinished runs skipped")
    by_name = {Path(k).name: v for k, v in results.items()}
    report = {
        "sweep_dir": str(sweep_dir),
        "chunk": chunk, "n_chunks": n_chunks,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - start, 3),
        "options": {k: v for k, v in asdict(options).items()},
        "expected": expected_jobs(sweep_dir) if chunk is None else None,
        "counts": {
            "runs": len(runs),
            "analysed": sum(o == "analysed" for o, _ in by_name.values()),
            "up_to_date": sum(o == "up_to_date" for o, _ in by_name.values()),
            "errors": sum(o == "error" for o, _ in by_name.values()),
            "failed": len(failed),
            "damaged": len(damaged),
            "unfinished": len(unfinished),
        },
        "analysed": sorted((n for n, (o, _) in by_name.items() if o == "analysed"), key=int),
        "up_to_date": sorted((n for n, (o, _) in by_name.items() if o == "up_to_date"), key=int),
        "errors": {n: p["error"] for n, (o, p) in sorted(by_name.items(), key=lambda kv: int(kv[0])) if o == "error"},
        "failed": failed,
        "damaged": damaged,
        "unfinished": unfinished,
    }
    if report["expected"] is not None:
        report["counts"]["missing_folders"] = max(0, report["expected"] - len(all_runs))
    if write_status:
        if chunk is None:
            from twm.results import write_results

            analyses = {name: ("ok", payload) if outcome != "error" else (f"error: {payload['error']}", None)
                        for name, (outcome, payload) in by_name.items()}
            report["results"] = str(write_results(sweep_dir, analyses))
        write_json(status_path(sweep_dir, chunk, n_chunks), report)
    return report


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------
def run_from_config(cfg) -> dict:
    """The CLI's work on a composed ``conf/analyze.yaml`` (raises :class:`AnalyzeError` on a bad request)."""
    run_dir, sweep_dir = cfg.get("run_dir"), cfg.get("sweep_dir")
    if (run_dir is None) == (sweep_dir is None):
        given = "both were given" if run_dir is not None else "neither was given"
        raise AnalyzeError(
            f"give exactly one of run_dir= (one trained run folder, holding .hydra/config.yaml and "
            f"checkpoints/last.ckpt) or sweep_dir= (a multirun folder with numbered job folders 0/ 1/ ...); {given}. "
            "Example: python -m twm.analyze sweep_dir=outputs/sweeps/table1 workers=2"
        )
    options = AnalyzeOptions.from_config(cfg)
    threads = number(cfg, "num_threads", int, None)
    if threads:
        torch.set_num_threads(threads)
    if run_dir is not None:
        run_dir = Path(run_dir)
        if not (run_dir / CHECKPOINTS / LAST).exists() or not (
                run_dir / ".hydra" / "config.yaml").exists():
            raise AnalyzeError(f"run_dir={run_dir} is not a trained run folder: it needs .hydra/config.yaml and "
                               f"checkpoints/last.ckpt (for a multirun folder use sweep_dir=)")
        if cfg.get("chunk") is not None or cfg.get("n_chunks") is not None:
            raise AnalyzeError("chunk/n_chunks split a sweep_dir= into parts; they make no sense with run_dir=")
        state = (RunFolder(run_dir).read_summary() or {}).get("status")
        if state != "completed":
            log.warning("%s has no completed summary (status %s): analysing its last checkpoint anyway", run_dir, state)
        result = analyze_run(run_dir, options)
        sp = result["spectral"]
        log.info("%s %s: spectral error %s (%s vs %s eigenvalues > %g), first below %g at output step %s",
                 run_dir, "(up to date, not recomputed)" if result.skipped else "analysed",
                 f"{sp['error']:.4g} rad" if sp.get("error") is not None else "undefined", sp.get("n_learned"),
                 sp.get("n_theory"), options.threshold, options.length_threshold,
                 result["length_generalisation"]["first_below"])
        return {"run_dir": str(run_dir), "analysis": str(run_dir / ANALYSIS)}
    report = analyze_sweep(sweep_dir, options, workers=number(cfg, "workers", int, 1),
                           chunk=number(cfg, "chunk", int, None), n_chunks=number(cfg, "n_chunks", int, None),
                           stale_minutes=number(cfg, "stale_minutes", float, 10.0),
                           progress_seconds=number(cfg, "progress_seconds", float, 10.0))
    c = report["counts"]
    print(f"{report['sweep_dir']}: {c['runs']} job folders: {c['analysed']} analysed, {c['up_to_date']} up to date, "
          f"{c['errors']} analysis errors, {c['failed']} failed runs, {c['damaged']} damaged, {c['unfinished']} "
          f"unfinished -> {status_path(sweep_dir, report['chunk'], report['n_chunks'])}"
          + (f", {report['results']}" if report.get("results") else ""))
    for name, reason in report["damaged"].items():
        print(f"  damaged: job {name}: {reason}")
    for name, error in report["errors"].items():
        print(f"  analysis error: job {name}: {error}")
    if report["chunk"] is None:
        decay = sweep_gradient_decay(sweep_dir, options.rate_tol, plots=options.plots)
        d = decay["summary"]
        print(f"{report['sweep_dir']}: gradient decay of {d['n']} final networks: |r| < {d['rate_tol']:g} in "
              f"{d['above_1']['n_flat']}/{d['above_1']['n']} with max|λ(W_hh)| > 1 and {d['at_most_1']['n_flat']}/"
              f"{d['at_most_1']['n']} with max|λ| <= 1 -> {Path(sweep_dir) / GRADIENT_DECAY}.json")
        mech = sweep_mechanisms(sweep_dir, plots=options.plots)
        print(f"{report['sweep_dir']}: mechanisms of {mech['summary']['n']} runs in {len(mech['configurations'])} "
              f"configurations: {mech['summary']['text']} -> {Path(sweep_dir) / MECHANISMS}.json")
    return report


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="analyze")
def main(cfg: DictConfig) -> None:
    try:
        result = run_from_config(cfg)
    except AnalyzeError as err:
        sys.stderr.write(f"twm.analyze: {err}\nNothing was analysed. See conf/analyze.yaml for the options.\n")
        sys.exit(2)
    counts = result.get("counts") or {}
    if counts.get("damaged") or counts.get("errors"):
        sys.exit(1)


if __name__ == "__main__":
    main()
