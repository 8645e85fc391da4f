"""Awake replay of the latest experience from a traveling-wave lattice.

:class:`WaveSource` holds items in a copy-boundary
:class:`replaybench.memories.wave.WaveLattice` (Karuvally, Sejnowski &
Siegelmann 2024, "Hidden Traveling Waves bind Working Memory Variables in
Recurrent Neural Networks", ICML; ``docs/wave.md``): each item's feature row
is the drive written into the start boundary, and every write moves the
whole wave one slot toward the open far end, so the lattice's s slots hold
the last s items exactly, in arrival order. The label rides along as one
more feature of the same wave, so it cannot fall out of step with its row.

Reading the lattice slot by slot gives the items in order; reading it
backwards gives them reversed, like the reverse replay of place-cell
sequences in awake rats (Foster & Wilson 2006, "Reverse replay of behavioural
sequences in hippocampal place cells during the awake state", Nature 440).
This is the ``wave`` source of the replay agent (Hayes et al. 2021, elements
3 and 4: sequence replay, reverse replay).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from replaybench.errors import ConfigError
from replaybench.memories.wave import WaveLattice
from replaybench.params import Interval, OneOf, check_param

_FLOAT_BYTES = 4
_LABEL_BYTES = 8  # counted as int64, as in memories.reservoir.items_for_bytes


class WaveSource:
    """The latest experience as a traveling wave: s item slots, read out in order or reversed.

    ``s = budget_bytes // (4 N + 8)``, the items a reservoir of the same
    budget holds (float32 features, int64 label). :meth:`add` writes an
    experience into the lattice with a stride, so that the lattice spans the
    whole experience: when it has T > s items, the evenly spaced subsequence
    of s of them (first and last included) is written in arrival order; when
    T ≤ s, all T are written and the older slots keep the items before them.

    Because the lattice is first-in first-out, an experience of s items or
    more fills it, and it then holds *only the most recent experience*:
    this source replays the recent past (awake replay), not the older
    classes that rehearsal against forgetting needs. Use it for ordered and
    reverse replay of what was just learned, or beside another source.

    Writing k items steps the lattice k times. For the copy boundary (f = 0)
    k steps equal a shift of the wave by k slots with the k drives appended,
    which is how :meth:`add` writes by default (one tensor operation);
    ``stepwise=True`` calls :meth:`WaveLattice.step` once per item instead,
    and a test checks that the two give the same lattice.

    :meth:`sample` draws uniformly from the filled slots. :meth:`sequence`
    reads about ``windows`` contiguous stretches of slots: oldest to newest
    (``direction="forward"``), newest to oldest (``"reverse"``), or each
    stretch either way at random (``"both"``).

    Args:
        budget_bytes: Bytes of the lattice's items (features and labels).
        n_features: N, the width of an item row.
        generator: Randomness of sampling and of the stretches.
        direction: "forward", "reverse" or "both".
        windows: Stretches per :meth:`sequence` draw.
        stepwise: Write by stepping the lattice once per item (slow; the reference).

    Raises:
        ConfigError: An option is out of range, or the budget holds no item.
    """

    def __init__(
        self,
        *,
        budget_bytes: int,
        n_features: int,
        generator: torch.Generator,
        direction: str = "both",
        windows: int = 8,
        stepwise: bool = False,
    ) -> None:
        name = type(self).__name__
        for key, value in (("budget_bytes", budget_bytes), ("n_features", n_features), ("windows", windows)):
            check_param(name, key, value, Interval(int, 1, None))
        check_param(name, "direction", direction, OneOf("forward", "reverse", "both"))
        slots = self.capacity_for(budget_bytes, n_features)
        if slots < 1:
            raise ConfigError(
                f"A wave source of {budget_bytes:,} bytes holds no item of {n_features} features "
                f"(one needs {_FLOAT_BYTES * n_features + _LABEL_BYTES:,} bytes)."
            )
        self.budget_bytes, self.n_features, self.slots = budget_bytes, n_features, slots
        self.generator, self.direction, self.windows, self.stepwise = generator, direction, windows, stepwise
        self.lattice = WaveLattice(slots=slots, features=n_features + 1, boundary="copy")
        self.state = self.lattice.initial_state(1)[0]
        """[s, N + 1]: slot 0 the oldest, slot s − 1 the newest; the last column is the label."""
        self.filled = 0
        self.stride = 0.0
        """Items of the last experience per slot written (1: every item was written)."""

    @staticmethod
    def capacity_for(budget_bytes: int, n_features: int, n_classes: int | None = None) -> int:
        """Slots (items) that ``budget_bytes`` holds; 0 when not one. ``n_classes`` is not needed."""
        return budget_bytes // (_FLOAT_BYTES * n_features + _LABEL_BYTES)

    # -------------------------------------------------------------- writing
    def add(self, x: Tensor, y: Tensor) -> None:
        """Write an experience (in training order) into the wave: all of it, or s evenly spaced items."""
        x = x.flatten(1).float()
        if x.shape[1] != self.n_features:
            raise ConfigError(f"WaveSource holds {self.n_features}-wide items. Got width {x.shape[1]} instead.")
        if len(x) == 0:
            return
        if y.abs().max() >= 2**24:
            raise ConfigError("WaveSource carries labels in a float32 wave: they must be below 2**24 in magnitude.")
        self.stride = max(1.0, len(x) / self.slots)
        if len(x) > self.slots:
            keep = torch.linspace(0, len(x) - 1, self.slots).round().long()
            x, y = x[keep], y[keep]
        drives = torch.cat([x, y.to(x.dtype)[:, None]], dim=1)
        self.state = self._advance(self.state, drives)
        self.filled = min(self.slots, self.filled + len(drives))

    def _advance(self, state: Tensor, drives: Tensor) -> Tensor:
        """The lattice after ``len(drives)`` steps, each writing one drive into the boundary."""
        if self.stepwise:
            lattice = state[None]
            for drive in drives:
                lattice = self.lattice.step(lattice, drive[None])
            return lattice[0]
        # Copy boundary: k steps of h[i] <- h[i+1], h[s] <- u are a shift by k with the k drives appended.
        return torch.cat([state, drives])[-self.slots :]

    # -------------------------------------------------------------- reading
    def items(self) -> tuple[Tensor, Tensor]:
        """The filled slots in arrival order (oldest first): ``(x [m, N], y [m])``."""
        held = self.state[self.slots - self.filled :]
        return held[:, :-1], held[:, -1].round().long()

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` items drawn uniformly with replacement from the filled slots."""
        x, y = self._held()
        idx = torch.randint(len(x), (n,), generator=generator or self.generator)
        return x[idx], y[idx]

    def sequence(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` items as contiguous stretches of slots, each read forward, reversed, or either (``direction``).

        Stretches are ``L = max(1, n // windows)`` slots long (at most the
        filled slots) and never wrap around: the wave has a start and an end.
        """
        x, y = self._held()
        generator = generator or self.generator
        length = min(max(1, n // self.windows), len(x))
        stretches = -(-n // length)
        starts = torch.randint(len(x) - length + 1, (stretches, 1), generator=generator)
        offsets = torch.arange(length).expand(stretches, length)
        if self.direction == "reverse":
            offsets = offsets.flip(1)
        elif self.direction == "both":
            backwards = torch.rand(stretches, 1, generator=generator) < 0.5
            offsets = torch.where(backwards, offsets.flip(1), offsets)
        idx = (starts + offsets).flatten()[:n]
        return x[idx], y[idx]

    def _held(self) -> tuple[Tensor, Tensor]:
        if self.filled == 0:
            raise ValueError("cannot replay from an empty WaveSource")
        return self.items()

    # -------------------------------------------------------------- bookkeeping
    @property
    def stats(self) -> dict[str, float]:
        """Slots, filled slots, and the stride of the last write."""
        return {"wave_slots": float(self.slots), "wave_filled": float(self.filled), "wave_stride": self.stride}

    def __len__(self) -> int:
        return self.filled

    @property
    def nbytes(self) -> int:
        """Bytes of the filled slots: N float32 features and an int64 label each."""
        return self.filled * (_FLOAT_BYTES * self.n_features + _LABEL_BYTES)

    def state_dict(self) -> dict[str, Any]:
        return {"lattice": self.state[self.slots - self.filled :].clone(), "stride": self.stride}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned into a source with at least as many slots."""
        held = state["lattice"]
        if len(held) > self.slots:
            raise ConfigError(f"Cannot load a wave of {len(held)} items into a WaveSource of {self.slots} slots.")
        self.state = self._advance(self.lattice.initial_state(1)[0], held)
        self.filled, self.stride = len(held), float(state["stride"])
