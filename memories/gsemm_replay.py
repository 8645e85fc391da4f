"""Replay memories for :mod:`replaybench.agents.replay`: a reservoir with per-item metadata,
an adapter that stores exemplars in GSEMM (DSEM) and replays what its
dynamics recall, and :class:`GSEMMRecallSource`, that adapter as the replay
agent's ``gsemm`` source (recalled pool, ordered windows, recall statistics).

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


def memories_per_class(budget_bytes: int, n_features: int, n_classes: int) -> int:
    """Largest K with 4(NK + K² + K) + 4N + 8 bytes per class when ``n_classes`` share ``budget_bytes``.

    Per class: Ξ (N × K) and Φ (K × K) float32, one norm per memory, the
    class mean (N floats) and the int64 label; 0 when not one memory fits.
    """
    share = budget_bytes / max(n_classes, 1) / _FLOAT_BYTES - n_features - _LABEL_BYTES / _FLOAT_BYTES
    b = n_features + 1  # K² + bK - share <= 0
    return max(0, int((-b + math.sqrt(b * b + 4 * max(share, 0.0))) / 2))


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
        return memories_per_class(self.budget_bytes, self.n_features, n_classes)

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


def window_indices(size: int, n: int, windows: int, generator: torch.Generator) -> Tensor:
    """``n`` positions of a sequence of ``size`` items, as contiguous stretches in order.

    The stretches are ``L = max(1, n // windows)`` long (so about ``windows``
    of them per draw) and start at uniform positions; a stretch that runs off
    the end continues at the start (the pool is read as one loop, as the
    replay agent always has).
    """
    length = max(1, n // windows)
    starts = torch.randint(size, (-(-n // length),), generator=generator)
    return ((starts[:, None] + torch.arange(length)) % size).flatten()[:n]


class GSEMMRecallSource:
    """Replay what GSEMM recalls from partial cues: the ``gsemm`` source of the replay agent.

    Wraps :class:`GSEMMReplayMemory` (one DSEM per class, its exemplars one
    cyclic sequence in arrival order). After every :meth:`add` each stored
    memory is cued with ``cue_fraction`` of its entries zeroed; the dynamics
    complete the pattern (Hayes et al. 2021, element 8: partial-cue replay)
    and then run on along the learned sequence (Karuvally, Sejnowski &
    Siegelmann 2023, GSEMM). Every memory a trajectory visits becomes one
    item of the *recalled pool*, in visiting order; :meth:`sample` draws from
    the pool, :meth:`sequence` reads stretches of it in order (element 3:
    time-compressed sequence replay, the dwell of about T_d on each memory
    compressed to one item).

    ``nbytes`` counts what GSEMM keeps: Ξ, Φ, the per-memory norms, the class
    means and labels. The pool is not counted: it is the dynamics' output,
    recomputed from those weights (and the cue masks) after every
    experience, the way a generator's samples are not counted in its
    parameters. ``len`` is the number of stored memories, the items the
    bytes pay for (as :func:`replaybench.checks.check_memory` expects); the
    pool's size is in :attr:`stats`. The pool is empty only if no recall
    dwells on any memory, and then :meth:`sample` raises ``ValueError``.

    Args:
        budget_bytes: Bytes for the GSEMM weights of every class (shared
            equally by the classes seen).
        n_features: N, the width of an item row.
        n_classes: Classes of the stream; the budget must hold one memory
            for each of them (:meth:`capacity_for`).
        generator: Randomness of the exemplar choice, the cue masks and of
            sampling (unless a call passes its own).
        config: DSEM parameters; default Euler at dt = 0.1 with T_d = 20
            (the replay agent's ``gsemm_tau_d``, docs/gsemm.md).
        cue_fraction: Fraction of each cue's entries zeroed before recall.
        recall_steps: Integration steps of each recall.
        windows: Contiguous stretches per :meth:`sequence` draw.
        min_dwell: Recorded steps a trajectory must stay on a memory for the
            visit to count (shorter passes are transients).

    Raises:
        ConfigError: An option is out of range, or the budget cannot hold one
            memory per class.
    """

    def __init__(
        self,
        *,
        budget_bytes: int,
        n_features: int,
        n_classes: int,
        generator: torch.Generator,
        config: DSEMConfig | None = None,
        cue_fraction: float = 0.25,
        recall_steps: int = 150,
        windows: int = 8,
        min_dwell: int = 2,
    ) -> None:
        name = type(self).__name__
        for key, value in (("budget_bytes", budget_bytes), ("n_features", n_features), ("n_classes", n_classes)):
            check_param(name, key, value, Interval(int, 1, None))
        check_param(name, "cue_fraction", cue_fraction, Interval(float, 0, 1, closed="left"))
        for key, value in (("recall_steps", recall_steps), ("windows", windows), ("min_dwell", min_dwell)):
            check_param(name, key, value, Interval(int, 1, None))
        if self.capacity_for(budget_bytes, n_features, n_classes) < 1:
            raise ConfigError(
                f"A GSEMM source of {budget_bytes:,} bytes holds no memory of {n_features} features for each of "
                f"{n_classes} classes (one needs {_one_memory_bytes(n_features) * n_classes:,} bytes)."
            )
        self.budget_bytes = budget_bytes
        self.n_classes = n_classes
        self.generator = generator
        self.cue_fraction, self.recall_steps = cue_fraction, recall_steps
        self.windows, self.min_dwell = windows, min_dwell
        config = config if config is not None else DSEMConfig(dt=0.1, integrator="euler", tau_d=20.0)
        self.memory = GSEMMReplayMemory(
            budget_bytes=budget_bytes, n_features=n_features, config=config, generator=generator
        )
        self.pool = RecalledPool(torch.empty(0, n_features), torch.empty(0, dtype=torch.long), 0.0, 0, 0.0)

    @staticmethod
    def capacity_for(budget_bytes: int, n_features: int, n_classes: int) -> int:
        """Memories per class that ``budget_bytes`` holds once ``n_classes`` classes share it (0: none)."""
        return memories_per_class(budget_bytes, n_features, n_classes)

    def add(self, x: Tensor, y: Tensor) -> None:
        """Store an experience's items (each new class one cyclic sequence), then recall the pool anew."""
        self.memory.add(x, y)
        self.pool = self.memory.recall_pool(
            cue_fraction=self.cue_fraction, steps=self.recall_steps, min_dwell=self.min_dwell
        )

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` recalled items ``(x [n, N], y [n])``, uniformly with replacement from the pool."""
        self._check_pool()
        idx = torch.randint(len(self.pool.x), (n,), generator=generator or self.generator)
        return self.pool.x[idx], self.pool.y[idx]

    def sequence(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` recalled items as about ``windows`` contiguous stretches of the pool, in visiting order."""
        self._check_pool()
        idx = window_indices(len(self.pool.x), n, self.windows, generator or self.generator)
        return self.pool.x[idx], self.pool.y[idx]

    @property
    def stats(self) -> dict[str, float]:
        """The last recall, for the agent to report: memories held, cues completed, items per cue, pool size."""
        return {
            "gsemm_memories": float(len(self.memory)),
            "gsemm_completed": float(self.pool.completed),
            "gsemm_items_per_cue": float(self.pool.items_per_cue),
            "gsemm_pool": float(len(self.pool.x)),
        }

    def __len__(self) -> int:
        """Stored memories (the recalled pool's size is ``stats["gsemm_pool"]``)."""
        return len(self.memory)

    @property
    def nbytes(self) -> int:
        """Bytes of the GSEMM weights, norms, class means and labels (not the recalled pool; see the class doc)."""
        return self.memory.nbytes

    def state_dict(self) -> dict[str, Any]:
        """The GSEMM memory and the recalled pool (so a restored source replays the same items)."""
        pool = self.pool
        return {
            "memory": self.memory.state_dict(),
            "pool_x": pool.x.clone(),
            "pool_y": pool.y.clone(),
            "pool_stats": {"completed": pool.completed, "steps": pool.steps, "items_per_cue": pool.items_per_cue},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (options and budget stay this source's)."""
        self.memory.load_state_dict(state["memory"])
        stats = state["pool_stats"]
        self.pool = RecalledPool(
            state["pool_x"].clone(),
            state["pool_y"].clone(),
            float(stats["completed"]),
            int(stats["steps"]),
            float(stats["items_per_cue"]),
        )

    def _check_pool(self) -> None:
        if len(self.pool.x) == 0:
            raise ValueError(f"{type(self).__name__} has nothing to replay (no memory stored, or no recall visit)")


def _one_memory_bytes(n_features: int) -> int:
    """Bytes of a class holding one memory: Ξ (N), Φ (1), a norm, the class mean (N) and the label."""
    return _FLOAT_BYTES * (2 * n_features + 2) + _LABEL_BYTES
