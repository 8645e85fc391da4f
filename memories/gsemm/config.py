"""Frozen, validated configs of LISEM and DSEM, with the paper's defaults.

Defaults follow the reference code's ``initialize`` (github.com/arjun23496/gsemm,
``AdiabaticEpisodicTanh.py`` and ``AdiabaticEpisodicExp.py``): T_f = 1,
T_d = 100, β_d = 7, γ = 1, dt = 0.01 with RK4; α_s = 0.045, α_c = 0.004 for
LISEM and α_s = 1, α_c = 0.7 for DSEM (tuned there for N = 100).
"""

from __future__ import annotations

from dataclasses import dataclass

from replaybench.params import Config, Interval, OneOf, Optional, param

_POSITIVE = Interval(float, 0, None, closed="neither")
_NON_NEGATIVE = Interval(float, 0, None)


@dataclass(frozen=True)
class GSEMMConfig(Config):
    """Parameters shared by LISEM and DSEM."""

    alpha_s: float = param(1.0, _POSITIVE)
    """α_s, strength of the memories' self (associative) interaction."""
    alpha_c: float = param(0.0, _NON_NEGATIVE)
    """α_c, strength of the cross (sequence) interaction through Φ; 0 gives a
    static associative memory whose energy never rises."""
    gamma: float = param(1.0, _POSITIVE)
    """γ, inverse temperature of the nonlinearity (tanh gain in LISEM,
    softmax in DSEM)."""
    tau_f: float = param(1.0, _POSITIVE)
    """T_f, time constant of the feature neurons."""
    tau_d: float = param(100.0, _POSITIVE)
    """T_d, time constant of the delay signal; the dwell time on each memory
    grows with it (adiabatic when T_d ≫ T_f)."""
    beta_d: float = param(7.0, _NON_NEGATIVE)
    """β_d, gain from the features into the delay signal."""
    dt: float = param(0.01, _POSITIVE)
    """Integration step."""
    integrator: str = param("rk4", OneOf("rk4", "euler"))
    """Fixed-step integrator: classical Runge-Kutta 4 or forward Euler."""
    pattern_transform: str = param("unit", OneOf("unit", "sign", "none"))
    """How patterns and cues enter the model: "unit" rescales each to norm √N
    (±1 patterns are unchanged), "sign" binarises to ±1, "none" keeps them."""
    merge_threshold: float = param(0.95, Interval(float, 0, 1, closed="right"))
    """A stored pattern whose cosine overlap with a memory reaches this joins
    that memory instead of recruiting a new one."""
    learning_rate: float | None = param(None, Optional(Interval(float, 0, 1, closed="right")))
    """Rate of the online rule after a memory's first presentation; None uses
    1/count (running means)."""
    learning_rule: str = param("cluster", OneOf("cluster", "energy"))
    """Rule behind ``store``: "cluster" assigns each pattern to a memory by
    cosine overlap outside the dynamics; "energy" (DSEM only) clamps each
    pattern on the features, lets the hidden layer compete through the
    dynamics and descends the energy in Ξ and Φ (docs/gsemm.md)."""
    presentation_time: float = param(1.0, _POSITIVE)
    """Energy rule: time each pattern is clamped, in units of T_d; the delay
    signal then holds mostly the previous pattern at the next onset (it
    decays by e^{-1} per presentation at the default)."""
    recruit_level: float = param(0.9, Interval(float, 0, 1, closed="neither"))
    """Energy rule: excitability of the free memory slot, as a share of the
    drive √α_s N of a perfectly matched memory; a pattern whose best match
    drives less than this recruits the free slot (a cosine of 0.9 for
    patterns of norm √N). At 0.75 DSEM merged patterns at N = 16 (docs/gsemm.md)."""
    overlap_threshold: float = param(0.7, Interval(float, 0, 1, closed="left"))
    """Recall reports a memory as visited when the cosine overlap of the
    feature output with it is at least this."""


@dataclass(frozen=True)
class LISEMConfig(GSEMMConfig):
    """LISEM's config; defaults from the reference code's model A."""

    owner_name = "LISEM"
    alpha_s: float = param(0.045, _POSITIVE)
    """α_s, strength of the memories' self interaction (α_s N ≈ 4.5 at N = 100)."""
    alpha_c: float = param(0.004, _NON_NEGATIVE)
    """α_c, strength of the sequence interaction through Φ. The reference's
    0.004 makes most recalls stall at N = 100; 0.0055 recalls reliably
    (measured in docs/gsemm.md)."""


@dataclass(frozen=True)
class DSEMConfig(GSEMMConfig):
    """DSEM's config; defaults from the reference code's model B."""

    owner_name = "DSEM"
    alpha_s: float = param(1.0, _POSITIVE)
    """α_s, strength of the memories' self interaction."""
    alpha_c: float = param(0.7, _NON_NEGATIVE)
    """α_c, strength of the sequence interaction through Φ."""
