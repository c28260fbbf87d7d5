"""Batched ensembles: K independent training runs in one process, as one batched RNN (docs/science.md §3).

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
- all buffers are allocated once, for the largest horizon any member's curriculum can reach; no autograd;
- ``matmul`` picks the kernels of these products (:class:`EnsembleTrainer`): PyTorch's default, oneDNN in float32,
  or bfloat16 operands.

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

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from twm.model import ElmanRNN
from twm.run.folder import AdamState, TrainState, adam_state, checkpoint_payload
from twm.run.spec import RunSpec
from twm.tasks import binary_structure, sample, unrolled_sources
from twm.train import signals
from twm.train.job import Job
from twm.train.lightning import StepCheckpoint
from twm.train.signals import StopRequested

log = logging.getLogger("twm.ensemble")

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam defaults
ARCHITECTURES = ("elman",)  # what this engine trains; the pipeline trains the others with Lightning
MATMULS = ("default", "onednn", "bf16")


@contextlib.contextmanager
def _onednn_fp32(on: bool):
    """fp32 matmuls through oneDNN while inside (torch routes them there only under ``fp32_precision='bf16'``)."""
    if not on:
        yield
        return
    matmul = torch.backends.mkldnn.matmul
    before = matmul.fp32_precision
    matmul.fp32_precision = "bf16"
    try:
        yield
    finally:
        matmul.fp32_precision = before


def _check_onednn_exact() -> None:
    """oneDNN may round fp32 operands to bf16 where the CPU has bf16 matrix units (AMX): refuse ``"onednn"`` there.
    A product whose exact value needs more than bf16's 8 mantissa bits tells the two apart."""
    if not torch.backends.mkldnn.is_available():
        raise ValueError("matmul='onednn' needs PyTorch built with oneDNN (torch.backends.mkldnn.is_available())")
    a = torch.full((2, 64, 64), 1.0 + 2.0**-12)
    with _onednn_fp32(True):
        out = torch.bmm(a, torch.ones(2, 64, 64))
    if not torch.equal(out, torch.full_like(out, 64.0 + 2.0**-6)):
        raise ValueError("matmul='onednn': oneDNN rounds fp32 matmuls to bf16 on this CPU, so it would not be exact; "
                         "use matmul='default' or 'bf16'")


def compatibility_key(spec: RunSpec) -> tuple:
    """Runs train in one ensemble when these agree: ``(arch, s, d, hidden_size, bias, batch_size)``."""
    return (spec.model.arch, spec.task.s, spec.task.d, spec.model.hidden_size, spec.model.bias,
            spec.data.batch_size)


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

    ``matmul`` (CPU only; ``benchmarks/step_profile.py`` times them, ``benchmarks/fidelity.py`` compares their
    Table-1 cells with the default's):

    - ``"default"``: PyTorch's float32 ``bmm`` (MKL on x86; on AMD CPUs MKL runs its AVX2 kernels);
    - ``"onednn"``: the same float32 products through oneDNN's AVX-512 kernels (PyTorch sends float32 matmuls there
      only under ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``, set for the step and restored). Where
      the CPU has bf16 matrix units (AMX) oneDNN would then round the operands to bfloat16, so construction checks
      that a product stays exact and refuses otherwise;
    - ``"bf16"``: the recurrent products of the forward and backward loops and the weight-gradient product take
      bfloat16 operands (float32 accumulation inside oneDNN; the hidden states ``H`` and the back-propagated
      ``dZ`` are stored in bfloat16; the bfloat16 weight copies are made once per step); parameters, Adam, the
      loss, the input drive and the non-linearity stay float32.
    """

    def __init__(self, specs: Sequence[RunSpec], device="cpu", fast_tanh: bool | None = None,
                 matmul: str = "default"):
        specs = list(specs)
        if not specs:
            raise ValueError("an ensemble needs at least one member")
        arch, s, d, n, bias, B = compatibility_key(specs[0])
        if arch not in ARCHITECTURES:
            raise ValueError(f"the batched engine trains {', '.join(ARCHITECTURES)} only, not model.arch={arch!r}: "
                             "train it with the Lightning engine (twm.train.pipeline.run_lightning)")
        if matmul not in MATMULS:
            raise ValueError(f"matmul must be one of {', '.join(MATMULS)}, got {matmul!r}")
        if matmul != "default" and torch.device(device).type != "cpu":
            raise ValueError(f"matmul={matmul!r} is a CPU option (oneDNN kernels); use matmul='default' on {device}")
        for i, spec in enumerate(specs):
            if compatibility_key(spec) != compatibility_key(specs[0]):
                raise ValueError(
                    f"member {i} is incompatible: (arch, s, d, hidden_size, bias, batch_size) = "
                    f"{compatibility_key(spec)}, but member 0 has {compatibility_key(specs[0])}; "
                    "train it in another ensemble"
                )
            if spec.steps < 0:
                raise ValueError(f"member {i}: steps must be >= 0, got {spec.steps}")
        self.specs = specs
        self.curricula = [spec.curriculum.build() for spec in specs]
        self.s, self.d, self.n, self.bias, self.B = s, d, n, bias, B
        self.device = torch.device(device)
        self.fast_tanh = (self.device.type == "cpu") if fast_tanh is None else bool(fast_tanh)
        self.matmul = matmul
        if matmul == "onednn":
            _check_onednn_exact()
        self.scale = 2.0 if self.fast_tanh else 1.0
        K = len(specs)

        # parameters: flat (K, P) in named_parameters order, initialised as RunSpec.make_model does
        self.layout = _param_layout(n, d, bias)
        self.offsets: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        offset = 0
        for name, shape in self.layout:
            size = math.prod(shape)
            self.offsets[name] = (offset, offset + size, shape)
            offset += size
        self.P = offset
        flat = torch.empty(K, self.P)
        for i, spec in enumerate(specs):
            model = spec.make_model()
            assert [name for name, _ in model.named_parameters()] == list(self.offsets)
            flat[i] = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
        dev = self.device
        self._flat = flat.to(dev)
        self._m = torch.zeros(K, self.P, device=dev)
        self._v = torch.zeros(K, self.P, device=dev)

        # per-member python state (indexed by member index)
        self.steps = [0] * K
        self.gens = [torch.Generator().manual_seed(spec.seeds.data) for spec in specs]
        self.step_reached_max_horizon: list[int | None] = [None] * K
        self.last_loss = [float("nan")] * K
        self.last_accuracy = [float("nan")] * K
        self.last_horizon: list[int | None] = [None] * K
        self.resumed_at: list[list[int]] = [[] for _ in range(K)]
        self._retired: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

        # data: binary operators become one gather per group (index into the (B, s*d) substrate, sign)
        self.hcap = [int(c.max_horizon) for c in self.curricula]
        Hcap = max(self.hcap)
        self.Hcap = Hcap
        idx = torch.zeros(K, 1, Hcap * d, dtype=torch.int64)
        sign = torch.ones(K, 1, Hcap * d)
        self.binary = []
        for i, spec in enumerate(specs):
            structure = binary_structure(spec.task.F)
            self.binary.append(structure is not None)
            if structure is not None:
                rows, signs = structure
                index, sgn = unrolled_sources(tuple(rows.tolist()), tuple(signs.tolist()), s, self.hcap[i])
                idx[i, 0, : index.size] = torch.as_tensor(index.reshape(-1))
                sign[i, 0, : sgn.size] = torch.as_tensor(sgn.reshape(-1), dtype=torch.float32)
        self._idx, self._sign = idx.to(dev), sign.to(dev)

        self.slots = list(range(K))  # member index at each stack position (the active members only)
        self._alloc(K)
        self._retire([i for i in self.slots if self.steps[i] >= self.specs[i].steps])

    # ---------------------------------------------------------------------------------------------------------
    # buffers
    # ---------------------------------------------------------------------------------------------------------
    def _alloc(self, Kcap: int) -> None:
        s, d, n, B, dev = self.s, self.d, self.n, self.B, self.device
        Tmax = s + self.Hcap
        self.Kcap, self.Tmax = Kcap, Tmax
        lowp = torch.bfloat16 if self.matmul == "bf16" else torch.float32  # the recurrent products' operands
        # storage of the hidden states and back-propagated errors; :meth:`_layout` views it for the step's longest T
        self._Hstore = torch.zeros(Kcap * (Tmax + 2) * B * n, device=dev, dtype=lowp)
        self._dZstore = torch.zeros(Kcap * (Tmax + 2) * B * (n + d), device=dev, dtype=lowp)
        self._view_T = None
        self._layout(Tmax)
        if lowp != torch.float32:
            self._WfTl = torch.empty(Kcap, n, n + d, device=dev, dtype=lowp)
            self._WcatTl = torch.empty(Kcap, n, n + d, device=dev, dtype=lowp)
            self._tmpl = torch.empty(Kcap, B, n + d, device=dev, dtype=lowp)
            self._tmp3l = torch.empty(Kcap, B, n, device=dev, dtype=lowp)
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

    def _layout(self, T: int) -> None:
        """View the storages for a step whose longest sequence has T steps: ``_Hpad`` ``(Kcap, T+2, B, n)`` holds
        h_p at row p+1 (rows 0 and 1, h_{-1} and h_0, are zero), ``_H = _Hpad[:, 1:]`` h_p at row p, ``_dZ``
        ``(Kcap, T+2, B, n+d)`` [dz_p | dy_{p-1}] at row p. The rows of ``_Hpad`` and ``_dZ`` align and each member's
        rows are one contiguous block, so the weight gradient of the longest members is one matmul of whole blocks
        (oneDNN copies strided slices first). Rows no step writes (row 0, the dy columns of rows 0..s+1) are zeroed
        when the layout changes."""
        if T == self._view_T:
            return
        Kcap, B, n, d = self.Kcap, self.B, self.n, self.d
        self._Hpad = self._Hstore[: Kcap * (T + 2) * B * n].view(Kcap, T + 2, B, n)
        self._H = self._Hpad[:, 1:]
        self._dZ = self._dZstore[: Kcap * (T + 2) * B * (n + d)].view(Kcap, T + 2, B, n + d)
        self._Hpad[:, :2].zero_()
        self._dZ[:, : self.s + 2].zero_()
        self._view_T = T

    def buffer_bytes(self) -> int:
        """Bytes of all tensors the trainer holds (parameters, optimiser state, work buffers)."""
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                    for t in vars(self).values() if isinstance(t, torch.Tensor)}
        return sum(storages.values())

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
        """An ``ElmanRNN`` (CPU, eval mode) holding member ``i``'s weights."""
        model = ElmanRNN(self.d, self.n, self.d, bias=self.bias, init=self.specs[i].model.init)
        model.load_state_dict(self.state_dict(i))
        return model.eval()

    def adam_state(self, i: int) -> AdamState:
        """Member ``i``'s Adam moments (CPU copies) and step count."""
        _, exp_avg, exp_avg_sq = self._rows(i)
        return AdamState(self.steps[i], {k: v.to("cpu").clone() for k, v in self._split(exp_avg).items()},
                         {k: v.to("cpu").clone() for k, v in self._split(exp_avg_sq).items()})

    def train_state(self, i: int, wall_seconds: float) -> TrainState:
        """Member ``i``'s :class:`TrainState` (the ``"twm"`` entry of its checkpoint)."""
        return TrainState(steps=self.steps[i], curriculum=self.curricula[i].state_dict(),
                          data_generator=self.gens[i].get_state(),
                          step_reached_max_horizon=self.step_reached_max_horizon[i],
                          train_loss=self.last_loss[i], train_accuracy=self.last_accuracy[i],
                          last_horizon=self.last_horizon[i], wall_seconds=wall_seconds, engine="batched",
                          resumed_at=list(self.resumed_at[i]))

    def restore(self, i: int, weights: dict, adam: AdamState, state: TrainState) -> None:
        """Restore member ``i`` from a checkpoint of either engine (weights with or without the ``model.``
        prefix). Only while it is still active."""
        if i not in self.slots:
            raise ValueError(f"member {i} is not active")
        if adam.step != state.steps:
            raise ValueError(f"checkpoint of member {i}: Adam has taken {adam.step} steps, the run {state.steps}")
        j = self.slots.index(i)
        weights = {k.removeprefix("model."): v for k, v in weights.items()}
        for name, (a, b, _) in self.offsets.items():
            self._flat[j, a:b] = weights[name].reshape(-1).to(self.device)
            self._m[j, a:b] = adam.exp_avg[name].reshape(-1).to(self.device)
            self._v[j, a:b] = adam.exp_avg_sq[name].reshape(-1).to(self.device)
        self.steps[i] = int(state.steps)
        self.curricula[i].load_state_dict(state.curriculum)
        self.gens[i].set_state(state.data_generator)
        self.step_reached_max_horizon[i] = state.step_reached_max_horizon
        self.last_loss[i] = float("nan") if state.train_loss is None else float(state.train_loss)
        self.last_accuracy[i] = float("nan") if state.train_accuracy is None else float(state.train_accuracy)
        self.last_horizon[i] = state.last_horizon
        self.resumed_at[i] = [*state.resumed_at, int(state.steps)]
        if self.steps[i] >= self.specs[i].steps:
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
        "lr", "done"}}`` where ``step`` is the 0-based index of the step just taken, ``horizon`` and ``lr`` the
        horizon and learning rate it used."""
        if not self.slots:
            return {}
        # sort by horizon, longest first (stable: equal horizons keep their order, so reorders are rare)
        horizon = {i: int(self.curricula[i].horizon) for i in self.slots}
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
        self._layout(Tmax)
        with _onednn_fp32(self.matmul == "onednn"):
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
            cur = self.curricula[i]
            results[i] = {"step": self.steps[i], "loss": loss, "accuracy": acc, "horizon": hs[j], "lr": self.lr(i)}
            self.steps[i] += 1
            cur.update(acc, loss)
            if self.step_reached_max_horizon[i] is None and cur.horizon >= cur.max_horizon:
                self.step_reached_max_horizon[i] = self.steps[i]
            self.last_loss[i], self.last_accuracy[i], self.last_horizon[i] = loss, acc, hs[j]
            results[i]["done"] = self.steps[i] >= self.specs[i].steps
            if results[i]["done"]:
                done.append(i)
        self._retire(done)
        return results

    def _draw(self, K: int, hs: list[int]) -> dict[int, torch.Tensor]:
        """Each member's batch from its own generator, as ``twm.tasks.sample`` draws it (reseeded first for a
        ``data.fixed_batch`` run)."""
        s, B, d = self.s, self.B, self.d
        bits, U = self._bits[:K], self._U[:K]
        custom = {}
        for j, i in enumerate(self.slots):
            if self.specs[i].data.fixed_batch:
                self.gens[i].manual_seed(self.specs[i].seeds.data)
            if self.binary[i]:
                torch.randint(0, 2, (s, B, d), generator=self.gens[i], out=bits[j])
            else:
                u, y = sample(self.specs[i].task.F, s, hs[j], B, self.gens[i])
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
        if self.matmul == "bf16":  # the casts of this step, once
            self._WfTl[:K].copy_(WfT)
            self._WcatTl[:K].copy_(WcatT)
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
        lowp = self.matmul == "bf16"
        if kind == "forward":
            tmp, Cin, Yb = self._tmp, self._Cin, self._Yb
            tmpl, WfT = (self._tmpl, self._WfTl) if lowp else (None, self._WfT)
            for p in range(1, Tmax + 2):
                m_z = active[p] if p <= Tmax else 0  # members that need z_p
                m_y = active[p - 1] if p - 1 > s else 0  # members that need y_{p-1}
                mm = max(m_z, m_y)
                if p == 1:
                    add = Cin[:mm, :B]
                elif p <= s:
                    add = Cin[:mm, (p - 1) * B: p * B]
                else:
                    add = self._bf[:mm] if self.bias else None
                t = tmp[:mm]
                plan.append((
                    p == 1, add, H[:mm, p - 1], WfT[:mm], tmpl[:mm] if lowp else t, t,
                    (t[:m_y, :, n:], Yb[:m_y, :, p - 2 - s]) if m_y else None,
                    (t[:m_z, :, :n], H[:m_z, p], None if self._neg1 is None else self._neg1[:m_z]) if m_z else None,
                ))
        else:
            tmp, tmp2, dZ = self._tmp3l if lowp else self._tmp3, self._tmp2, self._dZ
            Wcat = (self._WcatTl if lowp else self._WcatT).transpose(1, 2)
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
        for first, add, h_prev, w, t, t32, y, z in self._plan("forward", active):
            if first:
                t32.copy_(add)
            elif t is t32:  # float32 operands
                torch.bmm(h_prev, w, out=t) if add is None else torch.baddbmm(add, h_prev, w, out=t)
            else:  # a bfloat16 product (float32 accumulation inside oneDNN), float32 from here on
                torch.bmm(h_prev, w, out=t)
                t32.copy_(t) if add is None else torch.add(add, t, out=t32)
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
        lowp = self.matmul == "bf16"
        for dz_next, w, t, hp, q, dz in self._plan("backward", active):
            torch.bmm(dz_next, w, out=t)
            if lowp:  # one pass in float32 arithmetic, one rounding (mixed-precision mul/addcmul are slow on CPU)
                torch.ops.aten.tanh_backward.grad_input(t, hp, grad_input=dz)
            else:
                torch.mul(hp, hp, out=q)
                torch.addcmul(t, t, q, value=-1.0, out=dz)

    def _weight_grads(self, groups) -> None:
        """``[dW_hh; dW_r] = sum_p [dz_{p+1} | dy_p]^T h_p`` (one matmul), ``dW_uh = sum_p dz_p^T u_p``, biases."""
        n, s, B, d = self.n, self.s, self.B, self.d
        H, dZ, G = self._H, self._dZ, self._grad
        f32 = torch.float32
        for k0, k1, h in groups:
            m, T = k1 - k0, s + h
            if self.matmul != "default" and T == self._view_T:  # whole blocks: oneDNN would copy strided slices
                rows, hs = dZ[k0:k1].view(m, -1, n + d), self._Hpad[k0:k1].view(m, -1, n)
            else:
                rows, hs = dZ[k0:k1, 2: T + 2].reshape(m, T * B, n + d), H[k0:k1, 1: T + 1].reshape(m, T * B, n)
            both = torch.bmm(rows.transpose(1, 2), hs)
            self._seg(G, "rnn.weight_hh_l0")[k0:k1].copy_(both[:, :n])
            self._seg(G, "readout.weight")[k0:k1].copy_(both[:, n:])
            dz_in = dZ[k0:k1, 1: s + 1, :, :n].reshape(m, s * B, n).to(f32)
            self._seg(G, "rnn.weight_ih_l0")[k0:k1].copy_(
                torch.bmm(dz_in.transpose(1, 2), self._U[k0:k1].view(m, s * B, d)))
            if self.bias:
                db = dZ[k0:k1, 1: T + 1, :, :n].sum(dim=(1, 2), dtype=f32)
                self._seg(G, "rnn.bias_ih_l0")[k0:k1].copy_(db)
                self._seg(G, "rnn.bias_hh_l0")[k0:k1].copy_(db)
                self._seg(G, "readout.bias")[k0:k1].copy_(dZ[k0:k1, s + 2: T + 2, :, n:].sum(dim=(1, 2), dtype=f32))

    def lr(self, i: int) -> float:
        """Member ``i``'s learning rate for its next step: its schedule after the steps it has taken."""
        spec = self.specs[i]
        return spec.scheduler.lr_at(spec.optim.lr, self.steps[i])

    def _optimise(self, K: int) -> None:
        """Per-member gradient clipping (total norm over all parameters) and Adam with coupled weight decay at the
        member's scheduled learning rate, mirroring ``clip_grad_norm_``, ``torch.optim.Adam`` and
        ``torch.optim.lr_scheduler`` (stepped after every optimizer step)."""
        dev, optim = self.device, [spec.optim for spec in self.specs]
        G, P, M, V = self._grad[:K], self._flat, self._m, self._v
        norms = torch.stack([torch.linalg.vector_norm(G[:, a:b], dim=1) for a, b, _ in self.offsets.values()], dim=1)
        total = torch.linalg.vector_norm(norms, dim=1)
        clip = torch.tensor([optim[i].clip for i in self.slots], device=dev)
        coef = torch.clamp(clip / (total + 1e-6), max=1.0)
        G.mul_(coef.unsqueeze(1))
        l2 = [optim[i].l2 for i in self.slots]
        if any(l2):
            G.addcmul_(P, torch.tensor(l2, device=dev).unsqueeze(1))
        M.lerp_(G, 1 - BETA1)
        V.mul_(BETA2).addcmul_(G, G, value=1 - BETA2)
        steps = [self.steps[i] + 1 for i in self.slots]
        step_size = [self.lr(i) / (1 - BETA1**st) for i, st in zip(self.slots, steps)]
        bc2_sqrt = [(1 - BETA2**st) ** 0.5 for st in steps]
        denom = torch.div(V.sqrt(), torch.tensor(bc2_sqrt, device=dev).unsqueeze(1)).add_(EPS)
        P.addcdiv_(M * torch.tensor([-x for x in step_size], device=dev).unsqueeze(1), denom)


# --------------------------------------------------------------------------------------------------------------
# The engine: jobs in, run folders out
# --------------------------------------------------------------------------------------------------------------
class MemberView:
    """One ensemble member as a Lightning callback sees a run: trainer and module at once (``global_step``,
    ``max_steps``, ``loggers``, ``default_root_dir``; ``model``, ``task_F``, ``s``, ``horizon``, ``max_horizon``,
    ``device``). ``model`` is a CPU ``ElmanRNN`` with the member's current weights, built when read."""

    is_global_zero = True
    current_epoch = 0

    def __init__(self, trainer: EnsembleTrainer, i: int, job: Job):
        self._trainer, self._i, self.spec = trainer, i, job.spec
        self.loggers = list(job.loggers)
        self.max_steps = job.spec.steps
        self.default_root_dir = str(job.folder.path) if job.folder is not None else "."
        self.s, self.task_F, self.device = job.spec.task.s, job.spec.task.F, torch.device("cpu")

    @property
    def global_step(self) -> int:
        return self._trainer.steps[self._i]

    @property
    def horizon(self) -> int:
        return int(self._trainer.curricula[self._i].horizon)

    @property
    def max_horizon(self) -> int:
        return int(self._trainer.curricula[self._i].max_horizon)

    @property
    def model(self) -> ElmanRNN:
        return self._trainer.model(self._i)


def train_ensemble(jobs: Sequence[Job], device="cpu", progress: Callable[[int, int, dict], None] | None = None,
                   progress_every: int = 1000, fast_tanh: bool | None = None,
                   matmul: str = "default") -> list[dict | None]:
    """Train compatible jobs as one batched ensemble; each gets exactly what the Lightning engine gives a run:
    its loggers' ``log_metrics`` every step, its callbacks' hooks (the run's checkpoint callback is replaced by
    this engine's own checkpoint every ``spec.checkpoint_every`` steps, in the same format), its checkpoint, its
    summary (:meth:`RunFolder.finalise`, plus ``ensemble_size``, and ``matmul`` when not ``"default"``). A job
    whose folder is completed is skipped; one with a checkpoint of either engine resumes from it. Returns one summary
    per job (``None`` without a folder). ``progress(step, max_steps, info)`` is called every ``progress_every``
    ensemble steps (else a log line). On an exception every unfinished job's summary says "failed"; on a signal
    (``twm.train.signals``) every member is checkpointed at the step just taken and its summary says "interrupted".
    ``fast_tanh``, ``matmul``: as :class:`EnsembleTrainer`."""
    jobs = list(jobs)
    summaries: list[dict | None] = [None] * len(jobs)
    todo = []
    for i, job in enumerate(jobs):
        if job.folder is not None and job.folder.is_completed():
            summaries[i] = job.folder.read_summary()
        else:
            todo.append(i)
    if not todo:
        return summaries
    trainer = EnsembleTrainer([jobs[i].spec for i in todo], device=device, fast_tanh=fast_tanh, matmul=matmul)
    extra = {"ensemble_size": len(jobs)} | ({} if matmul == "default" else {"matmul": matmul})
    members = [jobs[i] for i in todo]
    views = [MemberView(trainer, k, job) for k, job in enumerate(members)]
    hooks = [[cb for cb in job.callbacks if not isinstance(cb, (ModelCheckpoint, StepCheckpoint))] for job in members]
    names = list(trainer.offsets)
    wall0 = [0.0] * len(members)
    for k, job in enumerate(members):
        ckpt = job.folder.load_checkpoint() if job.folder is not None else None
        if ckpt is not None:
            state = TrainState.from_dict(ckpt["twm"])
            trainer.restore(k, ckpt["state_dict"], adam_state(ckpt, names), state)
            wall0[k] = float(state.wall_seconds)
            for cb in hooks[k]:
                if cb.state_key in (ckpt.get("callbacks") or {}):
                    cb.load_state_dict(ckpt["callbacks"][cb.state_key])
    for job in members:
        for logger in job.loggers:
            logger.log_hyperparams({"spec": job.spec.to_dict()})
    t0 = time.perf_counter()
    finished: set[int] = set()

    def wall(k: int) -> float:
        return wall0[k] + time.perf_counter() - t0

    def save(k: int) -> None:
        job = members[k]
        for logger in job.loggers:
            logger.save()  # metrics first: rows after the checkpoint are dropped on resume
        if job.folder is not None:
            callbacks = {cb.state_key: cb.state_dict() for cb in hooks[k] if cb.state_dict()}
            job.folder.save_checkpoint(checkpoint_payload(job.spec, trainer.state_dict(k), trainer.adam_state(k),
                                                          trainer.train_state(k, wall(k)), callbacks))

    def finish(k: int) -> None:
        job = members[k]
        for cb in hooks[k]:
            cb.on_train_end(views[k], views[k])
        save(k)  # flushes the loggers; closing them is the pipeline's (twm.train.pipeline.stop)
        if job.folder is not None:
            summaries[todo[k]] = job.folder.finalise(job.spec, **extra)
        finished.add(k)

    max_steps = max(job.spec.steps for job in members)
    iteration = model_steps = 0
    try:
        for k in range(len(members)):
            for cb in hooks[k]:
                cb.on_train_start(views[k], views[k])
            if k not in trainer.slots:  # restored at its last step
                finish(k)
        while trainer.slots:
            results = trainer.step()
            iteration += 1
            model_steps += len(results)
            for k, r in results.items():
                job, view = members[k], views[k]
                metrics = {"train/loss": r["loss"], "train/accuracy": r["accuracy"],
                           "curriculum/horizon": float(r["horizon"]), "epoch": 0}
                if job.spec.scheduler.active:
                    metrics["train/lr"] = r["lr"]
                for logger in job.loggers:
                    logger.log_metrics(metrics, step=r["step"])
                outputs = {"loss": r["loss"], "accuracy": r["accuracy"], "horizon": r["horizon"]}
                for cb in hooks[k]:
                    cb.on_train_batch_end(view, view, outputs, None, r["step"])
                if r["done"]:
                    finish(k)
                elif trainer.steps[k] % job.spec.checkpoint_every == 0:
                    save(k)
            if signals.requested() is not None:
                for k in trainer.slots:
                    save(k)
                signals.check(max(trainer.steps))
            if iteration % progress_every == 0:
                info = _info(trainer, results, model_steps, time.perf_counter() - t0)
                if progress is not None:
                    progress(max(trainer.steps), max_steps, info)
                else:
                    log.info("ensemble step %d/%d: %d active, loss %.4f, acc %.3f, horizons %s, %.1f model-steps/s",
                             max(trainer.steps), max_steps, info["active"], info["mean_loss"],
                             info["mean_accuracy"], info["horizons"], info["model_steps_per_s"])
    except BaseException as err:
        message = f"{type(err).__name__}: {err}"
        status = "interrupted" if isinstance(err, (StopRequested, KeyboardInterrupt)) else "failed"
        for k, job in enumerate(members):
            if k not in finished and job.folder is not None:
                summaries[todo[k]] = job.folder.finalise(job.spec, status, error=message,
                                                         stopped_at_step=trainer.steps[k])
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
        "finished": len(trainer.specs) - len(trainer.slots),
        "mean_loss": float(np.mean(losses)) if losses else float("nan"),
        "mean_accuracy": float(np.mean(accs)) if accs else float("nan"),
        "horizons": dict(sorted(horizons.items())),
        "model_steps_per_s": model_steps / elapsed if elapsed > 0 else float("nan"),
    }
