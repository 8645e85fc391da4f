"""Storage policies for replay: what to keep from a stream of labelled items.

Items are ``(x, y)`` pairs: two fields, in the terms of :class:`replaybench.protocols.Memory`.

Both buffers preallocate their tensors, so adding and sampling are a few
indexing operations with no per-sample Python work (Avalanche's buffers
rebuild datasets instead; see avalanche#574, #1274).
"""

from __future__ import annotations

from typing import Any

import torch

from replaybench.params import Interval, check_param


class ReservoirBuffer:
    """Uniform reservoir sampling (Vitter's algorithm R) over everything offered.

    Every item offered so far is kept with equal probability
    ``capacity / seen``.

    Args:
        capacity: Maximum number of stored items.
        generator: Source of randomness for the replacement decisions.

    Example:
        >>> buf = ReservoirBuffer(capacity=2, generator=torch.Generator().manual_seed(0))
        >>> buf.add(torch.zeros(5, 3), torch.arange(5))
        >>> len(buf), buf.seen
        (2, 5)
    """

    def __init__(self, *, capacity: int, generator: torch.Generator) -> None:
        check_param(type(self).__name__, "capacity", capacity, Interval(int, 1, None))
        self.capacity = capacity
        self.generator = generator
        self.seen = 0
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None
        self._size = 0

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self._x is None:
            self._x = torch.empty((self.capacity, *x.shape[1:]), dtype=x.dtype, device=x.device)
            self._y = torch.empty(self.capacity, dtype=y.dtype, device=y.device)
        n = len(x)
        free = min(self.capacity - self._size, n)
        if free > 0:  # fill phase: keep everything
            self._x[self._size : self._size + free] = x[:free]
            self._y[self._size : self._size + free] = y[:free]
            self._size += free
        if n > free:  # replacement phase: item t (1-based) lands in slot U[0, t) if < capacity
            t = self.seen + torch.arange(free, n, device="cpu") + 1
            slots = (torch.rand(len(t), generator=self.generator) * t).long()
            keep = torch.nonzero(slots < self.capacity).squeeze(1)
            if len(keep):
                slots, source = slots[keep], keep + free
                # A later item overwrites an earlier one in the same slot, as in sequential order.
                last = _last_occurrence(slots)
                self._x[slots[last]] = x[source[last]]
                self._y[slots[last]] = y[source[last]]
        self.seen += n

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` stored items uniformly with replacement."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty buffer")
        idx = torch.randint(self._size, (n,), generator=generator or self.generator)
        return self._x[idx], self._y[idx]

    def items(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All stored items (views)."""
        if self._x is None:
            return torch.empty(0), torch.empty(0, dtype=torch.long)
        return self._x[: self._size], self._y[: self._size]

    def shrink(self, capacity: int) -> None:
        """Keep a uniformly random ``capacity`` of the stored items.

        A random subset of a uniform sample is uniform. The first slots are not
        one: after algorithm R an early item keeps its slot unless replaced,
        so slot order carries arrival order.
        """
        if self._x is not None:
            keep = torch.arange(self._size)
            if self._size > capacity:
                keep = torch.randperm(self._size, generator=self.generator)[:capacity].sort().values
            x = torch.empty((capacity, *self._x.shape[1:]), dtype=self._x.dtype, device=self._x.device)
            y = torch.empty(capacity, dtype=self._y.dtype, device=self._y.device)
            x[: len(keep)], y[: len(keep)] = self._x[keep], self._y[keep]
            self._x, self._y = x, y
        self.capacity = capacity
        self._size = min(self._size, capacity)

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes of the stored items (inputs and labels)."""
        if self._x is None:
            return 0
        per_item = self._x[0].nelement() * self._x.element_size() + self._y.element_size()
        return self._size * per_item

    def state_dict(self) -> dict[str, Any]:
        x, y = self.items()
        return {"x": x.clone(), "y": y.clone(), "seen": self.seen, "capacity": self.capacity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; the generator stays this buffer's."""
        self.capacity, self.seen = int(state["capacity"]), int(state["seen"])
        x, y = state["x"], state["y"]
        self._size = len(x)
        if self._size == 0:
            self._x = self._y = None
            return
        self._x = torch.empty((self.capacity, *x.shape[1:]), dtype=x.dtype, device=x.device)
        self._y = torch.empty(self.capacity, dtype=y.dtype, device=y.device)
        self._x[: self._size], self._y[: self._size] = x, y


def _last_occurrence(values: torch.Tensor) -> torch.Tensor:
    """Indices of the last occurrence of each distinct value."""
    order = torch.arange(len(values))
    last = torch.full((int(values.max()) + 1,), -1, dtype=torch.long)
    last.scatter_reduce_(0, values, order, reduce="amax")
    return last[last >= 0]


class ClassBalancedBuffer:
    """Equal shares of the capacity for every class seen so far.

    Each class keeps its own reservoir; when a new class arrives, the shares
    shrink to ``capacity // n_classes_seen``.
    """

    def __init__(self, *, capacity: int, generator: torch.Generator) -> None:
        check_param(type(self).__name__, "capacity", capacity, Interval(int, 1, None))
        self.capacity = capacity
        self.generator = generator
        self._per_class: dict[int, ReservoirBuffer] = {}
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        labels = [int(c) for c in torch.unique(y)]
        new = [c for c in labels if c not in self._per_class]
        if new:
            share = max(1, self.capacity // (len(self._per_class) + len(new)))
            for buf in self._per_class.values():
                buf.shrink(share)
            for c in new:
                self._per_class[c] = ReservoirBuffer(capacity=share, generator=self.generator)
        for c in labels:
            mask = y == c
            self._per_class[c].add(x[mask], y[mask])
        self._cache = None

    def items(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is None:
            parts = [b.items() for b in self._per_class.values() if len(b)]
            if not parts:
                return torch.empty(0), torch.empty(0, dtype=torch.long)
            self._cache = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
        return self._cache

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.items()
        if len(x) == 0:
            raise ValueError("cannot sample from an empty buffer")
        idx = torch.randint(len(x), (n,), generator=generator or self.generator)
        return x[idx], y[idx]

    def __len__(self) -> int:
        return sum(len(b) for b in self._per_class.values())

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._per_class.values())

    def state_dict(self) -> dict[str, Any]:
        return {c: b.state_dict() for c, b in self._per_class.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; every class's reservoir shares this buffer's generator."""
        self._per_class = {}
        for c, class_state in state.items():
            self._per_class[int(c)] = buffer = ReservoirBuffer(
                capacity=int(class_state["capacity"]), generator=self.generator
            )
            buffer.load_state_dict(class_state)
        self._cache = None


def items_for_bytes(budget_bytes: int, example_x: torch.Tensor, label_dtype=torch.int64) -> int:
    """How many (x, y) items fit in ``budget_bytes``, counted like ``nbytes``."""
    per_item = example_x.nelement() * example_x.element_size() + torch.empty((), dtype=label_dtype).element_size()
    return budget_bytes // per_item
