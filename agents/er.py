"""Experience replay (ER): rehearse stored items alongside each new minibatch.

Each step adds a minibatch drawn from the memory (of the same size as the
current one) and sums the two cross-entropies; the memory is updated with
the experience's data after training, as in Avalanche's ``ReplayPlugin``
and Chaudhry et al. 2019 ("On tiny episodic memories in continual learning").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from replaybench.agents._supervised import SupervisedAgent, TrainingConfig
from replaybench.errors import ConfigError
from replaybench.memories.reservoir import ClassBalancedBuffer, ReservoirBuffer, items_for_bytes
from replaybench.params import InstanceOf, Interval, Optional, param
from replaybench.protocols import Experience, Stream


@dataclass(frozen=True)
class ERConfig(TrainingConfig):
    memory_size: int = param(1000, Interval(int, 1, None))
    """Memory budget in stored items."""
    memory_bytes: int | None = param(None, Optional(Interval(int, 1, None)))
    """Memory budget in bytes of stored inputs and labels; overrides ``memory_size``."""
    class_balanced: bool = param(False, InstanceOf(bool))
    """Give each class seen an equal share of the memory instead of one reservoir."""


class ExperienceReplay(SupervisedAgent):
    """Reservoir (or class-balanced) replay with a fixed memory budget."""

    Config = ERConfig

    def __init__(self, *, stream: Stream, config: ERConfig, seed: int, device: str = "cpu") -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        capacity = config.memory_size
        if config.memory_bytes is not None:
            capacity = items_for_bytes(config.memory_bytes, stream.experiences[0].train_x[0])
            if capacity < 1:
                raise ConfigError(f"A memory of {config.memory_bytes} bytes holds no item of stream {stream.name}.")
        buffer_cls = ClassBalancedBuffer if config.class_balanced else ReservoirBuffer
        self.memory = buffer_cls(capacity=capacity, generator=self.generator)
        self.replayed = 0

    def replay_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if len(self.memory) == 0:
            return None
        self.replayed += n
        return self.memory.sample(n)

    def before_experience(self, experience: Experience) -> None:
        self.replayed = 0

    def after_experience(self, experience: Experience) -> dict[str, float]:
        self.memory.add(experience.train_x, experience.train_y)
        return {"replay_samples": float(self.replayed), "memory_bytes": float(self.memory.nbytes)}

    def state_bytes(self) -> dict[str, int]:
        """The stored items: inputs and int64 labels (the memory's ``nbytes``)."""
        return {"replay_items": self.memory.nbytes}
