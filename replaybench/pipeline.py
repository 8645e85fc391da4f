"""One pipeline for every command: plans → validation → executor → outcomes → sinks.

``run``, ``quick``, ``submit`` and ``sweep`` all come here. A command turns
its input into :class:`PlannedRun`\\ s, :func:`validate` refuses a bad one
before any work (unknown names and options, missing data, an agent that
cannot be built), and :func:`run_pipeline` runs them on an executor
(:mod:`replaybench.executors`: inline, local pool, Ray, Slurm) and hands
each outcome, finished or failed, to every sink in order:

- :class:`replaybench.results.ResultsFolder`: the results JSON and heatmap,
  or the failure record;
- the store's rows, a board's rows and W&B, which live in
  ``replaybench.leaderboards`` and are handed in by the CLI, so the core
  imports none of them.

A sink writes what it is given at once, so an interruption loses only the
runs in flight. Sinks may leave what they wrote in the outcome's
``artifacts`` for the sinks after them (the store records the results path).

Example:
    >>> from replaybench.executors import InlineExecutor
    >>> from replaybench.runner import RunSpec
    >>> plans = plan([RunSpec(stream="split-digits", agent="naive", seed=0)])
    >>> report = run_pipeline(plans, executor=InlineExecutor(), sinks=[])  # doctest: +SKIP
    >>> report.exit_code  # doctest: +SKIP
    0
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from replaybench import progress
from replaybench.errors import ConfigError
from replaybench.executors import Executor, Task, stream_key
from replaybench.results import RunResult
from replaybench.runner import RunSpec, agent_class_and_config, build_agent, check_device, make_stream, seed_everything

EXIT_OK = 0
"""Every run finished."""
EXIT_RUNS_FAILED = 1
"""Some runs failed (raised, diverged, timed out, lost their worker); the others are kept."""
EXIT_BAD_INPUT = 2
"""Refused before any work: an unknown name, a malformed config, missing data, a bad output folder."""


@dataclass(frozen=True)
class PlannedRun:
    """One run of a command: its identity (file stem, resume key) and its spec."""

    run_id: str
    spec: RunSpec


def plan(specs: Iterable[RunSpec]) -> list[PlannedRun]:
    """Give each spec its identity, in order; a spec given twice is refused."""
    plans: dict[str, PlannedRun] = {}
    for spec in specs:
        run_id = spec.run_id
        if run_id in plans:
            raise ConfigError(
                f"Run {run_id} is asked for twice (a repeated seed, agent or option value); remove the repeat."
            )
        plans[run_id] = PlannedRun(run_id, spec)
    return list(plans.values())


@dataclass
class RunOutcome:
    """What one run came to, as the sinks see it."""

    plan: PlannedRun
    result: RunResult | None
    failure: dict[str, Any] | None
    """``{"kind", "error", "traceback"}``; kind is "raised", "nan", "timeout" or "crashed"."""
    seconds: float | None
    host: str | None
    resumed: bool = False
    """Finished (or failed, and not to be rerun) before this invocation: sinks that write
    files leave it alone; sinks that keep rows add any row a kill lost."""
    artifacts: dict[str, str] = field(default_factory=dict)
    """What earlier sinks wrote for this run: ``"results"`` (a path), ``"wandb"`` (a run path)."""

    @property
    def ok(self) -> bool:
        return self.result is not None


class Sink(Protocol):
    """Where outcomes go. ``open`` may refuse (a :class:`ConfigError`) before any run starts."""

    def open(self, plans: Sequence[PlannedRun]) -> None: ...

    def record(self, outcome: RunOutcome) -> None: ...

    def close(self, *, interrupted: bool) -> None:
        """After the last outcome, or after an interruption (then some plans have no outcome)."""
        ...


@dataclass
class PipelineReport:
    """What a pipeline run did."""

    plans: list[PlannedRun]
    results: dict[str, RunResult] = field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Failure records (as in ``<run id>.failed.json``: run_id, spec, kind, error, traceback, ...)."""
    executed: list[str] = field(default_factory=list)
    """Runs executed by this invocation, in completion order."""
    skipped: list[str] = field(default_factory=list)
    """Runs finished (or failed for good) before it."""

    @property
    def exit_code(self) -> int:
        return EXIT_RUNS_FAILED if self.failures else EXIT_OK

    def ordered_results(self) -> list[RunResult]:
        """The finished results in plan order."""
        return [self.results[p.run_id] for p in self.plans if p.run_id in self.results]


def start_and_validate(plans: Sequence[PlannedRun], executor: Executor, *, local_devices: bool) -> dict[str, Any]:
    """:func:`validate` while ``executor`` starts its workers; on bad input it is closed again."""
    executor.start(len(plans))
    try:
        return validate(plans, local_devices=local_devices)
    except BaseException:
        executor.close()
        raise


def validate(
    plans: Sequence[PlannedRun], *, local_devices: bool = True, streams: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Refuse a bad plan before any work; return the built streams by :func:`stream_key`.

    Every distinct agent and option set is resolved into its Config, every
    stream is built (missing data fails here), and every agent is built once
    on every stream it will meet, so that an ``__init__`` that raises or
    cannot allocate its network, or a kind the agent does not support, stops
    the command before the first run. With ``local_devices`` (inline and
    local executors) a device this machine lacks is refused too. ``streams``
    (from an earlier call) are reused and added to, so plans checked in groups
    build each stream once.
    """
    if local_devices:
        for p in plans:
            check_device(p.spec.device, available=True)
    configs: set[str] = set()
    for p in plans:  # options first: cheap, and a typo should not wait for the streams to load
        key = _options_key(p.spec)
        if key not in configs:
            configs.add(key)
            agent_class_and_config(p.spec.agent, p.spec.agent_options)
    streams = {} if streams is None else streams
    for p in plans:
        key = stream_key(p.spec.to_dict())
        if key not in streams:
            streams[key] = make_stream(
                p.spec.stream, data_dir=p.spec.data_dir, download=p.spec.download, **p.spec.stream_options
            )
    built: set[tuple[str, str]] = set()
    for p in plans:
        pair = (_options_key(p.spec), stream_key(p.spec.to_dict()))
        if pair not in built:
            built.add(pair)
            seed_everything(p.spec.seed)
            build_agent(
                p.spec.agent, streams[pair[1]], seed=p.spec.seed, options=p.spec.agent_options, device=p.spec.device
            )
    return streams


def _options_key(spec: RunSpec) -> str:
    return json.dumps([spec.agent, dict(spec.agent_options), spec.device], sort_keys=True, default=str)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def estimated_cost(stream: Any) -> float:
    """A run's relative cost on ``stream``: the items it trains on plus the items scored into R.

    Only the order matters: a parallel executor starts the longest runs
    first, so that no long run is left alone at the end while workers idle.
    """
    cost = 0.0
    n = len(stream.experiences)
    for e in stream.experiences:
        if e.train_x is not None:
            cost += len(e.train_x) + n * (len(e.test_x) if e.test_x is not None else 0)
        else:  # rl: environment steps
            cost += e.step_budget
    return cost


def run_pipeline(
    plans: Sequence[PlannedRun],
    *,
    executor: Executor,
    sinks: Sequence[Sink] = (),
    streams: Mapping[str, Any] | None = None,
    finished: Mapping[str, RunResult] | None = None,
    failed: Mapping[str, Mapping[str, Any]] | None = None,
    description: str = "runs",
    show_progress: bool | None = None,
) -> PipelineReport:
    """Run ``plans`` on ``executor``; hand every outcome to ``sinks`` at once.

    Args:
        plans: What to run (validated by :func:`validate` beforehand).
        executor: Where runs execute; closed here, also after an interruption.
        sinks: Opened in order before any run, given every outcome in order,
            closed in order at the end (``interrupted=True`` after Ctrl-C or
            SIGTERM).
        streams: The streams :func:`validate` built: inline runs reuse them, and
            a parallel executor gets the runs longest first (:func:`estimated_cost`).
        finished: Results of plans finished before (a resumed sweep); they are
            not run again, and sinks see them as resumed outcomes.
        failed: Failure records of plans not to be rerun (``--skip-failed``).
        description: The progress bar's label.
        show_progress: A bar (default: when stderr is a terminal); without
            one, a line per outcome on stderr.
    """
    finished, failed = dict(finished or {}), dict(failed or {})
    report = PipelineReport(plans=list(plans))
    by_id = {p.run_id: p for p in plans}
    opened: list[Sink] = []
    interrupted = False
    try:
        for sink in sinks:
            sink.open(plans)
            opened.append(sink)
        for p in plans:
            if p.run_id in finished or p.run_id in failed:
                result, failure = finished.get(p.run_id), dict(failed.get(p.run_id) or {})
                seconds = result.costs.get("wall_seconds") if result is not None else failure.get("seconds")
                outcome = RunOutcome(
                    p, result, None if result is not None else failure, seconds, failure.get("host"), resumed=True
                )
                _hand_over(outcome, opened, report)
                report.skipped.append(p.run_id)
        todo = [Task(p.run_id, p.spec.to_dict()) for p in plans if p.run_id not in report.skipped]
        if streams and executor.name != "inline":
            costs = {key: estimated_cost(s) for key, s in streams.items()}
            todo.sort(key=lambda task: -costs.get(stream_key(task.spec), 0.0))  # stable: plan order among equals
        bar = sys.stderr.isatty() if show_progress is None else show_progress
        start = time.monotonic()
        with progress.session(bar):
            outcomes = executor.run(todo, streams=streams)
            for k, raw in enumerate(progress.track(outcomes, description, total=len(todo)), 1):
                result = RunResult.from_dict(raw.result) if raw.result is not None else None
                outcome = RunOutcome(by_id[raw.run_id], result, raw.failure, raw.seconds, raw.host)
                _hand_over(outcome, opened, report)
                report.executed.append(raw.run_id)
                if not bar:
                    eta = (time.monotonic() - start) / k * (len(todo) - k)
                    status = "done" if outcome.ok else f"FAILED ({outcome.failure['kind']}: {outcome.failure['error']})"  # type: ignore[index]
                    where = f" -> {outcome.artifacts['results']}" if "results" in outcome.artifacts else ""
                    _log(f"[{k}/{len(todo)}] {raw.run_id} {status} in {raw.seconds:.1f} s{where}; ETA {eta:.0f} s")
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        try:
            executor.close()
        finally:
            for sink in opened:
                sink.close(interrupted=interrupted)
    return report


def _hand_over(outcome: RunOutcome, sinks: Sequence[Sink], report: PipelineReport) -> None:
    for sink in sinks:
        sink.record(outcome)
    if outcome.result is not None:
        report.results[outcome.plan.run_id] = outcome.result
        report.failures.pop(outcome.plan.run_id, None)
    else:  # the shape of a failure record file
        report.failures[outcome.plan.run_id] = {
            "run_id": outcome.plan.run_id,
            "spec": outcome.plan.spec.to_dict(),
            "seconds": outcome.seconds,
            "host": outcome.host,
            **dict(outcome.failure or {}),
        }
