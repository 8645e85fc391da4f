"""Continual reinforcement-learning streams on gymnasium.

Each task is a real gymnasium environment with its own id,
``replaybench/<Task>[-NoVel][-Id<i>of<n>]-v0`` (:mod:`replaybench.streams.gym_ids`
registers them; docs/rl.md lists them), and ``gymnasium.make(env.spec)`` rebuilds
the env an experience hands out. A task differs from its neighbours only in its
physics, given as *task parameters*: they are set on ``env.unwrapped`` and the
constants that ``__init__`` derives from them are recomputed
(:func:`apply_task_params`). An experience is an env factory plus a step
budget; :func:`evaluate_rl` scores an agent with greedy episodes on fixed
seeds, as a normalised return in [0, 1].

Streams (all ``scenario="rl"``):

- ``cartpole-conflict``: default CartPole, then the reversed actuator
  (``force_mag=-10``), then a long pole; the reversed actuator conflicts with
  the first task, which is what makes fine-tuning forget.
- ``acrobot-variants``: link lengths and masses, then gravity.
- ``mountaincar-variants``: gravity and engine force.
- ``minigrid-sequence``: DoorKey, Empty and LavaGap MiniGrid tasks behind one
  observation encoding (needs the optional ``minigrid`` package).

Every builder takes ``task_ids`` (append a one-hot task id to the
observation) and, for the classic-control streams, ``hide_velocity`` (the
partially observable variant for working-memory agents).

Example:
    >>> stream = make_cartpole_conflict(n_tasks=2, steps_per_task=4000)
    >>> env = stream.experiences[1].env_factory(0)
    >>> env.unwrapped.force_mag
    -10.0
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
from gymnasium.envs.classic_control.acrobot import AcrobotEnv
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.mountain_car import MountainCarEnv

from replaybench.errors import ConfigError, require_extra
from replaybench.params import InstanceOf, Interval, check_param, did_you_mean
from replaybench.protocols import EpisodeAware, Experience
from replaybench.rl_metrics import normalised_return
from replaybench.streams.gym_ids import BASES, SEQUENCES, TASKS  # importing it registers the replaybench/* ids

STREAM_VERSION = "1"
DEFAULT_EVAL_SEEDS = (10_007, 10_009, 10_037, 10_039, 10_061)
"""Reset seeds of the greedy evaluation episodes, shared by every task."""

_POSITIVE = Interval(float, 0, None, closed="neither")
_NONZERO_REAL = Interval(float, None, None)  # sign is free (reversed actuator); zero is refused below


# --------------------------------------------------------------------------- environments
class CartPoleTask(CartPoleEnv):
    """CartPole whose physics are constructor arguments.

    ``length`` is half the pole's length, as in gymnasium.
    """

    def __init__(
        self,
        *,
        render_mode: str | None = None,
        gravity: float = 9.8,
        masscart: float = 1.0,
        masspole: float = 0.1,
        length: float = 0.5,
        force_mag: float = 10.0,
        tau: float = 0.02,
    ) -> None:
        super().__init__(render_mode=render_mode)
        apply_task_params(
            self,
            dict(gravity=gravity, masscart=masscart, masspole=masspole, length=length, force_mag=force_mag, tau=tau),
        )


class AcrobotTask(AcrobotEnv):
    """Acrobot whose link lengths, masses and gravity are constructor arguments.

    Gymnasium hard-codes ``g = 9.8`` inside the equations of motion, so this
    class re-states them with ``self.gravity``. The equations are the "book"
    variant of Sutton & Barto (1998, ch. 11.3), after Spong (1995), which is
    gymnasium's default; at the default parameters the dynamics are identical
    (tested). The centre of mass of each link sits at its midpoint and is
    recomputed from its length; the termination height keeps gymnasium's
    unit-length threshold.
    """

    def __init__(
        self,
        *,
        render_mode: str | None = None,
        LINK_LENGTH_1: float = 1.0,
        LINK_LENGTH_2: float = 1.0,
        LINK_MASS_1: float = 1.0,
        LINK_MASS_2: float = 1.0,
        LINK_MOI: float = 1.0,
        gravity: float = 9.8,
    ) -> None:
        super().__init__(render_mode=render_mode)
        apply_task_params(
            self,
            dict(
                LINK_LENGTH_1=LINK_LENGTH_1,
                LINK_LENGTH_2=LINK_LENGTH_2,
                LINK_MASS_1=LINK_MASS_1,
                LINK_MASS_2=LINK_MASS_2,
                LINK_MOI=LINK_MOI,
                gravity=gravity,
            ),
        )

    def _dsdt(self, s_augmented: np.ndarray) -> tuple[float, ...]:
        m1, m2 = self.LINK_MASS_1, self.LINK_MASS_2
        l1, lc1, lc2 = self.LINK_LENGTH_1, self.LINK_COM_POS_1, self.LINK_COM_POS_2
        inertia = self.LINK_MOI  # both links share one moment of inertia
        g = self.gravity
        theta1, theta2, omega1, omega2, torque = s_augmented
        cos2, sin2 = math.cos(theta2), math.sin(theta2)
        # Generalised inertia terms (d11 and d12 of the mass matrix).
        d11 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos2) + 2 * inertia
        d12 = m2 * (lc2**2 + l1 * lc2 * cos2) + inertia
        # Gravity and Coriolis terms; cos(x - pi/2) == sin(x).
        gravity2 = m2 * lc2 * g * math.sin(theta1 + theta2)
        gravity1 = (
            -m2 * l1 * lc2 * sin2 * (omega2**2 + 2 * omega1 * omega2)
            + (m1 * lc1 + m2 * l1) * g * math.sin(theta1)
            + gravity2
        )
        alpha2 = (torque + d12 / d11 * gravity1 - m2 * l1 * lc2 * omega1**2 * sin2 - gravity2) / (
            m2 * lc2**2 + inertia - d12**2 / d11
        )
        alpha1 = -(d12 * alpha2 + gravity1) / d11
        return omega1, omega2, alpha1, alpha2, 0.0


class MountainCarTask(MountainCarEnv):
    """MountainCar whose gravity and engine force are constructor arguments."""

    def __init__(self, *, render_mode: str | None = None, gravity: float = 0.0025, force: float = 0.001) -> None:
        super().__init__(render_mode=render_mode)
        apply_task_params(self, dict(gravity=gravity, force=force))


def _cartpole_derived(env: Any) -> None:
    # CartPoleEnv.__init__ computes these once; step() reads them.
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


def _acrobot_derived(env: Any) -> None:
    env.LINK_COM_POS_1 = env.LINK_LENGTH_1 / 2
    env.LINK_COM_POS_2 = env.LINK_LENGTH_2 / 2


@dataclass(frozen=True)
class PhysicsSpec:
    """The task parameters one environment class accepts.

    Attributes:
        parameters: Name (an attribute of ``env.unwrapped``) → constraint.
        nonzero: Names for which zero is physically meaningless.
        recompute: Recomputes the constants derived from the parameters.
        velocity_dims: Observation entries that are velocities (defined once, in gym_ids' torch-free table).
    """

    parameters: Mapping[str, Interval]
    nonzero: frozenset[str] = frozenset()
    recompute: Callable[[Any], None] | None = None
    velocity_dims: tuple[int, ...] = ()


PHYSICS: dict[type, PhysicsSpec] = {
    CartPoleEnv: PhysicsSpec(
        parameters={
            "gravity": _POSITIVE,
            "masscart": _POSITIVE,
            "masspole": _POSITIVE,
            "length": _POSITIVE,
            "force_mag": _NONZERO_REAL,
            "tau": _POSITIVE,
        },
        nonzero=frozenset({"force_mag"}),
        recompute=_cartpole_derived,
        velocity_dims=BASES["CartPole"].velocity_dims,
    ),
    AcrobotTask: PhysicsSpec(
        parameters={
            "LINK_LENGTH_1": _POSITIVE,
            "LINK_LENGTH_2": _POSITIVE,
            "LINK_MASS_1": _POSITIVE,
            "LINK_MASS_2": _POSITIVE,
            "LINK_MOI": _POSITIVE,
            "gravity": _POSITIVE,
        },
        recompute=_acrobot_derived,
        velocity_dims=BASES["Acrobot"].velocity_dims,
    ),
    MountainCarEnv: PhysicsSpec(
        parameters={"gravity": _POSITIVE, "force": _POSITIVE}, velocity_dims=BASES["MountainCar"].velocity_dims
    ),
}
"""Task parameters per environment class (subclasses inherit their parent's)."""


def physics_spec(env: gymnasium.Env) -> PhysicsSpec:
    """The :class:`PhysicsSpec` of ``env.unwrapped``'s class."""
    for cls in type(env.unwrapped).__mro__:
        if cls in PHYSICS:
            return PHYSICS[cls]
    raise ConfigError(
        f"{type(env.unwrapped).__name__} has no task parameters; known: {', '.join(c.__name__ for c in PHYSICS)}."
    )


def check_task_params(owner: str, spec: PhysicsSpec, params: Mapping[str, Any]) -> None:
    """Refuse unknown names and physically impossible values with one line."""
    for name, value in params.items():
        if name not in spec.parameters:
            raise ConfigError(
                f"Unknown task parameter {name!r} for {owner}.{did_you_mean(name, spec.parameters)} "
                f"Known: {', '.join(spec.parameters)}."
            )
        check_param(owner, name, value, spec.parameters[name])
        if name in spec.nonzero and value == 0:
            raise ConfigError(f"The {name!r} parameter of {owner} must be non-zero. Got {value!r} instead.")


def apply_task_params(env: gymnasium.Env, params: Mapping[str, float]) -> None:
    """Set ``params`` on ``env.unwrapped`` and recompute its derived constants.

    Raises:
        ConfigError: For an unknown name or a physically impossible value.
    """
    target = env.unwrapped
    spec = physics_spec(target)
    check_task_params(type(target).__name__, spec, params)
    for name, value in params.items():
        setattr(target, name, float(value))
    if spec.recompute is not None:
        spec.recompute(target)


# --------------------------------------------------------------------------- observation wrappers
# RecordConstructorArgs puts each wrapper and its arguments in env.spec, so gymnasium.make(env.spec) rebuilds it.
class AppendTaskId(gymnasium.ObservationWrapper, gymnasium.utils.RecordConstructorArgs):
    """Appends a one-hot task id to a flat observation."""

    def __init__(self, env: gymnasium.Env, *, task_index: int, n_tasks: int) -> None:
        gymnasium.utils.RecordConstructorArgs.__init__(self, task_index=task_index, n_tasks=n_tasks)
        gymnasium.ObservationWrapper.__init__(self, env)
        self.one_hot = np.zeros(n_tasks, dtype=np.float32)
        self.one_hot[task_index] = 1.0
        space = env.observation_space
        self.observation_space = gymnasium.spaces.Box(
            np.concatenate([space.low, np.zeros(n_tasks, np.float32)]),
            np.concatenate([space.high, np.ones(n_tasks, np.float32)]),
            dtype=np.float32,
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.concatenate([observation, self.one_hot])


class HideVelocity(gymnasium.ObservationWrapper, gymnasium.utils.RecordConstructorArgs):
    """Drops the velocity entries of a flat observation (a partially observable task)."""

    def __init__(self, env: gymnasium.Env, *, velocity_dims: Sequence[int]) -> None:
        gymnasium.utils.RecordConstructorArgs.__init__(self, velocity_dims=tuple(velocity_dims))
        gymnasium.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        self.keep = np.array([i for i in range(space.shape[0]) if i not in set(velocity_dims)])
        self.observation_space = gymnasium.spaces.Box(space.low[self.keep], space.high[self.keep], dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.keep]


def make_task_env(
    seed: int | None = None,
    *,
    env_id: str,
    task_params: Mapping[str, float],
    task_index: int,
    n_tasks: int,
    task_ids: bool,
    hide_velocity: bool,
) -> gymnasium.Env:
    """Build one task's environment; the env factory of an experience.

    ``seed`` seeds the action space (observations are seeded by ``reset``).
    """
    env = gymnasium.make(env_id, **task_params)
    if hide_velocity:
        env = HideVelocity(env, velocity_dims=physics_spec(env).velocity_dims)
    if task_ids:
        env = AppendTaskId(env, task_index=task_index, n_tasks=n_tasks)
    if seed is not None:
        env.action_space.seed(seed)
    return env


# --------------------------------------------------------------------------- MiniGrid
class MiniGridEncoding(gymnasium.ObservationWrapper, gymnasium.utils.RecordConstructorArgs):
    """One flat encoding for every MiniGrid task.

    The 7×7 egocentric view's (object, colour, state) codes are scaled to
    [0, 1] by their table sizes and concatenated with a one-hot direction, so
    all tasks share a 151-dimensional observation and 7 actions.
    """

    def __init__(self, env: gymnasium.Env) -> None:
        gymnasium.utils.RecordConstructorArgs.__init__(self)
        gymnasium.ObservationWrapper.__init__(self, env)
        from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

        view = env.observation_space["image"].shape
        self.scale = np.array(
            [max(OBJECT_TO_IDX.values()), max(COLOR_TO_IDX.values()), max(STATE_TO_IDX.values())], dtype=np.float32
        )
        size = int(np.prod(view)) + 4
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (size,), dtype=np.float32)

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        image = (observation["image"].astype(np.float32) / self.scale).ravel()
        direction = np.zeros(4, dtype=np.float32)
        direction[observation["direction"]] = 1.0
        return np.concatenate([image, direction])


def make_minigrid(*, env_id: str, render_mode: str | None = None) -> gymnasium.Env:
    """The bare MiniGrid env ``env_id`` (the ``replaybench/MiniGrid-*`` entry point).

    Returns the env class itself, not ``gymnasium.make``'s wrapped env: the
    ``replaybench/MiniGrid-*`` spec adds the checker, order enforcement and
    :class:`MiniGridEncoding` around it, so ``gymnasium.make(env.spec)`` rebuilds the same stack.

    Raises:
        MissingExtraError: Without the ``minigrid`` package, on one line.
    """
    require_extra("minigrid", "minigrid", f"replaybench/{env_id}")  # importing it registers the MiniGrid-* ids
    spec = gymnasium.spec(env_id)
    creator = gymnasium.envs.registration.load_env_creator(spec.entry_point)
    return creator(**{**spec.kwargs, "render_mode": render_mode})


# --------------------------------------------------------------------------- streams
@dataclass(frozen=True)
class RLStream:
    """A sequence of RL tasks; satisfies the :class:`~replaybench.protocols.Stream` protocol."""

    name: str
    experiences: tuple[Experience, ...]
    input_shape: tuple[int, ...]
    n_actions: int
    definition: Mapping[str, Any] = field(repr=False)
    """What the fingerprint hashes: env ids, task params, budgets and eval seeds."""
    version: str = STREAM_VERSION
    scenario: str = "rl"
    n_classes: int = 0

    @property
    def fingerprint(self) -> str:
        canonical = json.dumps(self.definition, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def evaluate(self, agent: Any, experience: Experience) -> float:
        """The runner's scorer for this stream: :func:`evaluate_rl`."""
        return evaluate_rl(agent, experience)

    def single_task(self, index: int) -> RLStream:
        """Task ``index`` alone (the runner's forward-transfer reference): :func:`single_task_stream`."""
        return single_task_stream(self, index)

    def describe(self) -> dict[str, Any]:
        """What ``replaybench streams show`` prints."""
        return {
            "name": self.name,
            "version": self.version,
            "scenario": self.scenario,
            "experiences": len(self.experiences),
            "input_shape": list(self.input_shape),
            "n_actions": self.n_actions,
            "tasks": self.definition["tasks"],
            "task_ids": self.definition["task_ids"],
            "hide_velocity": self.definition["hide_velocity"],
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class TaskSpec:
    """One task of a stream: an environment and its physics."""

    env_id: str
    params: Mapping[str, float] = field(default_factory=dict)
    max_return: float = 200.0
    """Best achievable episode return (normalises to 1)."""
    min_return: float = 0.0
    """Worst episode return (normalises to 0)."""


def build_stream(
    name: str,
    tasks: Sequence[TaskSpec],
    *,
    steps_per_task: int | Sequence[int],
    task_ids: bool = True,
    hide_velocity: bool = False,
    eval_seeds: Sequence[int] = DEFAULT_EVAL_SEEDS,
    version: str = STREAM_VERSION,
) -> RLStream:
    """Assemble an :class:`RLStream`, validating everything before any env runs.

    Args:
        name: The stream's name.
        tasks: The tasks, in order.
        steps_per_task: Environment-step budget of each experience (one int for all).
        task_ids: Append a one-hot task id to observations and reveal
            ``Experience.task_id``; without it the agent must infer the task.
        hide_velocity: Drop the velocity entries (partially observable tasks).
        eval_seeds: Reset seeds of the greedy evaluation episodes.
        version: The stream's version, part of the fingerprint.

    Raises:
        ConfigError: For a budget ≤ 0, an unknown task parameter or an
            impossible value, before any environment runs.
    """
    budgets = [steps_per_task] * len(tasks) if isinstance(steps_per_task, int) else list(steps_per_task)
    if len(budgets) != len(tasks):
        raise ConfigError(f"Expected {len(tasks)} step budgets for {name}, got {len(budgets)}.")
    for budget in budgets:
        check_param(f"stream {name}", "steps_per_task", budget, Interval(int, 1, None))
    if not eval_seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in eval_seeds):
        raise ConfigError(
            f"The 'eval_seeds' parameter of stream {name} must be a non-empty sequence of ints. "
            f"Got {eval_seeds!r} instead."
        )
    experiences, definition = (
        [],
        {"name": name, "version": version, "task_ids": task_ids, "hide_velocity": hide_velocity, "tasks": []},
    )
    for index, (task, budget) in enumerate(zip(tasks, budgets)):
        if task.params or hide_velocity:  # builds the env once to find its parameter table
            probe = gymnasium.make(task.env_id)
            check_task_params(task.env_id, physics_spec(probe), task.params)
            probe.close()
        factory = functools.partial(
            make_task_env,
            env_id=task.env_id,
            task_params=dict(task.params),
            task_index=index,
            n_tasks=len(tasks),
            task_ids=task_ids,
            hide_velocity=hide_velocity,
        )
        info = {
            "max_return": task.max_return,
            "min_return": task.min_return,
            "eval_episodes": len(eval_seeds),
            "eval_seeds": tuple(eval_seeds),
            "task_params": dict(task.params),
            "env_id": task.env_id,
        }
        experiences.append(
            Experience(
                index=index,
                kind="rl",
                task_id=index if task_ids else None,
                env_factory=factory,
                step_budget=budget,
                info=info,
            )
        )
        definition["tasks"].append(
            {
                "env_id": task.env_id,
                "params": dict(task.params),
                "step_budget": budget,
                "eval_seeds": list(eval_seeds),
                "max_return": task.max_return,
                "min_return": task.min_return,
            }
        )
    probe = experiences[0].env_factory(0)
    stream = RLStream(
        name=name,
        experiences=tuple(experiences),
        input_shape=probe.observation_space.shape,
        n_actions=int(probe.action_space.n),
        definition=definition,
        version=version,
    )
    probe.close()
    return stream


def _tasks(builder: str, *, max_return: float, min_return: float) -> tuple[TaskSpec, ...]:
    # The task names and physics live in gym_ids, which registers an id for each without importing torch.
    # The env id stays the plain environment's (the physics go in params): the fingerprints hash it.
    specs = []
    for name in SEQUENCES[builder]:
        base, params = TASKS[name]
        specs.append(TaskSpec(f"replaybench/{base}-v0", dict(params), max_return=max_return, min_return=min_return))
    return tuple(specs)


CARTPOLE_CONFLICT_TASKS = _tasks("make_cartpole_conflict", max_return=200.0, min_return=0.0)
"""Default CartPole; the reversed actuator (``force_mag=-10``, conflicts with task 0); a long, heavy pole."""

ACROBOT_TASKS = _tasks("make_acrobot_variants", max_return=0.0, min_return=-500.0)
"""Default Acrobot; a longer, heavier lower link (1.5 × length and mass); gravity 15."""

MOUNTAINCAR_TASKS = _tasks("make_mountaincar_variants", max_return=0.0, min_return=-200.0)
"""Default MountainCar; stronger gravity (0.003); a stronger engine (force 0.0015)."""

MINIGRID_TASKS = _tasks("make_minigrid_sequence", max_return=1.0, min_return=0.0)
"""DoorKey-5x5, Empty-5x5, LavaGapS5. MiniGrid rewards 1 − 0.9·steps/max_steps on success, so 1 bounds the return."""


def _named_stream(
    default_name: str,
    tasks: Sequence[TaskSpec],
    *,
    name: str | None,
    version: str,
    n_tasks: int | None,
    steps_per_task: int | Sequence[int],
    task_ids: bool,
    hide_velocity: bool,
    eval_seeds: Sequence[int],
) -> RLStream:
    name = name or default_name
    n_tasks = len(tasks) if n_tasks is None else n_tasks
    check_param(f"stream {name}", "n_tasks", n_tasks, Interval(int, 1, len(tasks)))
    check_param(f"stream {name}", "version", version, InstanceOf(str))
    return build_stream(
        name,
        tasks[:n_tasks],
        steps_per_task=steps_per_task,
        task_ids=task_ids,
        hide_velocity=hide_velocity,
        eval_seeds=eval_seeds,
        version=version,
    )


def make_cartpole_conflict(
    *,
    name: str | None = None,
    version: str = STREAM_VERSION,
    n_tasks: int | None = None,
    steps_per_task: int | Sequence[int] = 5000,
    task_ids: bool = True,
    hide_velocity: bool = False,
    eval_seeds: Sequence[int] = DEFAULT_EVAL_SEEDS,
    data_dir: str | None = None,
    download: bool = False,
) -> RLStream:
    """CartPole, reversed actuator, long pole; 200-step episodes.

    Args:
        name: Registered name (defaults to ``"cartpole-conflict"``).
        version: Stream version, part of the fingerprint.
        n_tasks: Use the first ``n_tasks`` tasks (all three by default).
        steps_per_task: Env-step budget of each experience.
        task_ids: Append a one-hot task id to the observation.
        hide_velocity: Drop the cart and pole velocities (partially observable).
        eval_seeds: Reset seeds of the greedy evaluation episodes.
        data_dir: Unused (the tasks are simulated); accepted like every stream builder.
        download: Unused, as ``data_dir``.
    """
    return _named_stream(
        "cartpole-conflict",
        CARTPOLE_CONFLICT_TASKS,
        name=name,
        version=version,
        n_tasks=n_tasks,
        steps_per_task=steps_per_task,
        task_ids=task_ids,
        hide_velocity=hide_velocity,
        eval_seeds=eval_seeds,
    )


def make_acrobot_variants(
    *,
    name: str | None = None,
    version: str = STREAM_VERSION,
    n_tasks: int | None = None,
    steps_per_task: int | Sequence[int] = 20_000,
    task_ids: bool = True,
    hide_velocity: bool = False,
    eval_seeds: Sequence[int] = DEFAULT_EVAL_SEEDS,
    data_dir: str | None = None,
    download: bool = False,
) -> RLStream:
    """Acrobot with a longer, heavier lower link, then stronger gravity; 500-step episodes.

    Arguments as :func:`make_cartpole_conflict`; ``hide_velocity`` drops both joint velocities.
    """
    return _named_stream(
        "acrobot-variants",
        ACROBOT_TASKS,
        name=name,
        version=version,
        n_tasks=n_tasks,
        steps_per_task=steps_per_task,
        task_ids=task_ids,
        hide_velocity=hide_velocity,
        eval_seeds=eval_seeds,
    )


def make_mountaincar_variants(
    *,
    name: str | None = None,
    version: str = STREAM_VERSION,
    n_tasks: int | None = None,
    steps_per_task: int | Sequence[int] = 50_000,
    task_ids: bool = True,
    hide_velocity: bool = False,
    eval_seeds: Sequence[int] = DEFAULT_EVAL_SEEDS,
    data_dir: str | None = None,
    download: bool = False,
) -> RLStream:
    """MountainCar with stronger gravity, then a stronger engine; 200-step episodes.

    Arguments as :func:`make_cartpole_conflict`; ``hide_velocity`` drops the car's velocity.
    """
    return _named_stream(
        "mountaincar-variants",
        MOUNTAINCAR_TASKS,
        name=name,
        version=version,
        n_tasks=n_tasks,
        steps_per_task=steps_per_task,
        task_ids=task_ids,
        hide_velocity=hide_velocity,
        eval_seeds=eval_seeds,
    )


def make_minigrid_sequence(
    *,
    name: str | None = None,
    version: str = STREAM_VERSION,
    n_tasks: int | None = None,
    steps_per_task: int | Sequence[int] = 50_000,
    task_ids: bool = True,
    eval_seeds: Sequence[int] = DEFAULT_EVAL_SEEDS,
    data_dir: str | None = None,
    download: bool = False,
) -> RLStream:
    """DoorKey-5x5, Empty-5x5 and LavaGapS5 behind one encoding (needs ``minigrid``).

    Arguments as :func:`make_cartpole_conflict` (no velocities to hide).
    """
    return _named_stream(
        "minigrid-sequence",
        MINIGRID_TASKS,
        name=name,
        version=version,
        n_tasks=n_tasks,
        steps_per_task=steps_per_task,
        task_ids=task_ids,
        hide_velocity=False,
        eval_seeds=eval_seeds,
    )


def single_task_stream(stream: RLStream, index: int) -> RLStream:
    """Task ``index`` of ``stream`` alone: the reference run of forward transfer.

    The task keeps its observation encoding (including its one-hot id), so
    an agent built for the full stream fits it unchanged.
    """
    experience = stream.experiences[index]
    definition = {**stream.definition, "single_task": index}
    return dataclasses.replace(
        stream,
        name=f"{stream.name}[{index}]",
        experiences=(dataclasses.replace(experience, index=0),),
        definition=definition,
    )


# --------------------------------------------------------------------------- evaluation
def evaluate_rl(agent: Any, experience: Experience) -> float:
    """Mean greedy normalised return of ``agent`` on ``experience``'s task.

    Runs one episode per evaluation seed, all at once in a synchronous vector
    env, calling ``agent.act(obs_batch, task_id)``; each episode counts until
    its first end, whatever the autoreset mode does afterwards. A stateful
    agent's ``begin_episodes(n)``, if it has one, is called first, so that its
    memory starts empty for these episodes.

    Returns:
        The mean over episodes of ``(return − min_return) / (max_return − min_return)``.
    """
    seeds = list(experience.info["eval_seeds"])
    factory = experience.env_factory
    envs = gymnasium.vector.SyncVectorEnv([functools.partial(factory, seed) for seed in seeds])
    try:
        obs, _ = envs.reset(seed=seeds)
        if isinstance(agent, EpisodeAware):
            agent.begin_episodes(len(seeds))
        returns = np.zeros(len(seeds))
        running = np.ones(len(seeds), dtype=bool)
        while running.any():
            actions = np.asarray(agent.act(obs, experience.task_id)).reshape(len(seeds))
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            returns += np.where(running, rewards, 0.0)
            running &= ~(terminated | truncated)
    finally:
        envs.close()
    info = experience.info
    return float(
        np.mean(normalised_return(returns, max_return=info["max_return"], min_return=info.get("min_return", 0.0)))
    )
