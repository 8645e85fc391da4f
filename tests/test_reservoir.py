"""The reservoir keeps a uniform sample, and stays uniform when it shrinks (class-balanced shares)."""

from __future__ import annotations

import torch

from replaybench.memories.reservoir import ClassBalancedBuffer, ReservoirBuffer


def _keep_rates(capacity: int, shrink_to: int | None, offered: int = 1000, trials: int = 2000) -> torch.Tensor:
    """How often each of ``offered`` items is held at the end, over ``trials`` seeded runs."""
    kept = torch.zeros(offered)
    for seed in range(trials):
        buffer = ReservoirBuffer(capacity=capacity, generator=torch.Generator().manual_seed(seed))
        buffer.add(torch.arange(offered, dtype=torch.float32)[:, None], torch.zeros(offered, dtype=torch.long))
        if shrink_to is not None:
            buffer.shrink(shrink_to)
        kept[buffer.items()[0][:, 0].long()] += 1
    return kept / trials


def test_algorithm_r_keeps_every_item_with_equal_probability():
    rates = _keep_rates(100, None)
    assert abs(rates.mean() - 0.1) < 1e-6
    assert rates[:100].mean().sub(0.1).abs() < 0.01 and rates[-100:].mean().sub(0.1).abs() < 0.01


def test_shrinking_keeps_a_uniform_subset():
    """The first slots hold early items more often than chance; shrinking must not keep them by position."""
    rates = _keep_rates(100, 50)
    for block in rates.split(50):  # early, middle and late items alike: 0.05 each
        assert abs(block.mean().item() - 0.05) < 0.01


def test_class_balanced_buffer_holds_equal_shares_after_new_classes():
    buffer = ClassBalancedBuffer(capacity=60, generator=torch.Generator().manual_seed(0))
    buffer.add(torch.arange(200.0)[:, None], torch.tensor([0, 1]).repeat(100))
    buffer.add(torch.arange(200.0, 300.0)[:, None], torch.full((100,), 2))
    _, y = buffer.items()
    assert torch.bincount(y).tolist() == [20, 20, 20]
