"""The leaderboard layer's sinks for the pipeline: the store's rows, a board's rows, W&B.

The CLI hands these to :func:`replaybench.pipeline.run_pipeline` beside the
results folder; each records an outcome the moment it arrives.

- :class:`SweepRowsSink`: every outcome of a sweep, finished or failed, as a
  row of the store's ``sweep_runs`` (keyed by the folder and run id).
- :class:`BoardSink`: finished runs as rows of board submissions, one
  submission per agent config (:func:`open_submissions` creates or, for a
  resumed sweep, finds them). A submission becomes ``complete`` when all
  its planned runs are recorded, and ``failed`` when a run failed or the
  command was interrupted before that.
- :class:`WandbSink`: each finished run as a W&B run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from replaybench.errors import ConfigError
from replaybench.leaderboards.boards import Board
from replaybench.leaderboards.presets import declared_options
from replaybench.leaderboards.store import Store, check_display_name
from replaybench.leaderboards.wandb_sink import KINDS, WandbOptions, log_run, results_artifact_name
from replaybench.params import config_to_dict
from replaybench.pipeline import PlannedRun, RunOutcome
from replaybench.provenance import agent_source_files, config_hash, source_hash
from replaybench.redact import redact
from replaybench.registry import AGENTS
from replaybench.runner import agent_class_and_config


class SweepRowsSink:
    """Every outcome of the sweep in ``folder`` as a row of the store's ``sweep_runs``."""

    def __init__(self, store: Store, folder: str | Path) -> None:
        self.store = store
        self.sweep = str(Path(folder).resolve())
        self._recorded: dict[str, str] = {}

    def open(self, plans: Sequence[PlannedRun]) -> None:
        self._recorded = {row.run_id: row.status for row in self.store.sweep_runs(self.sweep)}

    def record(self, outcome: RunOutcome) -> None:
        status = "done" if outcome.ok else "failed"
        if outcome.resumed and self._recorded.get(outcome.plan.run_id) == status:
            return  # already there; a resumed run adds only a row a kill lost
        result = outcome.result
        self.store.record_sweep_run(
            sweep=self.sweep,
            run_id=outcome.plan.run_id,
            spec=outcome.plan.spec.to_dict(),
            results_path=outcome.artifacts.get("results", ""),
            result=result,
            failure=None if result is not None else outcome.failure,
            seconds=outcome.seconds,
            host=outcome.host,
        )
        self._recorded[outcome.plan.run_id] = status

    def close(self, *, interrupted: bool) -> None:
        pass


def _config_key(agent: str, options: Mapping[str, Any]) -> str:
    return json.dumps([agent, dict(options)], sort_keys=True, default=str)


def full_config(agent: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's full validated config as JSON-ready data (what a submission records)."""
    return config_to_dict(agent_class_and_config(agent, options)[1])


def open_submissions(
    store: Store, board: Board, plans: Sequence[PlannedRun], *, display_name: str, resume: bool = False
) -> dict[str, int]:
    """One submission per agent config of ``plans``; return their ids by config key.

    Refuses (before any row is written) a stream whose fingerprint differs
    from the board's pin and a seed that is not on the board. With
    ``resume``, a submission of the same board version, agent, config and
    display name that did not fail is found again instead of opened anew.
    """
    display_name = redact(check_display_name(display_name))
    for p in plans:
        if p.spec.stream not in board.stream_names:
            raise ConfigError(
                f"Stream {p.spec.stream!r} is not on board {board.name!r} "
                f"(its streams: {', '.join(board.stream_names)})."
            )
    off_board = sorted({p.spec.seed for p in plans} - set(board.seeds))
    if off_board:
        raise ConfigError(f"Seeds {off_board} are not on board {board.name!r} (its seeds: {list(board.seeds)}).")
    for p in plans:
        budget = board.budget_for(declared_options(p.spec.agent))
        off_budget = {k: p.spec.agent_options.get(k) for k, v in budget.items() if p.spec.agent_options.get(k) != v}
        if off_budget:
            raise ConfigError(
                f"Runs of {p.spec.agent!r} on board {board.name!r} must use its budget "
                f"({', '.join(f'{k}={budget[k]}' for k in off_budget)}); got "
                f"{', '.join(f'{k}={v}' for k, v in off_budget.items())}."
            )
    ids: dict[str, int] = {}
    for p in plans:
        key = _config_key(p.spec.agent, p.spec.agent_options)
        if key in ids:
            continue
        config = full_config(p.spec.agent, p.spec.agent_options)
        digest = config_hash(config)
        earlier = (
            [
                s
                for s in store.submissions(board.name, board.version, status=None)
                if (s.agent, s.config_hash, s.display_name) == (p.spec.agent, digest, display_name)
                and s.status != "failed"
            ]
            if resume
            else []
        )
        if earlier:
            ids[key] = earlier[-1].id
            continue
        files = agent_source_files(AGENTS.load(p.spec.agent)[0])
        ids[key] = store.add_submission(
            board=board,
            display_name=display_name,
            agent=p.spec.agent,
            config=config,
            config_hash=digest,
            source_hash=source_hash(files),
            source_files=files,
        )
    return ids


class BoardSink:
    """Finished runs as rows of the board submissions from :func:`open_submissions`.

    Args:
        resumable: Leave an incomplete submission ``running`` (a sweep, which
            ``--resume`` completes) rather than mark it ``failed`` (a submit).
        echo: A line on stderr per recorded run.
    """

    def __init__(
        self, store: Store, board: Board, submissions: Mapping[str, int], *, resumable: bool = False, echo: bool = False
    ) -> None:
        self.store = store
        self.board = board
        self.submissions = dict(submissions)
        self.resumable = resumable
        self.echo = echo
        self._planned: dict[int, set[tuple[str, int]]] = {}
        self._recorded: dict[int, set[tuple[str, int]]] = {}
        self._failed: set[int] = set()

    def _id(self, plan: PlannedRun) -> int:
        return self.submissions[_config_key(plan.spec.agent, plan.spec.agent_options)]

    def open(self, plans: Sequence[PlannedRun]) -> None:
        for plan in plans:
            self._planned.setdefault(self._id(plan), set()).add((plan.spec.stream, plan.spec.seed))
        for sub_id in self._planned:
            self._recorded[sub_id] = {(r.stream, r.seed) for r in self.store.runs(sub_id)}

    def record(self, outcome: RunOutcome) -> None:
        sub_id, spec = self._id(outcome.plan), outcome.plan.spec
        if outcome.result is None:
            if not outcome.resumed:
                self._failed.add(sub_id)
            return
        if (spec.stream, spec.seed) not in self._recorded[sub_id]:
            self.store.add_run(
                sub_id,
                self.board,
                outcome.result,
                results_path=outcome.artifacts.get("results"),
                wandb_run=outcome.artifacts.get("wandb"),
                wandb_artifact=outcome.artifacts.get("wandb_artifact"),
            )
            self._recorded[sub_id].add((spec.stream, spec.seed))
            if self.echo:
                print(
                    f"recorded {spec.stream} seed {spec.seed} (acc {outcome.result.metrics['acc']:.3f}) "
                    f"in submission #{sub_id}",
                    file=sys.stderr,
                )

    def close(self, *, interrupted: bool) -> None:
        for sub_id, planned in self._planned.items():
            current = self.store.submission(sub_id).status
            if self._recorded[sub_id] >= planned and sub_id not in self._failed:
                if current != "complete":
                    self.store.finish_submission(sub_id, "complete")
            elif not self.resumable and current == "running":
                self.store.finish_submission(sub_id, "failed")


class WandbSink:
    """Each finished run as a W&B run (:func:`replaybench.leaderboards.wandb_sink.log_run`).

    Args:
        options: Mode, project, entity, group and tags
            (:func:`~replaybench.leaderboards.wandb_sink.resolve_options`).
        kind: What the runs are: ``run``, ``submission`` or ``sweep`` (their job type and part of their names).
        extra_config: Added to every run's W&B config; a submit adds its board and submission id.
    """

    def __init__(self, options: WandbOptions, *, kind: str, extra_config: Mapping[str, Any] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.options = options
        self.kind = kind
        self.extra_config = dict(extra_config or {})

    def open(self, plans: Sequence[PlannedRun]) -> None:
        pass

    def record(self, outcome: RunOutcome) -> None:
        if outcome.result is None or outcome.resumed:
            return
        where = log_run(
            outcome.result,
            options=self.options,
            kind=self.kind,
            results_path=outcome.artifacts.get("results"),
            extra_config=self.extra_config,
        )
        if where is not None:
            outcome.artifacts["wandb"] = where
            outcome.artifacts["wandb_artifact"] = results_artifact_name(outcome.result, self.kind)

    def close(self, *, interrupted: bool) -> None:
        pass
