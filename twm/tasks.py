"""Binary linear history-dependent dynamical systems (HDS), docs/science.md §1.

A task is an operator ``F`` of shape ``(s*d, d)``: ``x_{t+1} = (X_t^T F)^T`` where the substrate
``X_t = [x_{t-s+1}; ...; x_t]`` stacks the last ``s`` states, block 0 = oldest (lag ``s``), flat index
``r = i*d + j``. For a *binary* task every column of ``F`` holds exactly one ``±1``: output dim ``out`` reads
dim ``r mod d`` at lag ``s - r div d``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

TaskId = tuple[int, int, int]


# --------------------------------------------------------------------------------------------------------------
# Task-id encoding (docs/science.md §1.1)
# --------------------------------------------------------------------------------------------------------------
def _check_sd(s: int, d: int) -> None:
    if not (isinstance(s, (int, np.integer)) and isinstance(d, (int, np.integer))) or s < 1 or d < 1:
        raise ValueError(f"s and d must be positive integers, got s={s!r}, d={d!r}")


def operator_from_id(task_id: TaskId, s: int, d: int) -> np.ndarray:
    """Decode the authors' task id into ``F`` of shape ``(s*d, d)`` with entries in {-1, 0, 1} (docs/science.md §1.1).

    Raises ``ValueError`` naming the rule broken by an invalid id.
    """
    _check_sd(s, d)
    try:
        id1, id2, id3 = (int(v) for v in task_id)
    except (TypeError, ValueError):
        raise ValueError(f"task_id must be three integers (id1, id2, id3), got {task_id!r}") from None
    if min(id1, id2, id3) < 0:
        raise ValueError(f"task_id entries must be non-negative, got {task_id!r}")
    if id1.bit_length() > s * d:
        raise ValueError(
            f"id1 rule: every set bit of id1 must be a flat row index < s*d = {s * d}; "
            f"id1 = {id1} has bit {id1.bit_length() - 1} set"
        )
    choice = [b for b in range(s * d) if (id1 >> b) & 1]
    if len(choice) != d:
        raise ValueError(f"id1 rule: the Hamming weight of id1 must be exactly d = {d}; id1 = {id1} has {len(choice)}")
    digits = []
    rest = id2
    while rest:
        rest, g = divmod(rest, d) if d > 1 else (0, rest)
        digits.append(g)
    for i, g in enumerate(digits):
        if g == 0:
            continue
        if g >= d - i:
            raise ValueError(
                f"id2 rule: base-d digit {i} of id2 = {id2} is {g}, but must be < d - i = {d - i} "
                "(a swap target beyond the last output)"
            )
        choice[i], choice[i + g] = choice[i + g], choice[i]
    if id3 >= 1 << d:
        raise ValueError(f"id3 rule: id3 is a sign mask over d = {d} outputs and must be < 2**d = {1 << d}; got {id3}")
    F = np.zeros((s * d, d), dtype=np.int64)
    for out, row in enumerate(choice):
        F[row, out] = -1 if (id3 >> out) & 1 else 1
    return F


def binary_structure(F: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows, signs)`` of a one-±1-per-column operator, or ``None`` if ``F`` is not of that form."""
    F = np.asarray(F)
    if F.ndim != 2:
        return None
    nz = F != 0
    if not np.all(nz.sum(axis=0) == 1):
        return None
    rows = np.argmax(nz, axis=0)
    signs = F[rows, np.arange(F.shape[1])]
    if not np.all(np.abs(signs) == 1):
        return None
    return rows, signs.astype(np.int64)


def validate_operator(F: np.ndarray, s: int) -> tuple[int, int]:
    """Check that ``F`` has shape ``(s*d, d)``; return ``(s, d)``."""
    F = np.asarray(F)
    if F.ndim != 2 or F.shape[1] < 1 or F.shape[0] != s * F.shape[1]:
        raise ValueError(f"F must have shape (s*d, d) with s = {s}; got {F.shape}")
    return s, F.shape[1]


def task_id_from_operator(F: np.ndarray, s: int) -> TaskId:
    """Inverse of :func:`operator_from_id` for a binary operator whose d outputs read d distinct rows."""
    _, d = validate_operator(F, s)
    structure = binary_structure(F)
    if structure is None:
        raise ValueError("F is not binary: every column must hold exactly one entry ±1 and zeros elsewhere")
    rows, signs = structure
    if len(set(rows.tolist())) != d:
        raise ValueError("F is not encodable as a task id: two outputs read the same substrate row")
    current = sorted(rows.tolist())
    id2 = 0
    for i in range(d):
        j = current.index(int(rows[i]), i)
        current[i], current[j] = current[j], current[i]
        id2 += (j - i) * d**i
    id1 = sum(1 << int(r) for r in rows)
    id3 = sum(1 << out for out in range(d) if signs[out] < 0)
    return (id1, id2, id3)


def describe(F: np.ndarray, s: int) -> list[str]:
    """Readable rules, one per output dim, e.g. ``x[t][0] = -x[t-4][4]``."""
    _, d = validate_operator(F, s)
    F = np.asarray(F)
    lines = []
    for out in range(d):
        terms = []
        for r in np.flatnonzero(F[:, out]):
            coef = F[r, out]
            lag, src = s - r // d, r % d
            ref = f"x[t-{lag}][{src}]"
            if coef == 1:
                terms.append(f"+{ref}")
            elif coef == -1:
                terms.append(f"-{ref}")
            else:
                terms.append(f"{'+' if coef > 0 else '-'}{abs(coef):g}*{ref}")
        rhs = " ".join(terms).lstrip("+") if terms else "0"
        lines.append(f"x[t][{out}] = {rhs}")
    return lines


# --------------------------------------------------------------------------------------------------------------
# Registry of named tasks (docs/science.md §1.2)
# --------------------------------------------------------------------------------------------------------------
DIAGONAL_ID1 = sum(1 << (9 * k) for k in range(8))  # 9241421688590303745: block k, dim k


@dataclass(frozen=True)
class Task:
    """A named binary HDS: its operator, history length and (if encodable) the authors' id."""

    name: str
    s: int
    d: int
    F: np.ndarray = field(repr=False, compare=False)
    task_id: TaskId | None = None
    labels: dict[str, str] = field(default_factory=dict, compare=False)
    about: str = ""

    def describe(self) -> list[str]:
        return describe(self.F, self.s)


# name -> (task_id, {label map: label}, one-line description); all at s = d = 8.
TABLE1_TASKS: dict[str, tuple[TaskId, dict[str, str], str]] = {
    "repeat_copy": ((255, 0, 0), {"table": "T1", "demo": "T1"}, "repeat the last 8 inputs"),
    "staggered_copy": (
        (DIAGONAL_ID1, 0, 0),
        {"table": "T2", "demo": "T3"},
        "dim j repeats itself with delay 8-j (period 840)",
    ),
    "signed_shuffle_48": (
        (DIAGONAL_ID1, 262676, 189),
        {"table": "T3", "demo": "T2"},
        "signed permutation of delayed dims (period 48)",
    ),
    "signed_shuffle_70": (
        (DIAGONAL_ID1, 38637, 145),
        {"table": "T4", "demo": "T4"},
        "signed permutation of delayed dims (period 70)",
    ),
}
TASK_NAMES = ("repeat_copy", "staggered_copy", "signed_shuffle_48", "signed_shuffle_70")


def get_task(name: str, s: int = 8, d: int = 8) -> Task:
    """A named task. ``repeat_copy`` works for any (s, d); the other Table-1 tasks exist at s = d = 8 only."""
    if name not in TABLE1_TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)} (or use custom_task)")
    task_id, labels, about = TABLE1_TASKS[name]
    if name == "repeat_copy":
        task_id = ((1 << d) - 1, 0, 0)
        about = f"repeat the last {s} inputs"
    elif (s, d) != (8, 8):
        raise ValueError(f"task {name!r} is defined at s = d = 8 only (got s={s}, d={d}); use custom_task for others")
    return Task(name, s, d, operator_from_id(task_id, s, d), task_id, dict(labels), about)


def custom_task(s: int, d: int | None = None, task_id: TaskId | None = None, F=None, name: str = "custom") -> Task:
    """A task from an authors' id (needs ``d``) or from an explicit operator ``F`` of shape ``(s*d, d)``."""
    if (task_id is None) == (F is None):
        raise ValueError("custom_task needs exactly one of task_id or F")
    if task_id is not None:
        if d is None:
            raise ValueError("custom_task(task_id=...) needs d")
        F = operator_from_id(task_id, s, d)
        task_id = tuple(int(v) for v in task_id)
    else:
        F = np.asarray(F)
        _, d_f = validate_operator(F, s)
        if d is not None and d != d_f:
            raise ValueError(f"d = {d} disagrees with F's shape {F.shape}")
        d = d_f
        try:
            task_id = task_id_from_operator(F, s)
        except ValueError:
            task_id = None
    return Task(name, s, d, F, task_id, {}, "custom")


def task_by_id(task_id: TaskId, s: int, d: int) -> Task:
    """The registered task with this id at (s, d), else a custom one."""
    task_id = tuple(int(v) for v in task_id)
    for name in TASK_NAMES:
        try:
            task = get_task(name, s, d)
        except ValueError:
            continue
        if task.task_id == task_id:
            return task
    return custom_task(s, d, task_id=task_id, name="linear")


# --------------------------------------------------------------------------------------------------------------
# Sampling (docs/science.md §1.3)
# --------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def unrolled_sources(
    rows: tuple[int, ...], signs: tuple[int, ...], s: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """For a binary F: every future state entry is ±(one initial input). Returns ``(index, sign)`` of shape
    ``(horizon, d)`` into the flattened initial substrate ``X_s`` (s*d entries)."""
    d = len(rows)
    src = np.arange(s * d)
    sgn = np.ones(s * d, dtype=np.int64)
    rows_a, signs_a = np.asarray(rows), np.asarray(signs)
    index = np.empty((horizon, d), dtype=np.int64)
    sign = np.empty((horizon, d), dtype=np.int64)
    for t in range(horizon):
        new_src, new_sgn = src[rows_a], sgn[rows_a] * signs_a
        index[t], sign[t] = new_src, new_sgn
        src = np.concatenate([src[d:], new_src])
        sgn = np.concatenate([sgn[d:], new_sgn])
    return index, sign


def sample(F, s: int, horizon: int, batch_size: int, generator: torch.Generator | None = None, device=None):
    """One batch of the HDS ``F``: ``(u, y)``, float32, time-major ``(s + horizon, batch_size, d)``
    (docs/science.md §1.3).

    ``u`` holds uniform ±1 inputs for the first ``s`` steps and 0 after; ``y`` is 0 for the first ``s`` steps and
    then the recursion of ``F`` on its own outputs. The random draw is ``s*batch_size*d`` bits from ``generator``
    whatever the horizon, so a batch at a longer horizon extends the shorter one. Binary operators are unrolled into
    one gather (cached per ``(F, s, horizon)``); other linear ``F`` take one matmul per step.
    """
    F = np.asarray(F)
    _, d = validate_operator(F, s)
    if horizon < 0 or batch_size < 1:
        raise ValueError(f"need horizon >= 0 and batch_size >= 1, got {horizon}, {batch_size}")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    bits = torch.randint(0, 2, (s, batch_size, d), generator=generator, device=gen_device)
    x0 = (bits * 2 - 1).to(device=device, dtype=torch.float32)
    structure = binary_structure(F)
    if structure is not None:
        rows, signs = structure
        index, sign = unrolled_sources(tuple(rows.tolist()), tuple(signs.tolist()), s, horizon)
        flat = x0.permute(1, 0, 2).reshape(batch_size, s * d)
        idx = torch.as_tensor(index.reshape(-1), device=x0.device)
        sgn = torch.as_tensor(sign, dtype=torch.float32, device=x0.device)
        future = (flat[:, idx].reshape(batch_size, horizon, d) * sgn).permute(1, 0, 2)
    else:
        Ft = torch.as_tensor(F, dtype=torch.float32, device=x0.device)
        states = list(x0)
        for _ in range(horizon):
            states.append(torch.cat(states[-s:], dim=1) @ Ft)
        future = torch.stack(states[s:]) if horizon else x0.new_zeros((0, batch_size, d))
    zeros_in = x0.new_zeros((horizon, batch_size, d))
    u = torch.cat([x0, zeros_in])
    y = torch.cat([torch.zeros_like(x0), future])
    return u, y


def make_task(name: str = "repeat_copy", s: int = 8, d: int = 8, task_id=None) -> Task:
    """The Hydra entry for the ``task`` config group: a registered task by name, or (``name: linear``) any binary
    linear HDS from its authors' id."""
    if task_id is not None:
        task = custom_task(s, d, task_id=tuple(task_id), name=name)
        registered = task_by_id(task.task_id, s, d)
        return registered if name in ("linear", registered.name) else task
    if name == "linear":
        raise ValueError("task 'linear' needs task.task_id = [id1, id2, id3]")
    return get_task(name, s, d)
