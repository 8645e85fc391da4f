"""The spine's contract: Experience, Stream, Agent and Memory.

These are structural protocols (``typing.Protocol``): anything with the right
attributes and methods qualifies, so third-party agents need not inherit from
us. The runner owns the loop; an agent only learns and answers queries.

Every optional hook that the runner, an evaluator or the CLI calls is
declared here as a small protocol of its own (:data:`OPTIONAL_HOOKS`), and
``replaybench check agent|stream`` holds implementations to the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch

Kind = Literal["supervised", "unsupervised", "rl", "sequence"]
"""What an experience asks of an agent, and so how the runner evaluates it.

- supervised: ``predict(x, task_id)`` returns logits, scored by accuracy.
- unsupervised: ``embed(x)`` returns features, scored by a fixed probe.
- rl: ``act(obs, task_id)`` returns actions, scored by normalised return. A
  stateful (recurrent) agent also defines ``begin_episodes(n)``
  (:class:`EpisodeAware`).
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


# --- optional stream hooks ----------------------------------------------------------------
@runtime_checkable
class SelfScoringStream(Protocol):
    """A stream that scores agents itself (RL returns, sequence accuracy).

    The runner calls ``evaluate(agent, experience)`` for every cell R[i][j]
    instead of the default evaluator of the experience's kind. It returns the
    R entry, or a mapping whose ``"score"`` is the R entry and whose other
    entries are secondary scores kept beside R (``extras["R_<name>"]``).
    """

    def evaluate(self, agent: Any, experience: Experience) -> float | Mapping[str, float]: ...


@runtime_checkable
class SingleTaskStream(Protocol):
    """A stream that can hand out one task alone: the reference run of
    Continual World's forward transfer (``RunSpec.forward_transfer_reference``)."""

    def single_task(self, index: int) -> Stream:
        """Experience ``index`` as a stream of its own, encoded as in the full stream."""
        ...


@runtime_checkable
class DescribedStream(Protocol):
    """A stream that describes itself for ``replaybench streams show`` (sizes, classes, source)."""

    def describe(self) -> dict[str, Any]: ...


# --- the agent ------------------------------------------------------------------------------
@runtime_checkable
class Agent(Protocol):
    """What the runner trains and evaluates.

    Agents are built as ``AgentClass(stream=..., config=..., seed=..., device=...)``,
    where ``config`` is an instance of the class's nested ``Config``: a frozen
    dataclass (a :class:`replaybench.params.Config` for declared
    constraints, or a plain ``@dataclass(frozen=True)`` whose annotated types
    are checked; see :func:`replaybench.params.build_config`). The runner
    calls ``learn`` once per experience and then queries the agent through
    the method of each experience's kind (:data:`QUERY_METHOD`). An agent
    never scores itself.
    """

    kinds: ClassVar[frozenset[str]]
    """The experience kinds this agent supports."""
    Config: ClassVar[type]
    """The frozen dataclass of its options."""

    def learn(self, experience: Experience) -> Mapping[str, float] | None:
        """Learn from one experience; may return training statistics (numbers are kept in costs)."""
        ...


class Predicts(Protocol):
    """supervised and sequence kinds: logits for a batch.

    ``predict(x, task_id)`` returns float logits [B, n_classes] (sequence:
    the stream's output shape). Entries may be ``-inf`` to mask classes;
    NaN and ``+inf`` are refused as divergence.
    """

    def predict(self, x: torch.Tensor, task_id: int | None) -> torch.Tensor: ...


class Embeds(Protocol):
    """unsupervised kind: features [B, F] for a batch, probed by the runner."""

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...


class Acts(Protocol):
    """rl kind: one action per observation in a batch (a vector env's rows)."""

    def act(self, obs: Any, task_id: int | None) -> Any: ...


QUERY_METHOD: dict[str, str] = {"supervised": "predict", "sequence": "predict", "unsupervised": "embed", "rl": "act"}
"""The query method an agent needs for each experience kind (:class:`Predicts`, :class:`Embeds`, :class:`Acts`)."""


# --- optional agent hooks -------------------------------------------------------------------
@runtime_checkable
class EpisodeAware(Protocol):
    """A stateful (recurrent) RL agent: told when evaluation episodes start.

    The RL evaluator calls ``begin_episodes(n)`` before ``n`` episodes start
    together, one per row of the observation batches that follow, so that
    the agent's working memory starts empty for them.
    """

    def begin_episodes(self, n: int) -> None: ...


@runtime_checkable
class KeepsTrainingCurve(Protocol):
    """An RL agent that keeps the ``(env step, episode return)`` points of its last ``learn``.

    The runner stores them (``extras["train_curves"]``) and uses them for
    Continual World's forward transfer.
    """

    last_curve: Sequence[tuple[int, float]]


@runtime_checkable
class KeepsEpochLosses(Protocol):
    """An agent that keeps the mean training loss of each epoch of its last ``learn``.

    The runner stores them as ``costs["per_experience"][k]["epoch_losses"]``;
    the W&B sink logs them as ``train/loss`` against a run-wide epoch counter.
    An empty sequence means the last ``learn`` ran no epochs.
    """

    last_epoch_losses: Sequence[float]


@runtime_checkable
class CountsState(Protocol):
    """An agent that says how many bytes it carries from one experience to the next.

    "Equal memory" comparisons need memory counted whole, not only a replay
    buffer: ``state_bytes()`` maps each part of what the agent keeps across
    experiences, beyond its learner's own weights, to its bytes (e.g.
    ``{"replay_items": …, "fisher": …, "anchor_weights": …}``); extra
    networks (a teacher, a slow learner, a generator) count. An empty mapping
    means nothing is kept. The learner's optimiser state (momentum buffers,
    Adam moments) is its own and is not counted, nor is what is rebuilt
    before it is used (a buffer emptied at every task). Tensors count
    ``numel() * element_size()`` (:func:`tensor_bytes`, :func:`module_bytes`).

    The runner reads it after each ``learn``: ``costs["state_bytes"]`` is the
    largest total, ``costs["state_bytes_parts"]`` its breakdown. An agent
    without the hook has neither key: its memory is unknown, not zero.
    """

    def state_bytes(self) -> Mapping[str, int]: ...


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of ``tensors``' elements (``numel() * element_size()``): the one way state is counted."""
    return sum(t.numel() * t.element_size() for t in tensors)


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers: what a kept copy of it (a teacher, a slow learner) costs."""
    return tensor_bytes([*module.parameters(), *module.buffers()])


OPTIONAL_HOOKS: dict[str, tuple[type, str]] = {
    "begin_episodes": (EpisodeAware, "called by the RL evaluator before a batch of evaluation episodes"),
    "last_curve": (KeepsTrainingCurve, "read by the runner after each learn (RL training curve, forward transfer)"),
    "last_epoch_losses": (KeepsEpochLosses, "read by the runner after each learn (mean training loss per epoch)"),
    "state_bytes": (CountsState, "read by the runner after each learn (bytes kept across experiences, by part)"),
    "evaluate": (SelfScoringStream, "a stream's own scorer, used instead of the kind's default evaluator"),
    "single_task": (SingleTaskStream, "a stream's task alone, for forward-transfer reference runs"),
    "describe": (DescribedStream, "a stream's description for 'replaybench streams show'"),
}
"""Every optional hook the runner, the evaluators or the CLI call, with the protocol that declares it.
Nothing else is looked up on an agent or a stream."""


# --- memories -------------------------------------------------------------------------------
@runtime_checkable
class Memory(Protocol):
    """A storage policy an agent writes into and replays from.

    An item is a tuple of fields, each a tensor row: ``(x, y)`` for labelled
    inputs, ``(obs, action, reward, next_obs, terminated)`` for a transition.
    ``add`` takes one tensor per field, all with the batch as their leading
    dimension; ``sample`` returns the fields of the drawn items in the same
    order. Which fields a memory holds is its own (its docstring says).

    ``nbytes`` counts the stored payload so that agents are compared at equal
    memory budgets. ``replaybench check memory`` holds implementations to
    this contract (:func:`replaybench.checks.check_memory`).
    """

    def add(self, *fields: torch.Tensor) -> None:
        """Offer a batch of items; the policy decides what to keep."""
        ...

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Draw ``n`` stored items (with replacement), from ``generator`` or else the memory's own randomness."""
        ...

    def __len__(self) -> int: ...

    @property
    def nbytes(self) -> int: ...

    def state_dict(self) -> dict[str, Any]:
        """What is stored, for ``load_state_dict`` (a memory's randomness stays its owner's)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
