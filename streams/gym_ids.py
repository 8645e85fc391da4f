"""Gymnasium ids for every RL task replaybench hands out, registered without importing torch.

Importing this module registers the ids. It imports only gymnasium and the
standard library; the entry points are strings, so torch loads only when an
env is made. Gymnasium ≥ 1.0 loads no plugins, so a fresh interpreter names
the module in the id (gymnasium imports what stands before the colon)::

    gymnasium.make("replaybench.streams.gym_ids:replaybench/CartPoleReversed-Id1of3-v0")

Naming scheme: ``replaybench/<Task>[-NoVel][-Id<i>of<n>]-v0``.

- ``<Task>`` names the environment and its physics (:data:`TASKS`), e.g.
  ``CartPoleReversed`` or ``MiniGrid-DoorKey-5x5``.
- ``-NoVel``: the velocity entries are dropped (``HideVelocity``).
- ``-Id<i>of<n>``: a one-hot id of task ``i`` among ``n`` is appended
  (``AppendTaskId``), as in a stream that reveals task ids.

Each task is registered plain, and with the modifiers the catalog's RL
streams (``rl.toml``) use; :data:`STREAM_ENV_IDS` lists, per stream, the id
of the env each experience hands out.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium
from gymnasium.envs.registration import WrapperSpec

NAMESPACE = "replaybench"
_RL = "replaybench.streams.rl"


class Base(NamedTuple):
    """An environment class and what registering it needs."""

    entry_point: str
    max_episode_steps: int | None
    velocity_dims: tuple[int, ...] = ()
    """Observation entries that ``-NoVel`` drops."""
    kwargs: Mapping[str, Any] = {}
    additional_wrappers: tuple[WrapperSpec, ...] = ()


_MINIGRID_ENCODING = WrapperSpec("MiniGridEncoding", f"{_RL}:MiniGridEncoding", {})

# The velocity entries are defined here, without torch; rl.PHYSICS reads them from this table.
BASES: dict[str, Base] = {
    "CartPole": Base(f"{_RL}:CartPoleTask", 200, (1, 3)),
    "Acrobot": Base(f"{_RL}:AcrobotTask", 500, (4, 5)),
    "MountainCar": Base(f"{_RL}:MountainCarTask", 200, (1,)),
    **{
        # MiniGrid envs end episodes themselves (max_steps), hence no time limit.
        name: Base(f"{_RL}:make_minigrid", None, (), {"env_id": f"{name}-v0"}, (_MINIGRID_ENCODING,))
        for name in ("MiniGrid-DoorKey-5x5", "MiniGrid-Empty-5x5", "MiniGrid-LavaGapS5")
    },
}
"""Environment name → how to build it. ``replaybench/<name>-v0`` is its default task."""

TASKS: dict[str, tuple[str, Mapping[str, float]]] = {
    "CartPole": ("CartPole", {}),
    "CartPoleReversed": ("CartPole", {"force_mag": -10.0}),
    "CartPoleLongPole": ("CartPole", {"length": 1.0, "masspole": 0.2}),
    "Acrobot": ("Acrobot", {}),
    "AcrobotHeavyLink": ("Acrobot", {"LINK_LENGTH_2": 1.5, "LINK_MASS_2": 1.5}),
    "AcrobotHighGravity": ("Acrobot", {"gravity": 15.0}),
    "MountainCar": ("MountainCar", {}),
    "MountainCarHighGravity": ("MountainCar", {"gravity": 0.0030}),
    "MountainCarStrongEngine": ("MountainCar", {"force": 0.0015}),
    "MiniGrid-DoorKey-5x5": ("MiniGrid-DoorKey-5x5", {}),
    "MiniGrid-Empty-5x5": ("MiniGrid-Empty-5x5", {}),
    "MiniGrid-LavaGapS5": ("MiniGrid-LavaGapS5", {}),
}
"""Task name → (environment name in :data:`BASES`, task parameters)."""

SEQUENCES: dict[str, tuple[str, ...]] = {
    "make_cartpole_conflict": ("CartPole", "CartPoleReversed", "CartPoleLongPole"),
    "make_acrobot_variants": ("Acrobot", "AcrobotHeavyLink", "AcrobotHighGravity"),
    "make_mountaincar_variants": ("MountainCar", "MountainCarHighGravity", "MountainCarStrongEngine"),
    "make_minigrid_sequence": ("MiniGrid-DoorKey-5x5", "MiniGrid-Empty-5x5", "MiniGrid-LavaGapS5"),
}
"""Stream builder in ``replaybench.streams.rl`` → its tasks, in order (the builders read this)."""


def env_id(task: str, *, hide_velocity: bool = False, task_index: int | None = None, n_tasks: int = 1) -> str:
    """The id of ``task`` with the given observation modifiers (see the naming scheme above).

    Raises:
        KeyError: For a task not in :data:`TASKS`.
    """
    if task not in TASKS:
        raise KeyError(f"Unknown task {task!r}; known: {', '.join(TASKS)}.")
    name = task + ("-NoVel" if hide_velocity else "")
    if task_index is not None:
        name += f"-Id{task_index}of{n_tasks}"
    return f"{NAMESPACE}/{name}-v0"


def _register(task: str, *, hide_velocity: bool = False, task_index: int | None = None, n_tasks: int = 1) -> str:
    id_ = env_id(task, hide_velocity=hide_velocity, task_index=task_index, n_tasks=n_tasks)
    if id_ in gymnasium.registry:  # re-imports and reloads register nothing twice
        return id_
    base_name, params = TASKS[task]
    base = BASES[base_name]
    # The wrapper entry points and kwargs are those the wrapped env records, so
    # gymnasium.make(env.spec) of a stream's env and gymnasium.make(id) build the same stack.
    wrappers = list(base.additional_wrappers)
    if hide_velocity:
        wrappers.append(WrapperSpec("HideVelocity", f"{_RL}:HideVelocity", {"velocity_dims": base.velocity_dims}))
    if task_index is not None:
        one_hot = {"task_index": task_index, "n_tasks": n_tasks}
        wrappers.append(WrapperSpec("AppendTaskId", f"{_RL}:AppendTaskId", one_hot))
    gymnasium.register(
        id_,
        entry_point=base.entry_point,
        max_episode_steps=base.max_episode_steps,
        kwargs={**base.kwargs, **params},
        additional_wrappers=tuple(wrappers),
    )
    return id_


def register_envs() -> dict[str, tuple[str, ...]]:
    """Register every task plain, then the tasks of the catalog's RL streams (``rl.toml``).

    Cheap (reads one TOML file, builds no env) and idempotent.

    Returns:
        Stream name → the id of the env each of its experiences hands out.
    """
    for task in TASKS:
        _register(task)
    with (Path(__file__).parent / "rl.toml").open("rb") as f:
        tables = tomllib.load(f)
    streams = {}
    for stream, table in tables.items():
        tasks = SEQUENCES[table["builder"].rpartition(":")[2]]
        # The defaults are the stream builders' (make_cartpole_conflict and its siblings).
        n_tasks = table.get("n_tasks", len(tasks))
        task_ids, hide_velocity = table.get("task_ids", True), table.get("hide_velocity", False)
        streams[stream] = tuple(
            _register(task, hide_velocity=hide_velocity, task_index=i if task_ids else None, n_tasks=n_tasks)
            for i, task in enumerate(tasks[:n_tasks])
        )
    return streams


STREAM_ENV_IDS: dict[str, tuple[str, ...]] = register_envs()
"""Catalog RL stream → the id of the env each of its experiences hands out."""

PLAIN_IDS: tuple[str, ...] = tuple(env_id(task) for task in TASKS)
"""The id of every task without observation modifiers."""

REGISTERED_IDS: tuple[str, ...] = PLAIN_IDS + tuple(
    sorted({id_ for ids in STREAM_ENV_IDS.values() for id_ in ids} - set(PLAIN_IDS))
)
"""Every id this module registers: the plain ones, then the stream variants."""
