"""``state_bytes``: every built-in agent counts what it keeps across experiences, and the runner records it.

Each expected number is worked out by hand from the agent's definition (a parameter is 4 bytes, a
stored label 8) on a tiny stream, so a part left out or counted twice fails here.
"""

from __future__ import annotations

import math

import pytest

from replaybench.runner import RunSpec, make_stream, run
from replaybench.stream_checks import tiny_stream

HIDDEN = 16
FAST = {"epochs": 1, "batch_size": 16, "hidden": (HIDDEN,)}
DIGIT_BYTES = 1 * 8 * 8 * 4
"""One split-digits input: 1x8x8 float32."""
LABEL_BYTES = 8
MLP_BYTES = 4 * (64 * HIDDEN + HIDDEN + HIDDEN * 10 + 10)
"""The parameters of the 64 -> 16 -> 10 MLP the supervised agents build with :data:`FAST`."""


@pytest.fixture(scope="module")
def digits():
    return tiny_stream(make_stream("split-digits"))


@pytest.fixture(scope="module")
def cartpole():
    return tiny_stream(make_stream("cartpole-conflict"))


def _costs(stream, agent: str, **options) -> dict:
    return run(RunSpec(stream=stream.name, agent=agent, agent_options=options), stream=stream).costs


def _seen_items(stream) -> int:
    return sum(len(e.train_x) for e in stream.experiences)


def test_naive_keeps_nothing_and_says_so(digits):
    costs = _costs(digits, "naive", **FAST)
    assert costs["state_bytes"] == 0 and costs["state_bytes_parts"] == {}
    assert [p["state_bytes"] for p in costs["per_experience"]] == [0, 0]


def test_joint_keeps_every_item_seen_and_its_initial_weights(digits):
    costs = _costs(digits, "joint", **FAST)
    seen = _seen_items(digits) * (DIGIT_BYTES + LABEL_BYTES)
    assert costs["state_bytes_parts"] == {"seen_data": seen, "initial_weights": MLP_BYTES}
    first = len(digits.experiences[0].train_x) * (DIGIT_BYTES + LABEL_BYTES)
    assert [p["state_bytes"] for p in costs["per_experience"]] == [first + MLP_BYTES, seen + MLP_BYTES]
    assert costs["state_bytes"] == seen + MLP_BYTES  # the peak: the last experience


@pytest.mark.parametrize("agent", ["er", "er-balanced"])
def test_er_keeps_its_buffer_items_with_their_labels(digits, agent):
    capacity = 30
    assert _seen_items(digits) > capacity  # the buffer is full by the end
    costs = _costs(digits, agent, memory_size=capacity, **FAST)
    assert costs["state_bytes"] == capacity * (DIGIT_BYTES + LABEL_BYTES)
    assert set(costs["state_bytes_parts"]) == {"replay_items"}


@pytest.mark.parametrize("mode", ["separate", "online"])
def test_ewc_keeps_two_copies_of_the_parameters(digits, mode):
    costs = _costs(digits, "ewc", mode=mode, fisher_samples=16, **FAST)
    assert costs["state_bytes_parts"] == {"fisher": MLP_BYTES, "anchor_weights": MLP_BYTES}
    assert costs["state_bytes"] == 2 * MLP_BYTES


def test_lwf_keeps_a_teacher_from_the_second_experience_on(digits):
    costs = _costs(digits, "lwf", **FAST)
    assert [p["state_bytes"] for p in costs["per_experience"]] == [0, MLP_BYTES]
    assert costs["state_bytes"] == MLP_BYTES and costs["state_bytes_parts"] == {"teacher": MLP_BYTES}


def test_a_cnn_teacher_counts_its_own_parameters(digits):
    costs = _costs(digits, "lwf", architecture="cnn", hidden=(4,), epochs=1, batch_size=16)
    conv, head = 4 * (4 * 1 * 3 * 3 + 4), 4 * (4 * 4 * 4 * 10 + 10)  # 8x8 pooled once to 4x4
    assert costs["state_bytes"] == conv + head


def _transition_bytes(obs_dim: int) -> int:
    """obs and next_obs (float32), an int64 action, a float32 reward and a float32 terminated flag."""
    return 2 * obs_dim * 4 + 8 + 4 + 4


def _obs_dim(stream) -> int:
    env = stream.experiences[0].env_factory(0)
    try:
        return env.observation_space.shape[0]
    finally:
        env.close()


RL_FAST = {"learning_starts": 50, "train_every": 4, "batch_size": 16}


def test_a_per_task_dqn_carries_nothing_across_tasks(cartpole):
    costs = _costs(cartpole, "dqn-finetune", **RL_FAST)
    assert costs["state_bytes"] == 0 and costs["state_bytes_parts"] == {}


@pytest.mark.parametrize(("agent", "priority_bytes"), [("dqn-replay", 0), ("dqn-prioritized", 8)])
def test_a_kept_dqn_buffer_counts_every_transition(cartpole, agent, priority_bytes):
    steps = sum(e.step_budget for e in cartpole.experiences)  # all kept: capacity 20k
    costs = _costs(cartpole, agent, **RL_FAST)
    parts = costs["state_bytes_parts"]
    assert parts["replay_buffer"] == steps * _transition_bytes(_obs_dim(cartpole))
    assert parts.get("priorities", 0) == steps * priority_bytes
    assert costs["state_bytes"] == sum(parts.values())


def test_reverse_replay_also_counts_the_kept_episode(cartpole):
    costs = _costs(cartpole, "dqn-reverse", **RL_FAST, reverse_replay=True)
    parts = costs["state_bytes_parts"]
    # NumPy arrays of the episode's steps: float32 observations, int64 actions, float64 rewards, bool flags
    per_step = 2 * _obs_dim(cartpole) * 4 + 8 + 8 + 1
    assert parts["rewarded_episode"] % per_step == 0 and parts["rewarded_episode"] > 0
    assert parts["replay_buffer"] == sum(e.step_budget for e in cartpole.experiences) * _transition_bytes(
        _obs_dim(cartpole)
    )


def test_ppo_keeps_nothing(cartpole):
    costs = _costs(cartpole, "ppo", epochs=1, rollout_steps=32)
    assert costs["state_bytes"] == 0


@pytest.mark.parametrize(("buffer", "kept"), [("per-task", False), ("fifo", True)])
def test_wave_dqn_counts_its_buffer_only_when_it_is_kept(buffer, kept):
    stream = tiny_stream(make_stream("cartpole-conflict-pomdp"))
    costs = _costs(stream, "dqn-wave", buffer=buffer, **RL_FAST)
    steps = sum(e.step_budget for e in stream.experiences)
    starts_flag = 1  # a bool per step marks episode starts
    expected = steps * (_transition_bytes(_obs_dim(stream)) + starts_flag) if kept else 0
    assert costs["state_bytes"] == expected


@pytest.mark.parametrize("agent", ["elman", "lstm", "wave-lbc", "wave-sbc"])
def test_sequence_agents_keep_nothing(agent):
    stream = tiny_stream(make_stream("flipflop-periods"))
    assert _costs(stream, agent, updates=2, batch_size=8)["state_bytes"] == 0


SNN_FAST = {"time_steps": 10, "batch_size": 16}


def test_snn_keeps_its_class_rate_records(digits):
    costs = _costs(digits, "snn", n_neurons=20, **SNN_FAST)
    assert costs["state_bytes_parts"] == {"class_rates": 4 * (20 * 10 + 10)}  # sums [neurons, C] and samples [C]


def test_lc_snn_also_keeps_its_ngram_tables(digits):
    costs = _costs(digits, "lc-snn", n_filters=4, time_steps=50, batch_size=16)  # 10 steps: too few spikes
    parts = costs["state_bytes_parts"]
    assert set(parts) == {"class_rates", "ngram_tables"}
    assert parts["class_rates"] == 4 * (4 * 9 * 10 + 10)  # 4 filters at 3x3 locations
    assert parts["ngram_tables"] % (LABEL_BYTES + 4 * 10) == 0  # an int64 key and C float counts per n-gram
    assert parts["ngram_tables"] > 0


def test_snn_features_keep_nothing():
    stream = tiny_stream(make_stream("unsup-split-digits"))
    assert _costs(stream, "snn-features", n_neurons=20, **SNN_FAST)["state_bytes"] == 0


def test_sigprop_counts_its_layer_local_memories_when_on(digits):
    assert _costs(digits, "sigprop", epochs=1, batch_size=16, hidden=(HIDDEN,))["state_bytes"] == 0
    size = 10
    costs = _costs(digits, "sigprop-local-replay", local_replay_size=size, epochs=1, batch_size=16, hidden=(HIDDEN,))
    layer_1, head = size * (64 * 4 + LABEL_BYTES), size * (HIDDEN * 4 + LABEL_BYTES)  # each region's inputs
    assert costs["state_bytes_parts"] == {"local_replay_items": layer_1 + head}


def test_efp_keeps_nothing(digits):
    assert _costs(digits, "efp", epochs=1, batch_size=16, hidden=(HIDDEN,))["state_bytes"] == 0


@pytest.mark.parametrize(
    ("variant", "options", "expected"),
    [
        ("Naive", {}, 0),
        ("EWC", {"ewc_lambda": 1.0}, 4 * MLP_BYTES),  # "separate": importances and parameters of both experiences
        ("LwF", {"alpha": 1.0, "temperature": 2.0}, MLP_BYTES),
        ("Replay", {"mem_size": 20}, 20 * (DIGIT_BYTES + LABEL_BYTES)),
    ],
)
def test_avalanche_strategies_we_can_count(digits, variant, options, expected):
    costs = _costs(digits, f"avalanche:{variant}", strategy_options=options, **FAST)
    assert costs["state_bytes"] == expected


def test_an_agent_without_the_hook_records_no_state_bytes(digits):
    """Unknown is not zero: no key at all, per experience or in total."""
    costs = _costs(digits, "avalanche:Cumulative", **FAST)
    assert "state_bytes" not in costs and "state_bytes_parts" not in costs
    assert all("state_bytes" not in p for p in costs["per_experience"])


def test_the_peak_is_recorded_with_its_breakdown(digits):
    """joint grows at every experience: the total is the last one's, the parts add up to it."""
    costs = _costs(digits, "joint", **FAST)
    totals = [p["state_bytes"] for p in costs["per_experience"]]
    assert costs["state_bytes"] == max(totals) and totals == sorted(totals)
    assert sum(costs["state_bytes_parts"].values()) == costs["state_bytes"]
    assert all(isinstance(v, int) for v in costs["state_bytes_parts"].values())
    assert not math.isnan(costs["state_bytes"])
