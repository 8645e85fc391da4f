"""Episode streams for episodic memory: cycles of patterns to store, then recall.

Each experience brings ``cycles_per_experience`` new episodes. An episode is
a cycle of ``cycle_length`` random ±1 patterns of width ``n_features``
(ξ¹ → ξ² → … → ξᴸ → ξ¹), the kind of sequence GSEMM stores (Karuvally,
Sejnowski & Siegelmann, ICML 2023). After each experience the stream cues
the agent with every stored pattern of every experience, a fraction
``corruption`` (25% by default) of its entries zeroed, and asks for the
pattern that follows it in its episode. R[i][j] is the recall accuracy on
experience j's episodes after learning experience i.

An episode :class:`~replaybench.protocols.Experience` (kind "sequence"):

- ``train_x``: the episodes, float ``[C, L, d]`` (±1);
- ``train_y``: each pattern's successor, ``train_x`` rolled by one step
  (so the last pattern is followed by the first);
- ``test_x``: the cues, float ``[C*L, 1, d]`` (±1 with zeros), one per
  pattern, drawn once from the stream's seed;
- ``test_y``: each cue's target successor, ``[C*L, 1, d]``;
- ``task_id``: the experience index; ``info``: ``output_mask`` (all L steps),
  ``d_out`` = d and ``loss`` = "mse", as the other sequence streams, so the
  sequence agents can train on it.

The agent method called: ``predict(cues, task_id)`` with ``cues`` of shape
``[B, 1, d]`` (a one-step sequence) returns the recalled successors,
``[B, 1, d]``. A recall is correct when the sign of every entry equals the
target (an entry of 0 is wrong). The score is the fraction of correct
recalls; the mean fraction of correct entries is reported as
``bit_accuracy`` next to it.

Example:
    >>> stream = make_episode_cycles(n_experiences=2, n_features=16, cycle_length=3)
    >>> [tuple(e.test_x.shape) for e in stream.experiences]
    [(6, 1, 16), (6, 1, 16)]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from replaybench.errors import ConfigError
from replaybench.params import Interval, check_param
from replaybench.protocols import Experience
from replaybench.streams.sequence_tasks import SequenceStream

STREAM_VERSION = "1"


def corrupt(patterns: torch.Tensor, fraction: float, *, generator: torch.Generator) -> torch.Tensor:
    """Zero ``round(fraction * d)`` entries of each pattern ``[N, d]``, chosen uniformly per pattern."""
    n, d = patterns.shape
    n_zeroed = round(fraction * d)
    zeroed = torch.rand(n, d, generator=generator).argsort(dim=1)[:, :n_zeroed]
    return patterns.scatter(1, zeroed, 0.0)


def recall_scores(recalled: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """``score``: fraction of recalls whose sign matches the target everywhere;
    ``bit_accuracy``: fraction of matching entries. Both ``[N, d]``."""
    matches = torch.sign(recalled) == targets
    return {"score": matches.all(dim=1).double().mean().item(), "bit_accuracy": matches.double().mean().item()}


@dataclass(frozen=True, eq=False)
class EpisodeStream(SequenceStream):
    """A stream of pattern cycles that scores the agent's recall of each successor."""

    def evaluate(self, agent: Any, experience: Experience) -> dict[str, float]:
        """Cue the agent with the experience's corrupted patterns and score its recall."""
        with torch.no_grad():
            outputs = agent.predict(experience.test_x, experience.task_id)
        outputs = outputs.detach().cpu()
        if tuple(outputs.shape) != tuple(experience.test_y.shape):
            raise ConfigError(
                f"Expected recalled patterns of shape [N, 1, d] = {tuple(experience.test_y.shape)}. "
                f"Got {tuple(outputs.shape)} instead."
            )
        return recall_scores(outputs[:, -1], experience.test_y[:, -1])

    def describe(self) -> dict[str, Any]:
        """What ``replaybench streams show`` prints."""
        return {
            **super().describe(),
            "cycles_per_experience": self.params["cycles_per_experience"],
            "cycle_length": self.params["cycle_length"],
        }


def make_episode_cycles(
    *,
    name: str | None = None,
    version: str = STREAM_VERSION,
    data_dir: str | None = None,
    download: bool = False,
    n_experiences: int = 5,
    cycles_per_experience: int = 2,
    cycle_length: int = 5,
    n_features: int = 100,
    corruption: float = 0.25,
    seed: int = 0,
) -> EpisodeStream:
    """episode-cycles: new random ±1 pattern cycles in every experience.

    Args:
        name: The stream's name (default "episode-cycles").
        version: Bumped when the definition changes.
        data_dir: Unused (generated data); kept for the builder signature.
        download: Unused, as ``data_dir``.
        n_experiences: Number of experiences.
        cycles_per_experience: Episodes (cycles) per experience.
        cycle_length: Patterns per cycle, at least 2.
        n_features: Width d of a pattern.
        corruption: Fraction of each cue's entries set to 0, in [0, 1).
        seed: Seed of the patterns and the cues.
    """
    owner = f"stream {name or 'episode-cycles'}"
    for key, value in {
        "n_experiences": n_experiences,
        "cycles_per_experience": cycles_per_experience,
        "n_features": n_features,
    }.items():
        check_param(owner, key, value, Interval(int, 1, None))
    check_param(owner, "cycle_length", cycle_length, Interval(int, 2, None))
    check_param(owner, "corruption", corruption, Interval(float, 0, 1, closed="left"))
    check_param(owner, "seed", seed, Interval(int, 0, None))
    generator = torch.Generator().manual_seed(seed)
    experiences, digest = [], hashlib.sha256()
    for i in range(n_experiences):
        shape = (cycles_per_experience, cycle_length, n_features)
        episodes = torch.randint(0, 2, shape, generator=generator).float() * 2 - 1
        successors = episodes.roll(-1, dims=1)
        cues = corrupt(episodes.reshape(-1, n_features), corruption, generator=generator)
        info = {
            "family": "episodes",
            "task": f"cycles-{i}",
            "output_mask": torch.ones(cycle_length, dtype=torch.bool),
            "d_out": n_features,
            "loss": "mse",
        }
        experience = Experience(
            index=i,
            kind="sequence",
            train_x=episodes,
            train_y=successors,
            test_x=cues[:, None, :],
            test_y=successors.reshape(-1, 1, n_features),
            task_id=i,
            info=info,
        )
        for tensor in (experience.train_x, experience.train_y, experience.test_x, experience.test_y):
            digest.update(tensor.contiguous().numpy().tobytes())
        experiences.append(experience)
    params = {
        "n_experiences": n_experiences,
        "cycles_per_experience": cycles_per_experience,
        "cycle_length": cycle_length,
        "n_features": n_features,
        "corruption": corruption,
        "seed": seed,
    }
    return EpisodeStream(
        name=name or "episode-cycles",
        version=version,
        scenario="sequence",
        experiences=tuple(experiences),
        n_classes=0,
        input_shape=(n_features,),
        source="generated in-process by streams.episodes",
        params=params,
        data_digest=digest.hexdigest(),
        output_size=n_features,
    )
