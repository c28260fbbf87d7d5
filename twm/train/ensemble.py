"""Batched ensembles: K independent training runs in one process, as one batched RNN (SPEC §3).

Every member is trained exactly as a single run would be (:func:`train_single_reference` is that single run, written
as a bare PyTorch loop): same initial weights, same data stream, same loss and gradient, same clipping, same Adam,
same curriculum decisions, same run folder. Only the arithmetic is shared: the K recurrent weight matrices are
stacked and every time step is one batched matmul over all members.

Layout (K members, batch B, hidden n, inputs/outputs d, s input steps, T = s + H steps; "position" p = 1..T is
the hidden state after input step p-1, position 0 is h(0) = 0):

- ``H``   ``(K, T+1, B, n)``: hidden states h_p (the forward writes them, the weight gradients read them);
- ``dZ``  ``(K, T+2, B, n+d)``: columns ``:n`` at position p hold dL/dz_p (the backward writes them), columns
  ``n:`` at position p+1 hold dL/dy_p (the loss writes them);
- forward, one batched matmul per time step: ``[z_p | y_{p-1}] = h_{p-1} @ [W_hh; W_r]^T + [c_p | b_r]`` gives the
  next pre-activation and the previous output at once (``c_p = W_uh u_p + b`` for p <= s, ``b`` alone after:
  inputs are zero then, so W_uh enters through one matmul over the s input steps), then tanh. On CPU tanh is
  ``2*sigmoid(2z) - 1`` (within ~2e-7, several times cheaper than torch.tanh) with the factor 2 folded into
  exactly doubled weights; on CUDA torch.tanh;
- backward, one batched matmul per time step: ``dh_p = [dz_{p+1} | dy_p] @ [W_hh; W_r]``, then
  ``dz_p = dh_p * (1 - h_p^2)``;
- weight gradients, one large matmul over all time steps: ``[dW_hh; dW_r] = sum_p [dz_{p+1} | dy_p]^T h_p``, and
  ``dW_uh = sum_{p<=s} dz_p^T u_p``;
- all buffers are allocated once, for the largest horizon any member's curriculum can reach; no autograd.

Members are kept sorted by their current horizon (longest first), so that at time position p only the prefix of
members whose sequence is that long takes part: a member at H = 10 never pays for a neighbour at H = 100. Members
with equal horizons form a group for the per-run work (readout, loss, weight gradients). A member that reaches its
``max_steps`` leaves the stack.

Parameters, Adam moments and gradients of all members are flat ``(K, P)`` tensors, in ``ElmanRNN``'s
``named_parameters()`` order, so clipping and Adam are a handful of elementwise operations on all members at once,
with per-member learning rate, weight decay (Adam's coupled L2, added after clipping like ``torch.optim.Adam``),
clipping threshold and step count.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from twm.model import ElmanRNN
from twm.tasks import _binary_structure, _unrolled_sources, sample, validate_operator
from twm.train.artifacts import (
    CHECKPOINTS,
    LAST,
    SUMMARY_KEYS,
    read_summary,
    run_seeds,
    start_csv_logger,
    write_json,
)
from twm.train.metrics import output_mse, per_step_accuracy, sign_accuracy

log = logging.getLogger("twm.ensemble")

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam defaults


# --------------------------------------------------------------------------------------------------------------
# The single run, as a bare PyTorch loop (the semantics every ensemble member reproduces)
# --------------------------------------------------------------------------------------------------------------
def train_single_reference(
    F,
    s: int,
    hidden_size: int,
    seed: int,
    l2: float,
    curriculum,
    *,
    lr: float = 1e-3,
    bias: bool = False,
    init: str = "uniform",
    batch_size: int = 64,
    max_steps: int = 20000,
    clip: float = 1.0,
    callback: Callable | None = None,
    device=None,
) -> tuple[ElmanRNN, dict]:
    """Train one Elman RNN on the HDS ``F`` step for step as the Lightning path does. ``curriculum`` is driven in
    place. ``callback(steps_done, model)`` runs after every step. Returns ``(model, history)`` with per-step lists
    ``history["loss"]``, ``["accuracy"]`` and ``["horizon"]`` (the horizon used at that step)."""
    _, d = validate_operator(F, s)
    seeds = run_seeds(seed)
    model = ElmanRNN(d, hidden_size, d, bias=bias, init=init, generator=torch.Generator().manual_seed(seeds.init))
    model.to(device)
    data_gen = torch.Generator().manual_seed(seeds.data)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=l2)
    history = {"loss": [], "accuracy": [], "horizon": []}
    for step in range(max_steps):
        horizon = curriculum.horizon
        u, y = sample(F, s, horizon, batch_size, data_gen, device=device)
        pred, _ = model(u)
        loss = output_mse(pred, y, s)
        acc = sign_accuracy(pred.detach(), y, s)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        loss_f, acc_f = float(loss.detach()), float(acc)
        curriculum.update(acc_f, loss_f)
        history["loss"].append(loss_f)
        history["accuracy"].append(acc_f)
        history["horizon"].append(horizon)
        if callback is not None:
            callback(step + 1, model)
    return model, history


# --------------------------------------------------------------------------------------------------------------
# Members
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Member:
    """One run of an ensemble. Members of one ensemble share ``(s, d, hidden_size, bias, batch_size)``; everything
    else may differ. ``curriculum`` is driven in place. ``task_name``/``task_id`` only label the run folder."""

    F: np.ndarray
    s: int
    hidden_size: int
    seed: int
    l2: float
    curriculum: object
    lr: float = 1e-3
    bias: bool = False
    init: str = "uniform"
    batch_size: int = 64
    max_steps: int = 20000
    clip: float = 1.0
    run_dir: str | Path | None = None
    task_name: str = "custom"
    task_id: tuple | None = None
    test_horizon: int = 200
    test_batches: int = 10
    test_batch_size: int = 64

    @property
    def d(self) -> int:
        return int(np.asarray(self.F).shape[1])


def _param_layout(n: int, d: int, bias: bool) -> list[tuple[str, tuple[int, ...]]]:
    """``ElmanRNN``'s parameters in ``named_parameters()`` order."""
    layout = [("rnn.weight_ih_l0", (n, d)), ("rnn.weight_hh_l0", (n, n))]
    if bias:
        layout += [("rnn.bias_ih_l0", (n,)), ("rnn.bias_hh_l0", (n,))]
    layout.append(("readout.weight", (d, n)))
    if bias:
        layout.append(("readout.bias", (d,)))
    return layout


# --------------------------------------------------------------------------------------------------------------
# The batched trainer
# --------------------------------------------------------------------------------------------------------------
class EnsembleTrainer:
    """K members trained as one batched RNN with hand-written BPTT (no autograd). Call :meth:`step` until
    :attr:`active` is empty; read members back with :meth:`model`, :meth:`state_dict`, :meth:`member_state`.

    ``fast_tanh`` (default: on for CPU) computes tanh as ``2*sigmoid(2z) - 1`` (within ~2e-7 of torch.tanh and
    several times cheaper on CPU); on CUDA ``torch.tanh`` is used.
    """

    def __init__(self, members: Sequence[Member], device="cpu", fast_tanh: bool | None = None):
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        s, d, n, bias, B = int(first.s), first.d, int(first.hidden_size), bool(first.bias), int(first.batch_size)
        for i, m in enumerate(members):
            validate_operator(m.F, m.s)
            key = (int(m.s), m.d, int(m.hidden_size), bool(m.bias), int(m.batch_size))
            if key != (s, d, n, bias, B):
                raise ValueError(
                    f"member {i} is incompatible: (s, d, hidden_size, bias, batch_size) = {key}, "
                    f"but member 0 has {(s, d, n, bias, B)}; train it in another ensemble"
                )
            if int(m.max_steps) < 0:
                raise ValueError(f"member {i}: max_steps must be >= 0, got {m.max_steps}")
        self.members = members
        self.s, self.d, self.n, self.bias, self.B = s, d, n, bias, B
        self.device = torch.device(device)
        self.fast_tanh = (self.device.type == "cpu") if fast_tanh is None else bool(fast_tanh)
        self.scale = 2.0 if self.fast_tanh else 1.0
        K = len(members)

        # parameters: flat (K, P) in named_parameters order, initialised as ElmanRNN(generator=seeded) would
        self.layout = _param_layout(n, d, bias)
        self.offsets: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        offset = 0
        for name, shape in self.layout:
            size = math.prod(shape)
            self.offsets[name] = (offset, offset + size, shape)
            offset += size
        self.P = offset
        flat = torch.empty(K, self.P)
        for i, m in enumerate(members):
            model = ElmanRNN(d, n, d, bias=bias, init=m.init,
                             generator=torch.Generator().manual_seed(run_seeds(m.seed).init))
            flat[i] = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
        dev = self.device
        self._flat = flat.to(dev)
        self._m = torch.zeros(K, self.P, device=dev)
        self._v = torch.zeros(K, self.P, device=dev)

        # per-member python state (indexed by member index)
        self.steps = [0] * K
        self.gens = [torch.Generator().manual_seed(run_seeds(m.seed).data) for m in members]
        self.step_reached_max_horizon: list[int | None] = [None] * K
        self.last_loss = [float("nan")] * K
        self.last_accuracy = [float("nan")] * K
        self.last_horizon: list[int | None] = [None] * K
        self._retired: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

        # data: binary operators become one gather per group (index into the (B, s*d) substrate, sign)
        self.hcap = [int(m.curriculum.max_horizon) for m in members]
        Hcap = max(self.hcap)
        self.Hcap = Hcap
        idx = torch.zeros(K, 1, Hcap * d, dtype=torch.int64)
        sign = torch.ones(K, 1, Hcap * d)
        self.binary = []
        for i, m in enumerate(members):
            structure = _binary_structure(m.F)
            self.binary.append(structure is not None)
            if structure is not None:
                rows, signs = structure
                index, sgn = _unrolled_sources(tuple(rows.tolist()), tuple(signs.tolist()), s, self.hcap[i])
                idx[i, 0, : index.size] = torch.as_tensor(index.reshape(-1))
                sign[i, 0, : sgn.size] = torch.as_tensor(sgn.reshape(-1), dtype=torch.float32)
        self._idx, self._sign = idx.to(dev), sign.to(dev)

        self.slots = list(range(K))  # member index at each stack position (the active members only)
        self._alloc(K)
        self._retire([i for i in self.slots if self.steps[i] >= int(self.members[i].max_steps)])

    # ---------------------------------------------------------------------------------------------------------
    # buffers
    # ---------------------------------------------------------------------------------------------------------
    def _alloc(self, Kcap: int) -> None:
        s, d, n, B, dev = self.s, self.d, self.n, self.B, self.device
        Tmax = s + self.Hcap
        self.Kcap, self.Tmax = Kcap, Tmax
        self._H = torch.zeros(Kcap, Tmax + 1, B, n, device=dev)  # h_p, p = 0..T
        self._dZ = torch.zeros(Kcap, Tmax + 2, B, n + d, device=dev)  # [dz_p | dy_{p-1}], p = 0..T+1
        self._Yb = torch.zeros(Kcap, B, self.Hcap, d, device=dev)  # outputs y_{s+1..T}
        self._tmp = torch.empty(Kcap, B, n + d, device=dev)
        self._tmp2 = torch.empty(Kcap, B, n, device=dev)
        self._tmp3 = torch.empty(Kcap, B, n, device=dev)  # contiguous: a bmm into a strided view is copied
        self._Cin = torch.zeros(Kcap, s * B, n + d, device=dev)  # [scale*(W_uh u_p + b) | b_r]
        self._WfT = torch.empty(Kcap, n, n + d, device=dev)  # forward: [scale*W_hh; W_r]^T, stored transposed
        self._WcatT = torch.empty(Kcap, n, n + d, device=dev)  # [W_hh; W_r]^T, stored transposed (faster bmm)
        self._bf = torch.zeros(Kcap, 1, n + d, device=dev)  # [scale*b | b_r]
        self._bits = torch.empty(Kcap, s, B, d, dtype=torch.int64)
        self._U = torch.empty(Kcap, s, B, d, device=dev)
        self._E = torch.empty(Kcap * self.Hcap * B * d, device=dev)
        self._T = torch.empty(Kcap * self.Hcap * B * d, device=dev)
        self._S = torch.empty(Kcap * self.Hcap * B * d, device=dev)
        self._grad = torch.zeros(Kcap, self.P, device=dev)
        # a full tensor of -1 for the fused 2*sigmoid - 1 (a broadcast 0-dim operand takes a slow path on CPU)
        self._neg1 = torch.full((Kcap, B, n), -1.0, device=dev) if self.fast_tanh else None
        self._plans: dict[tuple, list] = {}

    def buffer_bytes(self) -> int:
        """Bytes of all tensors the trainer holds (parameters, optimiser state, work buffers)."""
        tensors = [v for v in vars(self).values() if isinstance(v, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors)

    # ---------------------------------------------------------------------------------------------------------
    # member access
    # ---------------------------------------------------------------------------------------------------------
    @property
    def active(self) -> list[int]:
        """Member indices still training."""
        return list(self.slots)

    def _rows(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if i in self._retired:
            return self._retired[i]
        j = self.slots.index(i)
        return self._flat[j], self._m[j], self._v[j]

    def _split(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: row[a:b].view(shape) for name, (a, b, shape) in self.offsets.items()}

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s weights as an ``ElmanRNN`` state dict (CPU copies)."""
        return {k: v.detach().to("cpu").clone() for k, v in self._split(self._rows(i)[0]).items()}

    def model(self, i: int) -> ElmanRNN:
        """An ``ElmanRNN`` (CPU) holding member ``i``'s weights."""
        m = self.members[i]
        model = ElmanRNN(self.d, self.n, self.d, bias=self.bias, init=m.init)
        model.load_state_dict(self.state_dict(i))
        return model.eval()

    def member_state(self, i: int) -> dict:
        """Everything needed to resume member ``i`` exactly (the ``twm_member`` entry of its checkpoint)."""
        m = self.members[i]
        _, exp_avg, exp_avg_sq = self._rows(i)
        return {
            "version": 1,
            "seed": int(m.seed),
            "hidden_size": self.n,
            "l2": float(m.l2),
            "lr": float(m.lr),
            "steps": self.steps[i],
            "adam": {
                "step": self.steps[i],
                "exp_avg": {k: v.to("cpu").clone() for k, v in self._split(exp_avg).items()},
                "exp_avg_sq": {k: v.to("cpu").clone() for k, v in self._split(exp_avg_sq).items()},
            },
            "curriculum_name": m.curriculum.name,
            "curriculum": m.curriculum.state_dict(),
            "data_generator": self.gens[i].get_state(),
            "step_reached_max_horizon": self.step_reached_max_horizon[i],
            "train_loss": self.last_loss[i],
            "train_accuracy": self.last_accuracy[i],
            "last_horizon": self.last_horizon[i],
        }

    def load_member_state(self, i: int, state_dict: dict, member_state: dict) -> None:
        """Restore member ``i`` (weights ``state_dict`` with or without the ``model.`` prefix, and the
        ``twm_member`` dict of :meth:`member_state`). Only before its training is over."""
        m = self.members[i]
        if int(member_state["seed"]) != int(m.seed) or int(member_state["hidden_size"]) != self.n:
            raise ValueError(
                f"checkpoint of member {i} is for seed {member_state['seed']}, hidden {member_state['hidden_size']}; "
                f"the member has seed {m.seed}, hidden {self.n}"
            )
        if member_state.get("curriculum_name", m.curriculum.name) != m.curriculum.name:
            raise ValueError(f"checkpoint of member {i} used curriculum {member_state['curriculum_name']!r}, "
                             f"the member has {m.curriculum.name!r}")
        if i not in self.slots:
            raise ValueError(f"member {i} is not active")
        j = self.slots.index(i)
        weights = {k.removeprefix("model."): v for k, v in state_dict.items()}
        adam = member_state["adam"]
        for name, (a, b, _) in self.offsets.items():
            self._flat[j, a:b] = weights[name].reshape(-1).to(self.device)
            self._m[j, a:b] = adam["exp_avg"][name].reshape(-1).to(self.device)
            self._v[j, a:b] = adam["exp_avg_sq"][name].reshape(-1).to(self.device)
        self.steps[i] = int(member_state["steps"])
        m.curriculum.load_state_dict(member_state["curriculum"])
        self.gens[i].set_state(member_state["data_generator"])
        self.step_reached_max_horizon[i] = member_state["step_reached_max_horizon"]
        self.last_loss[i] = float(member_state["train_loss"])
        self.last_accuracy[i] = float(member_state["train_accuracy"])
        self.last_horizon[i] = member_state.get("last_horizon")
        if self.steps[i] >= int(m.max_steps):
            self._retire([i])

    # ---------------------------------------------------------------------------------------------------------
    # stack management
    # ---------------------------------------------------------------------------------------------------------
    def _reorder(self, new_slots: list[int]) -> None:
        if new_slots == self.slots:
            return
        pos = {i: j for j, i in enumerate(self.slots)}
        perm = torch.tensor([pos[i] for i in new_slots], dtype=torch.int64, device=self.device)
        self._flat = self._flat.index_select(0, perm)
        self._m = self._m.index_select(0, perm)
        self._v = self._v.index_select(0, perm)
        self._idx = self._idx.index_select(0, perm)
        self._sign = self._sign.index_select(0, perm)
        self.slots = list(new_slots)

    def _retire(self, done: list[int]) -> None:
        if not done:
            return
        for i in done:
            j = self.slots.index(i)
            self._retired[i] = (self._flat[j].clone(), self._m[j].clone(), self._v[j].clone())
        self._reorder([i for i in self.slots if i not in set(done)])

    def _seg(self, X: torch.Tensor, name: str) -> torch.Tensor:
        a, b, shape = self.offsets[name]
        return X[:, a:b].view(X.shape[0], *shape)

    # ---------------------------------------------------------------------------------------------------------
    # one optimizer step of every active member
    # ---------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> dict[int, dict]:
        """One optimizer step of every active member. Returns ``{member: {"step", "loss", "accuracy", "horizon",
        "done"}}`` where ``step`` is the 0-based index of the step just taken and ``horizon`` the one it used."""
        if not self.slots:
            return {}
        members = self.members
        # sort by horizon, longest first (stable: equal horizons keep their order, so reorders are rare)
        horizon = {i: int(members[i].curriculum.horizon) for i in self.slots}
        for i, h in horizon.items():
            if not 1 <= h <= self.hcap[i]:
                raise ValueError(f"member {i}: curriculum horizon {h} outside [1, max_horizon={self.hcap[i]}]")
        self._reorder(sorted(self.slots, key=lambda i: -horizon[i]))
        K, s = len(self.slots), self.s
        hs = [horizon[i] for i in self.slots]
        groups = []  # (k0, k1, H)
        k0 = 0
        for k in range(1, K + 1):
            if k == K or hs[k] != hs[k0]:
                groups.append((k0, k, hs[k0]))
                k0 = k
        # active[p] = number of members whose sequence reaches position p
        Tmax = s + hs[0]
        active = [K] * (Tmax + 1)
        for k0, _, h in groups:
            for p in range(s + h + 1, Tmax + 1):
                active[p] = min(active[p], k0)

        custom_targets = self._draw(K, hs)
        self._prepare(K)
        self._forward(Tmax, active)
        sums = self._readout(groups, custom_targets)
        self._backward(Tmax, active, groups)
        self._weight_grads(groups)
        self._optimise(K)

        loss_acc = sums.tolist()
        results = {}
        done = []
        for j, i in enumerate(self.slots):
            loss, acc = loss_acc[j]
            cur = members[i].curriculum
            results[i] = {"step": self.steps[i], "loss": loss, "accuracy": acc, "horizon": hs[j]}
            self.steps[i] += 1
            cur.update(acc, loss)
            if self.step_reached_max_horizon[i] is None and cur.horizon >= cur.max_horizon:
                self.step_reached_max_horizon[i] = self.steps[i]
            self.last_loss[i], self.last_accuracy[i], self.last_horizon[i] = loss, acc, hs[j]
            results[i]["done"] = self.steps[i] >= int(members[i].max_steps)
            if results[i]["done"]:
                done.append(i)
        self._retire(done)
        return results

    def _draw(self, K: int, hs: list[int]) -> dict[int, torch.Tensor]:
        """Each member's batch from its own generator, as ``twm.tasks.sample`` draws it."""
        s, B, d = self.s, self.B, self.d
        bits, U = self._bits[:K], self._U[:K]
        custom = {}
        for j, i in enumerate(self.slots):
            if self.binary[i]:
                torch.randint(0, 2, (s, B, d), generator=self.gens[i], out=bits[j])
            else:
                u, y = sample(self.members[i].F, s, hs[j], B, self.gens[i])
                bits[j].copy_(((u[:s] + 1) / 2).to(torch.int64))
                custom[j] = y[s:].to(self.device)
        U.copy_(bits.to(self.device, non_blocking=True))
        U.mul_(2).sub_(1)
        return custom

    def _prepare(self, K: int) -> None:
        """Derived weights of this step: ``[scale*W_hh; W_r]`` (forward: one matmul gives the next pre-activation
        and the current output), ``[W_hh; W_r]`` (backward), both stored transposed; the input drive ``Cin``."""
        n, s, B, d = self.n, self.s, self.B, self.d
        W_hh = self._seg(self._flat, "rnn.weight_hh_l0")
        W_uh = self._seg(self._flat, "rnn.weight_ih_l0")
        W_r = self._seg(self._flat, "readout.weight")
        WfT, WcatT = self._WfT[:K], self._WcatT[:K]
        WcatT[:, :, :n].copy_(W_hh.transpose(1, 2))
        WcatT[:, :, n:].copy_(W_r.transpose(1, 2))
        torch.mul(WcatT, self.scale, out=WfT) if self.scale != 1.0 else WfT.copy_(WcatT)
        WfT[:, :, n:].copy_(W_r.transpose(1, 2))
        Cin = self._Cin[:K, :, :n]
        Cin.copy_(torch.bmm(self._U[:K].view(K, s * B, d), W_uh.transpose(1, 2)))
        if self.bias:
            b = self._seg(self._flat, "rnn.bias_ih_l0") + self._seg(self._flat, "rnn.bias_hh_l0")
            Cin.add_(b.unsqueeze(1))
            torch.mul(b.unsqueeze(1), self.scale, out=self._bf[:K, :, :n])
            self._bf[:K, 0, n:].copy_(self._seg(self._flat, "readout.bias"))
        if self.scale != 1.0:
            Cin.mul_(self.scale)

    def _plan(self, kind: str, active: list[int]) -> list[tuple]:
        """The per-time-step operands of the forward or backward loop (views of the fixed buffers), built once per
        pattern of active members and reused: the hot loops then do no Python slicing."""
        key = (kind, tuple(active))
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        s, B, n = self.s, self.B, self.n
        H, Tmax, plan = self._H, len(active) - 1, []
        if kind == "forward":
            tmp, Cin, WfT, Yb = self._tmp, self._Cin, self._WfT, self._Yb
            for p in range(1, Tmax + 2):
                m_z = active[p] if p <= Tmax else 0  # members that need z_p
                m_y = active[p - 1] if p - 1 > s else 0  # members that need y_{p-1}
                mm = max(m_z, m_y)
                t = tmp[:mm]
                if p == 1:
                    add = Cin[:mm, :B]
                elif p <= s:
                    add = Cin[:mm, (p - 1) * B: p * B]
                else:
                    add = self._bf[:mm] if self.bias else None
                plan.append((
                    p == 1, add, H[:mm, p - 1], WfT[:mm], t,
                    (t[:m_y, :, n:], Yb[:m_y, :, p - 2 - s]) if m_y else None,
                    (t[:m_z, :, :n], H[:m_z, p], None if self._neg1 is None else self._neg1[:m_z]) if m_z else None,
                ))
        else:
            tmp, tmp2, dZ = self._tmp3, self._tmp2, self._dZ
            Wcat = self._WcatT.transpose(1, 2)
            for p in range(Tmax, 0, -1):
                m = active[p]
                plan.append((dZ[:m, p + 1], Wcat[:m], tmp[:m], H[:m, p], tmp2[:m], dZ[:m, p, :, :n]))
        if len(self._plans) >= 32:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _forward(self, Tmax: int, active: list[int]) -> None:
        """Positions 1..T: ``[scale*z_p | y_{p-1}] = h_{p-1} @ [scale*W_hh; W_r]^T (+ input drive, biases)``, one
        batched matmul per step over the members still running; an extra step at T+1 gives the last outputs."""
        fast = self.fast_tanh
        for first, add, h_prev, w, t, y, z in self._plan("forward", active):
            if first:
                t.copy_(add)
            elif add is not None:
                torch.baddbmm(add, h_prev, w, out=t)
            else:
                torch.bmm(h_prev, w, out=t)
            if y is not None:
                y[1].copy_(y[0])
            if z is not None:
                zz, h_out, neg1 = z
                if fast:  # 2*sigmoid(2x) - 1 = tanh(x); one fused a + 2*b (2*sigma is exact: one rounding)
                    torch.sigmoid(zz, out=zz)
                    torch.add(neg1, zz, alpha=2.0, out=h_out)
                else:
                    torch.tanh(zz, out=h_out)

    def _readout(self, groups, custom_targets) -> torch.Tensor:
        """Targets, loss and accuracy per member; writes dL/dy_p into ``dZ[:, p+1, :, n:]``. Returns ``(K, 2)``:
        loss and accuracy (the accuracy exactly as the single run's float32 ``mean`` gives it)."""
        s, B, d, n = self.s, self.B, self.d, self.n
        dZ = self._dZ
        sub = self._U[: groups[-1][1]].transpose(1, 2).reshape(-1, B, s * d)  # (K, B, s*d): the initial substrate
        out = []
        for k0, k1, h in groups:
            m, N = k1 - k0, h * B * d
            Y = self._Yb[k0:k1, :, :h]  # (m, B, h, d)
            T = self._T[: m * N].view(m, B, h * d)
            torch.gather(sub[k0:k1], 2, self._idx[k0:k1, :, : h * d].expand(m, B, h * d), out=T)
            T.mul_(self._sign[k0:k1, :, : h * d])
            T = T.view(m, B, h, d)
            general = False
            for j, y in custom_targets.items():
                if k0 <= j < k1:
                    T[j - k0].copy_(y.transpose(0, 1))
                    general = True
            E = torch.sub(Y, T, out=self._E[: m * N].view(m, B, h, d))
            Ef, Tf = E.view(m, N), T.view(m, N)
            loss = (Ef * Ef).sum(dim=1) / N
            if general:  # sign(y) (0 counts as +1) equals the target
                hits = torch.eq(torch.where(Y >= 0, 1.0, -1.0), T).view(m, N).sum(dim=1).to(torch.float32)
            else:  # targets are +-1: hits = #(T = -1) + sum(step(y) * T), exact in float32 (integers < 2^24)
                step = torch.ge(Y, 0.0, out=self._S[: m * N].view(m, B, h, d)).view(m, N)  # 1.0 where y >= 0
                hits = step.mul_(Tf).sum(dim=1) + (N - Tf.sum(dim=1)) / 2
            torch.mul(E.transpose(1, 2), 2.0 / N, out=dZ[k0:k1, s + 2: s + h + 2, :, n:])
            out.append(torch.stack([loss, hits / N], dim=1))
        return torch.cat(out)

    def _backward(self, Tmax: int, active: list[int], groups) -> None:
        """Positions T..1: ``dh_p = [dz_{p+1} | dy_p] @ [W_hh; W_r]``, ``dz_p = dh_p * (1 - h_p^2)``."""
        n, s, dZ = self.n, self.s, self._dZ
        for k0, k1, h in groups:  # nothing flows back from beyond a member's last position
            dZ[k0:k1, s + h + 1, :, :n].zero_()
        for dz_next, w, t, hp, q, dz in self._plan("backward", active):
            torch.bmm(dz_next, w, out=t)
            torch.mul(hp, hp, out=q)
            torch.addcmul(t, t, q, value=-1.0, out=dz)

    def _weight_grads(self, groups) -> None:
        """``[dW_hh; dW_r] = sum_p [dz_{p+1} | dy_p]^T h_p`` (one matmul), ``dW_uh = sum_p dz_p^T u_p``, biases."""
        n, s, B, d = self.n, self.s, self.B, self.d
        H, dZ, G = self._H, self._dZ, self._grad
        for k0, k1, h in groups:
            m, T = k1 - k0, s + h
            rows = dZ[k0:k1, 2: T + 2].reshape(m, T * B, n + d)
            both = torch.bmm(rows.transpose(1, 2), H[k0:k1, 1: T + 1].reshape(m, T * B, n))
            self._seg(G, "rnn.weight_hh_l0")[k0:k1].copy_(both[:, :n])
            self._seg(G, "readout.weight")[k0:k1].copy_(both[:, n:])
            dz_in = dZ[k0:k1, 1: s + 1, :, :n].reshape(m, s * B, n)
            self._seg(G, "rnn.weight_ih_l0")[k0:k1].copy_(
                torch.bmm(dz_in.transpose(1, 2), self._U[k0:k1].view(m, s * B, d)))
            if self.bias:
                db = dZ[k0:k1, 1: T + 1, :, :n].sum(dim=(1, 2))
                self._seg(G, "rnn.bias_ih_l0")[k0:k1].copy_(db)
                self._seg(G, "rnn.bias_hh_l0")[k0:k1].copy_(db)
                self._seg(G, "readout.bias")[k0:k1].copy_(dZ[k0:k1, s + 2: T + 2, :, n:].sum(dim=(1, 2)))

    def _optimise(self, K: int) -> None:
        """Per-member gradient clipping (total norm over all parameters) and Adam with coupled weight decay,
        mirroring ``clip_grad_norm_`` and ``torch.optim.Adam``."""
        dev, members = self.device, self.members
        G, P, M, V = self._grad[:K], self._flat, self._m, self._v
        norms = torch.stack([torch.linalg.vector_norm(G[:, a:b], dim=1) for a, b, _ in self.offsets.values()], dim=1)
        total = torch.linalg.vector_norm(norms, dim=1)
        clip = torch.tensor([float(members[i].clip) for i in self.slots], device=dev)
        coef = torch.clamp(clip / (total + 1e-6), max=1.0)
        G.mul_(coef.unsqueeze(1))
        l2 = [float(members[i].l2) for i in self.slots]
        if any(l2):
            G.addcmul_(P, torch.tensor(l2, device=dev).unsqueeze(1))
        M.lerp_(G, 1 - BETA1)
        V.mul_(BETA2).addcmul_(G, G, value=1 - BETA2)
        steps = [self.steps[i] + 1 for i in self.slots]
        step_size = [float(members[i].lr) / (1 - BETA1**st) for i, st in zip(self.slots, steps)]
        bc2_sqrt = [(1 - BETA2**st) ** 0.5 for st in steps]
        denom = torch.div(V.sqrt(), torch.tensor(bc2_sqrt, device=dev).unsqueeze(1)).add_(EPS)
        P.addcdiv_(M * torch.tensor([-x for x in step_size], device=dev).unsqueeze(1), denom)


# --------------------------------------------------------------------------------------------------------------
# Run folders
# --------------------------------------------------------------------------------------------------------------
class _RunFolder:
    """A member's run folder: metrics.csv (Lightning's CSVLogger), checkpoints/last.ckpt, summary.json."""

    def __init__(self, member: Member):
        self.member = member
        self.dir = Path(member.run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ckpt = self.dir / CHECKPOINTS / LAST
        self.logger = None

    def load_checkpoint(self) -> dict | None:
        if not self.ckpt.exists():
            return None
        ckpt = torch.load(self.ckpt, map_location="cpu", weights_only=False)
        return ckpt if "twm_member" in ckpt else None

    def open_metrics(self, keep_before: int) -> None:
        """Start the CSV logger, keeping the rows of steps before ``keep_before`` from an earlier attempt."""
        from lightning.pytorch.loggers import CSVLogger

        self.logger = CSVLogger(save_dir=str(self.dir), name="", version="")
        start_csv_logger(self.logger, keep_before or None)

    def log(self, step: int, loss: float, accuracy: float, horizon: int) -> None:
        self.logger.log_metrics(
            {"epoch": 0, "train/loss": loss, "train/accuracy": accuracy, "curriculum/horizon": float(horizon)},
            step=step,
        )

    def checkpoint(self, state_dict: dict, member_state: dict, steps: int) -> None:
        if self.logger is not None:
            self.logger.save()  # metrics first: rows after the checkpoint are truncated on resume
        self.ckpt.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "state_dict": {f"model.{k}": v for k, v in state_dict.items()},
            "global_step": steps,
            "epoch": 0,
            "twm_member": member_state,
        }
        tmp = self.ckpt.with_name(self.ckpt.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, self.ckpt)

    def write_summary(self, summary: dict) -> None:
        if self.logger is not None:
            self.logger.save()
        write_json(self.dir / "summary.json", summary)


def _summary(trainer: EnsembleTrainer, i: int, status: str, wall: float, ensemble_size: int,
             test_accuracy: float | None = None, error: str | None = None) -> dict:
    m, cur = trainer.members[i], trainer.members[i].curriculum
    summary = {
        "status": status,
        "steps": trainer.steps[i],
        "seed": int(m.seed),
        "task": m.task_name,
        "task_id": None if m.task_id is None else [int(v) for v in m.task_id],
        "s": trainer.s,
        "d": trainer.d,
        "hidden_size": trainer.n,
        "l2": float(m.l2),
        "curriculum": cur.name,
        "threshold": getattr(cur, "threshold", None),
        "final_horizon": int(cur.horizon),
        "step_reached_max_horizon": trainer.step_reached_max_horizon[i],
        "train_loss": _finite_or_none(trainer.last_loss[i]),
        "train_accuracy": _finite_or_none(trainer.last_accuracy[i]),
        "test_accuracy": test_accuracy,
        "wall_seconds": round(wall, 3),
    }
    assert tuple(summary) == SUMMARY_KEYS
    summary["ensemble_size"] = ensemble_size
    if error is not None:
        summary["error"] = error
    return summary


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def heldout_accuracy(model: ElmanRNN, member: Member) -> float:
    """SPEC §1.3's test accuracy with the member's settings (``data.test_*``; default horizon 200, 10 fresh batches
    of 64 from the run's test seed), as the single-run path computes it."""
    accuracy = per_step_accuracy(model, member.F, member.s, member.test_horizon, member.test_batches,
                                 member.test_batch_size, run_seeds(member.seed).test)
    return float(accuracy.mean())


def train_ensemble(
    members: Sequence[Member],
    device="cpu",
    checkpoint_every: int = 500,
    log_every: int = 1,
    progress: Callable[[int, int, dict], None] | None = None,
    progress_every: int = 100,
    fast_tanh: bool | None = None,
) -> list[dict]:
    """Train ``members`` as one batched ensemble; members with a ``run_dir`` get the single-run folder
    (``metrics.csv``, ``checkpoints/last.ckpt``, ``summary.json``, plus ``"ensemble_size"``). A member whose folder
    holds a completed summary is skipped; one with a checkpoint resumes from it exactly. Returns one summary per
    member. ``progress(step, max_steps, info)`` is called every ``progress_every`` ensemble steps (else one log
    line on ``twm.ensemble`` every 1000). On an exception every unfinished member's summary says ``"failed"``."""
    members = list(members)
    if checkpoint_every < 1 or log_every < 1:
        raise ValueError("checkpoint_every and log_every must be >= 1")
    size = len(members)
    summaries: list[dict | None] = [None] * size
    todo = []
    for i, m in enumerate(members):
        previous = read_summary(m.run_dir) if m.run_dir is not None else None
        if previous is not None and previous.get("status") == "completed":
            summaries[i] = previous
        else:
            todo.append(i)
    if not todo:
        return summaries

    trainer = EnsembleTrainer([members[i] for i in todo], device=device, fast_tanh=fast_tanh)
    folders: dict[int, _RunFolder] = {}
    wall0 = [0.0] * len(todo)
    for j, i in enumerate(todo):
        if members[i].run_dir is None:
            continue
        folder = folders[j] = _RunFolder(members[i])
        ckpt = folder.load_checkpoint()
        start = 0
        if ckpt is not None:
            trainer.load_member_state(j, ckpt["state_dict"], ckpt["twm_member"])
            wall0[j] = float(ckpt["twm_member"].get("wall_seconds", 0.0))
            start = trainer.steps[j]
        folder.open_metrics(start)

    t0 = time.perf_counter()
    finished: set[int] = set()

    def wall(j: int) -> float:
        return wall0[j] + time.perf_counter() - t0

    def finish(j: int) -> None:
        i = todo[j]
        m = members[i]
        acc = heldout_accuracy(trainer.model(j), m)
        summary = _summary(trainer, j, "completed", wall(j), size, test_accuracy=acc)
        if j in folders:
            folders[j].checkpoint(trainer.state_dict(j), {**trainer.member_state(j), "wall_seconds": wall(j)},
                                  trainer.steps[j])
            folders[j].write_summary(summary)
        summaries[i] = summary
        finished.add(j)

    max_steps = max(int(members[i].max_steps) for i in todo)
    iteration = model_steps = 0
    try:
        for j in range(len(todo)):
            if j not in trainer.slots:  # restored at its last step
                finish(j)
        while trainer.slots:
            results = trainer.step()
            iteration += 1
            model_steps += len(results)
            for j, r in results.items():
                folder = folders.get(j)
                if folder is not None:
                    if (r["step"] + 1) % log_every == 0:
                        folder.log(r["step"], r["loss"], r["accuracy"], r["horizon"])
                    if not r["done"] and trainer.steps[j] % checkpoint_every == 0:
                        folder.checkpoint(trainer.state_dict(j), {**trainer.member_state(j), "wall_seconds": wall(j)},
                                          trainer.steps[j])
                if r["done"]:
                    finish(j)
            if progress is not None and iteration % progress_every == 0:
                progress(max(trainer.steps), max_steps, _info(trainer, results, model_steps, time.perf_counter() - t0))
            elif progress is None and iteration % 1000 == 0:
                info = _info(trainer, results, model_steps, time.perf_counter() - t0)
                log.info("ensemble step %d/%d: %d active, loss %.4f, acc %.3f, horizons %s, %.1f model-steps/s",
                         max(trainer.steps), max_steps, info["active"], info["mean_loss"], info["mean_accuracy"],
                         info["horizons"], info["model_steps_per_s"])
    except BaseException as err:
        message = f"{type(err).__name__}: {err}"
        for j, folder in folders.items():
            if j not in finished:
                summary = _summary(trainer, j, "failed", wall(j), size, error=message)
                summaries[todo[j]] = summary
                folder.write_summary(summary)
        raise
    return summaries


def _info(trainer: EnsembleTrainer, results: dict, model_steps: int, elapsed: float) -> dict:
    losses = [r["loss"] for r in results.values()]
    accs = [r["accuracy"] for r in results.values()]
    horizons: dict[int, int] = {}
    for r in results.values():
        horizons[r["horizon"]] = horizons.get(r["horizon"], 0) + 1
    return {
        "active": len(trainer.slots),
        "finished": len(trainer.members) - len(trainer.slots),
        "mean_loss": float(np.mean(losses)) if losses else float("nan"),
        "mean_accuracy": float(np.mean(accs)) if accs else float("nan"),
        "horizons": dict(sorted(horizons.items())),
        "model_steps_per_s": model_steps / elapsed if elapsed > 0 else float("nan"),
    }
