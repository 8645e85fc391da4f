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

That rule (:func:`learn_sequence`, ``learning_rule="cluster"``) picks the slot
by a cosine threshold outside the dynamics. :func:`learn_sequence_energy`
(``learning_rule="energy"``, DSEM) makes the same two updates act through the
dynamics: the pattern is clamped, the delay signal integrates its own
equation, and p_t, p_{t−1} are the hidden layer's softmax responses to the
clamped features and to the delay signal, with one free slot competing by an
excitability bias (Karuvally, Sejnowski & Siegelmann, ICML 2023: learning
"Hebbian or STDP-like, derived from energy"; the derivation is ours).
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


def _with_free_slots(weights: MemoryWeights, extra: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Copies of Ξ, Φ and both counts with ``extra`` empty slots appended (room for every pattern to be new)."""
    k_old = weights.xi.shape[1]
    xi = torch.cat([weights.xi, weights.xi.new_zeros(weights.xi.shape[0], extra)], dim=1)
    phi = weights.phi.new_zeros(k_old + extra, k_old + extra)
    phi[:k_old, :k_old] = weights.phi
    pattern_counts = torch.cat([weights.pattern_counts, weights.pattern_counts.new_zeros(extra)])
    transition_counts = torch.cat([weights.transition_counts, weights.transition_counts.new_zeros(extra)])
    return xi, phi, pattern_counts, transition_counts


def _trimmed(xi: Tensor, phi: Tensor, pattern_counts: Tensor, transition_counts: Tensor, used: int) -> MemoryWeights:
    """The first ``used`` slots as weights; the empty ones are dropped."""
    return MemoryWeights(
        xi=xi[:, :used].contiguous(),
        phi=phi[:used, :used].contiguous(),
        pattern_counts=pattern_counts[:used].contiguous(),
        transition_counts=transition_counts[:used].contiguous(),
    )


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
    xi, phi, pattern_counts, transition_counts = _with_free_slots(weights, n_steps)
    used = weights.xi.shape[1]
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
    return _trimmed(xi, phi, pattern_counts, transition_counts, used), slots


HiddenCode = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``(v, xi, bias) -> p``: the hidden (memory) layer's output [B, K] to feature
state v through the self term plus a per-slot excitability ``bias`` [K] (the
sequence term is gated off while learning; see ``docs/gsemm.md``)."""


def learn_sequence_energy(
    weights: MemoryWeights,
    sequence: Tensor,
    *,
    field: Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
    step: Callable[..., tuple[Tensor, Tensor]],
    hidden_code: HiddenCode,
    dt: float,
    presentation_steps: int,
    recruit_bias: float,
) -> tuple[MemoryWeights, Tensor]:
    """Present a sequence through the dynamics and descend the energy in Ξ and Φ.

    Each pattern x_t is clamped on the feature layer (v = x_t) for
    ``presentation_steps`` integration steps while the delay signal v_d runs
    its own equation (``T_d dv_d/dt = β_d σ_f(v) − v_d``). Two hidden
    responses are read off the model's own hidden layer: the delayed one
    q_t = σ_h(v_d at onset), i.e. the memory the delay signal still holds, and
    the current one p_t = σ_h(x_t) at the end of the window. Then

    - ``ΔΞ = (x_t p_tᵀ − Ξ diag(p_t)) / m_Ξ``: the Hebbian term of −∂E/∂Ξ
      (post × pre) with a decay, m_Ξ the summed p of each column, so a column
      is the p-weighted mean of the patterns it responded to;
    - ``ΔΦ = (p_t q_tᵀ − Φ diag(q_t)) / m_Φ``: −∂E/∂Φ with the delayed hidden
      activity as presynaptic factor (STDP-like), plus decay.

    Slot allocation is part of the hidden competition: one free slot (zero
    column) with excitability ``recruit_bias`` competes with the learned
    memories; a pattern it wins is new. When it wins (p ≥ ½ at one
    presentation) a new free slot opens; the free slot left at the end is
    dropped.

    Args:
        weights: The current weights (not modified).
        sequence: [T, N] patterns, already transformed.
        field: ``(v, v_d, xi, phi) -> (dv/dt, dv_d/dt)``, the model's field.
        step: An integrator step from :mod:`.integrators`.
        hidden_code: The model's hidden layer output.
        dt: Integration step.
        presentation_steps: Steps each pattern is held.
        recruit_bias: Drive of the free slot (same units as the hidden input).

    Returns:
        The new weights and the [T] memory index that won each presentation.
    """
    n_steps, n_features = sequence.shape
    xi, phi, pattern_mass, transition_mass = _with_free_slots(weights, n_steps)
    slots = torch.empty(n_steps, dtype=torch.long)
    v_d = sequence.new_zeros(1, n_features)
    used = weights.xi.shape[1]

    def clamped(v: Tensor, v_d: Tensor) -> tuple[Tensor, Tensor]:
        # The feature layer is held at the pattern; only v_d evolves.
        dv, dv_d = field(v, v_d, xi[:, : used + 1], phi[: used + 1, : used + 1])
        return torch.zeros_like(dv), dv_d

    for t in range(n_steps):
        active = used + 1  # the learned slots and one free slot
        bias = xi.new_zeros(active)
        bias[used] = recruit_bias
        # The memory the delay signal holds at onset: the presynaptic factor of ΔΦ.
        delayed = hidden_code(v_d, xi[:, :active], bias)[0] if bool(v_d.any()) else None
        v = sequence[t : t + 1]
        for _ in range(presentation_steps):
            v, v_d = step(clamped, v, v_d, dt)
        p = hidden_code(v, xi[:, :active], bias)[0]
        # The free slot learns only when it wins the presentation; small
        # responses to many patterns would otherwise add up to a blurred mix.
        if float(p[used]) >= 0.5:
            used += 1
        p = p[:used]
        slots[t] = int(p.argmax())
        # Column μ moves toward x by p_μ / (summed p_μ): its p-weighted mean.
        pattern_mass[:used] += p
        xi[:, :used] += (v[0, :, None] - xi[:, :used]) * (p / pattern_mass[:used])
        if delayed is not None:
            delayed = delayed[:used]
            transition_mass[:used] += delayed
            rate = delayed / transition_mass[:used].clamp_min(torch.finfo(p.dtype).tiny)
            phi[:used, :used] += (p[:, None] - phi[:used, :used]) * rate
    return _trimmed(xi, phi, pattern_mass, transition_mass, used), slots
