"""Sweeps: expand a grid of RunSpecs, run it with an executor, persist each run at once.

A sweep is streams × agents × option grid × seeds, read from a TOML file
and/or ``--agents/--streams/--seeds``. Each run has an identity, its
:func:`~replaybench.results.run_name` plus a hash of its options, so a changed
config is never mistaken for a finished one. In the output folder:

- ``<run id>.json`` (and ``.png``): a finished run, written atomically the
  moment its outcome reaches the driver;
- ``<run id>.failed.json``: a run that raised, produced a non-finite number,
  timed out or lost its worker, with its traceback.

Each outcome is also recorded at once as a row of the store's ``sweep_runs``
table (keyed by the folder and run id; ``store``, default the user's
leaderboard store), and with ``board`` as a leaderboard row too;
- ``sweep.json``: the expanded grid.

Resuming (``--resume``) skips every run whose ``.json`` exists and reruns
all others: those never started, those interrupted mid-run, and those that
failed (a failure may be transient: a timeout, a lost node). With
``--skip-failed`` a failure record counts as final and is not rerun. Without
``--resume``, a folder already holding runs of the same grid is refused.

Example TOML::

    streams = ["split-digits"]
    agents = ["naive", "er"]
    seeds = [0, 1, 2]
    executor = "local"
    workers = 2
    timeout_s = 600

    [agent_options]              # every agent
    epochs = 1
    [agent_options_by_agent.er]  # one agent
    memory_size = 200
    [grid]                       # the product of these values, for every agent
    lr = [0.01, 0.1]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replaybench import progress
from replaybench.errors import ConfigError
from replaybench.executors import EXECUTORS, Outcome, Task, make_executor
from replaybench.params import Config, InstanceOf, Interval, OneOf, Optional, param
from replaybench.results import RunResult, atomic_write_text, read_result, run_name, write_heatmap
from replaybench.runner import RunSpec

MANIFEST = "sweep.json"
FAILED_SUFFIX = ".failed.json"


def _mapping_field() -> Any:
    """A table-valued config field (empty by default)."""
    return field(default_factory=dict, metadata={"constraint": InstanceOf(Mapping)})


@dataclass(frozen=True)
class SweepConfig(Config):
    """A sweep: what to run, where, and with which executor (TOML keys = field names)."""

    owner_name = "sweep"
    streams: tuple = param((), InstanceOf(tuple))
    """Stream names."""
    agents: tuple = param((), InstanceOf(tuple))
    """Agent names (registered names or ``file.py:Class``)."""
    seeds: tuple = param((0,), InstanceOf(tuple))
    """Seeds; every (stream, agent, options) runs once per seed."""
    agent_options: Mapping[str, Any] = _mapping_field()
    """Options for every agent."""
    agent_options_by_agent: Mapping[str, Any] = _mapping_field()
    """Options for one agent, by name (win over ``agent_options``)."""
    grid: Mapping[str, Any] = _mapping_field()
    """Agent option name -> list of values; the sweep runs their product."""
    stream_options: Mapping[str, Any] = _mapping_field()
    """Stream builder overrides, for every stream."""
    out: str = param("replaybench-sweep", InstanceOf(str))
    """Results folder."""
    executor: str = param("local", OneOf(*EXECUTORS))
    """Where runs execute: inline, local, ray or slurm."""
    workers: int | None = param(None, Optional(Interval(int, 1, None)))
    """Parallel runs (local pool size, CPUs of a Ray cluster started here, Slurm array parallelism)."""
    timeout_s: float | None = param(None, Optional(Interval(float, 0, None, closed="neither")))
    """Per-run time limit in seconds; a run past it is recorded as failed."""
    address: str | None = param(None, Optional(InstanceOf(str)))
    """Ray cluster address ("auto", "ray://host:10001"); none starts a local cluster."""
    cluster: str | None = param(None, Optional(OneOf("slurm", "local", "debug")))
    """submitit cluster; none detects Slurm and falls back to local subprocesses."""
    partition: str | None = param(None, Optional(InstanceOf(str)))
    """Slurm partition."""
    board: str | None = param(None, Optional(InstanceOf(str)))
    """Record every finished run in the leaderboard store under this board."""
    store: str | None = param(None, Optional(InstanceOf(str)))
    """The store file that records every run (default: the user's leaderboard store)."""
    data_dir: str | None = param(None, Optional(InstanceOf(str)))
    download: bool = param(False, InstanceOf(bool))
    device: str = param("cpu", InstanceOf(str))

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("streams", "agents"):
            if not getattr(self, key) or not all(isinstance(v, str) for v in getattr(self, key)):
                raise ConfigError(f"The {key!r} parameter of sweep must be a non-empty list of names. "
                                  f"Got {list(getattr(self, key))!r} instead.")
        for key, values in self.grid.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"The grid entry {key!r} of sweep must be a non-empty list of values. "
                                  f"Got {values!r} instead.")

    def options_for(self, agent: str) -> list[dict[str, Any]]:
        """The agent's option sets: shared, then its own, then each grid point."""
        base = {**self.agent_options, **self.agent_options_by_agent.get(agent, {})}
        keys = list(self.grid)
        return [{**base, **dict(zip(keys, point))} for point in itertools.product(*(self.grid[k] for k in keys))]


def load_sweep_file(path: str | Path) -> dict[str, Any]:
    """Read a sweep TOML file into a dict for :meth:`SweepConfig.from_dict` (keys checked there)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"Sweep file not found: {p}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Malformed sweep file {p}: {exc}.") from None


# --- the grid ---------------------------------------------------------------------------
def options_hash(spec: RunSpec) -> str:
    """8 hex digits of SHA-256 over what changes a run's numbers besides its names and seed."""
    payload = {"agent_options": dict(spec.agent_options), "stream_options": dict(spec.stream_options),
               "device": spec.device}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_identity(spec: RunSpec) -> str:
    """``<stream>__<agent>__seed<k>__<options hash>``: the run's file name and resume key."""
    return f"{run_name(spec.stream, spec.agent, spec.seed)}__{options_hash(spec)}"


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    spec: RunSpec


def expand_grid(config: SweepConfig) -> list[PlannedRun]:
    """Every run of the sweep, in a stable order (stream, agent, option set, seed)."""
    plans: dict[str, PlannedRun] = {}
    for stream in config.streams:
        for agent in config.agents:
            for options in config.options_for(agent):
                for seed in config.seeds:
                    spec = RunSpec(stream=stream, agent=agent, seed=seed, agent_options=options,
                                   stream_options=config.stream_options, data_dir=config.data_dir,
                                   download=config.download, device=config.device)
                    run_id = run_identity(spec)
                    if run_id in plans:
                        raise ConfigError(f"The sweep lists run {run_id} twice; remove the repeated value.")
                    plans[run_id] = PlannedRun(run_id, spec)
    return list(plans.values())


def validate(config: SweepConfig, plans: Sequence[PlannedRun]) -> dict[str, Any]:
    """Check every agent's options and build every stream before any work; return the streams."""
    from replaybench.runner import agent_class_and_config, make_stream

    seen: set[str] = set()
    for plan in plans:
        key = json.dumps([plan.spec.agent, dict(plan.spec.agent_options)], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            agent_class_and_config(plan.spec.agent, plan.spec.agent_options)
    return {s: make_stream(s, data_dir=config.data_dir, download=config.download, **config.stream_options)
            for s in config.streams}


# --- the folder -------------------------------------------------------------------------
def result_path(out: Path, run_id: str) -> Path:
    return out / f"{run_id}.json"


def failure_path(out: Path, run_id: str) -> Path:
    return out / f"{run_id}{FAILED_SUFFIX}"


def read_completed(out: Path, run_id: str) -> RunResult | None:
    """The finished result of ``run_id``, or None (absent or unreadable: it reruns)."""
    path = result_path(out, run_id)
    if not path.is_file():
        return None
    try:
        return read_result(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def persist(out: Path, outcome: Outcome, spec: RunSpec, *, plots: bool) -> tuple[Path, RunResult | None]:
    """Write a finished run's result (or failure record) atomically; return its path and result."""
    if outcome.result is not None:
        result = RunResult.from_dict(outcome.result)
        path = result_path(out, outcome.run_id)
        atomic_write_text(path, json.dumps(result.to_dict(), indent=1))
        if plots:
            write_heatmap(result, path.with_suffix(".png"))
        failure_path(out, outcome.run_id).unlink(missing_ok=True)
        return path, result
    path = failure_path(out, outcome.run_id)
    record = {"run_id": outcome.run_id, "spec": spec.to_dict(), **outcome.failure,
              "seconds": outcome.seconds, "host": outcome.host,
              "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_text(path, json.dumps(record, indent=1))
    return path, None


# --- the store --------------------------------------------------------------------------
class BoardRecorder:
    """Records finished runs as rows of the leaderboard store, one submission per agent config.

    A submission stays 'running' until all its planned runs are recorded. A
    resumed sweep finds its submission again (same board version, agent,
    config hash and display name, not 'failed') and adds only missing rows.
    """

    def __init__(self, *, board: str, store: Any, plans: Sequence[PlannedRun],
                 streams: Mapping[str, Any], display_name: str) -> None:
        from replaybench.leaderboards.boards import load_board

        self.board = load_board(board)
        for name, stream in streams.items():
            self.board.check_fingerprint(name, stream.fingerprint)
        off_board = sorted({p.spec.seed for p in plans} - set(self.board.seeds))
        if off_board:
            raise ConfigError(f"Seeds {off_board} are not on board {self.board.name!r} (its seeds: {list(self.board.seeds)}).")
        self.store = store
        self.display_name = display_name
        self._planned: dict[str, set[tuple[str, int]]] = {}
        self._submissions: dict[str, int] = {}
        self._recorded: dict[int, set[tuple[str, int]]] = {}
        self._complete: set[int] = set()
        for plan in plans:
            self._planned.setdefault(self._key(plan.spec), set()).add((plan.spec.stream, plan.spec.seed))

    @staticmethod
    def _key(spec: RunSpec) -> str:
        return json.dumps([spec.agent, dict(spec.agent_options)], sort_keys=True, default=str)

    def _submission(self, spec: RunSpec, result: RunResult) -> int:
        from replaybench.provenance import agent_source_files, config_hash, source_hash
        from replaybench.registry import AGENTS

        key = self._key(spec)
        if key not in self._submissions:
            config = result.provenance.get("config", dict(spec.agent_options))
            digest = config_hash(config)
            mine = [s for s in self.store.submissions(self.board.name, self.board.version, status=None)
                    if (s.agent, s.config_hash, s.display_name) == (spec.agent, digest, self.display_name)
                    and s.status != "failed"]
            if mine:
                sub_id = mine[-1].id
                if mine[-1].status == "complete":
                    self._complete.add(sub_id)
            else:
                files = agent_source_files(AGENTS.load(spec.agent)[0])
                sub_id = self.store.add_submission(board=self.board, display_name=self.display_name, agent=spec.agent,
                                                   config=config, config_hash=digest, source_hash=source_hash(files),
                                                   source_files=files)
            self._submissions[key] = sub_id
            self._recorded[sub_id] = {(r.stream, r.seed) for r in self.store.runs(sub_id)}
        return self._submissions[key]

    def record(self, spec: RunSpec, result: RunResult, path: Path) -> None:
        sub_id = self._submission(spec, result)
        if (spec.stream, spec.seed) not in self._recorded[sub_id]:
            self.store.add_run(sub_id, self.board, result, results_path=str(path))
            self._recorded[sub_id].add((spec.stream, spec.seed))
        if sub_id not in self._complete and self._recorded[sub_id] >= self._planned[self._key(spec)]:
            self.store.finish_submission(sub_id, "complete")
            self._complete.add(sub_id)


def record_outcome(store: Any, out: Path, run_id: str, spec: RunSpec, path: Path, result: RunResult | None,
                   failure: Mapping[str, Any] | None, seconds: float | None, host: str | None) -> None:
    """One row of the store's ``sweep_runs`` for a finished or failed run of the sweep in ``out``."""
    store.record_sweep_run(sweep=str(out.resolve()), run_id=run_id, spec=spec.to_dict(), results_path=str(path),
                           result=result, failure=failure, seconds=seconds, host=host)


# --- running ----------------------------------------------------------------------------
@dataclass
class SweepReport:
    """What a sweep (or a resumed part of it) did."""

    out: Path
    plans: dict[str, RunSpec]
    """Every run of the grid by identity, in grid order."""
    executed: list[str] = field(default_factory=list)
    """Runs executed by this invocation, in completion order."""
    skipped: list[str] = field(default_factory=list)
    """Runs already finished (or, with skip_failed, already failed) before it."""
    results: dict[str, RunResult] = field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def planned(self) -> list[str]:
        return list(self.plans)

    def spec(self, run_id: str) -> RunSpec:
        return self.plans[run_id]


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _plan_folder(config: SweepConfig, plans: Sequence[PlannedRun], out: Path, *, resume: bool,
                 skip_failed: bool) -> tuple[SweepReport, list[Task]]:
    """Read what the folder already holds, apply the resume rule, write the manifest; return what to run."""
    done = {p.run_id: r for p in plans if (r := read_completed(out, p.run_id)) is not None}
    failed = {p.run_id for p in plans if failure_path(out, p.run_id).is_file() and p.run_id not in done}
    if (done or failed) and not resume:
        raise ConfigError(f"The folder {out} already holds {len(done) + len(failed)} of this sweep's {len(plans)} "
                          "runs; pass --resume to continue it, or choose another --out.")
    report = SweepReport(out=out, plans={p.run_id: p.spec for p in plans}, results=dict(done))
    for run_id in failed if skip_failed else ():
        report.failures[run_id] = json.loads(failure_path(out, run_id).read_text())
    report.skipped = [i for i in report.planned if i in done or i in report.failures]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MANIFEST, json.dumps({"config": config.to_dict(), "runs": {
        p.run_id: p.spec.to_dict() for p in plans}}, indent=1, default=dict))
    return report, [Task(p.run_id, p.spec.to_dict()) for p in plans if p.run_id not in report.skipped]


def run_sweep(config: SweepConfig, *, resume: bool = False, skip_failed: bool = False, plots: bool = True,
              show_progress: bool | None = None) -> SweepReport:
    """Expand, validate and run ``config``; each finished run is persisted at once.

    Raises:
        ConfigError: a bad grid (before any work), or a folder that already
            holds runs of this grid without ``resume``.
    """
    from replaybench.leaderboards.store import Store

    plans = expand_grid(config)
    streams = validate(config, plans)
    out = Path(config.out)
    store = Store(config.store)
    recorder = None
    executor = None
    try:
        if config.board is not None:  # checks the board's fingerprints and seeds: before any work too
            recorder = BoardRecorder(board=config.board, store=store, plans=plans, streams=streams,
                                     display_name=f"sweep {out.resolve().name}")
        report, todo = _plan_folder(config, plans, out, resume=resume, skip_failed=skip_failed)
        recorded = {row.run_id: row.status for row in store.sweep_runs(str(out.resolve()))}
        for run_id in report.skipped:  # rows lost between a JSON write and a kill
            spec = report.spec(run_id)
            if run_id in report.results:
                if recorded.get(run_id) != "done":
                    result = report.results[run_id]
                    record_outcome(store, out, run_id, spec, result_path(out, run_id), result, None,
                                   result.costs.get("wall_seconds"), None)
                if recorder is not None:
                    recorder.record(spec, report.results[run_id], result_path(out, run_id))
            elif run_id not in recorded:
                failure = report.failures[run_id]
                record_outcome(store, out, run_id, spec, failure_path(out, run_id), None, failure,
                               failure.get("seconds"), failure.get("host"))
        if report.skipped:
            _log(f"resuming {out}: {len(report.skipped)} of {len(plans)} runs already finished, {len(todo)} to run")
        executor = make_executor(config.executor, workers=config.workers, timeout_s=config.timeout_s,
                                 address=config.address, folder=out / ".submitit", cluster=config.cluster,
                                 partition=config.partition, streams=streams)
        bar = sys.stderr.isatty() if show_progress is None else show_progress
        start = time.monotonic()
        with progress.session(bar):
            outcomes = executor.run(todo)
            for k, outcome in enumerate(progress.track(outcomes, f"sweep ({config.executor})", total=len(todo)), 1):
                spec = report.spec(outcome.run_id)
                path, result = persist(out, outcome, spec, plots=plots)
                record_outcome(store, out, outcome.run_id, spec, path, result, outcome.failure, outcome.seconds,
                               outcome.host)
                report.executed.append(outcome.run_id)
                if result is not None:
                    report.results[outcome.run_id] = result
                    report.failures.pop(outcome.run_id, None)
                    if recorder is not None:
                        recorder.record(spec, result, path)
                else:
                    report.failures[outcome.run_id] = json.loads(path.read_text())
                if not bar:
                    eta = (time.monotonic() - start) / k * (len(todo) - k)
                    status = "done" if result is not None else f"FAILED ({outcome.failure['kind']}: {outcome.failure['error']})"
                    _log(f"[{k}/{len(todo)}] {outcome.run_id} {status} in {outcome.seconds:.1f} s; ETA {eta:.0f} s")
    except KeyboardInterrupt:
        _log(f"sweep interrupted; finished runs are in {out}; continue with --resume")
        raise
    finally:
        if executor is not None:
            executor.close()
        store.close()
    return report


def print_report(report: SweepReport) -> None:
    """The results table (per seed and mean ± std), then one row per failed run."""
    from rich.console import Console
    from rich.table import Table

    from replaybench.cli import print_results

    ordered = [report.results[i] for i in report.planned if i in report.results]
    if ordered:
        print_results(ordered)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    if report.failures:
        table = Table(title="Failed runs")
        for col in ("run", "kind", "error"):
            table.add_column(col)
        for run_id in report.planned:
            if run_id in report.failures:
                f = report.failures[run_id]
                table.add_row(run_id, f.get("kind", "?"), f.get("error", ""))
        console.print(table)
    console.print(f"{len(report.results)} finished, {len(report.failures)} failed of {len(report.planned)} runs "
                  f"({len(report.executed)} run now, {len(report.skipped)} skipped); results in {report.out}")


# --- the command --------------------------------------------------------------------------
def config_from_args(args: argparse.Namespace) -> SweepConfig:
    """The sweep file's values, overridden by the flags that were given."""
    from replaybench.params import parse_option

    values = load_sweep_file(args.file) if args.file else {}
    flags = {"streams": args.streams, "agents": args.agents, "seeds": args.seeds, "out": args.out,
             "executor": args.executor, "workers": args.workers, "timeout_s": args.timeout,
             "address": args.address, "cluster": args.cluster, "partition": args.partition,
             "board": args.board, "store": args.store, "data_dir": args.data_dir, "device": args.device}
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.download:
        values["download"] = True
    if args.option:  # last wins, as in 'replaybench run': over the file's shared and per-agent options
        cli = dict(parse_option(o) for o in args.option)
        values["agent_options"] = {**values.get("agent_options", {}), **cli}
        values["agent_options_by_agent"] = {a: {**opts, **cli} for a, opts in values.get("agent_options_by_agent", {}).items()}
    return SweepConfig.from_dict(values)


def cmd_sweep(args: argparse.Namespace) -> None:
    report = run_sweep(config_from_args(args), resume=args.resume, skip_failed=args.skip_failed,
                       plots=not args.no_plots)
    print_report(report)


def register_sweep_command(subparsers: Any) -> None:
    """Add ``replaybench sweep`` to the CLI's subcommands."""
    p = subparsers.add_parser("sweep", help="run a grid of streams × agents × seeds with an executor")
    p.add_argument("file", nargs="?", help="sweep TOML (flags override its values)")
    p.add_argument("--streams", nargs="+", help="stream names")
    p.add_argument("--agents", nargs="+", help="agent names")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="option for every agent, e.g. -o epochs=1")
    p.add_argument("--out", help="results folder (default: ./replaybench-sweep)")
    p.add_argument("--executor", help=f"one of {', '.join(EXECUTORS)} (default: local)")
    p.add_argument("--workers", type=int, help="parallel runs (default: the CPUs available)")
    p.add_argument("--timeout", type=float, help="per-run limit in seconds")
    p.add_argument("--address", help="Ray cluster: 'auto' or ray://host:10001 (default: start a local one)")
    p.add_argument("--cluster", help="submitit cluster: slurm, local or debug (default: detect)")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--resume", action="store_true", help="skip finished runs, rerun the rest")
    p.add_argument("--skip-failed", action="store_true", help="with --resume, do not rerun failed runs")
    p.add_argument("--board", help="also record each finished run on this leaderboard")
    p.add_argument("--store", help="store file that records every run (default: the user's leaderboard store)")
    p.add_argument("--data-dir", help="folder holding dataset files")
    p.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    p.add_argument("--device", help="torch device (default: cpu)")
    p.add_argument("--no-plots", action="store_true", help="skip the R heatmaps")
    p.set_defaults(func=cmd_sweep)
