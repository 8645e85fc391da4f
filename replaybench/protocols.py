"""The spine's contract: Experience, Stream, Agent and Memory.

These are structural protocols (``typing.Protocol``): anything with the right
attributes and methods qualifies, so third-party agents need not inherit from
us. The runner owns the loop; an agent only learns and answers queries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch

Kind = Literal["supervised", "unsupervised", "rl", "sequence"]
"""What an experience asks of an agent, and so how the runner evaluates it.

- supervised: ``predict(x, task_id)`` returns logits, scored by accuracy.
- unsupervised: ``embed(x)`` returns features, scored by a fixed probe.
- rl: ``act(obs, task_id)`` returns actions, scored by normalised return. A
  stateful (recurrent) agent also defines ``begin_episodes(n)``: the
  evaluator calls it before ``n`` episodes start together, one per row of
  the observation batches that follow.
- sequence: ``predict(x, task_id)`` on [B, T, d] inputs; the stream scores it.
"""

Scenario = Literal["class-il", "domain-il", "task-il", "unsupervised", "rl", "sequence"]


@dataclass(frozen=True, eq=False)
class Experience:
    """One step of a stream.

    For supervised, unsupervised and sequence kinds the four tensors hold the
    data (images as float32 [N, C, H, W], labels as int64 [N]); they may be
    views into tensors shared by the whole stream. For rl they are ``None`` and
    ``env_factory`` with ``step_budget`` describe the task.
    """

    index: int
    kind: Kind
    train_x: torch.Tensor | None = None
    train_y: torch.Tensor | None = None
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None
    task_id: int | None = None
    """Revealed to the agent only where the scenario allows (task-IL, rl with ids)."""
    classes: tuple[int, ...] = ()
    """The labels present in this experience."""
    env_factory: Callable[..., Any] | None = None
    step_budget: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    """Stream-specific extras (e.g. an rl task's max return)."""


@runtime_checkable
class Stream(Protocol):
    """An ordered list of experiences with an identity.

    Attributes:
        name: Registered name, e.g. ``"split-fmnist"``.
        version: Bumped whenever the definition changes.
        scenario: One of :data:`Scenario`.
        experiences: The experiences, in order.
        fingerprint: Content hash of the data and the split. Results are
            comparable only across equal fingerprints.
        n_classes: Width of a single-head classifier (0 where not applicable).
        input_shape: Shape of one input, without the batch dimension.
    """

    name: str
    version: str
    scenario: Scenario
    experiences: Sequence[Experience]
    n_classes: int
    input_shape: tuple[int, ...]

    @property
    def fingerprint(self) -> str: ...


@runtime_checkable
class Agent(Protocol):
    """What the runner trains and evaluates.

    Agents are built as ``AgentClass(stream=..., config=..., seed=...)``.
    The runner calls ``learn`` once per experience and then queries the agent
    through whichever of ``predict``, ``embed`` or ``act`` fits the
    experience's kind. An agent never scores itself.
    """

    kinds: ClassVar[frozenset[str]]
    """The experience kinds this agent supports."""

    def learn(self, experience: Experience) -> dict[str, float] | None:
        """Learn from one experience; may return training statistics."""
        ...


class Memory(Protocol):
    """A storage policy an agent writes into and replays from.

    ``nbytes`` counts the stored payload so that agents are compared at equal
    memory budgets.
    """

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Offer a batch of items; the policy decides what to keep."""
        ...

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` stored items (with replacement if fewer are stored)."""
        ...

    def __len__(self) -> int: ...

    @property
    def nbytes(self) -> int: ...

    def state_dict(self) -> dict[str, Any]: ...
