"""The traveling-wave working memory (TWM), docs/science.md §2.

``phi(F, s)`` is the substrate dynamics of eq. 6 in the standard basis: each block of ``d`` coordinates is one
column of the wave substrate, the shift moves every column one step toward the oldest end and the last block row
is the linear boundary condition ``F^T``. ``embed`` writes the same system in any basis Ξ as RNN weights, and
``sbc_step`` is the self-attention boundary condition (eq. 8, read as in docs/science.md §2.3).
"""

from __future__ import annotations

from math import lcm

import numpy as np
import torch

from twm.tasks import binary_structure, validate_operator


def phi(F, s: int) -> np.ndarray:
    """Φ of eq. 6, shape ``(s*d, s*d)``: ``Φ[μ, μ+d] = 1`` for ``μ < (s-1)d``, last block row ``F^T``."""
    F = np.asarray(F, dtype=np.float64)
    _, d = validate_operator(F, s)
    n = s * d
    out = np.zeros((n, n))
    out[np.arange(n - d), np.arange(d, n)] = 1.0
    out[n - d :, :] = F.T
    return out


def _successor(F, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Φ of a binary F as a functional graph: row μ's single nonzero is at column ``succ[μ]`` with ``sign[μ]``."""
    _, d = validate_operator(F, s)
    structure = binary_structure(F)
    if structure is None:
        raise ValueError("the cycle structure needs a binary F: exactly one ±1 per column")
    rows, signs = structure
    n = s * d
    succ = np.concatenate([np.arange(d, n), rows])
    sign = np.concatenate([np.ones(n - d, dtype=np.int64), signs])
    return succ, sign


def _cycles(F, s: int) -> list[tuple[list[int], int]]:
    """Signed cycles of Φ's functional graph: ``[(coordinates, sign product), ...]``."""
    succ, sign = _successor(F, s)
    n = len(succ)
    state = np.zeros(n, dtype=np.int8)  # 0 unseen, 1 on the current path, 2 done
    cycles = []
    for start in range(n):
        path = []
        node = start
        while state[node] == 0:
            state[node] = 1
            path.append(node)
            node = succ[node]
        if state[node] == 1:
            cycle = path[path.index(node) :]
            cycles.append((sorted(cycle), int(np.prod(sign[cycle]))))
        for p in path:
            state[p] = 2
    return cycles


def signed_cycles(F, s: int) -> list[tuple[int, int]]:
    """``[(length, sign), ...]`` of Φ's cycles, sorted by length (docs/science.md §2.1's table)."""
    return sorted((len(c), sg) for c, sg in _cycles(F, s))


def predicted_eigenvalues(F, s: int) -> np.ndarray:
    """All ``s*d`` eigenvalues of Φ from its signed cycles, no eigensolver (docs/science.md §2.1).

    A cycle of length L and sign product σ gives the L roots of ``z^L = σ``; every other eigenvalue is 0.
    Sorted by angle in [0, 2π), then by modulus. Shape ``(s*d,)``, complex.
    """
    _, d = validate_operator(F, s)
    values = []
    for length, sign in signed_cycles(F, s):
        offset = 0.0 if sign > 0 else 0.5
        k = np.arange(length)
        values.extend(np.exp(2j * np.pi * (k + offset) / length))
    values.extend([0.0] * (s * d - len(values)))
    values = np.asarray(values, dtype=np.complex128)
    angle = np.mod(np.angle(values), 2 * np.pi)
    angle[np.abs(values) == 0] = 0.0
    angle[np.isclose(angle, 2 * np.pi)] = 0.0
    return values[np.lexsort((np.abs(values), np.round(angle, 12)))]


def cycle_coordinates(F, s: int) -> np.ndarray:
    """Sorted flat indices of the substrate coordinates on Φ's cycles: the persistent memory (docs/science.md §5,
    step 2)."""
    return np.asarray(sorted(i for c, _ in _cycles(F, s) for i in c), dtype=np.int64)


def rollout(phi_matrix, X0, steps: int) -> np.ndarray:
    """Iterate ``X_{t+1} = Φ X_t``. ``X0``: ``(n,)`` or ``(n, B)``. Returns ``(steps + 1, n[, B])`` incl. ``X0``."""
    phi_matrix = np.asarray(phi_matrix, dtype=np.float64)
    X = np.asarray(X0, dtype=np.float64)
    states = [X]
    for _ in range(steps):
        X = phi_matrix @ X
        states.append(X)
    return np.stack(states)


def _infer_d(phi_matrix: np.ndarray) -> int:
    n = phi_matrix.shape[0]
    for k in range(1, n):
        shift = np.zeros((n - k, n))
        shift[np.arange(n - k), np.arange(k, n)] = 1.0
        if np.array_equal(phi_matrix[: n - k], shift):
            return k
    return n


def embed(phi_matrix, basis, d: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The TWM in basis Ξ as RNN weights (docs/science.md §2.1): ``W_hh = ΞΦΞ⁺`` (n×n), ``W_uh = Ξ[:, last block]``
    (n×d),
    ``W_r = (Ξ⁺)[last block]`` (d×n). ``basis`` Ξ: ``(n, s*d)``, full column rank; ``d`` is read from Φ's shift
    band when not given."""
    phi_matrix = np.asarray(phi_matrix, dtype=np.float64)
    Xi = np.asarray(basis, dtype=np.float64)
    if Xi.ndim != 2 or Xi.shape[1] != phi_matrix.shape[0]:
        raise ValueError(f"basis must have shape (n, {phi_matrix.shape[0]}), got {Xi.shape}")
    if np.linalg.matrix_rank(Xi) < Xi.shape[1]:
        raise ValueError("basis must have full column rank")
    d = _infer_d(phi_matrix) if d is None else d
    Xi_pinv = np.linalg.pinv(Xi)
    return Xi @ phi_matrix @ Xi_pinv, Xi[:, -d:].copy(), Xi_pinv[-d:].copy()


def fibonacci_operator(s: int, d: int = 1) -> np.ndarray:
    """Generalized Fibonacci (eqs. 4-5): ``F = [I_d; ...; I_d]`` (s blocks), shape ``(s*d, d)``."""
    if s < 1 or d < 1:
        raise ValueError(f"s and d must be positive, got s={s}, d={d}")
    return np.tile(np.eye(d), (s, 1))


def sbc_step(H: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor) -> torch.Tensor:
    """One step of the self-attention boundary condition (eq. 8, docs/science.md §2.3).

    ``H``: ``(..., s, d)``, row 0 the oldest column h_1, row -1 the newest h_s. Keys ``W_K h_i``, query ``W_Q h_s``,
    values ``W_V h_i``, unscaled softmax over the s columns. Returns the next H: rows shifted toward the oldest end,
    the new boundary column last. ``W_Q, W_K``: ``(k, d)``; ``W_V``: ``(d, d)``.
    """
    keys = H @ W_K.transpose(-1, -2)
    query = H[..., -1, :] @ W_Q.transpose(-1, -2)
    alpha = torch.softmax((keys @ query.unsqueeze(-1)).squeeze(-1), dim=-1)
    boundary = (alpha.unsqueeze(-2) @ H).squeeze(-2) @ W_V.transpose(-1, -2)
    return torch.cat([H[..., 1:, :], boundary.unsqueeze(-2)], dim=-2)


def sbc_rollout(H0: torch.Tensor, W_Q, W_K, W_V, steps: int) -> torch.Tensor:
    """Iterate :func:`sbc_step`. Returns ``(steps + 1, ..., s, d)`` including ``H0``."""
    states = [H0]
    for _ in range(steps):
        states.append(sbc_step(states[-1], W_Q, W_K, W_V))
    return torch.stack(states)


def sequence_period(F, s: int, max_steps: int = 100_000) -> int:
    """Least common period of all sequences of a binary ``F`` (the order of Φ on the cycle coordinates)."""
    period = 1
    for length, sign in signed_cycles(F, s):
        period = lcm(period, length if sign > 0 else 2 * length)
    if period > max_steps:
        raise ValueError(f"period {period} exceeds max_steps={max_steps}")
    return period
