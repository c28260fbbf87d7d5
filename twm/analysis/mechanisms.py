"""Cross-seed comparison of learned mechanisms (docs/science.md §5, the paper's Fig. 4): do different seeds of one
configuration learn the same Φ?

A run's mechanism is the **sign pattern** of ``M = Ψ* W_hh Ψ`` on the kept coordinates: ``sign(M)`` where
``|M| > level`` (the level of :func:`twm.analysis.basis.support_summary`) with both coordinates kept, else 0; and its
number of persistent modes (``n_learned``: eigenvalues with ``|λ| > threshold``, docs/science.md §4) against Φ's
(``n_theory``: Φ's cycle coordinates, ``s*d`` for repeat copy). Pure functions on ``(s*d, s*d)`` int arrays in
substrate order (flat index ``i*d + j``: variable ``i + 1``, dim ``j``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from twm.analysis.spectra import as_numpy
from twm.theory import cycle_coordinates, phi

KINDS = ("exact", "compressed", "other", "no pattern")


def sign_pattern(M, kept, level: float = 0.5) -> np.ndarray:
    """``(n, n)`` int8 in {-1, 0, +1}: ``sign(M)`` where ``|M| > level`` and both coordinates are ``kept``, else 0.

    ``M``: ``(n, n)`` (``Ψ* W_hh Ψ``); ``kept``: ``(n,)`` bool or an index array."""
    M = as_numpy(M)
    n = M.shape[0]
    mask = np.zeros(n, dtype=bool)
    mask[np.asarray(kept)] = True
    on = (np.abs(M) > level) & mask[:, None] & mask[None, :]
    return np.where(on, np.sign(M), 0).astype(np.int8)


def phi_pattern(F, s: int) -> np.ndarray:
    """Φ's pattern ``(s*d, s*d)``: ``sign(Φ)`` (eq. 6) on its cycle coordinates (the persistent memory that
    Algorithm 1 keeps), 0 elsewhere — what :func:`sign_pattern` of a network that learned Φ exactly shows."""
    P = phi(F, s)
    return sign_pattern(P, cycle_coordinates(F, s), level=0.5)


def pattern_entries(pattern) -> list[list[int]]:
    """The nonzero entries of a pattern as ``[[row, col, sign], ...]`` (row-major): its small stored form."""
    P = np.asarray(pattern)
    rows, cols = np.nonzero(P)
    return [[int(r), int(c), int(P[r, c])] for r, c in zip(rows, cols)]


def pattern_from_entries(entries, n: int) -> np.ndarray:
    """Inverse of :func:`pattern_entries`: the ``(n, n)`` int8 pattern."""
    P = np.zeros((n, n), dtype=np.int8)
    for r, c, sign in entries:
        P[r, c] = sign
    return P


def pattern_agreement(a, b) -> float:
    """Agreement of two patterns ``(n, n)``: over the union of their supports ``U = {a ≠ 0} ∪ {b ≠ 0}``, the
    fraction of entries where both have the same value (same sign; an entry in only one support disagrees).
    1.0 when both are empty."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"patterns of different shapes: {a.shape} and {b.shape}")
    union = (a != 0) | (b != 0)
    if not union.any():
        return 1.0
    return float(np.sum(union & (a == b)) / np.sum(union))


def mechanism_agreement(patterns) -> np.ndarray:
    """Seed × seed agreement ``(k, k)`` of ``k`` patterns (:func:`pattern_agreement`); ``NaN`` in the row and
    column of a missing pattern (``None``: an analysis that stored none)."""
    k = len(patterns)
    out = np.full((k, k), np.nan)
    for i in range(k):
        for j in range(i, k):
            if patterns[i] is not None and patterns[j] is not None:
                out[i, j] = out[j, i] = pattern_agreement(patterns[i], patterns[j])
    return out


def mechanism_kind(pattern, n_learned, F, s: int) -> str:
    """What one run learned (one of :data:`KINDS`).

    ``"exact"``: the pattern equals :func:`phi_pattern` (Φ's support and signs on its cycle coordinates, nothing
    else above the level) and ``n_learned`` equals Φ's persistent-mode count; ``"compressed"``: some but fewer
    persistent modes than Φ (``1 <= n_learned <`` the number of cycle coordinates, ``s*d`` for repeat copy: the
    paper's "bottleneck superposition"), whatever the pattern; ``"no pattern"``: neither, and no stored pattern;
    ``"other"``: the rest (more modes than Φ, a different pattern, or none persistent: a network that holds no
    memory has not compressed Φ). ``pattern``: ``(s*d, s*d)`` or ``None``; ``n_learned``: int or ``None``
    (undefined)."""
    n_theory = len(cycle_coordinates(F, s))
    if pattern is not None and n_learned == n_theory and np.array_equal(np.asarray(pattern), phi_pattern(F, s)):
        return "exact"
    if n_learned is not None and 1 <= n_learned < n_theory:
        return "compressed"
    return "no pattern" if pattern is None else "other"


def mechanism_summary(kinds) -> dict:
    """Per-configuration summary of :func:`mechanism_kind` results: ``n`` and the count of each kind (keys
    ``exact``, ``compressed``, ``other``, ``no_pattern``), and ``text``: ``"k/n exact, m compressed"`` (plus
    ``", o other"`` and ``", p no pattern"`` when nonzero)."""
    counts = Counter(kinds)
    unknown = set(counts) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown mechanism kinds {sorted(unknown)}; expected {KINDS}")
    n = sum(counts.values())
    out = {"n": n, **{k.replace(" ", "_"): counts.get(k, 0) for k in KINDS}}
    text = f"{out['exact']}/{n} exact, {out['compressed']} compressed"
    for key, name in (("other", "other"), ("no_pattern", "no pattern")):
        if out[key]:
            text += f", {out[key]} {name}"
    out["text"] = text
    return out
