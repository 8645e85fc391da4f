"""RL streams: registration, task physics, observation variants, bad input, evaluation."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.envs.classic_control.acrobot import AcrobotEnv

from replaybench.errors import ConfigError
from replaybench.protocols import Stream
from replaybench.streams.rl import (
    TaskSpec,
    apply_task_params,
    build_stream,
    evaluate_rl,
    make_acrobot_variants,
    make_cartpole_conflict,
    make_mountaincar_variants,
    single_task_stream,
)


class BalanceController:
    """A hand-tuned linear CartPole controller; ``sign=-1`` mirrors it for a reversed actuator."""

    def __init__(self, sign: int) -> None:
        self.sign, self.calls = sign, []

    def act(self, obs, task_id=None):
        self.calls.append((np.array(obs), task_id))
        x, x_dot, theta, theta_dot = obs[:, 0], obs[:, 1], obs[:, 2], obs[:, 3]
        push_right = self.sign * (theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot) > 0
        return push_right.astype(np.int64)


def test_registered_envs_take_physics_and_recompute_derived_constants():
    env = gymnasium.make("replaybench/CartPole-v0", length=1.0, masspole=0.2)
    assert env.spec.max_episode_steps == 200
    u = env.unwrapped
    assert (u.length, u.masspole) == (1.0, 0.2)
    assert u.total_mass == pytest.approx(1.2) and u.polemass_length == pytest.approx(0.2)
    apply_task_params(env, {"masspole": 0.3})
    assert u.total_mass == pytest.approx(1.3) and u.polemass_length == pytest.approx(0.3)
    acrobot = gymnasium.make("replaybench/Acrobot-v0", LINK_LENGTH_2=1.5)
    assert pytest.approx(0.75) == acrobot.unwrapped.LINK_COM_POS_2
    assert gymnasium.make("replaybench/MountainCar-v0", gravity=0.003).unwrapped.gravity == 0.003


def test_the_reversed_actuator_really_reverses_control():
    stream = make_cartpole_conflict(steps_per_task=10)
    upright = [evaluate_rl(BalanceController(+1), e) for e in stream.experiences]
    mirrored = [evaluate_rl(BalanceController(-1), e) for e in stream.experiences]
    # The controller balances the default and the long pole for all 200 steps,
    # and fails within a few steps once the actuator is reversed; the mirror image swaps.
    assert upright[0] == 1.0 and upright[2] == 1.0 and upright[1] < 0.1
    assert mirrored[1] == 1.0 and mirrored[0] < 0.1


def test_acrobot_matches_gymnasium_at_default_physics_and_gravity_changes_it():
    ours, theirs, heavy = (
        gymnasium.make("replaybench/Acrobot-v0").unwrapped,
        AcrobotEnv(),
        gymnasium.make("replaybench/Acrobot-v0", gravity=15.0).unwrapped,
    )
    for env in (ours, theirs, heavy):
        env.reset(seed=3)
    for t in range(60):
        a, b, c = ours.step(t % 3)[0], theirs.step(t % 3)[0], heavy.step(t % 3)[0]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert np.abs(a - c).max() > 0.1


def test_mountaincar_gravity_changes_the_dynamics():
    default, steep = (
        gymnasium.make("replaybench/MountainCar-v0"),
        gymnasium.make("replaybench/MountainCar-v0", gravity=0.004),
    )
    default.reset(seed=0), steep.reset(seed=0)
    for _ in range(20):
        a, b = default.step(1)[0], steep.step(1)[0]
    assert abs(a[1]) < abs(b[1])  # falling back down the hill faster


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lenght": 1.0}, "Unknown task parameter 'lenght' for replaybench/CartPole-v0. Did you mean 'length'?"),
        ({"length": -1.0}, "The 'length' parameter of replaybench/CartPole-v0 must be a float in the range (0, inf)"),
        (
            {"masspole": 0.0},
            "The 'masspole' parameter of replaybench/CartPole-v0 must be a float in the range (0, inf)",
        ),
        ({"force_mag": 0.0}, "The 'force_mag' parameter of replaybench/CartPole-v0 must be non-zero"),
        ({"gravity": "strong"}, "The 'gravity' parameter"),
    ],
)
def test_bad_task_parameters_fail_at_construction_with_one_line(params, message):
    with pytest.raises(ConfigError) as info:
        build_stream("custom", [TaskSpec("replaybench/CartPole-v0", params)], steps_per_task=100)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps_per_task": 0},
        {"steps_per_task": -5},
        {"steps_per_task": [4000, 0]},
        {"n_tasks": 0},
        {"n_tasks": 4},
        {"eval_seeds": ()},
    ],
)
def test_bad_stream_options_fail_with_one_line(kwargs):
    with pytest.raises(ConfigError) as info:
        make_cartpole_conflict(**{"n_tasks": 2, **kwargs})
    assert "\n" not in str(info.value)


def test_bad_physics_for_other_envs():
    with pytest.raises(ConfigError, match="LINK_MASS_1"):
        build_stream("x", [TaskSpec("replaybench/Acrobot-v0", {"LINK_MASS_1": 0.0})], steps_per_task=1)
    with pytest.raises(ConfigError, match="Did you mean 'gravity'"):
        build_stream("x", [TaskSpec("replaybench/MountainCar-v0", {"gravty": 0.1})], steps_per_task=1)


def test_stream_satisfies_the_protocol_and_carries_the_experience_contract():
    stream = make_cartpole_conflict(n_tasks=2, steps_per_task=4000)
    assert isinstance(stream, Stream)
    assert (stream.scenario, stream.n_classes, stream.input_shape) == ("rl", 0, (6,))
    assert [e.task_id for e in stream.experiences] == [0, 1]
    exp = stream.experiences[1]
    assert exp.kind == "rl" and exp.step_budget == 4000
    assert exp.info["max_return"] == 200.0 and exp.info["eval_episodes"] == len(exp.info["eval_seeds"]) == 5
    assert exp.info["task_params"] == {"force_mag": -10.0}
    obs, _ = exp.env_factory(0).reset(seed=0)
    np.testing.assert_array_equal(obs[4:], [0.0, 1.0])


@pytest.mark.parametrize(
    ("task_ids", "hide_velocity", "shape"),
    [
        (True, False, (7,)),
        (False, False, (4,)),
        (True, True, (5,)),
        (False, True, (2,)),
    ],
)
def test_task_id_and_partially_observable_variants(task_ids, hide_velocity, shape):
    stream = make_cartpole_conflict(task_ids=task_ids, hide_velocity=hide_velocity, steps_per_task=10)
    assert stream.input_shape == shape
    assert [e.task_id for e in stream.experiences] == ([0, 1, 2] if task_ids else [None] * 3)
    env = stream.experiences[0].env_factory(0)
    full = gymnasium.make("replaybench/CartPole-v0")
    obs, _ = env.reset(seed=5)
    reference, _ = full.reset(seed=5)
    kept = [0, 2] if hide_velocity else [0, 1, 2, 3]
    np.testing.assert_array_equal(obs[: len(kept)], reference[kept])


def test_other_classic_control_streams_build_and_hide_velocities():
    acrobot = make_acrobot_variants(hide_velocity=True, task_ids=False, steps_per_task=10)
    mountaincar = make_mountaincar_variants(n_tasks=2, steps_per_task=10)
    assert acrobot.input_shape == (4,) and mountaincar.input_shape == (4,)
    assert acrobot.experiences[2].env_factory(0).unwrapped.gravity == 15.0
    assert acrobot.experiences[0].info["min_return"] == -500.0


def test_fingerprint_is_stable_and_tracks_the_definition():
    base = make_cartpole_conflict(n_tasks=2, steps_per_task=4000).fingerprint
    assert base == make_cartpole_conflict(n_tasks=2, steps_per_task=4000).fingerprint
    changed = [
        make_cartpole_conflict(n_tasks=2, steps_per_task=4001),
        make_cartpole_conflict(n_tasks=3, steps_per_task=4000),
        make_cartpole_conflict(n_tasks=2, steps_per_task=4000, eval_seeds=(1, 2)),
        make_cartpole_conflict(n_tasks=2, steps_per_task=4000, task_ids=False),
    ]
    assert len({base, *(s.fingerprint for s in changed)}) == 5


def test_evaluation_uses_fixed_seeds_and_passes_the_task_id():
    stream = make_cartpole_conflict(n_tasks=2, steps_per_task=10)

    class Alternating:
        def __init__(self):
            self.task_ids, self.t = set(), 0

        def act(self, obs, task_id=None):
            self.task_ids.add(task_id)
            self.t += 1
            return np.full(len(obs), self.t % 2)

    first, second = Alternating(), Alternating()
    score = evaluate_rl(first, stream.experiences[1])
    assert score == evaluate_rl(second, stream.experiences[1]) and 0 < score < 1
    assert first.task_ids == {1}
    controller = BalanceController(+1)
    evaluate_rl(controller, stream.experiences[0])
    assert controller.calls[0][0].shape == (5, 6)  # one batched call per step, all episodes at once


def test_single_task_stream_keeps_the_task_and_its_encoding():
    stream = make_cartpole_conflict(steps_per_task=100)
    alone = single_task_stream(stream, 1)
    assert len(alone.experiences) == 1 and alone.input_shape == stream.input_shape
    assert alone.experiences[0].task_id == 1 and alone.experiences[0].info["task_params"] == {"force_mag": -10.0}
    assert alone.fingerprint != stream.fingerprint


def test_minigrid_sequence_shares_one_encoding():
    pytest.importorskip("minigrid")
    from replaybench.streams.rl import make_minigrid_sequence

    stream = make_minigrid_sequence(steps_per_task=10)
    shapes = set()
    for exp in stream.experiences:
        env = exp.env_factory(0)
        obs, _ = env.reset(seed=0)
        shapes.add(obs.shape)
        assert env.action_space.n == 7 and np.all((obs >= 0) & (obs <= 1))
    assert shapes == {stream.input_shape} == {(154,)}
