"""Env steps per second of our DQN against a plain DQN loop on the same gymnasium env.

The plain loop is what one writes by hand (CleanRL-style): one
``gymnasium.make`` env, a numpy replay buffer, the same 64×64 MLP, the same
ε-greedy schedule and one Adam step per env step after the same warm-up.
It runs twice, with torch's default Adam and with the fused Adam that our
agent uses, so the ratio separates the suite's overhead from that choice.
A random-action loop gives the environment's own ceiling.

It also times one whole run through the runner — the 2-task
cartpole-conflict stream (4k steps per task), one agent, one seed,
including every evaluation — in wall-clock and CPU seconds.

Rates are env steps per CPU second of this process (``time.process_time``):
on a shared machine, wall time mostly measures the neighbours. Each rate
is the best of ``--repeats`` interleaved runs, all in this one process.

Usage:
    python benchmarks/rl_throughput.py [--steps 3000] [--repeats 3]

Targets (issue #4): our DQN ≥ 0.8× the plain loop; the 2-task run ≤ 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium
import numpy as np
import torch
from torch import nn

from replaybench.agents.dqn import DQN, DQNConfig
from replaybench.runner import RunSpec, run
from replaybench.streams.rl import make_cartpole_conflict


def random_loop(steps: int, seed: int) -> float:
    """Steps per second of the bare env with random actions."""
    env = gymnasium.make("replaybench/CartPole-v0")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    start = time.process_time()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.process_time() - start)


def plain_dqn_loop(steps: int, seed: int, cfg: DQNConfig, fused: bool) -> float:
    """Steps per second of a hand-written DQN loop with the same work per step."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = gymnasium.make("replaybench/CartPole-v0")
    obs_dim, n_actions = env.observation_space.shape[0], int(env.action_space.n)
    q_net = nn.Sequential(nn.Linear(obs_dim, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, n_actions))
    target_net = nn.Sequential(
        *[type(m)(m.in_features, m.out_features) if isinstance(m, nn.Linear) else nn.ReLU() for m in q_net]
    )
    target_net.load_state_dict(q_net.state_dict())
    optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.lr, fused=fused)
    buf_obs = np.zeros((steps, obs_dim), np.float32)
    buf_next = np.zeros((steps, obs_dim), np.float32)
    buf_act, buf_rew, buf_term = np.zeros(steps, np.int64), np.zeros(steps, np.float32), np.zeros(steps, np.float32)
    obs, _ = env.reset(seed=seed)
    explore = int(cfg.exploration_fraction * steps)
    start = time.process_time()
    for step in range(steps):
        epsilon = cfg.epsilon_start + (cfg.epsilon_end - cfg.epsilon_start) * min(1.0, step / explore)
        if rng.random() < epsilon:
            action = int(rng.integers(n_actions))
        else:
            with torch.no_grad():
                action = int(q_net(torch.from_numpy(obs)[None]).argmax())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buf_obs[step], buf_next[step], buf_act[step], buf_rew[step], buf_term[step] = (
            obs,
            next_obs,
            action,
            reward,
            terminated,
        )
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
        if step >= cfg.learning_starts:
            idx = rng.integers(step + 1, size=cfg.batch_size)
            b_obs, b_next = torch.from_numpy(buf_obs[idx]), torch.from_numpy(buf_next[idx])
            with torch.no_grad():
                target = torch.from_numpy(buf_rew[idx]) + cfg.gamma * target_net(b_next).max(1).values * (
                    1 - torch.from_numpy(buf_term[idx])
                )
            q = q_net(b_obs).gather(1, torch.from_numpy(buf_act[idx])[:, None]).squeeze(1)
            loss = ((target - q) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if step % cfg.target_sync_every == 0:
            target_net.load_state_dict(q_net.state_dict())
    return steps / (time.process_time() - start)


def our_dqn(steps: int, seed: int, cfg: DQNConfig) -> float:
    """Steps per second of ``replaybench.agents.dqn.DQN.learn`` on one experience of the same env."""
    stream = make_cartpole_conflict(n_tasks=1, steps_per_task=steps, task_ids=False)
    agent = DQN(stream=stream, config=cfg, seed=seed)
    start = time.process_time()
    agent.learn(stream.experiences[0])
    return steps / (time.process_time() - start)


def two_task_run(agent_options: dict) -> tuple[float, float, list[list[float]]]:
    """Wall and CPU seconds of one runner run on the 2-task stream, and its R."""
    stream = make_cartpole_conflict(n_tasks=2, steps_per_task=4000)
    wall, cpu = time.perf_counter(), time.process_time()
    result = run(
        RunSpec(stream="cartpole-conflict", agent="replaybench.agents.dqn:DQN", seed=0, agent_options=agent_options),
        stream=stream,
    )
    return time.perf_counter() - wall, time.process_time() - cpu, result.R


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = DQNConfig()
    best = {"ours": 0.0, "plain (default Adam)": 0.0, "plain (fused Adam)": 0.0, "random actions": 0.0}
    for repeat in range(args.repeats):  # interleaved, so that load changes hit all alike
        best["ours"] = max(best["ours"], our_dqn(args.steps, repeat, cfg))
        best["plain (default Adam)"] = max(
            best["plain (default Adam)"], plain_dqn_loop(args.steps, repeat, cfg, fused=False)
        )
        best["plain (fused Adam)"] = max(
            best["plain (fused Adam)"], plain_dqn_loop(args.steps, repeat, cfg, fused=True)
        )
        best["random actions"] = max(best["random actions"], random_loop(args.steps * 10, repeat))
    print(
        f"DQN env steps per CPU second on replaybench/CartPole-v0, {args.steps} steps, best of {args.repeats} "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    for name, rate in best.items():
        print(f"  {name:22s} {rate:10.0f} steps/s")
    print(f"ratio ours / plain (default Adam): {best['ours'] / best['plain (default Adam)']:.2f}")
    print(f"ratio ours / plain (fused Adam):   {best['ours'] / best['plain (fused Adam)']:.2f}  (target >= 0.8)")
    for name, options in (("dqn-finetune", {"buffer": "per-task"}), ("dqn-replay", {"buffer": "reservoir"})):
        wall, cpu, R = two_task_run(options)
        print(
            f"2-task cartpole-conflict run, {name}, seed 0: {wall:.1f} s wall, {cpu:.1f} s CPU "
            f"(target <= 30 s); R = {[[round(v, 2) for v in row] for row in R]}"
        )


if __name__ == "__main__":
    main()
