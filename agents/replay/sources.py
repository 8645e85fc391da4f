"""Where replayed items come from: the ``source`` choice of :class:`~replaybench.agents.replay.ReplayAgent`.

A source is a memory (:class:`replaybench.protocols.Memory`) built for a
byte budget. ``buffer`` stores exemplars; ``gsemm`` recalls them through
GSEMM's dynamics; ``generative`` makes new items; ``wave`` holds the latest
experience in a traveling-wave lattice. The memories themselves live in
``memories/``; this module picks one and fits it to the budget.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from replaybench.errors import ConfigError
from replaybench.memories.gsemm import DSEMConfig
from replaybench.memories.gsemm_replay import ScoredReservoir, scored_capacity
from replaybench.memories.reservoir import ClassBalancedBuffer, items_for_bytes

SOURCES = ("none", "buffer", "gsemm", "generative", "wave")
ORDERED_SOURCES = ("gsemm", "generative", "wave")
"""Sources that keep an order to replay in (the ``sequence`` schedule)."""


class BufferSource:
    """Exemplar replay from a reservoir, with the review's buffer elements as options.

    ``priority`` samples in proportion to each item's last replay loss
    (Schaul et al. 2016) or to 1 + its forgetting events (Toneva et al.
    2019); ``decay`` lowers an item's replay weight by (1 - decay) per
    experience of age; ``gist`` moves stored items toward their class's
    stored mean after each experience (Hayes et al. 2021, element 12).
    With every option off it is ER's reservoir (agents/er.py).
    """

    def __init__(
        self,
        *,
        budget_bytes: int,
        example: Tensor,
        generator: torch.Generator,
        priority: str = "none",
        priority_exponent: float = 1.0,
        decay: float = 0.0,
        gist: float = 0.0,
    ) -> None:
        self.priority, self.priority_exponent, self.decay, self.gist = priority, priority_exponent, decay, gist
        metadata = 4 * ((priority != "none") + (decay > 0))  # float32 score and age per item, when used
        capacity = scored_capacity(budget_bytes, example, metadata)
        if capacity < 1:
            raise ConfigError(f"a buffer of {budget_bytes} bytes holds no item of {example.numel()} features")
        self.memory = ScoredReservoir(capacity=capacity, generator=generator, metadata_bytes=metadata)
        self.last: Tensor | None = None  # indices of the last draw, for feedback

    def add(self, x: Tensor, y: Tensor) -> None:
        m = self.memory
        m.age[: len(m)] += 1
        m.add(x, y)
        if self.gist:
            self._extract_gist()

    def weights(self) -> Tensor | None:
        """Sampling weights over the reservoir's slots, or None for uniform."""
        m = self.memory
        if self.priority == "none" and self.decay == 0:
            return None
        w = torch.ones(m.capacity)
        if self.priority == "loss":
            w = m.score.clamp_min(1e-6) ** self.priority_exponent
        elif self.priority == "forgetting":
            w = (1 + m.forgets) ** self.priority_exponent
        if self.decay:
            w = w * (1 - self.decay) ** m.age
        return w

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        self.last = self.memory.sample_indices(n, self.weights(), generator)
        return self.memory.x[self.last], self.memory.y[self.last]

    def items(self) -> tuple[Tensor, Tensor]:
        """Every stored item, once."""
        n = len(self.memory)
        return self.memory.x[:n], self.memory.y[:n]

    def feedback(self, losses: Tensor, correct: Tensor) -> None:
        """The last draw's per-item replay losses and correctness (for ``priority``)."""
        m, idx = self.memory, self.last
        if idx is None:
            return
        m.score[idx] = losses
        m.forgets[idx] += (m.last_correct[idx] & ~correct).float()
        m.last_correct[idx] = correct

    def _extract_gist(self) -> None:
        m, n = self.memory, len(self.memory)
        x, y = m.x[:n], m.y[:n]
        for label in torch.unique(y):
            rows = y == label
            x[rows] += self.gist * (x[rows].float().mean(0) - x[rows])

    def __len__(self) -> int:
        return len(self.memory)

    @property
    def nbytes(self) -> int:
        return self.memory.nbytes

    def state_dict(self) -> dict[str, Any]:
        return self.memory.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state)


class BalancedSource(ClassBalancedBuffer):
    """Equal shares of the budget for every class seen (ER's class-balanced buffer)."""

    def __init__(self, *, budget_bytes: int, example: Tensor, generator: torch.Generator) -> None:
        capacity = items_for_bytes(budget_bytes, example)
        if capacity < 1:
            raise ConfigError(f"a buffer of {budget_bytes} bytes holds no item of {example.numel()} features")
        super().__init__(capacity=capacity, generator=generator)


def build_source(
    config: Any, *, budget_bytes: int, example: Tensor, n_classes: int, generator: torch.Generator
) -> Any | None:
    """The source ``config.source`` names, fitted to ``budget_bytes``; None for ``"none"``.

    ``example`` is one stored row (an input or a latent, flattened).

    Raises:
        ConfigError: the budget holds no item (or, for a model source, no model).
    """
    source = config.source
    example = example.flatten().float()
    if source == "none":
        return None
    if budget_bytes <= 0:
        raise ConfigError(f"nothing of memory_bytes is left for the {source!r} source")
    if source == "buffer":
        if config.buffer == "balanced":
            return BalancedSource(budget_bytes=budget_bytes, example=example, generator=generator)
        return BufferSource(
            budget_bytes=budget_bytes,
            example=example,
            generator=generator,
            priority=config.priority,
            priority_exponent=config.priority_exponent,
            decay=config.decay,
            gist=config.gist,
        )
    dsem = DSEMConfig(dt=0.1, integrator="euler", tau_d=config.gsemm_tau_d)
    if source == "gsemm":
        from replaybench.memories.gsemm_replay import GSEMMRecallSource

        return GSEMMRecallSource(
            budget_bytes=budget_bytes,
            n_features=example.numel(),
            n_classes=n_classes,
            config=dsem,
            cue_fraction=config.cue_fraction,
            recall_steps=config.recall_steps,
            windows=config.sequence_windows,
            generator=generator,
        )
    if source == "generative":
        from replaybench.memories.generative import GSEMMMixtureSource, PPCASource

        if config.generator == "ppca":
            return PPCASource(
                budget_bytes=budget_bytes, n_features=example.numel(), n_classes=n_classes, generator=generator
            )
        return GSEMMMixtureSource(
            budget_bytes=budget_bytes,
            n_features=example.numel(),
            n_classes=n_classes,
            config=dsem,
            recall_steps=config.recall_steps,
            generator=generator,
        )
    from replaybench.memories.wave_replay import WaveSource

    return WaveSource(
        budget_bytes=budget_bytes, n_features=example.numel(), direction=config.wave_direction, generator=generator
    )
