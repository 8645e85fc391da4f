"""Storage policies for RL replay: what to keep from a stream of env steps.

- :class:`TransitionBuffer`: a reservoir of (obs, action, reward, next_obs,
  terminated) transitions with a priority per slot; the DQN family's memory
  (emptied per task, or kept across tasks, sampled uniformly or by priority).
- :class:`StepBuffer`: a FIFO ring of consecutive steps with a flag on each
  episode's first step, from which the recurrent DQN draws windows.

Both follow :class:`replaybench.protocols.Memory` with items as tuples of
fields: ``add`` takes a batch (one array or tensor per field, leading batch
dimension) and ``sample`` returns tensors in the same order. An agent steps
one environment at a time, so each buffer also has ``append`` for a single
step, which is what ``add`` runs row by row: a batch and its rows one by one
land in the same slots with the same random draws.

The arrays are NumPy and the randomness a ``np.random.Generator`` that the
agent shares with its exploration, so that a seed fixes the whole run;
``sample(n, generator)`` with a ``torch.Generator`` draws from that instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from replaybench.errors import ConfigError
from replaybench.params import Interval, check_param

_POS_INT = Interval(int, 1, None)


def _slot_bytes(arrays: tuple[np.ndarray, ...]) -> int:
    """Bytes of one slot across ``arrays`` (a row of a 2-D array, an item of a 1-D one)."""
    return sum(a[0].nbytes if a.ndim > 1 else a.itemsize for a in arrays)


def _rows(fields: tuple[Any, ...], names: tuple[str, ...], owner: str) -> list[np.ndarray]:
    """The batch ``fields`` as NumPy arrays of one length, checked against ``names``."""
    if len(fields) != len(names):
        raise ConfigError(f"{owner}.add takes {len(names)} fields ({', '.join(names)}). Got {len(fields)} instead.")
    arrays = [f.detach().cpu().numpy() if isinstance(f, torch.Tensor) else np.asarray(f) for f in fields]
    if any(a.ndim == 0 for a in arrays):
        raise ConfigError(
            f"{owner}.add takes a batch: every field needs a leading batch dimension (use append for one step)."
        )
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ConfigError(f"{owner}.add needs fields of one batch length. Got lengths {[len(a) for a in arrays]}.")
    return arrays


def _draw(size: int, n: int, rng: np.random.Generator, generator: torch.Generator | None) -> np.ndarray:
    """``n`` slot indices in [0, size): from the buffer's ``rng``, or from ``generator`` when given."""
    if size == 0:
        raise ValueError("cannot sample from an empty buffer")
    if generator is None:
        return rng.integers(size, size=n)
    return torch.randint(size, (n,), generator=generator).numpy()


class _StepArrays:
    """Slots of env steps: one NumPy array per field, ``capacity`` rows each (the two buffers' storage)."""

    fields: tuple[str, ...] = ("obs", "actions", "rewards", "next_obs", "terminated")
    _dtypes = {"actions": np.int64, "rewards": np.float32, "terminated": np.float32, "starts": np.bool_}

    def __init__(self, *, capacity: int, obs_dim: int, rng: np.random.Generator) -> None:
        check_param(type(self).__name__, "capacity", capacity, _POS_INT)
        check_param(type(self).__name__, "obs_dim", obs_dim, _POS_INT)
        self.capacity, self.rng = capacity, rng
        for name in self.fields:
            shape = (capacity, obs_dim) if name in ("obs", "next_obs") else (capacity,)
            setattr(self, name, np.zeros(shape, dtype=self._dtypes.get(name, np.float32)))
        self.clear()

    def clear(self) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def append(self, *row: Any) -> None:
        raise NotImplementedError

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, name) for name in self.fields)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored steps (bookkeeping such as priorities is not payload)."""
        return len(self) * _slot_bytes(self._arrays())

    def add(self, *fields: Any) -> None:
        """Offer a batch, one array per field of :attr:`fields` with a leading batch dimension, row by row."""
        for row in zip(*_rows(fields, self.fields, type(self).__name__)):
            self.append(*row)

    def _stored(self) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(a[: len(self)].copy()) for name, a in zip(self.fields, self._arrays())}

    def _check_loadable(self, state: dict[str, Any]) -> None:
        obs = self._arrays()[0]
        if state["capacity"] != self.capacity or tuple(state["obs"].shape[1:]) != obs.shape[1:]:
            raise ConfigError(
                f"Cannot load a {type(self).__name__} of capacity {state['capacity']} and observations "
                f"{tuple(state['obs'].shape[1:])} into one of {self.capacity} and {obs.shape[1:]}."
            )


class TransitionBuffer(_StepArrays):
    """Fixed-size arrays of (obs, action, reward, next_obs, terminated).

    Past capacity, a new transition replaces a uniformly chosen slot with
    probability capacity/seen (reservoir sampling, Vitter 1985), so the buffer
    stays a uniform sample of everything offered. Each slot has a priority,
    used only by prioritised sampling (Schaul et al., 2016).

    Args:
        capacity: Transitions the buffer holds.
        obs_dim: Width of a flat observation.
        rng: Randomness of the replacement decisions and of sampling.

    Example:
        >>> buffer = TransitionBuffer(capacity=2, obs_dim=1, rng=np.random.default_rng(0))
        >>> buffer.add(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), torch.ones(3), torch.zeros(3, 1),
        ...            torch.zeros(3))
        >>> len(buffer), buffer.seen
        (2, 3)
    """

    def __init__(self, *, capacity: int, obs_dim: int, rng: np.random.Generator) -> None:
        self.priorities = np.zeros(capacity, dtype=np.float64)
        super().__init__(capacity=capacity, obs_dim=obs_dim, rng=rng)

    def clear(self) -> None:
        """Forget everything (the per-task policy, at the start of each task)."""
        self.size = self.seen = 0
        self.max_priority = 1.0

    def __len__(self) -> int:
        return self.size

    def append(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        """Offer one transition."""
        self.seen += 1
        if self.size < self.capacity:
            slot = self.size
            self.size += 1
        else:
            slot = int(self.rng.integers(self.seen))
            if slot >= self.capacity:
                return
        self.obs[slot], self.next_obs[slot] = obs, next_obs
        self.actions[slot], self.rewards[slot], self.terminated[slot] = action, reward, terminated
        self.priorities[slot] = self.max_priority

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """``n`` stored transitions drawn uniformly with replacement (from ``rng`` unless ``generator`` is given)."""
        return self.batch(_draw(self.size, n, self.rng, generator))

    def sample_prioritized(self, n: int, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """Indices drawn ∝ priority^α, and their normalised importance weights (N·P)^−β / max."""
        scaled = self.priorities[: self.size] ** alpha
        probs = scaled / scaled.sum()
        index = np.minimum(np.searchsorted(np.cumsum(probs), self.rng.random(n)), self.size - 1)
        weights = (self.size * probs[index]) ** -beta
        return index, weights / weights.max()

    def update_priorities(self, index: np.ndarray, td_error: np.ndarray, epsilon: float) -> None:
        self.priorities[index] = np.abs(td_error) + epsilon
        self.max_priority = max(self.max_priority, float(self.priorities[index].max()))

    def batch(self, index: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The transitions in slots ``index``, as tensors in :attr:`fields` order."""
        return tuple(torch.from_numpy(a[index]) for a in self._arrays())

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._stored(),
            "priorities": torch.from_numpy(self.priorities[: self.size].copy()),
            "seen": self.seen,
            "max_priority": self.max_priority,
            "capacity": self.capacity,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (into a buffer of the same capacity and width)."""
        self._check_loadable(state)
        self.size = len(state["obs"])
        for name in (*self.fields, "priorities"):
            getattr(self, name)[: self.size] = state[name].cpu().numpy()  # a checkpoint may be mapped to a GPU
        self.seen, self.max_priority = int(state["seen"]), float(state["max_priority"])


class StepBuffer(_StepArrays):
    """A FIFO ring of consecutive env steps, with a flag on each episode's first step.

    Args:
        capacity: Steps the ring holds (the most recent ones).
        obs_dim: Width of a flat observation.
        rng: Randomness of sampling.
    """

    fields = ("obs", "actions", "rewards", "next_obs", "terminated", "starts")

    def clear(self) -> None:
        """Forget everything (the per-task policy)."""
        self.written = 0
        """Steps ever written; step k lives in slot k % capacity while it is among the last ``capacity``."""

    def __len__(self) -> int:
        return min(self.written, self.capacity)

    def append(
        self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool, start: bool
    ) -> None:
        """Write one step, over the oldest once the ring is full."""
        slot = self.written % self.capacity
        self.obs[slot], self.next_obs[slot] = obs, next_obs
        self.actions[slot], self.rewards[slot] = action, reward
        self.terminated[slot], self.starts[slot] = terminated, start
        self.written += 1

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """``n`` stored steps drawn uniformly with replacement, in :attr:`fields` order."""
        index = _draw(len(self), n, self.rng, generator)
        return tuple(torch.from_numpy(a[index]) for a in self._arrays())

    def sample_windows(self, n: int, length: int) -> tuple[torch.Tensor, ...]:
        """``n`` windows of ``length`` consecutive stored steps; each field is [n, length, ...], as :attr:`fields`."""
        oldest = self.written - len(self)
        ends = self.rng.integers(oldest + length - 1, self.written, size=n)
        index = (ends[:, None] - np.arange(length - 1, -1, -1)[None, :]) % self.capacity
        return tuple(torch.from_numpy(a[index]) for a in self._arrays())

    def state_dict(self) -> dict[str, Any]:
        """The stored slots as they lie in the ring, and the count of steps written."""
        return {**self._stored(), "written": self.written, "capacity": self.capacity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (into a ring of the same capacity and width)."""
        self._check_loadable(state)
        self.written = int(state["written"])
        for name in self.fields:
            getattr(self, name)[: len(self)] = state[name].cpu().numpy()
