"""Traveling-wave working memory (TWM): a lattice of s slots × d features.

After Karuvally, Sejnowski and Siegelmann, "Hidden Traveling Waves bind
Working Memory Variables in Recurrent Neural Networks" (ICML 2024, arXiv
2402.10163). d independent waves travel from the start boundary (slot
i = s, the newest) toward the open far end (slot i = 1, the oldest); the
start boundary computes a function f of the whole substrate::

    h[i](t+1) = h[i+1](t)                         for i < s
    h[s](t+1) = act(f(h[1](t), ..., h[s](t)) + u(t+1))

``u`` is the external drive (an agent's projected input) written into the
boundary. In tensors, slot index 0 is the oldest (i = 1) and index s-1 the
newest (i = s). Boundary conditions:

- ``"copy"``: f = 0; the boundary copies the drive, so the lattice holds the
  last s drives exactly and forgets them after s steps (open end).
- ``"linear"`` (LBC): f(h) = W_f flat(h) (+ b). With ``act`` = identity the
  whole lattice is the linear RNN ``v(t+1) = A v(t) + B u(t+1)`` with A the
  block companion matrix (shift + low rank), see :meth:`LinearBoundary.companion_matrix`.
- ``"attention"`` (SBC): f(h) = W_o Σ_i softmax_i(q·k_i / sqrt(d_head) + p_i) W_v h[i]
  with q = W_q h[s], k_i = W_k h[i], per head; the optional learned bias p
  over slots is a relative-position bias. This is the autoregressive step of
  a one-layer attention-only transformer whose context window is the lattice.

``act`` is the identity (the paper's boundaries) or tanh (a bounded boundary,
used by the trainable agents so that a strong drive overrides f; see
``docs/wave.md``). Everything is batched and differentiable.

Example:
    >>> lattice = WaveLattice(slots=3, features=2, boundary="copy")
    >>> drive = torch.arange(8.0).view(1, 4, 2)
    >>> lattice(drive)[0, -1].tolist()  # after 4 steps the first drive has left
    [[2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]
"""

from __future__ import annotations

import math

import torch
from torch import nn

from replaybench.errors import ConfigError
from replaybench.params import Interval, OneOf, check_param

_POS_INT = Interval(int, 1, None)


class CopyBoundary(nn.Module):
    """f = 0: the boundary holds only the drive."""

    def forward(self, lattice: torch.Tensor) -> torch.Tensor:
        return lattice.new_zeros(lattice.shape[0], lattice.shape[2])


class LinearBoundary(nn.Module):
    """LBC: f(h) = W_f flat(h) + b, a linear map of the whole lattice.

    ``weight[:, k*d:(k+1)*d]`` acts on slot k (0 = oldest).
    """

    def __init__(self, *, slots: int, features: int, bias: bool = False) -> None:
        super().__init__()
        self.slots, self.features = slots, features
        self.map = nn.Linear(slots * features, features, bias=bias)

    @property
    def weight(self) -> torch.Tensor:
        """W_f, [d, s*d]."""
        return self.map.weight

    def forward(self, lattice: torch.Tensor) -> torch.Tensor:
        return self.map(lattice.flatten(1))

    def companion_matrix(self) -> torch.Tensor:
        """The block companion matrix A [s*d, s*d] of the identity-activation LBC lattice.

        On the flattened state v = (h[1]; ...; h[s]), one step is
        ``v(t+1) = A v(t) + B u(t+1) (+ b in the last block)``: identity blocks
        on the superdiagonal (the shift) and W_f as the last block row (the
        low-rank boundary).
        """
        s, d = self.slots, self.features
        size = s * d
        shift = torch.diag(torch.ones(size - d, dtype=self.weight.dtype, device=self.weight.device), d)
        return torch.cat([shift[: size - d], self.weight], dim=0)


class AttentionBoundary(nn.Module):
    """SBC: multi-head self-attention from the newest slot over every slot.

    Weights have the layout of ``torch.nn.MultiheadAttention(d, heads,
    bias=False)``: ``query``, ``key``, ``value`` and ``out`` are [d, d].
    ``position_bias`` [heads, s] is added to the scores (zero and frozen when
    disabled).
    """

    def __init__(self, *, slots: int, features: int, heads: int = 1, position_bias: bool = False) -> None:
        super().__init__()
        if features % heads:
            raise ConfigError(
                f"The 'heads' parameter of AttentionBoundary must divide features={features}. Got {heads} instead."
            )
        self.heads, self.head_dim = heads, features // heads
        self.query = nn.Linear(features, features, bias=False)
        self.key = nn.Linear(features, features, bias=False)
        self.value = nn.Linear(features, features, bias=False)
        self.out = nn.Linear(features, features, bias=False)
        self.position_bias = nn.Parameter(torch.zeros(heads, slots), requires_grad=position_bias)

    def attention(self, lattice: torch.Tensor) -> torch.Tensor:
        """Attention weights [B, heads, s] of the newest slot over all slots."""
        b, s, _ = lattice.shape
        q = self.query(lattice[:, -1]).view(b, self.heads, 1, self.head_dim)
        k = self.key(lattice).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(self.head_dim)
        return torch.softmax(scores + self.position_bias, dim=-1)

    def forward(self, lattice: torch.Tensor) -> torch.Tensor:
        b, s, d = lattice.shape
        v = self.value(lattice).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        mixed = (self.attention(lattice).unsqueeze(2) @ v).reshape(b, d)
        return self.out(mixed)


class WaveLattice(nn.Module):
    """The traveling-wave lattice, usable as a recurrent core.

    Args:
        slots: s, the number of history slots (>= 1).
        features: d, the number of independent waves (>= 1).
        boundary: "copy", "linear" (LBC) or "attention" (SBC).
        activation: "identity" or "tanh", applied at the start boundary.
        bias: A bias in the linear boundary.
        heads: Attention heads of the SBC (must divide ``features``).
        position_bias: Learn a per-slot score bias in the SBC.

    Raises:
        ConfigError: On sizes <= 0, unknown options, or (when called) a drive
            whose width is not ``features``.
    """

    def __init__(
        self,
        *,
        slots: int,
        features: int,
        boundary: str = "linear",
        activation: str = "identity",
        bias: bool = False,
        heads: int = 1,
        position_bias: bool = False,
    ) -> None:
        super().__init__()
        check_param("WaveLattice", "slots", slots, _POS_INT)
        check_param("WaveLattice", "features", features, _POS_INT)
        check_param("WaveLattice", "boundary", boundary, OneOf("copy", "linear", "attention"))
        check_param("WaveLattice", "activation", activation, OneOf("identity", "tanh"))
        check_param("WaveLattice", "heads", heads, _POS_INT)
        self.slots, self.features = slots, features
        self.activation = activation
        if boundary == "copy":
            self.boundary: nn.Module = CopyBoundary()
        elif boundary == "linear":
            self.boundary = LinearBoundary(slots=slots, features=features, bias=bias)
        else:
            self.boundary = AttentionBoundary(slots=slots, features=features, heads=heads, position_bias=position_bias)

    @torch.no_grad()
    def zero_boundary(self) -> None:
        """Set f to 0 (the copy boundary) while keeping its parameters trainable.

        Zeroes W_f (and b) of the LBC, or the output map W_o of the SBC.
        """
        if isinstance(self.boundary, LinearBoundary):
            for p in self.boundary.map.parameters():
                p.zero_()
        elif isinstance(self.boundary, AttentionBoundary):
            self.boundary.out.weight.zero_()

    def initial_state(self, batch: int, *, device: torch.device | str | None = None) -> torch.Tensor:
        """An empty lattice [batch, s, d]."""
        return torch.zeros(batch, self.slots, self.features, device=device)

    def step(self, lattice: torch.Tensor, drive: torch.Tensor | None = None) -> torch.Tensor:
        """Advance one step: shift every wave one slot toward the far end, write the boundary.

        Args:
            lattice: [B, s, d].
            drive: [B, d] external drive written into the boundary, or None.

        Returns:
            The next lattice [B, s, d].
        """
        front = self.boundary(lattice)
        if drive is not None:
            front = front + drive
        if self.activation == "tanh":
            front = torch.tanh(front)
        return torch.cat([lattice[:, 1:], front.unsqueeze(1)], dim=1)

    def forward(self, drive: torch.Tensor, lattice: torch.Tensor | None = None) -> torch.Tensor:
        """Run over a drive sequence [B, T, d]; returns every lattice [B, T, s, d]."""
        if drive.dim() != 3 or drive.shape[-1] != self.features:
            raise ConfigError(
                f"The drive of WaveLattice must have shape [B, T, {self.features}]. Got {tuple(drive.shape)} instead."
            )
        if lattice is None:
            lattice = self.initial_state(drive.shape[0], device=drive.device).to(drive.dtype)
        states = []
        for t in range(drive.shape[1]):
            lattice = self.step(lattice, drive[:, t])
            states.append(lattice)
        return torch.stack(states, dim=1)
