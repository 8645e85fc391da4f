"""Sweeps: a grid of RunSpecs, run through the pipeline, resumable.

A sweep is streams × agents × option grid × seeds, read from a TOML file
and/or ``--agents/--streams/--seeds``. Each run has an identity,
:func:`replaybench.results.run_id` (its names, seed and a hash of its
options), so a changed config is never mistaken for a finished one. In the
output folder (:class:`replaybench.results.ResultsFolder`):

- ``<run id>.json`` (and ``.png``): a finished run, written atomically the
  moment its outcome reaches the driver;
- ``<run id>.failed.json``: a run that raised, produced a non-finite score,
  timed out or lost its worker, with its traceback;
- ``sweep.json``: the expanded grid. A folder holds one grid: another grid
  is refused, with or without ``--resume``.

Resuming (``--resume``) skips every run whose ``.json`` exists and reruns
all others: those never started, those interrupted mid-run, and those that
failed (a failure may be transient: a timeout, a lost node). With
``--skip-failed`` a failure record counts as final and is not rerun. Without
``--resume``, a folder already holding runs of the grid is refused.

The CLI adds the store's rows (every outcome, in ``sweep_runs``), a board's
rows (``board``) and W&B as sinks; this module imports none of them.

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
    [slurm]                      # each Slurm job's request (executor = "slurm")
    mem = "4G"
    sbatch_lines = ["--constraint=a100"]
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from replaybench.config_files import check_seeds, load_toml
from replaybench.errors import ConfigError
from replaybench.executors import EXECUTORS, SlurmOptions, make_executor, require_executor
from replaybench.params import Config, InstanceOf, Interval, OneOf, Optional, param
from replaybench.pipeline import PipelineReport, PlannedRun, Sink, plan, run_pipeline, validate
from replaybench.results import ResultsFolder, atomic_write_text, failure_path, read_result, result_path
from replaybench.runner import RunSpec

MANIFEST = "sweep.json"


def _mapping_field() -> Any:
    """A table-valued config field (empty by default)."""
    return field(default_factory=dict, metadata={"constraint": InstanceOf(Mapping)})


@dataclasses.dataclass(frozen=True)
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
    slurm: Mapping[str, Any] = _mapping_field()
    """What each Slurm job asks for (:class:`~replaybench.executors.SlurmOptions`: mem, gpus_per_task,
    account, qos, time_min, sbatch_lines, setup); the other executors ignore it."""
    board: str | None = param(None, Optional(InstanceOf(str)))
    """Record every finished run in the leaderboard store under this board (the CLI's sink)."""
    store: str | None = param(None, Optional(InstanceOf(str)))
    """The store file that records every run (default: the user's leaderboard store; the CLI's sink)."""
    data_dir: str | None = param(None, Optional(InstanceOf(str)))
    download: bool = param(False, InstanceOf(bool))
    device: str = param("cpu", InstanceOf(str))

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("streams", "agents"):
            if not getattr(self, key) or not all(isinstance(v, str) for v in getattr(self, key)):
                raise ConfigError(
                    f"The {key!r} parameter of sweep must be a non-empty list of names. "
                    f"Got {list(getattr(self, key))!r} instead."
                )
        check_seeds(list(self.seeds), where="sweep")
        require_executor(self.executor)  # a missing ray/submitit fails here, before any stream is built
        SlurmOptions.from_dict(self.slurm)
        for key, values in self.grid.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(
                    f"The grid entry {key!r} of sweep must be a non-empty list of values. Got {values!r} instead."
                )

    def options_for(self, agent: str) -> list[dict[str, Any]]:
        """The agent's option sets: shared, then its own, then each grid point."""
        base = {**self.agent_options, **self.agent_options_by_agent.get(agent, {})}
        keys = list(self.grid)
        return [{**base, **dict(zip(keys, point))} for point in itertools.product(*(self.grid[k] for k in keys))]


def load_sweep_file(path: str | Path) -> dict[str, Any]:
    """Read a sweep TOML file into a dict for :meth:`SweepConfig.from_dict` (keys checked there)."""
    return load_toml(path, what="sweep file")


# --- the grid ---------------------------------------------------------------------------
def expand_grid(config: SweepConfig) -> list[PlannedRun]:
    """Every run of the sweep, in a stable order (stream, agent, option set, seed)."""
    return plan(
        RunSpec(
            stream=stream,
            agent=agent,
            seed=seed,
            agent_options=options,
            stream_options=config.stream_options,
            data_dir=config.data_dir,
            download=config.download,
            device=config.device,
        )
        for stream in config.streams
        for agent in config.agents
        for options in config.options_for(agent)
        for seed in config.seeds
    )


# --- the folder -------------------------------------------------------------------------
def read_completed(out: Path, run_id: str) -> Any:
    """The finished result of ``run_id``, or None (absent or unreadable: it reruns)."""
    path = result_path(out, run_id)
    if not path.is_file():
        return None
    try:
        return read_result(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclasses.dataclass
class FolderState:
    """What a sweep folder already holds of a grid."""

    finished: dict[str, Any]
    failed: dict[str, dict[str, Any]]
    """Failure records of runs not to be rerun (``skip_failed``)."""


def read_folder(
    config: SweepConfig, plans: Sequence[PlannedRun], out: Path, *, resume: bool, skip_failed: bool
) -> FolderState:
    """Apply the folder rules (one grid per folder; ``--resume`` to continue); write nothing."""
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            earlier = set(json.loads(manifest.read_text()).get("runs", {}))
        except (OSError, ValueError, AttributeError):
            earlier = set()
        if earlier and earlier != {p.run_id for p in plans}:
            raise ConfigError(f"The folder {out} holds another sweep's grid ({MANIFEST}); choose another --out.")
    done = {p.run_id: r for p in plans if (r := read_completed(out, p.run_id)) is not None}
    failed = {p.run_id for p in plans if failure_path(out, p.run_id).is_file() and p.run_id not in done}
    if (done or failed) and not resume:
        raise ConfigError(
            f"The folder {out} already holds {len(done) + len(failed)} of this sweep's {len(plans)} "
            "runs; pass --resume to continue it, or choose another --out."
        )
    kept = {i: json.loads(failure_path(out, i).read_text()) for i in failed} if skip_failed else {}
    return FolderState(done, kept)


def write_manifest(config: SweepConfig, plans: Sequence[PlannedRun], out: Path) -> None:
    atomic_write_text(
        out / MANIFEST,
        json.dumps(
            {"config": config.to_dict(), "runs": {p.run_id: p.spec.to_dict() for p in plans}}, indent=1, default=dict
        ),
    )


# --- running ----------------------------------------------------------------------------
@dataclasses.dataclass
class SweepReport(PipelineReport):
    """What a sweep (or a resumed part of it) did."""

    out: Path = Path(".")

    @property
    def planned(self) -> list[str]:
        return [p.run_id for p in self.plans]

    def spec(self, run_id: str) -> RunSpec:
        return next(p.spec for p in self.plans if p.run_id == run_id)


@dataclasses.dataclass
class PreparedSweep:
    """A validated sweep, ready to run: its plans, what its folder holds, its built streams."""

    config: SweepConfig
    plans: list[PlannedRun]
    state: FolderState
    streams: dict[str, Any]

    @property
    def out(self) -> Path:
        return Path(self.config.out)


def prepare_sweep(config: SweepConfig, *, resume: bool = False, skip_failed: bool = False) -> PreparedSweep:
    """Expand and validate ``config`` and read its folder; write nothing.

    Raises:
        ConfigError: a bad grid, an unwritable folder, a folder holding another
            grid, or one that already holds runs of this grid without ``resume``.
    """
    plans = expand_grid(config)
    out = Path(config.out)
    ResultsFolder(out).open(plans)
    state = read_folder(config, plans, out, resume=resume, skip_failed=skip_failed)
    streams = validate(plans, local_devices=config.executor in ("inline", "local"))
    return PreparedSweep(config, plans, state, streams)


def execute_sweep(
    prepared: PreparedSweep,
    *,
    sinks: Sequence[Sink] = (),
    plots: bool = True,
    show_progress: bool | None = None,
    threads: int | None = None,
) -> SweepReport:
    """Run a prepared sweep; the results folder, then ``sinks``, get each outcome at once."""
    config, plans, state, out = prepared.config, prepared.plans, prepared.state, prepared.out
    todo = len(plans) - len(state.finished) - len(state.failed)
    if state.finished or state.failed:
        print(
            f"resuming {out}: {len(plans) - todo} of {len(plans)} runs already finished, {todo} to run",
            file=sys.stderr,
            flush=True,
        )
    executor = make_executor(
        config.executor,
        workers=config.workers,
        timeout_s=config.timeout_s,
        address=config.address,
        folder=out / ".submitit",
        cluster=config.cluster,
        partition=config.partition,
        threads=threads,
        slurm=config.slurm,
    )
    try:
        write_manifest(config, plans, out)
    except BaseException:
        executor.close()
        raise
    report = run_pipeline(
        plans,
        executor=executor,
        sinks=[ResultsFolder(out, heatmaps=plots), *sinks],
        streams=prepared.streams,
        finished=state.finished,
        failed=state.failed,
        description=f"sweep ({config.executor})",
        show_progress=show_progress,
    )
    return SweepReport(
        plans=report.plans,
        results=report.results,
        failures=report.failures,
        executed=report.executed,
        skipped=report.skipped,
        out=out,
    )


def run_sweep(
    config: SweepConfig,
    *,
    sinks: Sequence[Sink] = (),
    resume: bool = False,
    skip_failed: bool = False,
    plots: bool = True,
    show_progress: bool | None = None,
) -> SweepReport:
    """:func:`prepare_sweep`, then :func:`execute_sweep`."""
    prepared = prepare_sweep(config, resume=resume, skip_failed=skip_failed)
    return execute_sweep(prepared, sinks=sinks, plots=plots, show_progress=show_progress)
