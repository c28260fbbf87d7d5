"""The networks (docs/science.md §3 and §9): the Elman RNN of the paper and the architectures compared with it.

Every model has the same contract, so the task, the loss, both training loops, the run folder and the analysis treat
them alike:

- ``forward(u, h0=None)``: ``u`` ``(T, B, d)`` → ``(y (T, B, d), states (T, B, state_size))``; ``states[t]`` is
  the state after step t, ``h0`` ``(B, state_size)`` the state before step 0 (zeros by default);
- ``hidden_size``: the configured width (``model.hidden_size``); ``state_size``: the width of ``states``, which is
  ``hidden_size`` except where the class docstring says otherwise;
- initialisation from an explicit ``torch.Generator`` (the run's init seed), in ``named_parameters()`` order;
- ``operator()``: the recurrent operator compared with Φ (docs/science.md §4), ``(state_size, state_size)``
  float64 on the CPU, or :class:`NoOperator` saying why there is none; ``readout_matrix()``: ``(d, state_size)``
  when the output is a linear map of the state, else ``None`` (Algorithm 1 needs both, docs/science.md §5);
- ``num_parameters()``; :func:`parameter_count` and :func:`matched_hidden_size` compare architectures at a budget.

``ElmanRNN`` is the model of docs/science.md §3: ``h(t) = tanh(W_hh h(t-1) + W_uh u(t) [+ b])``, ``y(t) = W_r h(t)``,
``h(0) = 0``, built on ``torch.nn.RNN`` (cuDNN on GPU). Biases are off by default, so the origin is a fixed point and
the Jacobian there is ``W_hh``. Its parameters are ``W_uh, W_hh, [b_ih, b_hh], W_r, [b_r]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INITS = ("uniform", "gaussian")


class OptionError(ValueError):
    """An architecture option (``model.<key>``) with a value the architecture cannot take."""

    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r}: allowed {allowed}")


class NoOperator(ValueError):
    """A model without a recurrent operator to compare with Φ (the message says why)."""


def _draw(named_parameters, n: int, init: str, generator: torch.Generator | None) -> None:
    """Fill parameters in order: ``init="uniform"``: U(−1/√n, 1/√n) for all (PyTorch's default for RNNs);
    ``"gaussian"``: N(0, 1/n) for weights, zero biases (paper App. B.3)."""
    bound = 1.0 / math.sqrt(n)
    for name, p in named_parameters:
        values = torch.empty(p.shape, dtype=p.dtype)
        if init == "uniform":
            values.uniform_(-bound, bound, generator=generator)
        elif "bias" in name:
            values.zero_()
        else:
            values.normal_(0.0, bound, generator=generator)
        with torch.no_grad():
            p.copy_(values)


class RecurrentModel(nn.Module):
    """What every model shares (the contract in the module docstring). ``OPTIONS``: the architecture's own
    config keys and their defaults (``model.<key>``); ``OPERATOR``: the name of :meth:`operator` in analyses."""

    OPTIONS: dict = {}
    OPERATOR: str | None = None
    NEEDS_WINDOW = False

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None, bias: bool, init: str):
        super().__init__()
        if hidden_size <= 0 or input_size <= 0:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.input_size, self.output_size = int(input_size), int(output_size or input_size)
        self.init, self.has_bias, self._hidden = init, bool(bias), int(hidden_size)

    @property
    def hidden_size(self) -> int:
        return self._hidden

    @property
    def state_size(self) -> int:
        return self._hidden

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def operator(self) -> torch.Tensor:
        raise NoOperator(f"{type(self).__name__} has no recurrent operator")

    def readout_matrix(self) -> torch.Tensor | None:
        return None

    def _no_bias(self) -> None:
        if self.has_bias:
            raise NoOperator(f"{type(self).__name__} with biases: the origin is not a fixed point, and only the "
                             "bias-free model's Jacobian at the origin is defined as its operator")


class ElmanRNN(RecurrentModel):
    """Elman RNN with a linear readout (docs/science.md §3). ``hidden_size`` n = ``state_size``.

    ``init="uniform"``: PyTorch's default U(−1/√n, 1/√n) for every parameter (the released experiments);
    ``init="gaussian"``: N(0, 1/n) for the weight matrices, biases zero (paper App. B.3).
    Operator: ``W_hh``, the Jacobian at the origin (with biases the analysis linearises at a fixed point instead).
    """

    OPERATOR = "W_hh"

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None, bias: bool = False,
                 init: str = "uniform", generator: torch.Generator | None = None):
        super().__init__(input_size, hidden_size, output_size, bias, init)
        self.rnn = nn.RNN(input_size, hidden_size, nonlinearity="tanh", bias=bias)
        self.readout = nn.Linear(hidden_size, self.output_size, bias=bias)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        _draw(self.named_parameters(), self.hidden_size, self.init, generator)

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.rnn(u, None if h0 is None else h0.unsqueeze(0))
        return self.readout(h), h

    @property
    def W_hh(self) -> torch.Tensor:
        """Recurrent weights, ``(n, n)``."""
        return self.rnn.weight_hh_l0.detach().clone()

    @property
    def W_uh(self) -> torch.Tensor:
        """Input weights, ``(n, d_in)``."""
        return self.rnn.weight_ih_l0.detach().clone()

    @property
    def W_r(self) -> torch.Tensor:
        """Readout weights, ``(d_out, n)``."""
        return self.readout.weight.detach().clone()

    @property
    def b(self) -> torch.Tensor | None:
        """Recurrent bias ``b_ih + b_hh`` (``(n,)``), or ``None`` without biases."""
        if not self.has_bias:
            return None
        return (self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0).detach().clone()

    def operator(self) -> torch.Tensor:
        return self.W_hh.cpu().double()

    def readout_matrix(self) -> torch.Tensor:
        return self.W_r


class LSTM(RecurrentModel):
    """LSTM (Hochreiter & Schmidhuber 1997) on ``torch.nn.LSTM``, bias-free by default, with a linear readout of h
    (docs/science.md §9). ``hidden_size`` n units; the state is ``(h, c)``: ``state_size`` 2n, ``states`` and ``h0``
    are ``[h; c]``.

    Operator: the Jacobian of the update ``(h, c) → (h', c')`` with zero input at the origin (the fixed point of the
    bias-free model). There every gate is σ(0) = 1/2 and the candidate tanh(0) = 0, so with ``W_hg`` the candidate
    block of ``weight_hh``: ``[[W_hg/4, I/4], [W_hg/2, I/2]]``.
    """

    OPERATOR = "jacobian_at_origin"

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None, bias: bool = False,
                 init: str = "uniform", generator: torch.Generator | None = None):
        super().__init__(input_size, hidden_size, output_size, bias, init)
        self.rnn = nn.LSTM(input_size, hidden_size, bias=bias)
        self.readout = nn.Linear(hidden_size, self.output_size, bias=bias)
        _draw(self.named_parameters(), hidden_size, init, generator)

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.hidden_size
        if h0 is None:
            h0 = u.new_zeros(u.shape[1], 2 * n)
        h_prev, c = h0[:, :n], h0[:, n:]
        h, _ = self.rnn(u, (h_prev.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()))
        # the cell state of every step, from the gates the hidden states imply (nn.LSTM returns only the last)
        gates = u @ self.rnn.weight_ih_l0.T + torch.cat([h_prev.unsqueeze(0), h[:-1]]) @ self.rnn.weight_hh_l0.T
        if self.has_bias:
            gates = gates + self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0
        i, f, g, _ = gates.chunk(4, dim=-1)
        i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
        cells = []
        for t in range(u.shape[0]):
            c = f[t] * c + i[t] * g[t]
            cells.append(c)
        return self.readout(h), torch.cat([h, torch.stack(cells)], dim=-1)

    def operator(self) -> torch.Tensor:
        self._no_bias()
        n = self.hidden_size
        W_hg = self.rnn.weight_hh_l0.detach().cpu().double()[2 * n: 3 * n]
        eye = torch.eye(n, dtype=torch.float64)
        return torch.cat([torch.cat([W_hg / 4, eye / 4], 1), torch.cat([W_hg / 2, eye / 2], 1)])

    def readout_matrix(self) -> torch.Tensor:
        W = self.readout.weight.detach()
        return torch.cat([W, torch.zeros_like(W)], dim=1)


class GRU(RecurrentModel):
    """GRU (Cho et al. 2014) on ``torch.nn.GRU``, bias-free by default, with a linear readout (docs/science.md
    §9). ``hidden_size`` n = ``state_size``.

    Operator: the Jacobian of ``h → h'`` with zero input at the origin (the fixed point of the bias-free model):
    both gates are σ(0) = 1/2 and the candidate is tanh(0) = 0, so with ``W_hn`` the candidate block of
    ``weight_hh`` it is ``W_hn/4 + I/2``.
    """

    OPERATOR = "jacobian_at_origin"

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None, bias: bool = False,
                 init: str = "uniform", generator: torch.Generator | None = None):
        super().__init__(input_size, hidden_size, output_size, bias, init)
        self.rnn = nn.GRU(input_size, hidden_size, bias=bias)
        self.readout = nn.Linear(hidden_size, self.output_size, bias=bias)
        _draw(self.named_parameters(), hidden_size, init, generator)

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.rnn(u, None if h0 is None else h0.unsqueeze(0).contiguous())
        return self.readout(h), h

    def operator(self) -> torch.Tensor:
        self._no_bias()
        n = self.hidden_size
        W_hn = self.rnn.weight_hh_l0.detach().cpu().double()[2 * n:]
        return W_hn / 4 + torch.eye(n, dtype=torch.float64) / 2

    def readout_matrix(self) -> torch.Tensor:
        return self.readout.weight.detach().clone()


class WaveRNN(RecurrentModel):
    """The wave RNN of Keller, Muller, Sejnowski & Welling, "Traveling Waves Encode the Recent Past and Enhance
    Sequence Learning" (ICLR 2024), with tanh (docs/science.md §9): ``h(t) = tanh(W_u u(t) + K ⊛ h(t-1) [+ b])``,
    ``y(t) = W_r h(t)``. The state is ``channels`` rings of ``hidden_size / channels`` positions (``hidden_size`` n =
    ``state_size``, channel-major); ``K ⊛`` is a circular convolution over positions with ``kernel_size`` taps that
    mixes channels, initialised as a one-step shift (position p takes the content of position p+1, in every
    channel: waves travel toward position 0, as Φ shifts toward the oldest column). The other weights are drawn
    as ``init`` says.

    Operator: the recurrent map ``h ↦ K ⊛ h`` as an ``(n, n)`` matrix (:meth:`recurrent_matrix`, the Jacobian at
    the origin of the bias-free model); a permutation matrix at initialisation. The forward pass multiplies by it up
    to ``DENSE_MAX`` units and convolves above (the same map; faster on a CPU each way).
    """

    OPTIONS = {"channels": 4, "kernel_size": 3}
    OPERATOR = "recurrent_map"
    DENSE_MAX = 256

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None, bias: bool = False,
                 init: str = "uniform", generator: torch.Generator | None = None, channels: int = 4,
                 kernel_size: int = 3):
        super().__init__(input_size, hidden_size, output_size, bias, init)
        if channels < 1 or hidden_size % channels:
            raise OptionError("channels", channels, f"a divisor of hidden_size={hidden_size} (hidden_size = channels "
                                                    "× positions)")
        positions = hidden_size // channels
        if kernel_size < 3 or kernel_size % 2 == 0 or kernel_size > positions:
            raise OptionError("kernel_size", kernel_size, f"odd, >= 3 (a shift needs a neighbour) and at most the "
                                                          f"{positions} positions per channel")
        self.channels, self.positions = int(channels), positions
        self.encoder = nn.Linear(input_size, hidden_size, bias=bias)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, padding_mode="circular",
                              bias=bias)
        self.readout = nn.Linear(hidden_size, self.output_size, bias=bias)
        _draw([(k, p) for k, p in self.named_parameters() if k != "conv.weight"], hidden_size, init, generator)
        shift = torch.zeros_like(self.conv.weight)
        shift[torch.arange(channels), torch.arange(channels), kernel_size // 2 + 1] = 1.0
        with torch.no_grad():
            self.conv.weight.copy_(shift)

    def recurrent_matrix(self) -> torch.Tensor:
        """``K ⊛`` (no bias) as an ``(n, n)`` matrix, differentiably: column j is the circular convolution of the
        unit state j."""
        w = self.conv.weight
        units = torch.eye(self.hidden_size, dtype=w.dtype, device=w.device).view(-1, self.channels, self.positions)
        pad = w.shape[-1] // 2
        return nn.functional.conv1d(nn.functional.pad(units, (pad, pad), mode="circular"), w).flatten(1).T

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        B = u.shape[1]
        h = u.new_zeros(B, self.hidden_size) if h0 is None else h0
        drive = self.encoder(u)
        if self.conv.bias is not None:
            drive = drive + self.conv.bias.repeat_interleave(self.positions)
        w, pad = self.conv.weight, self.conv.weight.shape[-1] // 2
        # up to DENSE_MAX units one (n, n) matmul per step is faster on a CPU; above it the convolution (O(n))
        K = self.recurrent_matrix() if self.hidden_size <= self.DENSE_MAX else None
        states = []
        for drive_t in drive.unbind(0):  # unbind: one gradient for the whole drive, not one full-size one per step
            if K is not None:
                recurrent = h @ K.T
            else:
                ring = nn.functional.pad(h.view(B, self.channels, self.positions), (pad, pad), mode="circular")
                recurrent = nn.functional.conv1d(ring, w).flatten(1)
            h = torch.tanh(drive_t + recurrent)
            states.append(h)
        states = torch.stack(states)
        return self.readout(states), states

    def operator(self) -> torch.Tensor:
        self._no_bias()
        with torch.no_grad():
            return self.recurrent_matrix().cpu().double()

    def readout_matrix(self) -> torch.Tensor:
        return self.readout.weight.detach().clone()


class DiagonalLinearRNN(RecurrentModel):
    """A diagonal linear recurrence, as the LRU of Orvieto et al., "Resurrecting Recurrent Neural Networks for Long
    Sequences" (ICML 2023), without its normalisation and skip term (docs/science.md §9): ``hidden_size`` n complex
    modes ``h(t) = λ ⊙ h(t-1) + B u(t) [+ b]``, ``λ = exp(−exp(ν) + iθ)`` (so ``|λ| < 1``), ``y(t) = W_r [Re h;
    Im h] [+ b_r]``. The state is ``[Re h; Im h]``: ``state_size`` 2n. At initialisation ``|λ|`` is drawn on the ring
    ``[r_min, r_max]`` (``|λ|²`` uniform) and θ uniform in [0, 2π); ``B`` (``input``, ``(2n, d)``: Re rows, then Im)
    and ``W_r`` as ``init`` says.

    Operator: the update of ``[Re h; Im h]``, ``[[diag Re λ, −diag Im λ], [diag Im λ, diag Re λ]]`` ``(2n, 2n)``; its
    eigenvalues are λ and their conjugates (:meth:`eigenvalues` gives λ alone).
    """

    OPTIONS = {"r_min": 0.5, "r_max": 0.99}
    OPERATOR = "diagonal_recurrence"

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None, bias: bool = False,
                 init: str = "uniform", generator: torch.Generator | None = None, r_min: float = 0.5,
                 r_max: float = 0.99):
        super().__init__(input_size, hidden_size, output_size, bias, init)
        if not 0.0 < r_min < 1.0:
            raise OptionError("r_min", r_min, "0 < r_min < 1 (|λ| at initialisation lies in [r_min, r_max])")
        if not r_min < r_max < 1.0:
            raise OptionError("r_max", r_max, f"r_min={r_min} < r_max < 1 (|λ| < 1 keeps the recurrence stable)")
        n = hidden_size
        self.nu = nn.Parameter(torch.empty(n))
        self.theta = nn.Parameter(torch.empty(n))
        self.input = nn.Linear(input_size, 2 * n, bias=bias)
        self.readout = nn.Linear(2 * n, self.output_size, bias=bias)
        ring = torch.empty(n).uniform_(0.0, 1.0, generator=generator)
        phase = torch.empty(n).uniform_(0.0, 2 * math.pi, generator=generator)
        _draw([(k, p) for k, p in self.named_parameters() if k not in ("nu", "theta")], n, init, generator)
        with torch.no_grad():
            self.nu.copy_(torch.log(-0.5 * torch.log(ring * (r_max**2 - r_min**2) + r_min**2)))
            self.theta.copy_(phase)

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    def _lambda(self) -> tuple[torch.Tensor, torch.Tensor]:
        modulus = torch.exp(-torch.exp(self.nu))
        return modulus * torch.cos(self.theta), modulus * torch.sin(self.theta)

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.hidden_size
        drive = self.input(u)
        drive = torch.complex(drive[..., :n], drive[..., n:])
        h = drive.new_zeros(u.shape[1], n) if h0 is None else torch.complex(h0[:, :n], h0[:, n:])
        lam = torch.complex(*self._lambda())
        states = []
        for drive_t in drive.unbind(0):  # unbind: one gradient for the whole drive, not one full-size one per step
            h = lam * h + drive_t
            states.append(h)
        states = torch.stack(states)
        states = torch.cat([states.real, states.imag], dim=-1)
        return self.readout(states), states

    def eigenvalues(self) -> torch.Tensor:
        """λ, ``(n,)`` complex128 on the CPU."""
        with torch.no_grad():
            re, im = self._lambda()
        return torch.complex(re.cpu().double(), im.cpu().double())

    def operator(self) -> torch.Tensor:
        lam = self.eigenvalues()
        re, im = torch.diag(lam.real), torch.diag(lam.imag)
        return torch.cat([torch.cat([re, -im], 1), torch.cat([im, re], 1)])

    def readout_matrix(self) -> torch.Tensor:
        return self.readout.weight.detach().clone()


class AttentionDecoder(RecurrentModel):
    """A single-head, attention-only decoder over a window of the last ``window`` = s tokens (Vaswani et al. 2017,
    without feed-forward layers, residuals or normalisation): one step of it is one step of the self-attention
    boundary condition, eq. 8 (docs/science.md §2.3, §9). Tokens are ``d``-dimensional: the inputs during the first
    s steps, then the model's own outputs fed back (continuous, differentiable; the zero inputs after step s are
    not read). At each step, over the window ``x_1..x_s`` (oldest first, zeros before the first token):
    ``e_j = W_E x_j [+ p_j]``, ``α = softmax_j((W_K e_j)·(W_Q e_s))`` (unscaled, as eq. 8),
    ``y = W_O Σ_j α_j W_V e_j``. ``positional``: learned window-relative position embeddings ``p_j``, added to the
    embeddings that keys, queries and values are made from; without them the output does not change when the
    window's older tokens are permuted.

    ``hidden_size`` k: the width of embeddings, keys, queries and values. The state is the window itself, the
    substrate of eq. 8 flattened oldest block first: ``state_size`` s·d. Operator: none (a behavioural comparison
    only); the readout is not a linear map of the state.
    """

    OPTIONS = {"positional": False}
    NEEDS_WINDOW = True

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None, bias: bool = False,
                 init: str = "uniform", generator: torch.Generator | None = None, window: int = 1,
                 positional: bool = False):
        super().__init__(input_size, hidden_size, output_size, bias, init)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if self.output_size != input_size:
            raise ValueError("the attention decoder feeds its outputs back as tokens: output_size must equal "
                             f"input_size, got {self.output_size} and {input_size}")
        self.window, self.positional = int(window), bool(positional)
        k = hidden_size
        self.embed = nn.Linear(input_size, k, bias=bias)
        self.query = nn.Linear(k, k, bias=bias)
        self.key = nn.Linear(k, k, bias=bias)
        self.value = nn.Linear(k, k, bias=bias)
        self.readout = nn.Linear(k, input_size, bias=bias)
        self.positions = nn.Parameter(torch.empty(window, k)) if positional else None
        _draw(self.named_parameters(), k, init, generator)

    @property
    def state_size(self) -> int:
        return self.window * self.input_size

    def attend(self, tokens: torch.Tensor) -> torch.Tensor:
        """One decoder step: ``tokens`` ``(B, s, d)`` (row 0 the oldest, row -1 the newest, the query) → the
        output ``(B, d)``."""
        e = self.embed(tokens)
        if self.positions is not None:
            e = e + self.positions
        scores = (self.key(e) @ self.query(e[:, -1]).unsqueeze(-1)).squeeze(-1)
        alpha = torch.softmax(scores, dim=-1)
        return self.readout((alpha.unsqueeze(1) @ self.value(e)).squeeze(1))

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        T, B, d = u.shape
        tokens = u.new_zeros(B, self.window, d) if h0 is None else h0.reshape(B, self.window, d)
        outputs, states = [], []
        for t in range(T):
            y = self.attend(tokens)
            tokens = torch.cat([tokens[:, 1:], (u[t] if t < self.window else y).unsqueeze(1)], dim=1)
            outputs.append(y)
            states.append(tokens.reshape(B, -1))
        return torch.stack(outputs), torch.stack(states)

    def operator(self) -> torch.Tensor:
        raise NoOperator("an attention-only decoder has no recurrent operator: it is compared with the TWM by "
                         "behaviour only (docs/science.md §9)")


MODELS: dict[str, type[RecurrentModel]] = {
    "elman": ElmanRNN,
    "lstm": LSTM,
    "gru": GRU,
    "wave_rnn": WaveRNN,
    "diag_linear": DiagonalLinearRNN,
    "attention": AttentionDecoder,
}


def build_model(arch: str, d: int, hidden_size: int, window: int, bias: bool = False, init: str = "uniform",
                generator: torch.Generator | None = None, **options) -> RecurrentModel:
    """The network ``arch`` (a key of :data:`MODELS`) for ``d``-dimensional tasks with history ``window`` = s,
    with its options (``MODELS[arch].OPTIONS`` keys; unset ones take their defaults)."""
    if arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(MODELS)}")
    cls = MODELS[arch]
    unknown = set(options) - set(cls.OPTIONS)
    if unknown:
        raise ValueError(f"{arch} has no option {', '.join(sorted(unknown))}; its options: "
                         f"{', '.join(cls.OPTIONS) or 'none'}")
    if cls.NEEDS_WINDOW:
        options = {**options, "window": window}
    return cls(d, hidden_size, d, bias=bias, init=init, generator=generator, **options)


def parameter_count(arch: str, d: int, hidden_size: int, window: int, bias: bool = False, **options) -> int:
    """Trainable parameters of ``build_model(arch, d, hidden_size, window, bias, **options)``."""
    return build_model(arch, d, hidden_size, window, bias, generator=torch.Generator().manual_seed(0),
                       **options).num_parameters()


def matched_hidden_size(arch: str, budget: int, d: int, window: int, bias: bool = False, **options) -> int:
    """The ``hidden_size`` whose :func:`parameter_count` is closest to ``budget`` (ties: the smaller one), among the
    valid sizes (for the wave RNN, multiples of ``channels`` with at least ``kernel_size`` positions)."""
    step = smallest = 1
    if arch == "wave_rnn":
        opts = {**WaveRNN.OPTIONS, **options}
        step, smallest = int(opts["channels"]), int(opts["kernel_size"])

    def count(k: int) -> int:
        return parameter_count(arch, d, k * step, window, bias, **options)

    lo = hi = smallest  # sizes k * step; the count grows with k: double, then bisect for the first k >= budget
    while count(hi) < budget:
        lo, hi = hi + 1, 2 * hi
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if count(mid) < budget else (lo, mid)
    best = min((k for k in (lo - 1, lo) if k >= smallest), key=lambda k: (abs(count(k) - budget), k))
    return best * step
