"""Gymnasium ids of the RL tasks: registration without torch, check_env, rebuilding from a spec."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.envs.registration import parse_env_id
from gymnasium.utils.env_checker import check_env

from replaybench.errors import MissingExtraError
from replaybench.registry import STREAMS
from replaybench.runner import make_stream
from replaybench.streams.gym_ids import PLAIN_IDS, REGISTERED_IDS, STREAM_ENV_IDS, env_id

DOCS = Path(__file__).parents[1] / "docs" / "rl.md"
RL_STREAMS = sorted(s.name for s in STREAMS.specs() if s.entry_point.startswith("replaybench.streams.rl:"))
RESET_SEEDS = (0, 7, 10_007)

ACCEPTED_WARNINGS = (
    # We check the env as an experience hands it out, wrappers included, on purpose.
    r"is different from the unwrapped version",
    # CartPole's velocities are unbounded, as in gymnasium's own CartPole.
    r"A Box observation space (minimum|maximum) value is -?infinity",
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def _stack(env: gymnasium.Env) -> list[str]:
    """Class names from the outermost wrapper down to the bare env."""
    names = []
    while isinstance(env, gymnasium.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return [*names, type(env).__name__]


def _assert_same_env(built: gymnasium.Env, original: gymnasium.Env) -> None:
    assert built.observation_space == original.observation_space
    assert built.action_space == original.action_space
    assert _stack(built) == _stack(original)
    for seed in RESET_SEEDS:
        np.testing.assert_array_equal(built.reset(seed=seed)[0], original.reset(seed=seed)[0])
        for action in (0, 1, 1, 0, 2 % original.action_space.n):
            expected, actual = original.step(action), built.step(action)
            np.testing.assert_array_equal(actual[0], expected[0])
            assert actual[1:4] == expected[1:4]


def test_importing_gymnasium_or_the_ids_loads_no_torch():
    result = _python(
        "import sys, gymnasium\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'replaybench'))\n"
        "assert not heavy, f'import gymnasium loaded {heavy}'\n"
        "import replaybench.streams.gym_ids as ids\n"
        "assert 'torch' not in sys.modules, 'registering the ids imported torch'\n"
        "assert 'replaybench/CartPoleReversed-Id1of3-v0' in gymnasium.registry\n"
    )
    assert result.returncode == 0, result.stderr


def test_a_fresh_interpreter_makes_an_id_naming_only_gymnasium():
    # Gymnasium >= 1.0 loads no plugins: the id names the module that registers it.
    result = _python(
        "import json, gymnasium as gym\n"
        "env = gym.make('replaybench.streams.gym_ids:replaybench/CartPoleReversed-Id1of3-v0')\n"
        "print(json.dumps(env.reset(seed=0)[0].tolist()))\n"
    )
    assert result.returncode == 0, result.stderr
    handed_out = make_stream("cartpole-conflict").experiences[1].env_factory(0)
    assert json.loads(result.stdout) == handed_out.reset(seed=0)[0].tolist()
    assert handed_out.unwrapped.force_mag == -10.0


def test_ids_follow_one_scheme():
    assert env_id("CartPoleReversed", hide_velocity=True, task_index=1, n_tasks=3) == (
        "replaybench/CartPoleReversed-NoVel-Id1of3-v0"
    )
    assert env_id("MiniGrid-Empty-5x5") == "replaybench/MiniGrid-Empty-5x5-v0"
    with pytest.raises(KeyError, match="CartPoleReversed"):
        env_id("CartPoleReverse")
    for id_ in REGISTERED_IDS:
        namespace, _, version = parse_env_id(id_)
        assert (namespace, version) == ("replaybench", 0)
        assert id_ in gymnasium.registry
    assert len(set(REGISTERED_IDS)) == len(REGISTERED_IDS)


def test_every_catalog_rl_stream_has_its_ids():
    assert sorted(STREAM_ENV_IDS) == RL_STREAMS
    assert "replaybench/CartPoleReversed-NoVel-Id1of3-v0" in STREAM_ENV_IDS["cartpole-conflict-pomdp"]
    assert STREAM_ENV_IDS["cartpole-conflict-noid"] == PLAIN_IDS[:3]


@pytest.mark.parametrize("stream_name", RL_STREAMS)
def test_every_handed_out_env_passes_check_env_and_rebuilds(stream_name):
    if stream_name.startswith("minigrid"):
        pytest.importorskip("minigrid")
    stream = make_stream(stream_name)
    ids = STREAM_ENV_IDS[stream_name]
    assert len(ids) == len(stream.experiences)
    for experience, id_ in zip(stream.experiences, ids):
        env = experience.env_factory(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Human rendering needs a display; rgb_array rendering from the spec is checked below.
            check_env(env, skip_render_check=True)
        unexpected = [
            str(w.message) for w in caught if not any(re.search(p, str(w.message)) for p in ACCEPTED_WARNINGS)
        ]
        assert not unexpected, f"{stream_name}[{experience.index}]: {unexpected}"

        _assert_same_env(gymnasium.make(env.spec), env)

        registered = gymnasium.make(id_)
        for field in ("entry_point", "kwargs", "max_episode_steps", "additional_wrappers"):
            assert getattr(registered.spec, field) == getattr(env.spec, field), (id_, field)
        _assert_same_env(registered, env)

        frame_env = gymnasium.make(env.spec, render_mode="rgb_array")
        frame_env.reset(seed=0)
        frame = frame_env.render()
        assert isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3
        for made in (env, registered, frame_env):
            made.close()


def test_minigrid_ids_register_without_minigrid_and_fail_on_make_naming_it(monkeypatch):
    assert "replaybench/MiniGrid-Empty-5x5-v0" in gymnasium.registry
    monkeypatch.setitem(sys.modules, "minigrid", None)  # import minigrid now raises ImportError
    with pytest.raises(MissingExtraError, match=r"'minigrid' package: pip install 'replaybench\[minigrid\]'") as info:
        gymnasium.make("replaybench/MiniGrid-Empty-5x5-Id1of3-v0")
    assert "\n" not in str(info.value)


def test_docs_table_lists_exactly_the_registered_ids():
    section = DOCS.read_text().split("## Gymnasium ids\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `replaybench/")]
    documented = [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]
    assert sorted(documented) == sorted(REGISTERED_IDS)
