"""Choose presets fairly: the same seeded search, with the same trial budget, for every agent.

``replaybench leaderboard tune BOARD`` searches each agent's space
(``search_spaces.toml``) with Optuna's TPE sampler (Bergstra et al. 2011),
seeded, and scores a trial by its mean ACC over the board's streams on their
*validation* split (``validation_fraction`` of each experience's training
items, :func:`replaybench.streams.base.hold_out_validation`) — never the
test split. Every trial gets the board's budget. A trial that does not learn
each experience as it comes (validation plasticity under
:data:`PLASTICITY_FLOOR`) is infeasible (Optuna's constrained TPE), so a
preset cannot win on ACC by barely training, which in class-IL forgets less.

Optuna is used through its ask-and-tell interface, so the trials run on the
project's executors (inline, local pool, Ray, Slurm): a lab tunes a board on
its cluster the same way it runs it. The agents' searches advance together,
``batch`` trials of every agent per round, all of a round's runs handed to
the executor at once, so a parallel executor is kept busy. The batch is part
of the search, never taken from the executor: a round asks its trials in
order (the sampler's constant liar spreads a batch out), and tells their
scores in trial order once every run of the round is back, so the same batch
gives the same trials, scores and presets inline, in a pool or on a cluster.
The record of each search (space, every trial's values and score, the
chosen values and their validation score) is written beside the preset.

Example:
    >>> dims = parse_space({"lr": {"log": [0.001, 0.1]}}, where="example")
    >>> dims[0].describe()
    'lr ~ log-uniform [0.001, 0.1]'
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replaybench.errors import ConfigError, require_extra
from replaybench.executors import Executor, Task, stream_key
from replaybench.leaderboards.boards import BUDGET_KEYS, Board
from replaybench.leaderboards.presets import Preset, board_options, declared_options
from replaybench.registry import AGENTS
from replaybench.runner import RunSpec, agent_class_and_config, agent_kinds, make_stream

SPACES_FILE = Path(__file__).resolve().parent / "search_spaces.toml"
DEFAULT_TRIALS = 16
"""The trial budget of every agent's search."""
DEFAULT_BATCH = 1
"""Trials of each agent per round; the shipped presets were searched this way."""
STARTUP_TRIALS = 6
"""Random trials before TPE models the scores."""
SAMPLER_SEED = 0
VALIDATION_FRACTION = 0.2
TUNE_SEEDS = (0,)
"""The run seeds a trial is scored on (the mean ACC over them and the board's streams)."""
AVALANCHE_REFERENCES = ("Naive", "Replay", "EWC", "LwF", "GEM", "AGEM", "GDumb", "SynapticIntelligence")
"""Avalanche's strategies entered on every supervised board beside the built-in agents."""
KINDS = ("log", "uniform", "int", "choices")
PLASTICITY_FLOOR = 0.8
"""A trial whose validation plasticity falls below this is infeasible: a preset must learn each experience."""
NEAR_CHANCE = 2.0
"""A preset whose validation plasticity stays below this many times chance is flagged: it barely learns."""


@dataclass(frozen=True)
class Dimension:
    """One searched option: its (possibly dotted) name, its kind and its range or values."""

    name: str
    kind: str
    values: tuple[Any, ...]

    def suggest(self, trial: Any) -> Any:
        if self.kind == "choices":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(self.name, *self.values)
        return trial.suggest_float(self.name, *self.values, log=self.kind == "log")

    def describe(self) -> str:
        if self.kind == "choices":
            return f"{self.name} in {list(self.values)}"
        label = {"log": "log-uniform", "uniform": "uniform", "int": "integer"}[self.kind]
        return f"{self.name} ~ {label} [{self.values[0]}, {self.values[1]}]"


def parse_space(table: Mapping[str, Any], *, where: str) -> list[Dimension]:
    """Validate a table of dimensions (see ``search_spaces.toml``)."""
    dims = []
    for name, spec in table.items():
        if name.split(".")[0] in BUDGET_KEYS:
            raise ConfigError(f"{where} searches {name!r}, which a board's budget fixes.")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ConfigError(f"{where}: {name!r} must be one of {{{' | '.join(KINDS)} = [...]}}. Got {spec!r}.")
        kind, values = next(iter(spec.items()))
        ok = isinstance(values, list) and bool(values)
        if kind != "choices":
            ok = ok and len(values) == 2 and all(isinstance(v, (int, float)) for v in values) and values[0] < values[1]
            ok = ok and (kind != "log" or values[0] > 0) and (kind != "int" or all(isinstance(v, int) for v in values))
        if not ok:
            raise ConfigError(f"{where}: the range of {name!r} is malformed: {values!r}.")
        dims.append(Dimension(name, kind, tuple(values)))
    return dims


def load_spaces(path: Path = SPACES_FILE) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Malformed search space file {path}: {exc}.") from None


def agent_space(agent: str, spaces: Mapping[str, Any]) -> list[Dimension]:
    """The agent's dimensions: its own table, then the defaults for options its Config declares."""
    own = dict(spaces.get("agents", {}).get(agent, {}))
    declared = declared_options(agent)
    defaults = {k: v for k, v in spaces.get("defaults", {}).items() if k in declared and k not in own}
    dims = parse_space({**defaults, **own}, where=f"The search space of {agent!r}")
    for d in dims:
        if d.name.split(".")[0] not in declared:
            raise ConfigError(f"The search space of {agent!r} names {d.name!r}, which its Config does not declare.")
    return dims


def agent_fixed(agent: str, spaces: Mapping[str, Any]) -> dict[str, Any]:
    """Options set for the board but not searched (``[fixed.NAME]``), e.g. a readout choice."""
    fixed = dict(spaces.get("fixed", {}).get(agent, {}))
    declared = declared_options(agent)
    for name in fixed:
        if name.split(".")[0] in BUDGET_KEYS or name.split(".")[0] not in declared:
            raise ConfigError(f"[fixed.{agent}] sets {name!r}: a budget key or an option its Config does not declare.")
    return fixed


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "c": 2}`` -> ``{"a": {"b": 1}, "c": 2}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def memory_items(agent: str, board: Board, spaces: Mapping[str, Any], first_stream: Any) -> dict[str, Any]:
    """The board's memory budget in items, for an agent that counts its memory in items."""
    rule = spaces.get("memory_items", {}).get(agent)
    if rule is None or "memory_bytes" not in board.budget:
        return {}
    from replaybench.memories.reservoir import items_for_bytes

    items = items_for_bytes(int(board.budget["memory_bytes"]), first_stream.experiences[0].train_x[0])
    if rule.get("per_experience"):
        items //= len(first_stream.experiences)
    return {rule["option"]: max(1, int(items))}


def board_agents(board: Board, kinds: set[str]) -> list[str]:
    """Every registered agent whose kinds meet the board's, plus Avalanche's on supervised boards."""
    names = []
    for name in AGENTS.names():
        if "*" in name:
            continue
        cls, _ = AGENTS.load(name)
        if agent_kinds(name, cls) & kinds:
            names.append(name)
    if "supervised" in kinds:
        names += [f"avalanche:{s}" for s in AVALANCHE_REFERENCES]
    return names


def board_kinds(streams: Sequence[Any]) -> set[str]:
    return {e.kind for s in streams for e in s.experiences}


def allowed_agents(board: Board, *, data_dir: str | None = None, download: bool = False) -> list[str]:
    """The agents :func:`board_agents` lists for ``board``, its streams built to learn their kinds."""
    streams = [make_stream(s.name, data_dir=data_dir, download=download, **s.options) for s in board.streams]
    return board_agents(board, board_kinds(streams))


CONSTRAINT_KEY = "plasticity_shortfall"
"""Optuna's constraint value: feasible (<= 0) when the trial's validation plasticity reaches the floor."""


@dataclass
class _Search:
    agent: str
    study: Any
    dims: list[Dimension]
    fixed: dict[str, Any]
    trials: list[dict[str, Any]]


def tune(
    board: Board,
    agents: Sequence[str],
    *,
    executor: Executor,
    trials: int = DEFAULT_TRIALS,
    batch: int = DEFAULT_BATCH,
    seeds: Sequence[int] = TUNE_SEEDS,
    validation_fraction: float = VALIDATION_FRACTION,
    data_dir: str | None = None,
    download: bool = False,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> dict[str, Preset]:
    """Search every agent's space on ``board``'s validation split; return the chosen presets.

    An agent with nothing to search runs once, so its record still shows its validation score.
    A round asks ``batch`` trials of every agent and runs them on ``executor`` together; with
    one agent, ``batch`` is how many runs are in flight (times the board's streams and seeds).
    """
    optuna = require_extra("optuna", "tune", "leaderboard tune")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if trials < 1:
        raise ConfigError(f"The number of trials must be at least 1. Got {trials!r} instead.")
    if batch < 1:
        raise ConfigError(f"The 'batch' parameter of tune must be an int in the range [1, inf). Got {batch!r} instead.")
    spaces = load_spaces()
    streams = {}
    specs_streams = []
    for bs in board.streams:
        options = {**bs.options, "validation_fraction": validation_fraction}
        try:
            stream = make_stream(bs.name, data_dir=data_dir, download=download, **options)
        except ConfigError as exc:
            if "validation_fraction" not in str(exc):
                raise
            raise ConfigError(
                f"Stream {bs.name!r} has no validation split (its builder takes no 'validation_fraction'), "
                f"so presets for board {board.name!r} cannot be chosen without its test split."
            ) from None
        key_spec = {"stream": bs.name, "stream_options": options, "data_dir": data_dir, "download": download}
        streams[stream_key(key_spec)] = stream
        specs_streams.append((bs.name, options))
    first = next(iter(streams.values()))
    searches = []
    for agent in agents:
        agent_class_and_config(agent, {})  # an unknown name fails here, before any run
        dims = agent_space(agent, spaces)
        sampler = optuna.samplers.TPESampler(seed=SAMPLER_SEED, n_startup_trials=STARTUP_TRIALS)
        study = optuna.create_study(direction="maximize", sampler=sampler, study_name=f"{board.name}:{agent}")
        fixed = {**agent_fixed(agent, spaces), **memory_items(agent, board, spaces, first)}
        searches.append(_Search(agent, study, dims, fixed, []))
    executor.start(min(batch, trials) * len(searches) * len(specs_streams) * len(seeds))
    rounds = -(-trials // batch)
    try:
        for round_ in range(rounds):
            asked: list[tuple[_Search, Any, dict[str, Any], list[str]]] = []
            tasks = []
            for search in searches:
                # An agent with nothing to search runs once; the others ask the round's trials in order.
                n = min(batch, trials - round_ * batch) if search.dims else int(round_ == 0)
                for _ in range(n):
                    trial = search.study.ask()
                    values = {d.name: d.suggest(trial) for d in search.dims}
                    options, _ = board_options(board, search.agent, nest({**search.fixed, **values}), use_preset=False)
                    ids = []
                    for stream_name, stream_options in specs_streams:
                        for seed in seeds:
                            spec = RunSpec(
                                stream=stream_name,
                                agent=search.agent,
                                seed=seed,
                                agent_options=options,
                                stream_options=stream_options,
                                data_dir=data_dir,
                                download=download,
                                device=device,
                            )
                            task_id = f"{spec.run_id}__trial{trial.number}"
                            tasks.append(Task(task_id, spec.to_dict()))
                            ids.append(task_id)
                    asked.append((search, trial, values, ids))
            if not asked:
                break
            outcomes = {outcome.run_id: outcome for outcome in executor.run(tasks, streams=streams)}
            # Told in trial order, and every mean taken in task order: arrival order changes nothing.
            told = []
            for search, trial, values, ids in asked:
                record: dict[str, Any] = {"number": trial.number, "values": values}
                failed = [outcomes[i].failure for i in ids if outcomes[i].result is None]
                if failed:
                    search.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    record["failed"] = f"{failed[0]['kind']}: {failed[0]['error']}"  # type: ignore[index]
                else:
                    metrics = [outcomes[i].result["metrics"] for i in ids]  # type: ignore[index]
                    record["validation_acc"] = sum(float(m["acc"]) for m in metrics) / len(metrics)
                    record["validation_plasticity"] = sum(float(m["plasticity"]) for m in metrics) / len(metrics)
                    trial.set_constraint(CONSTRAINT_KEY, PLASTICITY_FLOOR - record["validation_plasticity"])
                    search.study.tell(trial, record["validation_acc"])
                search.trials.append(record)
                told.append(
                    f"{search.agent}#{trial.number}="
                    + (f"{record['validation_acc']:.3f}" if "validation_acc" in record else "FAILED")
                )
            done = ", ".join(told)
            log(f"round {round_ + 1}/{rounds}: {done}")
    finally:
        executor.close()
    engine = (
        f"optuna {optuna.__version__} TPESampler(seed={SAMPLER_SEED}, n_startup_trials={STARTUP_TRIALS}), "
        "ask-and-tell on the replaybench executors" + (f", {batch} trials per agent per round" if batch != 1 else "")
    )
    chance = max((1.0 / s.n_classes for s in streams.values() if getattr(s, "n_classes", 0)), default=0.0)
    return {s.agent: _preset(s, trials, seeds, validation_fraction, engine, chance) for s in searches}


def _preset(
    search: _Search, trials: int, seeds: Sequence[int], validation_fraction: float, engine: str, chance: float
) -> Preset:
    scored = [t for t in search.trials if "validation_acc" in t]
    record: dict[str, Any] = {
        "engine": engine,
        "objective": (
            "mean validation ACC over the board's streams and the seeds, among trials whose validation "
            f"plasticity is at least {PLASTICITY_FLOOR} (all trials if none is)"
        ),
        "validation_fraction": validation_fraction,
        "seeds": list(seeds),
        "trial_budget": trials,
        "space": [d.describe() for d in search.dims],
        "fixed": dict(search.fixed),
        "trials": search.trials,
    }
    if not scored:
        return Preset(
            search.agent,
            nest(search.fixed),
            {**record, "chosen": None},
            note=f"every trial failed; the first: {search.trials[0].get('failed', '?')}",
        )
    feasible = [t for t in scored if t["validation_plasticity"] >= PLASTICITY_FLOOR] or scored
    best = max(feasible, key=lambda t: (t["validation_acc"], -t["number"]))  # ties: the earliest
    record.update(
        chosen=best["values"],
        validation_acc=best["validation_acc"],
        validation_plasticity=best["validation_plasticity"],
        plasticity_floor=PLASTICITY_FLOOR,
    )
    note = ""
    if best["validation_plasticity"] < NEAR_CHANCE * chance:
        note = (
            f"near chance after its search: validation plasticity {best['validation_plasticity']:.3f} "
            f"(chance {chance:.2f})"
        )
    return Preset(search.agent, nest({**search.fixed, **best["values"]}), record, note)
