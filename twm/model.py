"""The Elman RNN of docs/science.md §3: ``h(t) = tanh(W_hh h(t-1) + W_uh u(t) [+ b])``, ``y(t) = W_r h(t)``,
``h(0) = 0``.

Built on ``torch.nn.RNN`` (cuDNN on GPU). Biases are off by default, so the origin is a fixed point and the
Jacobian there is ``W_hh``. Initialisation draws from an explicit ``torch.Generator`` so the same seed gives the
same weights on any device, in ``named_parameters()`` order: ``W_uh, W_hh, [b_ih, b_hh], W_r, [b_r]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INITS = ("uniform", "gaussian")


class ElmanRNN(nn.Module):
    """Elman RNN with a linear readout. ``forward(u)``: ``u`` ``(T, B, d_in)`` → ``(y (T, B, d_out), h (T, B, n))``.

    ``init="uniform"``: PyTorch's default U(−1/√n, 1/√n) for every parameter (the released experiments);
    ``init="gaussian"``: N(0, 1/n) for the weight matrices, biases zero (paper App. B.3).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        bias: bool = False,
        init: str = "uniform",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if hidden_size <= 0 or input_size <= 0:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.init = init
        self.rnn = nn.RNN(input_size, hidden_size, nonlinearity="tanh", bias=bias)
        self.readout = nn.Linear(hidden_size, output_size or input_size, bias=bias)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        n = self.hidden_size
        bound = 1.0 / math.sqrt(n)
        for name, p in self.named_parameters():
            values = torch.empty(p.shape, dtype=p.dtype)
            if self.init == "uniform":
                values.uniform_(-bound, bound, generator=generator)
            elif "weight" in name:
                values.normal_(0.0, bound, generator=generator)
            else:
                values.zero_()
            p.copy_(values)

    @property
    def hidden_size(self) -> int:
        return self.rnn.hidden_size

    @property
    def has_bias(self) -> bool:
        return self.rnn.bias

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
