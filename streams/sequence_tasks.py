"""Sequence task streams: EMT variable binding and temporal flip-flops.

Two task families, each a pure generator plus stream builders:

- **Variable binding** (Karuvally et al., EMT, arXiv 2310.02430; task
  definition from the public repository arjunkaruvally/emt_variable_binding,
  ``em_discrete/tasks/binary_linearVB.py``). An input phase of ``s`` random
  ±1 vectors of width ``d`` is followed by zero input and an output phase in
  which ``w(t) = flat(w(t-s), ..., w(t-1)) @ F`` with ``w(t) = x(t)`` for
  ``t < s``. ``F`` (``s*d x d``) comes from a task id ``(id1, id2, id3)``:
  ``id1`` is a bitmask choosing ``d`` of the ``s*d`` history positions,
  ``id2`` a base-``d`` code of swaps among the chosen positions, ``id3`` a
  bitmask of output signs. Repeat copy is ``(2**d - 1, 0, 0)``:
  ``y(t) = x(t - s)``. Accuracy is sign agreement over the output phase.
- **Temporal flip-flops** (DelMastro et al., arXiv 2306.07125; the 3-state
  time-of-day automaton from the EMT repository's ``tfa.py``). Symbols a, b,
  c (each 0.3) and null (0.1, state unchanged). A hidden clock Θ switches
  the transition rule: day a→1, b→2, c→3; night a→1, b→3, c→2. The periodic
  clock is night when ``t mod P >= P // 2``; the relative-timing clock is
  "night" once more than τ steps have passed since the last non-null symbol.
  Symbol a is time-independent (TI), b and c time-dependent (TD).

A sequence :class:`Experience` holds ``train_x``/``test_x`` as float
``[N, T, d_in]``, ``train_y``/``test_y`` as float ``[N, T, d]`` (variable
binding) or int64 states ``[N, T]`` (flip-flops); ``info["output_mask"]``
marks the scored steps ``[T]`` and ``info["d_out"]`` the output width.
:func:`score_sequence` is the runner's scoring function.

Example:
    >>> stream = make_vb_compose(d=8, s=8, horizon=8, n_train=4, n_test=4)
    >>> [e.info["task"] for e in stream.experiences]
    ['T1', 'T2', 'T3', 'T4']
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from replaybench.errors import ConfigError, ReplaybenchError
from replaybench.params import Interval, OneOf, check_param
from replaybench.protocols import Experience
from replaybench.streams.base import TensorStream

STREAM_VERSION = "1"

VB_TABLE1_TASK_IDS: dict[str, tuple[int, int, int]] = {
    "T1": (255, 0, 0),
    "T2": (9241421688590303745, 0, 0),
    "T3": (9241421688590303745, 262676, 189),
    "T4": (9241421688590303745, 38637, 145),
}
"""EMT Table 1's tasks for d = s = 8, as listed in the EMT repository's
``experiments_public/2_all_linearVB/1_0_binary_linearVB.slurm``. T1 is repeat
copy; T2 reads feature j from ``w(t - s + j)``; T3 and T4 add swaps and signs."""

SYMBOLS = ("a", "b", "c")
"""Flip-flop symbols, one-hot coded in this order; null is the zero vector."""

TOD_TRANSITIONS = torch.tensor(
    [
        [[0, 1, 2], [0, 1, 2], [0, 1, 2]],  # day (Θ = 0): a→1, b→2, c→3
        [[0, 2, 1], [0, 2, 1], [0, 2, 1]],  # night (Θ = 1): a→1, b→3, c→2
    ]
)
"""Next state ``[Θ, state, symbol]`` of the 3-state time-of-day automaton
(states 1, 2, 3 stored as 0, 1, 2), from the EMT repository's ``tfa.py``."""

_POS_INT = Interval(int, 1, None)


def repeat_copy_task_id(d: int) -> tuple[int, int, int]:
    """The task id of repeat copy for width ``d``: ``y(t) = x(t - s)``."""
    return (2**d - 1, 0, 0)


def vb_operator(task_id: Sequence[int], *, d: int, s: int) -> torch.Tensor:
    """The composition operator ``F`` [s*d, d] of a variable-binding task.

    Row ``k*d + j`` of ``F`` reads feature ``j`` of ``w(t - s + k)``.

    Raises:
        ConfigError: If the id does not describe a task of this ``d`` and ``s``.
    """
    check_param("vb_operator", "d", d, _POS_INT)
    check_param("vb_operator", "s", s, _POS_INT)
    if len(task_id) != 3 or not all(isinstance(i, int) and i >= 0 for i in task_id):
        raise ConfigError(
            f"A variable-binding task id must be three ints >= 0 (id1, id2, id3). Got {task_id!r} instead."
        )
    id1, id2, id3 = task_id
    chosen = [p for p in range(s * d) if id1 >> p & 1]
    if len(chosen) != d or id1 >> (s * d):
        raise ConfigError(
            f"The task id1 must set exactly d={d} of the s*d={s * d} lowest bits. Got {id1} "
            f"({bin(id1).count('1')} bits set) instead."
        )
    slot = 0
    while id2:
        digit = id2 % d
        if digit >= d - slot:
            raise ConfigError(f"Digit {slot} of task id2 (base {d}) must be below {d - slot}. Got {digit} instead.")
        if digit:
            chosen[slot], chosen[slot + digit] = chosen[slot + digit], chosen[slot]
        id2 //= d
        slot += 1
    if id3 >> d:
        raise ConfigError(f"The task id3 must be below 2**d = {2**d}. Got {id3} instead.")
    operator = torch.zeros(s * d, d)
    for j, position in enumerate(chosen):
        operator[position, j] = -1.0 if id3 >> j & 1 else 1.0
    return operator


def vb_sequences(
    operator: torch.Tensor, *, n: int, horizon: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n`` variable-binding sequences of length ``s + horizon``.

    Returns:
        ``(x, y, output_mask)``: inputs ``[n, T, d]`` (±1 during the first
        ``s`` steps, then 0), targets ``[n, T, d]`` (0 during the input phase)
        and the bool mask ``[T]`` of the output phase.
    """
    sd, d = operator.shape
    s = sd // d
    length = s + horizon
    x = torch.zeros(n, length, d)
    x[:, :s] = torch.randint(0, 2, (n, s, d), generator=generator).float() * 2 - 1
    w = x.clone()
    for t in range(s, length):
        w[:, t] = w[:, t - s : t].reshape(n, sd) @ operator
    y = w
    y[:, :s] = 0.0
    mask = torch.arange(length) >= s
    return x, y, mask


@dataclass(frozen=True)
class FlipFlopSequences:
    """Flip-flop sequences with their hidden clock and symbols."""

    x: torch.Tensor
    """One-hot symbols ``[n, T, 3]``; null steps are all zero."""
    states: torch.Tensor
    """Automaton state after each step ``[n, T]`` (int64 in 0..2)."""
    clock: torch.Tensor
    """Θ used at each step ``[n, T]`` (int64, 1 = night)."""
    symbols: torch.Tensor
    """Symbol index at each step ``[n, T]`` (-1 for null)."""


def flipflop_sequences(
    *,
    n: int,
    length: int,
    period: int = 6,
    clock: str = "periodic",
    tau: int = 2,
    null_prob: float = 0.1,
    generator: torch.Generator,
) -> FlipFlopSequences:
    """Run the 3-state time-of-day automaton on random symbol sequences.

    Every sequence starts at t = 0 in state 1 (index 0), as in ``tfa.py``.
    The state at step t is the transition from the state at t-1 by symbol t
    under clock Θ(t).

    Args:
        n: Number of sequences.
        length: Steps per sequence.
        period: P of the periodic clock: night when ``t mod P >= P // 2``.
        clock: "periodic" (time of day) or "relative" (Θ = 1 when more than
            ``tau`` steps have passed since the last non-null symbol; the
            sequence start counts as one at t = -1).
        tau: τ of the relative clock.
        null_prob: Probability of the null symbol; a, b, c share the rest.
        generator: Source of randomness.
    """
    check_param("flipflop_sequences", "clock", clock, OneOf("periodic", "relative"))
    check_param("flipflop_sequences", "period", period, Interval(int, 2, None))
    check_param("flipflop_sequences", "tau", tau, Interval(int, 0, None))
    check_param("flipflop_sequences", "null_prob", null_prob, Interval(float, 0, 1, closed="left"))
    probs = torch.tensor([null_prob] + [(1 - null_prob) / 3] * 3)
    symbols = torch.multinomial(probs, n * length, replacement=True, generator=generator).view(n, length) - 1
    states = torch.empty(n, length, dtype=torch.long)
    thetas = torch.empty(n, length, dtype=torch.long)
    state = torch.zeros(n, dtype=torch.long)
    last_event = torch.full((n,), -1, dtype=torch.long)
    for t in range(length):
        if clock == "periodic":
            theta = torch.full((n,), int(t % period >= period // 2), dtype=torch.long)
        else:
            theta = (t - last_event > tau).long()
        symbol = symbols[:, t]
        present = symbol >= 0
        moved = TOD_TRANSITIONS[theta, state, symbol.clamp(min=0)]
        state = torch.where(present, moved, state)
        last_event = torch.where(present, torch.full_like(last_event, t), last_event)
        states[:, t], thetas[:, t] = state, theta
    x = torch.zeros(n, length, len(SYMBOLS))
    present = symbols >= 0
    x[present] = torch.nn.functional.one_hot(symbols[present], len(SYMBOLS)).float()
    return FlipFlopSequences(x=x, states=states, clock=thetas, symbols=symbols)


def time_dependent_symbols(transitions: torch.Tensor = TOD_TRANSITIONS) -> torch.Tensor:
    """Bool [n_symbols]: whether a symbol's transitions differ between Θ = 0 and Θ = 1."""
    return (transitions[0] != transitions[1]).any(dim=0)


# --- scoring ---------------------------------------------------------------------------------


def sign_agreement(outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of output-phase entries whose sign matches the ±1 target (EMT's accuracy; 0 counts as +)."""
    predicted = torch.where(outputs[:, mask] >= 0, 1.0, -1.0)
    return (predicted == targets[:, mask]).float().mean().item()


def flipflop_accuracies(experience: Experience, outputs: torch.Tensor) -> dict[str, float]:
    """Argmax state accuracy on the test split: overall, on TI steps and on TD steps.

    A step is TI (TD) when its input symbol is time-independent
    (time-dependent); null steps count only in the overall accuracy.
    """
    x, states = experience.test_x, experience.test_y
    correct = (outputs.argmax(-1) == states).float()
    symbol = torch.where(x.sum(-1) > 0, x.argmax(-1), -1)
    dependent = time_dependent_symbols()[symbol.clamp(min=0)] & (symbol >= 0)
    independent = ~time_dependent_symbols()[symbol.clamp(min=0)] & (symbol >= 0)
    return {
        "accuracy": correct.mean().item(),
        "ti_accuracy": correct[independent].mean().item(),
        "td_accuracy": correct[dependent].mean().item(),
    }


def score_sequence(experience: Experience, outputs: torch.Tensor) -> float:
    """Score ``agent.predict(experience.test_x)`` ([N, T, d_out]) on the test split.

    Variable binding: sign agreement over the output phase. Flip-flops:
    argmax state accuracy over all steps.
    """
    if outputs.shape[:2] != experience.test_x.shape[:2]:
        raise ReplaybenchError(
            f"Expected outputs of shape [N, T, ...] = {tuple(experience.test_x.shape[:2])}. "
            f"Got {tuple(outputs.shape)} instead."
        )
    if experience.info["family"] == "flipflop":
        return flipflop_accuracies(experience, outputs)["accuracy"]
    return sign_agreement(outputs, experience.test_y, experience.info["output_mask"])


# --- streams ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SequenceStream(TensorStream):
    """A generated sequence stream (scenario "sequence") that scores its own experiences.

    ``input_shape`` is the width of one time step, ``(d_in,)``, since sequence
    lengths vary across experiences; ``data_digest`` hashes every tensor.
    """

    output_size: int = 0
    """Width of the agent's per-step output (d for variable binding, 3 states for flip-flops)."""

    def evaluate(self, agent: Any, experience: Experience) -> float:
        """The runner's scorer: :func:`score_sequence` of ``agent.predict(test_x, task_id)``."""
        with torch.no_grad():
            outputs = agent.predict(experience.test_x, experience.task_id)
        return score_sequence(experience, outputs.detach().cpu())

    def describe(self) -> dict[str, Any]:
        """What ``replaybench streams show`` prints."""
        return {
            **super().describe(),
            "tasks": [e.info["task"] for e in self.experiences],
            "output_size": self.output_size,
        }


def _sequence_stream(
    name: str, version: str, experiences: Sequence[Experience], d_in: int, d_out: int, params: dict[str, Any]
) -> SequenceStream:
    digest = hashlib.sha256()
    for experience in experiences:
        for tensor in (experience.train_x, experience.train_y, experience.test_x, experience.test_y):
            digest.update(tensor.contiguous().numpy().tobytes())
    return SequenceStream(
        name=name,
        version=version,
        scenario="sequence",
        experiences=tuple(experiences),
        n_classes=0,
        input_shape=(d_in,),
        source="generated in-process by streams.sequence_tasks",
        params=params,
        data_digest=digest.hexdigest(),
        output_size=d_out,
    )


def _vb_experience(
    index: int,
    name: str,
    task_id: tuple[int, int, int],
    *,
    d: int,
    s: int,
    horizon: int,
    n_train: int,
    n_test: int,
    generator: torch.Generator,
) -> Experience:
    operator = vb_operator(task_id, d=d, s=s)
    train_x, train_y, mask = vb_sequences(operator, n=n_train, horizon=horizon, generator=generator)
    test_x, test_y, _ = vb_sequences(operator, n=n_test, horizon=horizon, generator=generator)
    info = {
        "family": "vb",
        "task": name,
        "vb_task_id": task_id,
        "d": d,
        "s": s,
        "horizon": horizon,
        "output_mask": mask,
        "d_out": d,
        "loss": "mse",
    }
    return Experience(
        index=index,
        kind="sequence",
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        task_id=index,
        info=info,
    )


def _check_sizes(owner: str, **values: int) -> None:
    for key, value in values.items():
        check_param(owner, key, value, _POS_INT)


def make_vb_compose(
    *,
    name: str | None = None,
    version: str = STREAM_VERSION,
    data_dir: str | None = None,
    download: bool = False,
    d: int = 8,
    s: int = 8,
    horizon: int = 16,
    n_train: int = 2048,
    n_test: int = 512,
    tasks: Sequence[str] = ("T1", "T2", "T3", "T4"),
    seed: int = 0,
) -> SequenceStream:
    """vb-compose: EMT Table 1's tasks T1..T4 in order, one per experience.

    T1 (repeat copy) exists for any ``d``; T2..T4 are defined for d = s = 8.
    The data are generated in-process from ``seed``; ``name``, ``version``,
    ``data_dir`` and ``download`` follow the standard builder signature
    (the last two are unused). The same holds for the other builders.
    """
    _check_sizes("vb-compose", d=d, s=s, horizon=horizon, n_train=n_train, n_test=n_test)
    unknown = [t for t in tasks if t not in VB_TABLE1_TASK_IDS]
    if unknown or not tasks:
        raise ConfigError(
            f"The 'tasks' parameter of vb-compose must name tasks among T1..T4. Got {tuple(tasks)!r} instead."
        )
    generator = torch.Generator().manual_seed(seed)
    experiences = tuple(
        _vb_experience(
            i,
            name,
            repeat_copy_task_id(d) if name == "T1" else VB_TABLE1_TASK_IDS[name],
            d=d,
            s=s,
            horizon=horizon,
            n_train=n_train,
            n_test=n_test,
            generator=generator,
        )
        for i, name in enumerate(tasks)
    )
    parameters = {
        "d": d,
        "s": s,
        "horizon": horizon,
        "n_train": n_train,
        "n_test": n_test,
        "tasks": list(tasks),
        "seed": seed,
    }
    return _sequence_stream(name or "vb-compose", version, experiences, d, d, parameters)


def make_vb_repeat_copy(
    *,
    name: str | None = None,
    version: str = STREAM_VERSION,
    data_dir: str | None = None,
    download: bool = False,
    d: int = 8,
    s: int = 8,
    horizons: Sequence[int] = (10, 20, 40, 60, 100),
    n_train: int = 1024,
    n_test: int = 256,
    seed: int = 0,
) -> SequenceStream:
    """vb-repeat-copy: repeat copy at growing horizons (EMT's curriculum by default)."""
    _check_sizes("vb-repeat-copy", d=d, s=s, n_train=n_train, n_test=n_test)
    if not horizons:
        raise ConfigError("The 'horizons' parameter of vb-repeat-copy must list at least one horizon. Got () instead.")
    for h in horizons:
        check_param("vb-repeat-copy", "horizons", h, _POS_INT)
    generator = torch.Generator().manual_seed(seed)
    experiences = tuple(
        _vb_experience(
            i,
            f"repeat-copy@{h}",
            repeat_copy_task_id(d),
            d=d,
            s=s,
            horizon=h,
            n_train=n_train,
            n_test=n_test,
            generator=generator,
        )
        for i, h in enumerate(horizons)
    )
    parameters = {"d": d, "s": s, "horizons": list(horizons), "n_train": n_train, "n_test": n_test, "seed": seed}
    return _sequence_stream(name or "vb-repeat-copy", version, experiences, d, d, parameters)


def make_flipflop_periods(
    *,
    name: str | None = None,
    version: str = STREAM_VERSION,
    data_dir: str | None = None,
    download: bool = False,
    periods: Sequence[int] = (6, 4, 8),
    length: int = 48,
    clock: str = "periodic",
    tau: int = 2,
    null_prob: float = 0.1,
    n_train: int = 1024,
    n_test: int = 256,
    seed: int = 0,
) -> SequenceStream:
    """flipflop-periods: the time-of-day automaton, its period P changing per experience.

    With ``clock="relative"`` every experience uses the relative-timing
    clock with threshold τ; ``periods`` then only sets the number of
    experiences (each a fresh draw).
    """
    _check_sizes("flipflop-periods", length=length, n_train=n_train, n_test=n_test)
    if not periods:
        raise ConfigError("The 'periods' parameter of flipflop-periods must list at least one period. Got () instead.")
    generator = torch.Generator().manual_seed(seed)
    experiences = []
    for i, period in enumerate(periods):
        train = flipflop_sequences(
            n=n_train, length=length, period=period, clock=clock, tau=tau, null_prob=null_prob, generator=generator
        )
        test = flipflop_sequences(
            n=n_test, length=length, period=period, clock=clock, tau=tau, null_prob=null_prob, generator=generator
        )
        info = {
            "family": "flipflop",
            "task": f"{clock}-P{period}" if clock == "periodic" else f"relative-tau{tau}",
            "period": period,
            "clock": clock,
            "tau": tau,
            "output_mask": torch.ones(length, dtype=torch.bool),
            "d_out": len(SYMBOLS),
            "loss": "cross_entropy",
        }
        experiences.append(
            Experience(
                index=i,
                kind="sequence",
                train_x=train.x,
                train_y=train.states,
                test_x=test.x,
                test_y=test.states,
                task_id=i,
                info=info,
            )
        )
    parameters = {
        "periods": list(periods),
        "length": length,
        "clock": clock,
        "tau": tau,
        "null_prob": null_prob,
        "n_train": n_train,
        "n_test": n_test,
        "seed": seed,
    }
    return _sequence_stream(name or "flipflop-periods", version, experiences, len(SYMBOLS), len(SYMBOLS), parameters)
