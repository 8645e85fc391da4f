"""A recurrent DQN whose working memory is a traveling-wave lattice.

For partially observable tasks such as ``cartpole-conflict-pomdp`` (no
velocities): a single observation does not tell the agent where the pole is
heading, the last few do. Each observation is encoded and written into the
start boundary of a :class:`~replaybench.memories.wave.WaveLattice` (s slots × d
features; Karuvally, Sejnowski & Siegelmann, ICML 2024); the wave carries it
one slot further back at every step, so the lattice holds the recent history
in order, and the boundary function f (LBC or SBC, learned, starting at 0)
can keep information for longer. The Q-values are an MLP of the flattened
lattice. The lattice is emptied at the start of every episode.

Training is deep recurrent Q-learning (Hausknecht & Stone, 2015) with
R2D2-style stored-state-free sequences (Kapturowski et al., 2019): windows
of ``sequence_length`` consecutive steps are drawn from a FIFO buffer, the
lattice is unrolled from zero at the window's start (or at an episode start
inside it), and the TD loss counts only the steps whose state is exact: the
first ``burn_in`` steps of a window serve to fill the lattice, unless an
episode started inside the window before them. With the pure traveling
wave (f = 0) the lattice after s steps is exact; ``burn_in`` = s by default.
The next state of a step is the lattice advanced with that step's next
observation, so a target never mixes two episodes.

The Q-learning loop's hyperparameters are :class:`~replaybench.agents.dqn.QLearningConfig`'s.

Example:
    >>> from replaybench.streams.rl import make_cartpole_conflict
    >>> stream = make_cartpole_conflict(n_tasks=1, steps_per_task=600, hide_velocity=True)
    >>> agent = WaveDQN(stream=stream, config=WaveDQN.Config(learning_starts=100), seed=0)
    >>> stats = agent.learn(stream.experiences[0])
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from replaybench.agents._nets import mlp
from replaybench.agents.dqn import QLearningConfig, flat_discrete_sizes, training_stats
from replaybench.errors import ConfigError, DivergenceError
from replaybench.memories.transitions import StepBuffer
from replaybench.memories.wave import WaveLattice
from replaybench.params import Interval, OneOf, Optional, param
from replaybench.protocols import Experience

_POS_INT = Interval(int, 1, None)


@dataclass(frozen=True)
class WaveDQNConfig(QLearningConfig):
    """The Q-learning loop, a wave-lattice core and sequence replay."""

    owner_name: ClassVar[str] = "WaveDQN"

    lr: float = param(3e-3, Interval(float, 0, None, closed="neither"))
    """Adam learning rate (3e-3 learned the POMDP in 4k steps on every seed tried; 1e-3 did not)."""
    train_every: int = param(2, _POS_INT)
    """Env steps between gradient steps (each replays batch_size × sequence_length steps)."""

    slots: int = param(4, _POS_INT)
    """s: history slots of the lattice."""
    features: int = param(16, _POS_INT)
    """d: independent waves (the width an observation is encoded to)."""
    boundary: str = param("linear", OneOf("copy", "linear", "attention"))
    """The start boundary's f: ``copy`` (f = 0, fixed), ``linear`` (LBC) or ``attention`` (SBC)."""
    sequence_length: int = param(12, Interval(int, 2, None))
    """Consecutive steps per replayed window."""
    burn_in: int | None = param(None, Optional(Interval(int, 0, None)))
    """Window steps that only fill the lattice (default: ``slots``)."""
    buffer: str = param("per-task", OneOf("per-task", "fifo"))
    """``per-task`` empties the buffer at every task; ``fifo`` keeps the most recent steps across tasks."""
    grad_clip: float = param(10.0, Interval(float, 0, None, closed="neither"))
    """Maximum gradient norm (BPTT through the window)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        burn_in = self.effective_burn_in
        if not isinstance(burn_in, int) or isinstance(burn_in, bool) or not 0 <= burn_in < self.sequence_length:
            raise ConfigError(
                f"The 'burn_in' parameter of WaveDQN must be an int in [0, sequence_length = "
                f"{self.sequence_length}). Got {burn_in!r} instead."
            )
        if self.buffer_capacity < self.sequence_length:
            raise ConfigError(
                f"The 'buffer_capacity' parameter of WaveDQN must be at least sequence_length "
                f"({self.sequence_length}). Got {self.buffer_capacity} instead."
            )

    @property
    def effective_burn_in(self) -> int:
        return self.slots if self.burn_in is None else self.burn_in


class WaveQNetwork(nn.Module):
    """Observation encoder → wave lattice (tanh boundary) → Q-values from the flattened lattice."""

    def __init__(self, obs_dim: int, n_actions: int, config: WaveDQNConfig) -> None:
        super().__init__()
        self.encoder = nn.Linear(obs_dim, config.features)
        self.lattice = WaveLattice(
            slots=config.slots, features=config.features, boundary=config.boundary, activation="tanh"
        )
        self.lattice.zero_boundary()  # start as a pure traveling wave and learn f from there
        self.head = mlp((config.slots * config.features,), config.hidden, n_actions)

    def initial_state(self, batch: int) -> torch.Tensor:
        return self.lattice.initial_state(batch, device=self.encoder.weight.device)

    def step(self, lattice: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """The lattice after writing ``obs`` [B, obs_dim] into it."""
        return self.lattice.step(lattice, self.encoder(obs))

    def q_values(self, lattice: torch.Tensor) -> torch.Tensor:
        return self.head(lattice.flatten(1))

    def unroll(self, obs: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """Lattices [B, T, s, d] over ``obs`` [B, T, obs_dim], from zero, emptied where ``starts`` [B, T]."""
        lattice = self.initial_state(obs.shape[0])
        keep = (~starts).to(obs.dtype).view(*starts.shape, 1, 1)
        states = []
        for t in range(obs.shape[1]):
            lattice = self.step(lattice * keep[:, t], obs[:, t])
            states.append(lattice)
        return torch.stack(states, dim=1)


class WaveDQN:
    """Deep recurrent Q-learning with a traveling-wave core, for ``rl`` experiences with discrete actions.

    Args:
        stream: The stream; its first env gives the observation and action sizes.
        config: Hyperparameters (:class:`WaveDQNConfig`).
        seed: Seeds the network, the exploration and the environments.
        device: Torch device of the networks.
    """

    kinds: ClassVar[frozenset[str]] = frozenset({"rl"})
    Config: ClassVar[type[WaveDQNConfig]] = WaveDQNConfig

    def __init__(self, *, stream: Any, config: WaveDQNConfig | None = None, seed: int, device: str = "cpu") -> None:
        self.config = config = config if config is not None else WaveDQNConfig()
        if not isinstance(config, WaveDQNConfig):
            raise ConfigError(
                f"The 'config' parameter of WaveDQN must be a WaveDQNConfig. Got {type(config).__name__}."
            )
        obs_dim, self.n_actions = flat_discrete_sizes(stream, seed=seed, owner="WaveDQN")
        self.seed, self.device = seed, torch.device(device)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x57]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.q_network = WaveQNetwork(obs_dim, self.n_actions, config).to(self.device)
        self.target_network = copy.deepcopy(self.q_network)
        self.optimizer = torch.optim.Adam(self.q_network.parameters(), lr=config.lr)
        self.buffer = StepBuffer(capacity=config.buffer_capacity, obs_dim=obs_dim, rng=self.rng)
        self.lattice = self.q_network.initial_state(1)
        """The acting state: one lattice per episode being played (see :meth:`begin_episodes`)."""
        self.last_curve: list[tuple[int, float]] = []

    def begin_episodes(self, n: int) -> None:
        """Empty the working memory: ``n`` episodes start now, one per row of the next observations."""
        self.lattice = self.q_network.initial_state(n)

    @torch.no_grad()
    def act(self, obs: np.ndarray, task_id: int | None = None) -> np.ndarray:
        """Greedy actions for a batch of observations of the episodes begun by :meth:`begin_episodes`."""
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if self.lattice.shape[0] != obs_tensor.shape[0]:
            raise ConfigError(
                f"WaveDQN.act got {obs_tensor.shape[0]} observations for {self.lattice.shape[0]} "
                "episodes; call begin_episodes(n) when n episodes start."
            )
        self.lattice = self.q_network.step(self.lattice, obs_tensor)
        return self.q_network.q_values(self.lattice).argmax(dim=1).cpu().numpy()

    def state_bytes(self) -> dict[str, int]:
        """The FIFO buffer when it is kept across tasks; ``per-task`` empties it before the next task.

        The lattice is working memory, emptied at every episode, and the target network is
        the learner's own (synced from the online network at every task's first step).
        """
        return {} if self.config.buffer == "per-task" else {"replay_buffer": self.buffer.nbytes}

    def learn(self, experience: Experience) -> dict[str, float]:
        """Train on one task for ``experience.step_budget`` env steps."""
        cfg, budget = self.config, experience.step_budget
        if cfg.buffer == "per-task":
            self.buffer.clear()
        env = experience.env_factory(self.seed)
        episode_seeds = np.random.SeedSequence([self.seed, experience.index]).generate_state(1)
        obs, _ = env.reset(seed=int(episode_seeds[0]))
        self.begin_episodes(1)
        episode_start, episode_return, losses, self.last_curve, replayed = True, 0.0, [], [], 0

        for step in range(budget):
            greedy = self.act(obs[None])[0]  # also advances the lattice, which exploration must not skip
            action = (
                int(self.rng.integers(self.n_actions)) if self.rng.random() < cfg.epsilon(step, budget) else int(greedy)
            )
            next_obs, reward, terminated, truncated, _ = env.step(action)
            self.buffer.append(obs, action, reward, next_obs, terminated, episode_start)
            episode_start, episode_return, obs = False, episode_return + reward, next_obs

            if step >= cfg.learning_starts and step % cfg.train_every == 0 and len(self.buffer) >= cfg.sequence_length:
                losses.append(self._td_update(self.buffer.sample_windows(cfg.batch_size, cfg.sequence_length)))
                replayed += cfg.batch_size * cfg.sequence_length
            if step % cfg.target_sync_every == 0:
                self.target_network.load_state_dict(self.q_network.state_dict())

            if terminated or truncated:
                self.last_curve.append((step + 1, episode_return))
                obs, _ = env.reset()
                self.begin_episodes(1)
                episode_start, episode_return = True, 0.0
        env.close()
        return training_stats(self.last_curve, losses, self.buffer, replayed)

    def _td_update(self, window: tuple[torch.Tensor, ...]) -> float:
        """One Adam step on the squared TD error of the window steps whose lattice is exact."""
        obs, actions, rewards, next_obs, terminated, starts = (t.to(self.device) for t in window)
        batch, length = actions.shape
        # A step's lattice (unrolled from zero at the window's start) is exact once its episode
        # began inside the window, or after burn_in steps have filled it.
        counted = torch.cumsum(starts.long(), dim=1) > 0
        counted[:, self.config.effective_burn_in :] = True
        with torch.no_grad():
            target_states = self.target_network.unroll(obs, starts).flatten(0, 1)
            next_states = self.target_network.step(target_states, next_obs.flatten(0, 1))
            next_value = self.target_network.q_values(next_states).max(dim=1).values.view(batch, length)
            target = rewards + self.config.gamma * next_value * (1.0 - terminated)
        states = self.q_network.unroll(obs, starts)
        q_all = self.q_network.q_values(states.flatten(0, 1)).view(batch, length, -1)
        q_taken = q_all.gather(2, actions.unsqueeze(2)).squeeze(2)
        weights = counted.float()
        loss = ((target - q_taken) ** 2 * weights).sum() / weights.sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q_network.parameters(), self.config.grad_clip)
        self.optimizer.step()
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise DivergenceError(f"The WaveDQN loss became {loss_value}; lower 'lr'.")
        return loss_value
