"""Conformance checks: hold an agent, a stream or a memory to its contract.

Like gymnasium's ``check_env`` and scikit-learn's ``check_estimator``: each
``check_*`` function exercises the real object on a tiny budget and returns a
:class:`~replaybench.check_report.CheckReport`, one line per check (PASS,
FAIL with a one-line reason, or SKIP). A check that raises fails alone; the
others still run where they can. ``replaybench check agent|stream|memory``
prints the report and exits with 1 when a check fails.

- :func:`check_agent` (here): kinds and query methods, the config's round
  trip, what ``learn`` returns, the shapes and values of ``predict`` /
  ``embed`` / ``act``, the optional hooks, same-seed determinism of the
  runner's R, and the ``state_dict`` round trip where offered, all on a
  tiny stream (:func:`tiny_stream`).
- :func:`check_stream` (:mod:`replaybench.stream_checks`): identity,
  fingerprint stability, experiences, tensor shapes and dtypes, labels and
  classes, task ids, RL environments, the optional stream hooks.
- :func:`check_memory` (:mod:`replaybench.memory_checks`): the
  :class:`~replaybench.protocols.Memory` protocol; :data:`MEMORIES` names
  the built-in memories.

Example:
    >>> print(check_agent("naive").format())  # doctest: +SKIP
    agent 'naive' on split-digits[tiny]
    PASS  resolve: replaybench.agents.naive:NaiveAgent
    PASS  kinds: supervised -> predict()
    ...
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from replaybench.check_report import CheckFailed, CheckReport, CheckSkipped, expect
from replaybench.errors import AgentError, ConfigError, DataMissingError, one_line
from replaybench.memory_checks import MEMORIES, check_memory
from replaybench.params import build_config, config_to_dict, parse_option
from replaybench.protocols import (
    OPTIONAL_HOOKS,
    QUERY_METHOD,
    CountsState,
    EpisodeAware,
    Experience,
    KeepsEpochLosses,
    KeepsTrainingCurve,
    Stream,
)
from replaybench.registry import AGENTS
from replaybench.runner import (
    RunSpec,
    agent_class_and_config,
    agent_kinds,
    build_agent,
    make_stream,
    missing_query_methods,
    run,
    seed_everything,
    state_parts_of,
)
from replaybench.stream_checks import TINY, TinySize, check_stream, tiny_stream

__all__ = [
    "CheckReport",
    "TinySize",
    "TINY",
    "MEMORIES",
    "check_agent",
    "check_memory",
    "check_stream",
    "register_check_command",
    "tiny_stream",
]


# --- agents ---------------------------------------------------------------------------------
DEFAULT_STREAMS: dict[str, str] = {
    "supervised": "split-digits",
    "unsupervised": "unsup-split-digits",
    "sequence": "flipflop-periods",
    "rl": "cartpole-conflict",
}
"""The stream an agent is checked on, by the first of its kinds in this order."""

FAST_OPTIONS: dict[str, Any] = {
    "epochs": 1,  # passes over an experience (PPO: over a rollout)
    "updates": 20,  # sequence agents' minibatch updates per experience
    "learning_starts": 50,  # DQNs: learn within the tiny step budget...
    "train_every": 4,  # ...every 4 env steps
    "rollout_steps": 32,  # PPO: 4 envs x 32 steps per iteration
    "batch_size": 16,
    "fisher_samples": 32,
    "src_steps_scale": 0.01,  # 150-350 SRC sleep steps instead of 15,000-35,000
    "recall_steps": 30,
    "time_steps": 20,  # spiking presentation length
}
"""Option overrides for a quick check, applied to whichever fields an agent's Config has (and the user did not set)."""


def _fast_options(spec: str, config: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` plus the :data:`FAST_OPTIONS` the config has, unless they make an invalid config."""
    names = {f.name for f in dataclasses.fields(config)}
    candidates = {k: v for k, v in FAST_OPTIONS.items() if k in names and k not in options}
    fast = {**candidates, **options}
    try:
        agent_class_and_config(spec, fast)
    except ConfigError:  # e.g. a cross-field constraint a small value breaks: keep only those that build alone
        fast = dict(options)
        for key, value in candidates.items():
            try:
                agent_class_and_config(spec, {**fast, key: value})
            except ConfigError:
                continue
            fast[key] = value
    return fast


def _check_stats(stats: Any, index: int) -> None:
    if stats is None:
        return
    expect(
        isinstance(stats, Mapping),
        f"learn returned {type(stats).__name__} on experience {index}; expected None or a mapping of str to numbers",
    )
    for key, value in stats.items():
        expect(
            isinstance(key, str) and isinstance(value, numbers.Real),
            f"learn's statistics hold {key!r}: {value!r} ({type(value).__name__}) on experience {index}; "
            "expected str keys and numbers",
        )


def _check_curve(agent: Any, experience: Experience) -> None:
    curve = list(agent.last_curve)
    steps = [point[0] for point in curve]
    expect(
        all(len(point) == 2 and all(isinstance(v, numbers.Real) for v in point) for point in curve),
        f"last_curve after experience {experience.index} holds something other than (step, return) pairs",
    )
    expect(
        steps == sorted(steps) and all(0 < s <= experience.step_budget for s in steps),
        f"last_curve's steps after experience {experience.index} are not increasing within "
        f"(0, {experience.step_budget}]",
    )


def _check_epoch_losses(agent: Any, experience: Experience) -> list[float]:
    """``last_epoch_losses`` after ``experience``: finite reals, as the runner stores them."""
    losses = list(agent.last_epoch_losses)
    expect(
        all(isinstance(v, numbers.Real) and math.isfinite(v) for v in losses),
        f"last_epoch_losses after experience {experience.index} holds something other than finite numbers",
    )
    return [float(v) for v in losses]


def _check_state_bytes(agent: Any, experience: Experience) -> dict[str, int]:
    """``state_bytes()`` after ``experience``, held to the runner's rule (a mapping of str to non-negative ints)."""
    try:
        return state_parts_of(agent, type(agent).__name__, experience.index)
    except AgentError as exc:
        raise CheckFailed(str(exc)) from None


def _query(agent: Any, experience: Experience, stream: Stream, batch: int = 8) -> Any:
    """The agent's answer to a few test inputs of ``experience``, checked against its kind's contract."""
    where = f"on experience {experience.index}"
    if experience.kind == "rl":
        seeds, factory = list(experience.info.get("eval_seeds", (0, 1)))[:2], experience.env_factory
        if factory is None:
            raise CheckFailed(f"experience {experience.index} is rl but has no env_factory")
        envs = [factory(s) for s in seeds]
        try:
            obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)])
            if isinstance(agent, EpisodeAware):
                agent.begin_episodes(len(seeds))
            actions = np.asarray(agent.act(obs, experience.task_id))
            expect(
                actions.ndim >= 1 and len(actions) == len(seeds),
                f"act returned shape {actions.shape} for {len(seeds)} observations {where}; expected one per row",
            )
            for action in actions:
                expect(
                    envs[0].action_space.contains(action),
                    f"act returned {action!r} {where}, not in {envs[0].action_space}",
                )
            return actions
        finally:
            for env in envs:
                env.close()
    if experience.test_x is None:
        raise CheckFailed(f"experience {experience.index} has no test_x to query the agent on")
    x = experience.test_x[:batch]
    if experience.kind == "unsupervised":
        out = agent.embed(x)
        expect(
            isinstance(out, torch.Tensor) and out.is_floating_point(),
            f"embed returned {type(out).__name__} {getattr(out, 'dtype', '')} {where}; expected a float tensor",
        )
        expect(
            out.ndim == 2 and len(out) == len(x) and out.shape[1] > 0,
            f"embed returned shape {tuple(out.shape)} for {len(x)} inputs {where}; expected [{len(x)}, F]",
        )
        expect(bool(torch.isfinite(out).all()), f"embed returned NaN or inf {where}")
        return out.detach().cpu()
    out = agent.predict(x, experience.task_id)
    expect(
        isinstance(out, torch.Tensor) and out.is_floating_point(),
        f"predict returned {type(out).__name__} {getattr(out, 'dtype', '')} {where}; expected float logits",
    )
    if experience.kind == "sequence":
        width = experience.info.get("d_out")
        expected = (*x.shape[:-1], width if width is not None else out.shape[-1])
        expect(
            tuple(out.shape) == expected,
            f"predict returned shape {tuple(out.shape)} {where}; expected {list(expected)} ([B, T, d_out])",
        )
        expect(bool(torch.isfinite(out).all()), f"predict returned NaN or inf {where}")
    else:
        expect(
            tuple(out.shape) == (len(x), stream.n_classes),
            f"predict returned shape {tuple(out.shape)} {where}; expected [{len(x)}, {stream.n_classes}]",
        )
        expect(
            not bool(torch.isnan(out).any() or torch.isposinf(out).any()),
            f"predict returned NaN or +inf {where} (-inf may mask a class; NaN and +inf may not)",
        )
    return out.detach().cpu()


def _reason(action: Callable[[], Any]) -> Any:
    """``action()``, its :class:`ConfigError` turned into the check's reason (the message says it all)."""
    try:
        return action()
    except ConfigError as exc:
        raise CheckFailed(str(exc)) from None


@dataclass
class _Exercise:
    """What one agent did on the tiny stream: its answers (in call order) and the problems found, per check."""

    answers: list[tuple[str, Any]] = field(default_factory=list)
    """``(what was asked, the answer)``: queries, learn's numeric statistics, training curves."""
    problems: dict[str, str] = field(default_factory=dict)
    learned: int = 0


def _exercise(agent: Any, tiny: Stream, query_check: str) -> _Exercise:
    """Query every experience, then learn each one in turn and query every experience again.

    A failing step is noted under its check (the first problem of each
    check is kept) and the exercise goes on where it can: a failing query
    does not stop learning, a failing ``learn`` stops it.
    """
    done = _Exercise()

    def attempt(check: str, context: str, action: Callable[..., Any], *args: Any) -> Any:
        try:
            return action(*args)
        except CheckFailed as failure:
            done.problems.setdefault(check, str(failure))
        except Exception as exc:  # an agent that raises fails the check it was in, and the exercise goes on
            done.problems.setdefault(check, f"raised {one_line(exc)} {context}".strip())
        return None

    def query_all(context: str) -> None:
        for experience in tiny.experiences:
            where = f"on experience {experience.index} {context}"
            done.answers.append(
                (f"{query_check} {where}", attempt(query_check, where, _query, agent, experience, tiny))
            )

    query_all("before learning")
    for experience in tiny.experiences:
        stats = attempt("learn", f"on experience {experience.index}", agent.learn, experience)
        if "learn" in done.problems:
            break
        done.learned += 1
        numbers_only = (
            {k: v for k, v in stats.items() if isinstance(v, numbers.Real)} if isinstance(stats, Mapping) else None
        )  # a malformed statistic is the learn check's, not compared
        done.answers.append((f"learn's statistics on experience {experience.index}", numbers_only))
        attempt("learn", "", _check_stats, stats, experience.index)
        if isinstance(agent, KeepsTrainingCurve):
            attempt("hooks", "", _check_curve, agent, experience)
            done.answers.append((f"last_curve after experience {experience.index}", list(agent.last_curve)))
        if isinstance(agent, KeepsEpochLosses):
            losses = attempt("hooks", "", _check_epoch_losses, agent, experience)
            done.answers.append((f"last_epoch_losses after experience {experience.index}", losses))
        if isinstance(agent, CountsState):
            parts = attempt("hooks", "", _check_state_bytes, agent, experience)
            done.answers.append((f"state_bytes after experience {experience.index}", parts))
        query_all(f"after learning experience {experience.index}")
    return done


def _first_difference(first: list[tuple[str, Any]], second: list[tuple[str, Any]]) -> str | None:
    """What was asked when the answers first differ, or None when they are identical."""
    for (asked, a), (_, b) in zip(first, second):
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            same = (
                isinstance(a, torch.Tensor)
                and isinstance(b, torch.Tensor)
                and a.shape == b.shape
                and bool(((a == b) | (a.isnan() & b.isnan())).all())
            )  # NaN is the query check's, not this one's
        elif isinstance(a, Mapping) and isinstance(b, Mapping):
            same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
        else:
            same = a is b or np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
        if not same:
            return asked
    if len(first) != len(second):
        return f"the number of calls ({len(first)} vs {len(second)})"
    return None


def check_agent(
    spec: str,
    *,
    stream: str | None = None,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    data_dir: str | None = None,
) -> CheckReport:
    """Check agent ``spec`` (a registered name, ``module:Class`` or ``file.py:Class``) on a tiny stream.

    Args:
        spec: The agent, as the registry takes it.
        stream: A registered stream to cut down (default: by the agent's
            kinds, :data:`DEFAULT_STREAMS`).
        options: Agent options; :data:`FAST_OPTIONS` are added where the
            config has those fields and ``options`` does not set them.
        seed: The seed of every build and run.
        data_dir: Where ``stream``'s data lives.

    Returns:
        The report: resolve, kinds, config, stream, build, learn, the query
        methods, hooks, state_dict and determinism.
    """
    options = dict(options or {})
    report = CheckReport(f"agent {spec!r}")
    found: dict[str, Any] = {}

    def resolve() -> str:
        found["cls"], registered = AGENTS.load(spec)
        expect(isinstance(found["cls"], type), f"{registered.entry_point} is {found['cls']!r}, not a class")
        return registered.entry_point

    if not report.run("resolve", resolve):
        return report

    def kinds() -> str:
        declared = _reason(lambda: agent_kinds(spec, found["cls"]))
        missing = missing_query_methods(found["cls"], declared)
        expect(not missing, f"declares kinds without their query methods ({', '.join(missing)})")
        found["kinds"] = declared
        return ", ".join(f"{k} -> {QUERY_METHOD[k]}()" for k in sorted(declared))

    def config() -> str:
        _, built = _reason(lambda: agent_class_and_config(spec, options))
        again = build_config(type(built), config_to_dict(built), owner=f"agent {spec!r}")
        changed = [f.name for f in dataclasses.fields(built) if getattr(again, f.name) != getattr(built, f.name)]
        expect(
            again == built,
            f"the config does not round-trip through config_to_dict/build_config "
            f"(fields {changed or 'none, yet it compares unequal'})",
        )
        found["options"] = _fast_options(spec, built, options)
        return f"{type(built).__qualname__} round-trips"

    has_kinds, has_config = report.run("kinds", kinds), report.run("config", config)
    if not has_config or not (has_kinds or stream):
        return report
    name = stream or next(DEFAULT_STREAMS[k] for k in DEFAULT_STREAMS if k in found["kinds"])
    try:
        tiny = tiny_stream(make_stream(name, data_dir=data_dir))
    except DataMissingError as exc:
        report.record("stream", None, f"{name}: data missing ({one_line(exc, with_type=False)})")
        return report
    except Exception as exc:  # a stream that fails to build or to be cut down ends the agent's checks here
        report.record("stream", False, f"{name}: raised {one_line(exc)}")
        return report
    report.target = f"agent {spec!r} on {tiny.name}"
    report.record("stream", True, f"{tiny.name}: {len(tiny.experiences)} experiences")
    agent_options = found["options"]

    def fresh_agent() -> Any:
        seed_everything(seed)  # as the runner does before it builds an agent
        return _reason(lambda: build_agent(spec, tiny, seed=seed, options=agent_options, device="cpu")[0])

    def build() -> str:
        found["agent"] = fresh_agent()
        fast = [k for k in agent_options if k not in options]
        return f"options {agent_options}" + (f" ({', '.join(fast)} from FAST_OPTIONS)" if fast else "")

    if not report.run("build", build):
        return report
    agent, query_check = found["agent"], "/".join(sorted({QUERY_METHOD[e.kind] for e in tiny.experiences}))
    done = _exercise(agent, tiny, query_check)
    problems = done.problems
    report.record("learn", "learn" not in problems, problems.get("learn", f"{done.learned} experiences"))
    report.record(
        query_check,
        query_check not in problems,
        problems.get(query_check, "answers fit their kinds before and after each experience"),
    )
    hooks = [
        hook
        for hook, (protocol, _) in OPTIONAL_HOOKS.items()
        if protocol in (EpisodeAware, KeepsTrainingCurve, KeepsEpochLosses, CountsState) and isinstance(agent, protocol)
    ]
    report.record(
        "hooks",
        None if not hooks else "hooks" not in problems,
        problems.get("hooks", ", ".join(hooks) if hooks else "no optional hooks"),
    )

    def state_round_trip() -> str:
        offered = [m for m in ("state_dict", "load_state_dict") if callable(getattr(agent, m, None))]
        if not offered:
            raise CheckSkipped("the agent offers no state_dict/load_state_dict")
        expect(len(offered) == 2, f"the agent offers {offered[0]} without its counterpart")
        loaded = fresh_agent()
        loaded.load_state_dict(agent.state_dict())
        differ = [
            e.index
            for e in tiny.experiences
            if _first_difference([("", _query(agent, e, tiny))], [("", _query(loaded, e, tiny))]) is not None
        ]
        expect(
            not differ, f"a fresh agent loaded with the trained one's state answers differently on experiences {differ}"
        )
        return "a fresh agent loaded with the trained state answers identically"

    def determinism() -> str:
        again = _exercise(fresh_agent(), tiny, query_check)
        asked = _first_difference(done.answers, again.answers)
        expect(asked is None, f"a second agent with seed {seed} answered differently: {asked}")
        runs = [
            run(RunSpec(stream=tiny.name, agent=spec, seed=seed, agent_options=agent_options), stream=tiny)
            for _ in range(2)
        ]
        first, second = (np.array(r.R, dtype=float) for r in runs)
        expect(
            np.array_equal(first, second, equal_nan=True),
            f"two runs with seed {seed} gave different R (max |dR| = {np.nanmax(np.abs(first - second)):.3g})",
        )
        base_first, base_second = (np.array(r.baseline, dtype=float) for r in runs)
        expect(
            np.array_equal(base_first, base_second, equal_nan=True),
            f"two runs with seed {seed} gave different baselines",
        )
        return f"identical answers and R ({first.shape[0]}x{first.shape[1]}) over two agents with seed {seed}"

    report.run("state_dict", state_round_trip)
    report.run("determinism", determinism)
    return report


# --- the command ----------------------------------------------------------------------------
def _print_report(report: CheckReport) -> int:
    """Print the report; the exit code is 1 when a check failed."""
    print(report.format())
    return 0 if report.ok else 1


def _cmd_check_agent(args: argparse.Namespace) -> int:
    options = dict(parse_option(o) for o in args.option)
    return _print_report(
        check_agent(args.spec, stream=args.stream, options=options, seed=args.seed, data_dir=args.data_dir)
    )


def _cmd_check_stream(args: argparse.Namespace) -> int:
    options = dict(parse_option(o) for o in args.option)
    return _print_report(check_stream(args.spec, options=options, data_dir=args.data_dir, download=args.download))


def _cmd_check_memory(args: argparse.Namespace) -> int:
    case = MEMORIES[args.name]
    return _print_report(check_memory(case.factory, items=case.items, name=args.name))


def register_check_command(subparsers: Any, parents: list | None = None) -> None:
    """Add ``check agent SPEC``, ``check stream SPEC`` and ``check memory NAME`` to a CLI's subparsers.

    Each prints its report and returns the exit code: 1 when a check failed.
    """
    parents = list(parents or [])
    parser = subparsers.add_parser(
        "check", parents=parents, help="conformance checks of an agent, a stream or a memory"
    )
    sub = parser.add_subparsers(dest="check_command", required=True)
    agent = sub.add_parser(
        "agent", parents=parents, help="check an agent on a tiny stream (name, module:Class or file.py:Class)"
    )
    agent.add_argument("spec", help="an agent name, 'package.module:Class' or 'path/to/file.py:Class'")
    agent.add_argument("--stream", help="a stream to cut down and check on (default: by the agent's kinds)")
    agent.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="agent option")
    agent.add_argument("--seed", type=int, default=0)
    agent.add_argument("--data-dir", help="folder holding the stream's dataset files")
    agent.set_defaults(func=_cmd_check_agent)
    stream = sub.add_parser("stream", parents=parents, help="check a registered stream (missing data is skipped)")
    stream.add_argument("spec", help="a stream name (see 'replaybench list streams')")
    stream.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="stream option")
    stream.add_argument("--data-dir", help="folder holding dataset files")
    stream.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    stream.set_defaults(func=_cmd_check_stream)
    memory = sub.add_parser("memory", parents=parents, help="check a built-in memory against the Memory protocol")
    memory.add_argument("name", choices=sorted(MEMORIES))
    memory.set_defaults(func=_cmd_check_memory)
