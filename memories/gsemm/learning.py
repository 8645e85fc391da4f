"""The online learning rule of GSEMM: Hebbian for Ξ, STDP-like for Φ.

The rule is gradient descent on the GSEMM energy with the feature layer
clamped to the presented pattern, plus the decay that keeps the weights
bounded (the derivation is in ``docs/gsemm.md``). For a presentation at time
t with pattern x_t, hidden code p_t (one-hot on the winning memory slot) and
delayed hidden code p_{t-1}:

- ``ΔΞ = η_ξ (x_t p_tᵀ − Ξ diag(p_t))``: Hebbian post (hidden) × pre
  (feature), with an Oja-like decay, so the winning column moves toward x_t;
- ``ΔΦ = η_φ (p_t p_{t−1}ᵀ − Φ diag(p_{t−1}))``: delayed presynaptic ×
  current postsynaptic, so the column of the previous memory moves toward the
  one-hot of its successor.

With the default learning rate (``None``) the rates are ``1/count``: a
column of Ξ is the mean of the patterns assigned to it and a column of Φ is
the empirical distribution of that memory's successors. A constant rate
forgets old exemplars exponentially instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MemoryWeights:
    """Ξ, Φ and the presentation counts behind their learning rates."""

    xi: Tensor
    """[N, K]: column μ is memory μ."""
    phi: Tensor
    """[K, K]: column μ is the distribution of μ's successors."""
    pattern_counts: Tensor
    """[K]: presentations assigned to each memory."""
    transition_counts: Tensor
    """[K]: transitions observed out of each memory."""


def transform_patterns(x: Tensor, transform: str) -> Tensor:
    """Bring real-valued patterns [..., N] into the space the dynamics expect.

    - ``"unit"``: rescale each pattern to norm √N, the norm of a ±1 pattern,
      so the softmax sharpness of DSEM and the gain of LISEM are those the
      paper's parameters were tuned for. ±1 patterns are unchanged.
    - ``"sign"``: binarise to ±1 (zeros stay 0), the paper's patterns.
    - ``"none"``: use as given.
    """
    if transform == "sign":
        return torch.sign(x)
    if transform == "unit":
        norm = x.norm(dim=-1, keepdim=True)
        return x * (math.sqrt(x.shape[-1]) / norm)
    return x


def cosine_overlaps(x: Tensor, xi: Tensor) -> Tensor:
    """Cosine similarity of each row of x [..., N] with each column of Ξ: [..., K]."""
    dots = x @ xi
    norms = x.norm(dim=-1, keepdim=True) * xi.norm(dim=0)
    return dots / norms.clamp_min(torch.finfo(x.dtype).tiny)


def _rate(count: int, learning_rate: float | None) -> float:
    if count <= 1 or learning_rate is None:
        return 1.0 / max(count, 1)
    return learning_rate


def learn_sequence(
    weights: MemoryWeights,
    sequence: Tensor,
    *,
    merge_threshold: float,
    learning_rate: float | None,
) -> tuple[MemoryWeights, Tensor]:
    """Present a sequence of patterns once, in order, and update Ξ and Φ.

    A pattern whose cosine overlap with an existing memory reaches
    ``merge_threshold`` is assigned to that memory; otherwise a new memory
    slot is recruited (its column starts at zero, so its first update copies
    the pattern). Consecutive presentations assigned to the same memory make
    no transition: a held memory is one event, not a self-loop.

    Args:
        weights: The current weights (not modified).
        sequence: [T, N] patterns, already transformed.
        merge_threshold: Overlap at or above which a pattern joins a memory.
        learning_rate: Constant rate, or ``None`` for ``1/count``.

    Returns:
        The new weights and the [T] memory index assigned to each pattern.
    """
    n_steps = sequence.shape[0]
    k_old = weights.xi.shape[1]
    # Room for every pattern to recruit a slot; trimmed at the end.
    xi = torch.cat([weights.xi, weights.xi.new_zeros(weights.xi.shape[0], n_steps)], dim=1)
    phi = weights.phi.new_zeros(k_old + n_steps, k_old + n_steps)
    phi[:k_old, :k_old] = weights.phi
    pattern_counts = torch.cat([weights.pattern_counts, weights.pattern_counts.new_zeros(n_steps)])
    transition_counts = torch.cat([weights.transition_counts, weights.transition_counts.new_zeros(n_steps)])
    used = k_old
    slots = torch.empty(n_steps, dtype=torch.long)
    previous: int | None = None
    for t in range(n_steps):
        x = sequence[t]
        slot = used
        if used > 0:
            overlaps = cosine_overlaps(x, xi[:, :used])
            best = int(overlaps.argmax())
            if float(overlaps[best]) >= merge_threshold:
                slot = best
        if slot == used:
            used += 1
        slots[t] = slot
        pattern_counts[slot] += 1
        rate = _rate(int(pattern_counts[slot]), learning_rate)
        xi[:, slot] += rate * (x - xi[:, slot])
        if previous is not None and previous != slot:
            transition_counts[previous] += 1
            rate = _rate(int(transition_counts[previous]), learning_rate)
            successor = torch.zeros_like(phi[:, previous])
            successor[slot] = 1.0
            phi[:, previous] += rate * (successor - phi[:, previous])
        previous = slot
    new = MemoryWeights(
        xi=xi[:, :used].contiguous(),
        phi=phi[:used, :used].contiguous(),
        pattern_counts=pattern_counts[:used].contiguous(),
        transition_counts=transition_counts[:used].contiguous(),
    )
    return new, slots
