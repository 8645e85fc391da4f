"""PPO: the on-policy naive baseline for continual RL.

Proximal Policy Optimization with the clipped surrogate (Schulman et al.,
2017), generalised advantage estimation (Schulman et al., 2016) and the
implementation details catalogued by Huang et al. (2022, "The 37
implementation details of PPO"): advantage normalisation per minibatch,
clipped gradients, an entropy bonus, and learning-rate annealing within each
task. It keeps nothing between tasks but its weights, so it is the
on-policy counterpart of ``dqn-finetune``.

Rollouts come from a synchronous vector env in gymnasium's SAME_STEP
autoreset mode: an episode's final observation arrives in
``info["final_obs"]`` while the returned observation already starts the next
episode. A truncated episode is bootstrapped from the value of its final
observation; a terminated one is not.

After ``learn`` the agent keeps ``last_curve``: ``(env step, episode return)``
for each finished training episode of that experience.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium
import numpy as np
import torch
from torch import nn

from replaybench.agents._nets import mlp
from replaybench.agents.dqn import flat_discrete_sizes
from replaybench.errors import ConfigError, DivergenceError
from replaybench.params import Config, InstanceOf, Interval, param
from replaybench.protocols import Experience

_POS_INT = Interval(int, 1, None)
_UNIT = Interval(float, 0, 1)


@dataclass(frozen=True)
class PPOConfig(Config):
    """Hyperparameters of PPO (defaults: CleanRL's classic-control settings, but a higher lr)."""

    owner_name: ClassVar[str] = "PPO"

    hidden: tuple[int, ...] = param((64, 64), InstanceOf(tuple))
    """Widths of the actor's and the critic's hidden layers (separate networks)."""
    lr: float = param(1e-3, Interval(float, 0, None, closed="neither"))
    """Adam learning rate at the start of each task, annealed linearly to 0. CleanRL's 2.5e-4
    suits 500k-step runs; our tasks have a few thousand steps."""
    num_envs: int = param(4, _POS_INT)
    """Parallel environments in the rollout vector env."""
    rollout_steps: int = param(128, _POS_INT)
    """Steps per environment in each rollout."""
    gamma: float = param(0.99, _UNIT)
    """Discount factor."""
    gae_lambda: float = param(0.95, _UNIT)
    """λ of generalised advantage estimation."""
    epochs: int = param(4, _POS_INT)
    """Passes over each rollout."""
    minibatches: int = param(4, _POS_INT)
    """Minibatches per pass."""
    clip: float = param(0.2, Interval(float, 0, None, closed="neither"))
    """Clipping range of the probability ratio (and of the value update)."""
    entropy_coef: float = param(0.01, Interval(float, 0, None))
    """Weight of the entropy bonus."""
    value_coef: float = param(0.5, Interval(float, 0, None))
    """Weight of the value loss."""
    max_grad_norm: float = param(0.5, Interval(float, 0, None, closed="neither"))
    """Gradient-norm clipping threshold."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.hidden or not all(isinstance(h, int) and h > 0 for h in self.hidden):
            raise ConfigError(
                f"The 'hidden' parameter of PPO must be a non-empty tuple of positive ints. "
                f"Got {self.hidden!r} instead."
            )


class PPO:
    """PPO agent for ``rl`` experiences with discrete actions.

    Args:
        stream: The stream; its first env gives the observation and action sizes.
        config: Hyperparameters.
        seed: Seeds the networks, the action sampling and the environments.
        device: Torch device of the networks.
    """

    kinds: ClassVar[frozenset[str]] = frozenset({"rl"})
    Config: ClassVar[type[PPOConfig]] = PPOConfig

    def __init__(self, *, stream: Any, config: PPOConfig | None = None, seed: int, device: str = "cpu") -> None:
        self.config = config = config if config is not None else PPOConfig()
        if not isinstance(config, PPOConfig):
            raise ConfigError(f"The 'config' parameter of PPO must be a PPOConfig. Got {type(config).__name__}.")
        obs_dim, n_actions = flat_discrete_sizes(stream, seed=seed, owner="PPO")
        self.seed, self.device = seed, torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = mlp((obs_dim,), config.hidden, n_actions).to(self.device)
            self.critic = mlp((obs_dim,), config.hidden, 1).to(self.device)
        params = list(self.actor.parameters()) + list(self.critic.parameters())
        self.optimizer = torch.optim.Adam(params, lr=config.lr, eps=1e-5)
        self.last_curve: list[tuple[int, float]] = []

    @torch.no_grad()
    def act(self, obs: np.ndarray, task_id: int | None = None) -> np.ndarray:
        """Greedy (most probable) actions for a batch of observations."""
        logits = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        return logits.argmax(dim=1).cpu().numpy()

    def state_bytes(self) -> dict[str, int]:
        """Nothing: rollouts are discarded after each update; the actor and the critic are the learner."""
        return {}

    def _value(self, obs: np.ndarray) -> torch.Tensor:
        """State values on the CPU, where the rollout buffers live."""
        return self.critic(torch.as_tensor(obs, dtype=torch.float32, device=self.device)).squeeze(-1).cpu()

    def learn(self, experience: Experience) -> dict[str, float]:
        """Train on one task for at most ``experience.step_budget`` env steps."""
        cfg = self.config
        n_envs = min(cfg.num_envs, experience.step_budget)
        n_steps = min(cfg.rollout_steps, experience.step_budget // n_envs)
        iterations = experience.step_budget // (n_envs * n_steps)
        env_seeds = [int(s) for s in np.random.SeedSequence([self.seed, experience.index]).generate_state(n_envs)]
        envs = gymnasium.vector.SyncVectorEnv(
            [functools.partial(experience.env_factory, s) for s in env_seeds],
            autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP,
        )
        obs_shape = envs.single_observation_space.shape
        buf_obs = torch.zeros((n_steps, n_envs, *obs_shape))
        buf_actions = torch.zeros((n_steps, n_envs), dtype=torch.long)
        buf_logprobs, buf_rewards, buf_dones, buf_values = (torch.zeros((n_steps, n_envs)) for _ in range(4))
        obs, _ = envs.reset(seed=env_seeds)
        episode_returns, step, self.last_curve = np.zeros(n_envs), 0, []
        losses = []

        for iteration in range(iterations):
            for group in self.optimizer.param_groups:  # anneal the learning rate within the task
                group["lr"] = cfg.lr * (1.0 - iteration / iterations)

            # Rollout: n_steps steps of every env.
            for t in range(n_steps):
                obs_t = torch.as_tensor(obs, dtype=torch.float32)
                with torch.no_grad():  # sampled on the CPU, with the agent's own generator
                    dist = torch.distributions.Categorical(logits=self.actor(obs_t.to(self.device)).cpu())
                    action = torch.multinomial(dist.probs, 1, generator=self.generator).squeeze(1)
                    buf_values[t] = self._value(obs)
                buf_obs[t], buf_actions[t], buf_logprobs[t] = obs_t, action, dist.log_prob(action)
                obs, reward, terminated, truncated, info = envs.step(action.numpy())
                step += n_envs
                episode_returns += reward
                reward = reward.astype(np.float32)
                for i in np.flatnonzero(terminated | truncated):
                    self.last_curve.append((step, float(episode_returns[i])))
                    episode_returns[i] = 0.0
                    if truncated[i] and not terminated[i]:  # bootstrap through the time limit
                        with torch.no_grad():
                            reward[i] += cfg.gamma * float(self._value(info["final_obs"][i][None])[0])
                buf_rewards[t] = torch.from_numpy(reward)
                buf_dones[t] = torch.from_numpy((terminated | truncated).astype(np.float32))

            # Generalised advantage estimation, backwards through the rollout.
            with torch.no_grad():
                next_value = self._value(obs)
            advantages = torch.zeros_like(buf_rewards)
            running = torch.zeros(n_envs)
            for t in reversed(range(n_steps)):
                following = next_value if t == n_steps - 1 else buf_values[t + 1]
                not_done = 1.0 - buf_dones[t]
                delta = buf_rewards[t] + cfg.gamma * following * not_done - buf_values[t]
                running = delta + cfg.gamma * cfg.gae_lambda * not_done * running
                advantages[t] = running
            returns = advantages + buf_values

            # Clipped-surrogate updates over shuffled minibatches.
            flat = (
                buf_obs.reshape(-1, *obs_shape),
                buf_actions.reshape(-1),
                buf_logprobs.reshape(-1),
                advantages.reshape(-1),
                returns.reshape(-1),
                buf_values.reshape(-1),
            )
            batch = n_steps * n_envs
            minibatch = max(1, batch // cfg.minibatches)
            for _ in range(cfg.epochs):
                order = torch.randperm(batch, generator=self.generator)
                for start in range(0, batch, minibatch):
                    losses.append(self._update(*(x[order[start : start + minibatch]] for x in flat)))
        envs.close()
        finished = [r for _, r in self.last_curve]
        return {
            "episodes": float(len(finished)),
            "mean_episode_return": float(np.mean(finished)) if finished else float("nan"),
            "mean_loss": float(np.mean(losses)) if losses else float("nan"),
            "env_steps": float(step),
        }

    def _update(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        old_values: torch.Tensor,
    ) -> float:
        cfg = self.config
        obs, actions = obs.to(self.device), actions.to(self.device)
        dist = torch.distributions.Categorical(logits=self.actor(obs))
        ratio = (dist.log_prob(actions) - old_logprobs.to(self.device)).exp()
        if len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        advantages = advantages.to(self.device)
        policy_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()
        values = self.critic(obs).squeeze(-1)
        returns, old_values = returns.to(self.device), old_values.to(self.device)
        clipped_values = old_values + (values - old_values).clamp(-cfg.clip, cfg.clip)
        value_loss = 0.5 * torch.max((values - returns) ** 2, (clipped_values - returns) ** 2).mean()
        loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * dist.entropy().mean()
        if not torch.isfinite(loss):
            raise DivergenceError("The PPO loss stopped being finite; lower 'lr'.")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(list(self.actor.parameters()) + list(self.critic.parameters()), cfg.max_grad_norm)
        self.optimizer.step()
        return float(loss.detach())
