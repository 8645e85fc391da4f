"""Tests of GSEMM's energy-based online rule (``learning_rule="energy"``).

The rule (docs/gsemm.md, "The energy rule") clamps each pattern on the
feature layer, runs the delay signal's own dynamics, reads the hidden
layer's competition, and descends the energy in Ξ (Hebbian) and Φ (delayed
pre × current post). Karuvally, Sejnowski & Siegelmann, ICML 2023.
"""

from __future__ import annotations

import math

import pytest
import torch

from replaybench.errors import ConfigError
from replaybench.memories.gsemm import DSEM, LISEM, DSEMConfig, LISEMConfig, equations, random_patterns
from replaybench.memories.gsemm.learning import cosine_overlaps

N, K = 64, 5


def energy_config(**overrides) -> DSEMConfig:
    # T_d = 20 and Euler dt = 0.1 as in benchmarks/gsemm_capacity.py, to keep tests fast.
    return DSEMConfig(**{"tau_d": 20.0, "dt": 0.1, "integrator": "euler", "learning_rule": "energy", **overrides})


def cycle(k: int = K, n: int = N, seed: int = 0) -> torch.Tensor:
    return random_patterns(k, n, generator=torch.Generator().manual_seed(seed))


def learned(patterns: torch.Tensor, epochs: int = 3, **overrides) -> DSEM:
    model = DSEM(n_features=patterns.shape[1], config=energy_config(**overrides))
    for _ in range(epochs):
        model.store(patterns, cyclic=True)
    return model


def zero_last_quarter(x: torch.Tensor) -> torch.Tensor:
    cue = x.clone()
    cue[..., -x.shape[-1] // 4 :] = 0
    return cue


def test_the_cluster_rule_stays_the_default():
    assert DSEMConfig().learning_rule == "cluster"
    assert LISEMConfig().learning_rule == "cluster"


def test_each_pattern_gets_its_own_memory_column():
    x = cycle()
    model = learned(x)
    assert model.n_memories == K
    overlaps = cosine_overlaps(x, model.xi)  # [pattern, slot]
    best, slot = overlaps.max(dim=1)
    assert best.min() >= 0.9
    assert sorted(slot.tolist()) == list(range(K))  # one column per pattern


def test_presenting_again_finds_the_same_slots():
    x = cycle()
    model = learned(x, epochs=1)
    first = model.xi.clone()
    slots = model.store(x, cyclic=True)
    assert slots.tolist() == list(range(K))
    assert torch.allclose(model.xi, first, atol=1e-4)


def test_phi_encodes_the_successor_map():
    x = cycle()
    model = learned(x)
    slot = cosine_overlaps(x, model.xi).argmax(dim=1)  # pattern -> slot
    for position in range(K):
        source, target = slot[position], slot[(position + 1) % K]
        assert model.phi[target, source] >= 0.9
        assert model.phi[:, source].sum() - model.phi[target, source] <= 0.1


def test_dsem_recalls_the_learned_cycle_in_order_from_quarter_zeroed_cues():
    x = cycle()
    model = learned(x)
    slot = cosine_overlaps(x, model.xi).argmax(dim=1).tolist()
    recalled = model.recall(zero_last_quarter(x), steps=int((K + 1) * 21 / model.config.dt), record_every=5)
    for start, sequence in enumerate(recalled.sequences(min_dwell=3)):
        expected = [slot[(start + i) % K] for i in range(K + 1)]
        assert sequence[: K + 1] == expected


def test_lisem_recalls_in_order_with_weights_learned_through_dsem():
    # LISEM's hidden layer is linear, so it cannot run the rule's competition;
    # the Ξ and Φ that DSEM learned still drive LISEM's sequence.
    x = cycle(k=3, n=100)
    dsem = learned(x)
    config = LISEMConfig(alpha_c=0.0055, dt=0.2, integrator="euler")
    lisem = LISEM.from_patterns(dsem.patterns, transitions=dsem.phi, config=config)
    slot = cosine_overlaps(x, dsem.xi).argmax(dim=1).tolist()
    sequence = lisem.recall(zero_last_quarter(x[0]), steps=3000, record_every=10).sequences(min_dwell=3)[0]
    assert sequence[:4] == [slot[0], slot[1], slot[2], slot[0]]


def test_lisem_refuses_the_energy_rule_with_a_reason():
    model = LISEM(n_features=N, config=LISEMConfig(learning_rule="energy"))
    with pytest.raises(ConfigError, match="linear hidden layer"):
        model.store(cycle())


def test_xi_update_is_the_negative_energy_gradient_with_decay():
    # One presentation of a known pattern: the winner's column moves along
    # -∂/∂ξ [E + ½ √α_s Σ_μ p_μ ‖ξ_μ‖²] at v = x with the sequence term gated off.
    x = cycle()
    model = learned(x, epochs=1)
    noisy = x[1].clone()
    noisy[:2] *= -1  # cosine 0.94 to x[1]: known (above recruit_level), yet its column must move
    before = model.xi.clone().double()
    model.store(noisy[None])
    step = model.xi.double() - before
    c = model.config
    xi = before.clone().requires_grad_()
    v = noisy[None].double()
    zero_phi = torch.zeros(K, K, dtype=torch.float64)
    energy = equations.dsem_energy(v, torch.zeros_like(v), xi, zero_phi, alpha_s=c.alpha_s, alpha_c=0.0, gamma=c.gamma)
    p = torch.softmax(c.gamma * math.sqrt(c.alpha_s) * (v @ before), dim=-1)[0]
    decay = 0.5 * math.sqrt(c.alpha_s) * (p * (xi * xi).sum(0)).sum()
    (grad,) = torch.autograd.grad(energy.sum() + decay, xi)
    winner = int(p.argmax())
    assert torch.nn.functional.cosine_similarity(step[:, winner], -grad[:, winner], dim=0) > 0.999
    assert step.norm() > 0


def test_a_novel_pattern_recruits_a_new_slot_and_a_known_one_does_not():
    x = cycle(k=K + 1)
    model = learned(x[:K], epochs=1)
    assert model.store(x[K:]).tolist() == [K]
    assert model.n_memories == K + 1
    assert model.store(x[:1]).tolist() == [0]
    assert model.n_memories == K + 1
