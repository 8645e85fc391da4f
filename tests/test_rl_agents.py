"""The DQN family and PPO: they learn, they forget as the paper setting says, and they validate."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from replaybench.agents.dqn import DQN, DQNConfig
from replaybench.agents.ppo import PPO, PPOConfig
from replaybench.errors import ConfigError
from replaybench.memories.transitions import TransitionBuffer
from replaybench.runner import RunSpec, run
from replaybench.streams.rl import evaluate_rl, make_cartpole_conflict

FINETUNE = {"buffer": "per-task"}
REPLAY = {"buffer": "reservoir"}


@pytest.fixture(scope="module")
def conflict_stream():
    """The target stream: default CartPole then the reversed actuator, 4k steps each."""
    return make_cartpole_conflict(n_tasks=2, steps_per_task=4000)


@pytest.mark.slow  # ~30 s on 2 cores: `make test-all`
def test_cartpole_conflict_finetune_forgets_and_replay_does_not(conflict_stream):
    """Issue #4's target, from rl-wandb-distributed.md (measured there: F 0.64, AP gap 0.40)."""
    results = {
        (name, seed): run(
            RunSpec(stream="cartpole-conflict", agent="replaybench.agents.dqn:DQN", seed=seed, agent_options=options),
            stream=conflict_stream,
        )
        for name, options in (("finetune", FINETUNE), ("replay", REPLAY))
        for seed in (0, 1)
    }
    forgetting = np.mean([results["finetune", s].metrics["forgetting_first_last"] for s in (0, 1)])
    ap_finetune = np.mean([results["finetune", s].metrics["acc"] for s in (0, 1)])
    ap_replay = np.mean([results["replay", s].metrics["acc"] for s in (0, 1)])
    assert forgetting > 0.4
    assert ap_replay - ap_finetune > 0.15
    # Both learned the first task before the conflict arrived.
    assert all(results[key].R[0][0] > 0.5 for key in results)


@pytest.mark.parametrize(
    "options",
    [{"buffer": "reservoir", "prioritized": True}, {"buffer": "reservoir", "reverse_replay": True}],
    ids=["dqn-prioritized", "dqn-reverse"],
)
def test_replay_variants_learn_cartpole(conflict_stream, options):
    agent = DQN(stream=conflict_stream, config=DQNConfig(**options), seed=0)
    before = evaluate_rl(agent, conflict_stream.experiences[0])
    agent.learn(dataclasses.replace(conflict_stream.experiences[0], step_budget=2500))
    after = evaluate_rl(agent, conflict_stream.experiences[0])
    assert before < 0.3 and after > 0.6


def test_ppo_learns_cartpole(conflict_stream):
    agent = PPO(stream=conflict_stream, config=PPOConfig(), seed=0)
    before = evaluate_rl(agent, conflict_stream.experiences[0])
    stats = agent.learn(dataclasses.replace(conflict_stream.experiences[0], step_budget=8192))
    assert stats["env_steps"] == 8192
    assert evaluate_rl(agent, conflict_stream.experiences[0]) > before + 0.4
    steps = [s for s, _ in agent.last_curve]
    assert steps == sorted(steps) and len(steps) == stats["episodes"]


def test_per_task_buffer_is_emptied_and_reservoir_is_kept():
    stream = make_cartpole_conflict(n_tasks=2, steps_per_task=300)
    sizes = {}
    for name, options in (("finetune", FINETUNE), ("replay", REPLAY)):
        agent = DQN(stream=stream, config=DQNConfig(learning_starts=100, **options), seed=0)
        stats = [agent.learn(e) for e in stream.experiences]
        sizes[name] = [s["buffer_size"] for s in stats]
        assert len(agent.last_curve) > 0 and agent.last_curve[-1][0] <= 300
        # One 64-transition batch per step from step 100 to 299; the bytes follow the buffer.
        assert [s["replay_samples"] for s in stats] == [200 * 64] * 2
        assert stats[1]["memory_bytes"] == sizes[name][1] * (2 * 6 * 4 + 8 + 4 + 4)
    assert sizes == {"finetune": [300, 300], "replay": [300, 600]}


def test_same_seed_same_agent_and_different_seed_differs():
    stream = make_cartpole_conflict(n_tasks=1, steps_per_task=400)

    def trained(seed):
        agent = DQN(stream=stream, config=DQNConfig(learning_starts=100), seed=seed)
        agent.learn(stream.experiences[0])
        return torch.cat([p.flatten() for p in agent.q_network.parameters()])

    assert torch.equal(trained(3), trained(3))
    assert not torch.equal(trained(3), trained(4))


def test_reservoir_buffer_keeps_a_uniform_sample_of_everything_offered():
    buffer = TransitionBuffer(capacity=500, obs_dim=1, rng=np.random.default_rng(0))
    for i in range(5000):
        buffer.append(np.array([i], np.float32), 0, 0.0, np.array([i], np.float32), False)
    assert len(buffer) == 500 and buffer.seen == 5000
    kept = buffer.obs[:, 0]
    # A uniform sample: each tenth of the stream holds about a tenth of the slots.
    counts = np.histogram(kept, bins=10, range=(0, 5000))[0]
    assert counts.min() > 25 and counts.max() < 80


def test_prioritized_sampling_is_proportional_with_normalised_importance_weights():
    buffer = TransitionBuffer(capacity=4, obs_dim=1, rng=np.random.default_rng(0))
    for _ in range(4):
        buffer.append(np.zeros(1, np.float32), 0, 0.0, np.zeros(1, np.float32), False)
    buffer.update_priorities(np.arange(4), np.array([1.0, 1.0, 1.0, 5.0]), epsilon=0.0)
    index, weights = buffer.sample_prioritized(20_000, alpha=1.0, beta=1.0)
    frequency = np.bincount(index, minlength=4) / len(index)
    np.testing.assert_allclose(frequency, [0.125, 0.125, 0.125, 0.625], atol=0.015)
    # w = (N P)^-β / max w: the rarely drawn get weight 1, the favoured 1/5.
    np.testing.assert_allclose(np.unique(weights.round(6)), [0.2, 1.0])
    assert buffer.max_priority == 5.0
    uniform, _ = buffer.sample_prioritized(20_000, alpha=0.0, beta=1.0)
    np.testing.assert_allclose(np.bincount(uniform) / 20_000, [0.25] * 4, atol=0.015)


def test_reverse_sweep_goes_from_the_end_of_the_episode_to_its_start():
    stream = make_cartpole_conflict(n_tasks=1, steps_per_task=10)
    agent = DQN(stream=stream, config=DQNConfig(reverse_replay=True, batch_size=64), seed=0)
    length = 150
    obs = np.arange(length, dtype=np.float32)[:, None].repeat(6, axis=1)
    agent.last_rewarded_episode = (
        obs,
        np.zeros(length, np.int64),
        np.ones(length, np.float32),
        obs,
        np.zeros(length, bool),
    )
    chunks = []
    agent._td_update = lambda batch, weights=None: chunks.append(batch[0][:, 0].tolist())
    agent._reverse_sweep()
    assert [(c[0], c[-1]) for c in chunks] == [(86, 149), (22, 85), (0, 21)]


def test_reverse_replay_keeps_only_rewarded_episodes():
    stream = make_cartpole_conflict(n_tasks=1, steps_per_task=300)
    agent = DQN(stream=stream, config=DQNConfig(reverse_replay=True, learning_starts=100), seed=0)
    agent.learn(stream.experiences[0])
    last_episode_steps = agent.last_curve[-1][0] - agent.last_curve[-2][0]
    assert len(agent.last_rewarded_episode[1]) == last_episode_steps
    # Nothing beats the minimum on an always-failing task, so nothing is kept.
    agent.last_rewarded_episode = None
    experience = stream.experiences[0]
    agent.learn(dataclasses.replace(experience, info={**experience.info, "min_return": 1e9}))
    assert agent.last_rewarded_episode is None


@pytest.mark.parametrize(
    ("config_cls", "options", "message"),
    [
        (DQNConfig, {"bufer": "reservoir"}, "Did you mean 'buffer'?"),
        (DQNConfig, {"buffer": "fifo"}, "The 'buffer' parameter of DQN must be one of 'per-task', 'reservoir'"),
        (DQNConfig, {"lr": 0.0}, "The 'lr' parameter of DQN"),
        (DQNConfig, {"hidden": (64, 0)}, "The 'hidden' parameter of DQN"),
        (DQNConfig, {"batch_size": 100, "buffer_capacity": 50}, "must not exceed buffer_capacity"),
        (DQNConfig, {"gamma": 1.5}, "The 'gamma' parameter of DQN must be a float in the range [0, 1]"),
        (PPOConfig, {"num_envs": 0}, "The 'num_envs' parameter of PPO"),
        (PPOConfig, {"clip": -0.1}, "The 'clip' parameter of PPO"),
    ],
)
def test_bad_configs_fail_at_construction_with_one_line(config_cls, options, message):
    with pytest.raises(ConfigError) as info:
        config_cls.from_dict(options)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("agent_cls", [DQN, PPO])
def test_agents_refuse_continuous_actions_at_construction(agent_cls):
    import gymnasium

    pendulum = SimpleNamespace(experiences=[SimpleNamespace(env_factory=lambda seed: gymnasium.make("Pendulum-v1"))])
    with pytest.raises(ConfigError, match="needs flat observations and a discrete action space"):
        agent_cls(stream=pendulum, seed=0)


@pytest.mark.parametrize("builder", ["acrobot", "mountaincar", "minigrid", "cartpole-hidden"])
def test_agents_run_on_every_stream_kind(builder):
    from replaybench.streams import rl

    if builder == "minigrid":
        pytest.importorskip("minigrid")
    stream = {
        "acrobot": lambda: rl.make_acrobot_variants(n_tasks=2, steps_per_task=300),
        "mountaincar": lambda: rl.make_mountaincar_variants(n_tasks=2, steps_per_task=300),
        "minigrid": lambda: rl.make_minigrid_sequence(n_tasks=2, steps_per_task=300),
        "cartpole-hidden": lambda: make_cartpole_conflict(task_ids=False, hide_velocity=True, steps_per_task=300),
    }[builder]()
    for agent in (
        DQN(stream=stream, config=DQNConfig(learning_starts=100, reverse_replay=True), seed=0),
        PPO(stream=stream, config=PPOConfig(rollout_steps=32), seed=0),
    ):
        stats = agent.learn(stream.experiences[1])
        assert all(np.isfinite(v) or k == "mean_episode_return" for k, v in stats.items())
        assert 0.0 <= evaluate_rl(agent, stream.experiences[0]) <= 1.0
