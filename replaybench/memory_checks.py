"""Conformance of memories (:class:`replaybench.protocols.Memory`), and the table of built-in ones.

:func:`check_memory` fills fresh memories from a factory with distinct items
and holds them to the protocol: capacity, ``nbytes``, seeded sampling of
stored items, and the ``state_dict`` round trip. :data:`MEMORIES` names the
storage policies of ``memories/`` with small factories, for
``replaybench check memory NAME`` and the test over every memory. Both are
exported by :mod:`replaybench.checks`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from replaybench.check_report import CheckReport, CheckSkipped, expect
from replaybench.memories.gsemm import DSEMConfig
from replaybench.memories.gsemm_replay import GSEMMReplayMemory, ScoredReservoir
from replaybench.memories.reservoir import ClassBalancedBuffer, ReservoirBuffer
from replaybench.memories.transitions import StepBuffer, TransitionBuffer
from replaybench.protocols import Memory

Items = Callable[[int, int], tuple[torch.Tensor, ...]]
"""``items(n, start)``: the fields of ``n`` distinct items, numbered from ``start``."""


def labelled_items(n: int, start: int = 0, *, width: int = 8, n_classes: int = 4) -> tuple[torch.Tensor, ...]:
    """``(x [n, width] float32, y [n] int64)``: item k has ``x[0] = k`` and label ``k % n_classes``."""
    index = torch.arange(start, start + n)
    noise = torch.randn(n, width - 1, generator=torch.Generator().manual_seed(start))
    return torch.cat([index[:, None].float(), noise], dim=1), index % n_classes


def transition_items(n: int, start: int = 0, *, obs_dim: int = 3, starts: bool = False) -> tuple[torch.Tensor, ...]:
    """``(obs, actions, rewards, next_obs, terminated[, starts])`` of ``n`` numbered transitions."""
    index = torch.arange(start, start + n)
    obs = torch.stack([index.float() + j / obs_dim for j in range(obs_dim)], dim=1)
    fields = (obs, index % 2, index.float() / 10, obs + 1, (index % 5 == 0).float())
    return (*fields, index % 7 == 0) if starts else fields


@dataclass(frozen=True)
class MemoryCase:
    """A built-in memory for the checks: how to build a fresh one and what items it stores."""

    factory: Callable[[], Any]
    items: Items
    summary: str


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


MEMORIES: dict[str, MemoryCase] = {
    "reservoir": MemoryCase(
        lambda: ReservoirBuffer(capacity=32, generator=_generator()),
        labelled_items,
        "memories.reservoir.ReservoirBuffer (ER, sigprop's layer-local replay)",
    ),
    "class-balanced": MemoryCase(
        lambda: ClassBalancedBuffer(capacity=32, generator=_generator()),
        labelled_items,
        "memories.reservoir.ClassBalancedBuffer (er-balanced)",
    ),
    "scored-reservoir": MemoryCase(
        lambda: ScoredReservoir(capacity=32, generator=_generator(), metadata_bytes=8),
        labelled_items,
        "memories.gsemm_replay.ScoredReservoir (replay-*)",
    ),
    "gsemm": MemoryCase(
        lambda: GSEMMReplayMemory(
            budget_bytes=4_000,
            n_features=8,
            generator=_generator(),
            config=DSEMConfig(dt=0.1, integrator="euler", tau_d=20.0),
        ),
        labelled_items,
        "memories.gsemm_replay.GSEMMReplayMemory (replay-gsemm*)",
    ),
    "transitions": MemoryCase(
        lambda: TransitionBuffer(capacity=32, obs_dim=3, rng=np.random.default_rng(0)),
        transition_items,
        "memories.transitions.TransitionBuffer (dqn-*)",
    ),
    "steps": MemoryCase(
        lambda: StepBuffer(capacity=32, obs_dim=3, rng=np.random.default_rng(0)),
        lambda n, start: transition_items(n, start, starts=True),
        "memories.transitions.StepBuffer (dqn-wave)",
    ),
}
"""The storage policies in ``memories/``, by the name ``replaybench check memory`` takes."""


def _rows(fields: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Each item as one float64 row (its fields flattened side by side), to compare items."""
    return torch.cat([f.reshape(len(f), -1).double() for f in fields], dim=1)


def _stored(sampled: tuple[torch.Tensor, ...], added: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Bool per sampled item: whether it equals an added item (floats up to decoding error)."""
    s, a = _rows(sampled), _rows(added)
    close = torch.isclose(s[:, None, :], a[None, :, :], rtol=1e-4, atol=1e-4).all(dim=2)
    return close.any(dim=1)


def _sample(memory: Any, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    out = memory.sample(n, torch.Generator().manual_seed(seed))
    expect(
        isinstance(out, tuple) and all(isinstance(f, torch.Tensor) for f in out),
        f"sample returned {type(out).__name__}; expected a tuple of tensors",
    )
    return out


def check_memory(
    memory_factory: Callable[[], Any], *, items: Items = labelled_items, name: str | None = None
) -> CheckReport:
    """Check the memories ``memory_factory()`` builds against :class:`~replaybench.protocols.Memory`.

    Args:
        memory_factory: Builds a fresh, empty memory (called more than once).
        items: The items to offer (default: labelled ``(x, y)`` pairs).
        name: What to call the memory in the report.

    Example:
        >>> check_memory(MEMORIES["reservoir"].factory).ok
        True
    """
    report = CheckReport(f"memory {name or getattr(memory_factory, '__name__', 'memory')!r}")
    state: dict[str, Any] = {}
    batch, rounds = 8, 12  # 96 items offered in batches: past every built-in capacity

    def protocol() -> str:
        state["memory"] = memory = memory_factory()
        missing = [
            m for m in ("add", "sample", "__len__", "nbytes", "state_dict", "load_state_dict") if not hasattr(memory, m)
        ]
        expect(not missing and isinstance(memory, Memory), f"{type(memory).__name__} lacks {', '.join(missing)}")
        expect(len(memory) == 0, f"a fresh memory holds {len(memory)} items")
        return f"{type(memory).__name__}: add, sample, len, nbytes, state_dict, load_state_dict"

    if not report.run("protocol", protocol):
        return report
    memory = state["memory"]
    offered = [items(batch, k * batch) for k in range(rounds)]
    added = tuple(torch.cat(f) for f in zip(*offered))
    history: list[tuple[int, int]] = []

    def add_and_count() -> str:
        empty = memory.nbytes
        expect(isinstance(empty, int) and empty >= 0, f"nbytes of an empty memory is {empty!r}")
        history.append((0, empty))
        for fields in offered:
            memory.add(*fields)
            history.append((len(memory), memory.nbytes))
        expect(history[1][0] > 0, f"len is 0 after adding {batch} items")
        return f"{len(memory)} items kept of {batch * rounds} offered"

    if not report.run("add", add_and_count):
        return report

    def nbytes() -> str:
        lengths, sizes = zip(*history)
        expect(all(isinstance(b, int) for b in sizes), f"nbytes is not an int: {sizes}")
        for (before, bytes_before), (after, bytes_after) in zip(history, history[1:]):
            expect(
                after <= before or bytes_after > bytes_before,
                f"nbytes stays {bytes_before} as the stored items grow from {before} to {after}",
            )
        return f"{sizes[0]} bytes empty, {sizes[-1]} bytes with {lengths[-1]} items"

    def capacity() -> str:
        limits = {
            k: getattr(memory, k) for k in ("capacity", "budget_bytes") if isinstance(getattr(memory, k, None), int)
        }
        if not limits:
            raise CheckSkipped("no 'capacity' or 'budget_bytes' attribute to hold it to")
        most = max(n for n, _ in history)
        if "capacity" in limits:
            expect(most <= limits["capacity"], f"holds {most} items with capacity {limits['capacity']}")
        if "budget_bytes" in limits:
            top = max(b for _, b in history)
            expect(top <= limits["budget_bytes"], f"holds {top} bytes with a budget of {limits['budget_bytes']}")
        return ", ".join(f"{k} {v} respected" for k, v in limits.items())

    def sample() -> str:
        first, again = _sample(memory, 64, seed=1), _sample(memory, 64, seed=1)
        expect(len(first) == len(added), f"sample returned {len(first)} fields; items have {len(added)}")
        expect(all(len(f) == 64 for f in first), f"sample(64) returned fields of lengths {[len(f) for f in first]}")
        expect(
            all(torch.equal(a, b) for a, b in zip(first, again)), "two samples with equally seeded generators differ"
        )
        dtypes = [(f.dtype, a.dtype) for f, a in zip(first, added) if f.dtype != a.dtype]
        expect(not dtypes, f"sampled dtypes differ from the added ones: {dtypes}")
        known = _stored(first, added)
        expect(bool(known.all()), f"{int((~known).sum())} of 64 sampled items were never added")
        return "seeded samples repeat and hold only added items"

    def round_trip() -> str:
        saved = memory.state_dict()
        expect(isinstance(saved, dict), f"state_dict returned {type(saved).__name__}; expected a dict")
        fresh = memory_factory()
        fresh.load_state_dict(saved)
        expect(
            len(fresh) == len(memory) and fresh.nbytes == memory.nbytes,
            f"a loaded memory holds {len(fresh)} items in {fresh.nbytes} bytes; the saved one {len(memory)} "
            f"in {memory.nbytes}",
        )
        same = all(torch.equal(a, b) for a, b in zip(_sample(fresh, 64, seed=2), _sample(memory, 64, seed=2)))
        expect(same, "a loaded memory samples different items than the saved one with the same generator")
        return "a fresh memory loaded with the state holds and samples the same items"

    for check_name, check in (
        ("nbytes", nbytes),
        ("capacity", capacity),
        ("sample", sample),
        ("state_dict", round_trip),
    ):
        report.run(check_name, check)
    return report
