"""Replay memories for :mod:`replaybench.agents.replay`: a reservoir with per-item metadata,
and an adapter that stores exemplars in GSEMM (DSEM) and replays what its
dynamics recall.

Both count their budget in bytes of what they hold, like
:attr:`replaybench.memories.reservoir.ReservoirBuffer.nbytes` (inputs and int64 labels):
the scored reservoir adds the metadata it keeps per item, the GSEMM memory
counts Ξ and Φ (:attr:`replaybench.memories.gsemm.DSEM.nbytes`) plus the per-memory
norms and per-class means it needs to decode a recalled pattern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from replaybench.errors import ConfigError
from replaybench.memories.gsemm import DSEM, DSEMConfig
from replaybench.memories.reservoir import ReservoirBuffer
from replaybench.params import Interval, check_param

_FLOAT_BYTES = 4
_LABEL_BYTES = 8  # int64, as in memories.reservoir.items_for_bytes


class ScoredReservoir:
    """Uniform reservoir storage with a replay score, age and forgetting count per item.

    Which items are kept is decided by :class:`ReservoirBuffer` run over item
    ids, so the kept set is exactly ER's; this class keeps the payload and the
    metadata aligned with the reservoir's slots.

    Args:
        capacity: Maximum number of stored items.
        generator: Randomness of the reservoir and of sampling.
        metadata_bytes: Bytes of metadata per item that the budget counts.
    """

    def __init__(self, *, capacity: int, generator: torch.Generator, metadata_bytes: int = 0) -> None:
        check_param(type(self).__name__, "capacity", capacity, Interval(int, 1, None))
        self.capacity = capacity
        self.generator = generator
        self.metadata_bytes = metadata_bytes
        self._slots = ReservoirBuffer(capacity=capacity, generator=generator)
        self._next_id = 0
        self._size = 0
        self.x: Tensor | None = None
        self.y = torch.empty(0, dtype=torch.long)
        self.score = torch.ones(capacity)
        """Replay priority (loss, or forgetting events + 1)."""
        self.age = torch.zeros(capacity)
        """Experiences since the item was stored."""
        self.forgets = torch.zeros(capacity)
        """Forgetting events: correct at one replay, wrong at the next (Toneva et al. 2019)."""
        self.last_correct = torch.zeros(capacity, dtype=torch.bool)

    def add(self, x: Tensor, y: Tensor) -> None:
        """Offer items; each new item that enters gets fresh metadata (score = current max)."""
        first = self._next_id
        ids = torch.arange(first, first + len(x))
        self._next_id += len(x)
        self._slots.add(ids, ids)
        kept, _ = self._slots.items()
        if self.x is None:
            self.x = torch.zeros((self.capacity, *x.shape[1:]), dtype=x.dtype)
            self.y = torch.zeros(self.capacity, dtype=y.dtype)
        fresh = torch.nonzero(kept >= first).squeeze(1)
        source = kept[fresh] - first
        top = self.score[: self._size].max() if self._size else torch.tensor(1.0)
        self.x[fresh] = x[source].to(self.x.dtype)
        self.y[fresh] = y[source]
        self.score[fresh] = top  # new items are replayed at least as often as the most urgent old one
        self.age[fresh] = 0
        self.forgets[fresh] = 0
        self.last_correct[fresh] = False
        self._size = len(kept)

    def sample_indices(self, n: int, weights: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Indices of ``n`` stored items, uniform or in proportion to ``weights``.

        The agent reads the items (``x[idx]``, ``y[idx]``) and writes their
        metadata back (``score[idx]``) through these indices.
        """
        if self._size == 0:
            raise ValueError("cannot sample from an empty memory")
        generator = generator or self.generator
        if weights is None:
            return torch.randint(self._size, (n,), generator=generator)
        return torch.multinomial(weights[: self._size], n, replacement=True, generator=generator)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` stored items ``(x, y)`` drawn uniformly with replacement."""
        idx = self.sample_indices(n, generator=generator)
        return self.x[idx], self.y[idx]

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes of stored inputs, int64 labels and the counted metadata."""
        if self.x is None:
            return 0
        per_item = self.x[0].nelement() * self.x.element_size() + _LABEL_BYTES + self.metadata_bytes
        return self._size * per_item

    def state_dict(self) -> dict[str, Any]:
        n = self._size
        stored = {} if self.x is None else {"x": self.x[:n].clone(), "y": self.y[:n].clone()}
        return {
            **stored,
            "score": self.score[:n].clone(),
            "age": self.age[:n].clone(),
            "forgets": self.forgets[:n].clone(),
            "last_correct": self.last_correct[:n].clone(),
            "slots": self._slots.state_dict(),
            "next_id": self._next_id,
            "capacity": self.capacity,
            "metadata_bytes": self.metadata_bytes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (into a memory of the same capacity)."""
        if state["capacity"] != self.capacity:
            raise ConfigError(
                f"Cannot load a ScoredReservoir of capacity {state['capacity']} into one of {self.capacity}."
            )
        self.metadata_bytes, self._next_id = int(state["metadata_bytes"]), int(state["next_id"])
        self._slots.load_state_dict(state["slots"])
        self._size = n = len(state["score"])
        if "x" in state:
            x, y = state["x"], state["y"]
            self.x = torch.zeros((self.capacity, *x.shape[1:]), dtype=x.dtype)
            self.y = torch.zeros(self.capacity, dtype=y.dtype)
            self.x[:n], self.y[:n] = x, y
        for name in ("score", "age", "forgets", "last_correct"):
            getattr(self, name)[:n] = state[name]


def scored_capacity(budget_bytes: int, example_x: Tensor, metadata_bytes: int) -> int:
    """How many items :class:`ScoredReservoir` holds in ``budget_bytes``."""
    return budget_bytes // (example_x.nelement() * example_x.element_size() + _LABEL_BYTES + metadata_bytes)


@dataclass
class _ClassMemory:
    model: DSEM
    norms: Tensor  # [K] norm of each stored (centred) exemplar, to undo the unit transform
    mean: Tensor  # [N] the class mean subtracted before storing


@dataclass(frozen=True)
class RecalledPool:
    """What one round of GSEMM recall produced, in recall order.

    Attributes:
        x: [M, N] recalled exemplars (decoded back to the stored space).
        y: [M] their class labels.
        completed: Fraction of cues whose first visited memory was the memory cued.
        steps: Integration steps run per cue.
        items_per_cue: Mean number of memories each cue's trajectory visited.
    """

    x: Tensor
    y: Tensor
    completed: float
    steps: int
    items_per_cue: float


class GSEMMReplayMemory:
    """Per-class DSEM memories of exemplars, each class one cyclic sequence.

    Each class's exemplars are stored with :meth:`DSEM.store` as one episode in
    the order they arrived, centred by the class mean (docs/gsemm.md advises
    centring real-valued patterns). Replay cues each stored memory with a
    fraction of its entries zeroed; the dynamics complete the pattern and then
    run along the learned sequence, and every memory visited becomes a replay
    item (Karuvally et al. 2023, GSEMM; Hayes et al. 2021 elements 7 and 8).

    The byte budget is shared equally by the classes seen; when a class
    arrives, older classes keep an evenly spaced subsequence of their memories
    (rebuilt as a cycle with :meth:`DSEM.from_patterns`).

    Args:
        budget_bytes: Total bytes of Ξ, Φ, norms, means and labels.
        n_features: N, the width of a stored exemplar.
        config: DSEM parameters.
        generator: Randomness of the exemplar choice and of the cue masks.
    """

    def __init__(self, *, budget_bytes: int, n_features: int, config: DSEMConfig, generator: torch.Generator) -> None:
        check_param(type(self).__name__, "budget_bytes", budget_bytes, Interval(int, 1, None))
        self.budget_bytes = budget_bytes
        self.n_features = n_features
        self.config = config
        self.generator = generator
        self.classes: dict[int, _ClassMemory] = {}

    # -------------------------------------------------------------- budget
    def memories_per_class(self, n_classes: int) -> int:
        """Largest K with 4(NK + K² + K) + 4N + 8 bytes per class within the budget."""
        share = self.budget_bytes / n_classes / _FLOAT_BYTES - self.n_features - _LABEL_BYTES / _FLOAT_BYTES
        b = self.n_features + 1  # K² + bK - share <= 0
        return max(0, int((-b + math.sqrt(b * b + 4 * max(share, 0.0))) / 2))

    @property
    def nbytes(self) -> int:
        total = 0
        for memory in self.classes.values():
            total += memory.model.nbytes + _FLOAT_BYTES * (memory.norms.numel() + memory.mean.numel()) + _LABEL_BYTES
        return total

    def __len__(self) -> int:
        return sum(m.model.n_memories for m in self.classes.values())

    def state_dict(self) -> dict[str, Any]:
        """Every class's Ξ, Φ and counts (the DSEM's own ``state_dict``), norms and mean."""
        return {
            c: {"model": m.model.state_dict(), "norms": m.norms.clone(), "mean": m.mean.clone()}
            for c, m in self.classes.items()
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the config and budget stay this memory's)."""
        self.classes = {}
        for c, saved in state.items():
            model = DSEM(n_features=self.n_features, config=self.config)
            model.load_state_dict(saved["model"])
            self.classes[int(c)] = _ClassMemory(model=model, norms=saved["norms"].clone(), mean=saved["mean"].clone())

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` stored exemplars ``(x [n, N], y [n])``, decoded from Ξ, uniformly with replacement.

        These are the memories themselves, without recall dynamics (the
        agent replays :meth:`recall_pool`); exemplars merged into one memory
        come back as that memory.
        """
        if not self.classes:
            raise ValueError("cannot sample from an empty memory")
        labels = torch.cat([torch.full((m.model.n_memories,), c) for c, m in self.classes.items()])
        decoded = torch.cat([self.decode(c, m.model.patterns) for c, m in self.classes.items()])
        idx = torch.randint(len(labels), (n,), generator=generator or self.generator)
        return decoded[idx], labels[idx]

    # -------------------------------------------------------------- storing
    def add(self, x: Tensor, y: Tensor) -> None:
        """Store an experience's items: each new class as one cyclic sequence."""
        x = x.flatten(1).float()
        if x.shape[1] != self.n_features:
            raise ConfigError(
                f"GSEMMReplayMemory holds {self.n_features}-wide exemplars. Got width {x.shape[1]} instead."
            )
        labels = [int(c) for c in torch.unique(y)]
        k = self.memories_per_class(len(set(self.classes) | set(labels)))
        if k < 1:
            raise ConfigError(
                f"A GSEMM memory of {self.budget_bytes} bytes holds no {self.n_features}-wide exemplar per class."
            )
        for c in list(self.classes):
            self._shrink(c, k)
        for c in labels:
            items = x[y == c]
            keep = torch.randperm(len(items), generator=self.generator)[:k].sort().values  # arrival order
            chosen = items[keep]
            mean = items.mean(0)
            centred = chosen - mean
            nonzero = centred.norm(dim=1) > 0
            centred = centred[nonzero]
            model = DSEM(n_features=self.n_features, config=self.config)
            slots = model.store(centred, cyclic=True)
            # Merged exemplars share a memory: its norm is their mean norm.
            counts = torch.zeros(model.n_memories).index_add_(0, slots, torch.ones(len(slots)))
            norms = torch.zeros(model.n_memories).index_add_(0, slots, centred.norm(dim=1)) / counts
            self.classes[c] = _ClassMemory(model=model, norms=norms, mean=mean)

    def _shrink(self, c: int, k: int) -> None:
        memory = self.classes[c]
        if memory.model.n_memories <= k:
            return
        keep = torch.linspace(0, memory.model.n_memories - 1, k).round().long().unique()
        model = DSEM.from_patterns(memory.model.patterns[keep], cycles=[list(range(len(keep)))], config=self.config)
        self.classes[c] = _ClassMemory(model=model, norms=memory.norms[keep], mean=memory.mean)

    # -------------------------------------------------------------- recall
    def decode(self, c: int, states: Tensor) -> Tensor:
        """Map recalled feature states of class ``c`` back to exemplars (undo the unit scale and centring)."""
        memory = self.classes[c]
        overlaps = memory.model.overlaps(states)
        index = overlaps.argmax(-1)
        unit = states / states.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return unit * memory.norms[index, None] + memory.mean

    @torch.no_grad()
    def recall_pool(self, *, cue_fraction: float, steps: int, min_dwell: int = 2) -> RecalledPool:
        """Cue every stored memory with ``cue_fraction`` of its entries zeroed and collect the recalled sequences.

        Each visit to a memory yields one item: the state at the middle of the
        visit, decoded. The items of one trajectory stay in visiting order.
        """
        xs, ys, hits, cues, visits = [], [], 0, 0, 0
        for c, memory in self.classes.items():
            model = memory.model
            cue = model.patterns.clone()
            mask = torch.rand(cue.shape, generator=self.generator) < cue_fraction
            cue[mask] = 0
            recall = model.recall(cue, steps=steps, record_every=1)
            for row, sequence_cue in enumerate(_visits(recall.visited[:, :].T.tolist(), min_dwell)):
                cues += 1
                hits += bool(sequence_cue) and sequence_cue[0][0] == row
                for _, middle in sequence_cue:
                    xs.append(recall.states[middle, row])
                    ys.append(c)
                visits += len(sequence_cue)
        if not xs:
            return RecalledPool(torch.empty(0, self.n_features), torch.empty(0, dtype=torch.long), 0.0, steps, 0.0)
        states = torch.stack(xs)
        labels = torch.tensor(ys)
        decoded = torch.empty_like(states)
        for c in self.classes:
            rows = labels == c
            if rows.any():
                decoded[rows] = self.decode(c, states[rows])
        return RecalledPool(decoded, labels, hits / max(cues, 1), steps, visits / max(cues, 1))


def _visits(rows: list[list[int]], min_dwell: int) -> list[list[tuple[int, int]]]:
    """Per trajectory: (memory, record at the middle of the visit) for each visit of ``min_dwell`` records or more.

    Like :meth:`replaybench.memories.gsemm.Recall.sequences`, but keeping where each visit happened.
    """
    result = []
    for row in rows:
        visits: list[tuple[int, int]] = []
        value, start = -1, 0
        for t, index in enumerate(row + [-1]):
            if index == value:
                continue
            if value >= 0 and t - start >= min_dwell:
                visits.append((value, (start + t - 1) // 2))
            value, start = index, t
        result.append(visits)
    return result
