"""Submit an agent to a board: validate everything, run every stream × seed, record each run.

Nothing runs until the agent name, its options and every stream's
fingerprint have been checked. Each finished run is written to disk and
recorded in the store at once; a submission that fails midway is marked
``failed`` and never ranked.

The submission records two hashes:

- ``config_hash``: SHA-256 of the agent's full, validated config as sorted JSON;
- ``source_hash``: SHA-256 over the agent's source files, i.e. the file that
  defines the agent class plus every module of the same package (or, for a
  ``file.py:Class`` agent, the same folder) that it imports, directly or
  through each other; built-in agents also count the ``memories`` modules
  they import. The spine is not hashed: each run's provenance carries the
  git commit. The per-file digests are stored too.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replaybench.leaderboards.boards import Board
from replaybench.leaderboards.redact import redact
from replaybench.leaderboards.store import Store, check_display_name
from replaybench.errors import ConfigError
from replaybench.protocols import Stream
from replaybench.registry import AGENTS
from replaybench.provenance import agent_source_files, config_hash, source_hash
from replaybench.results import safe_name, write_result
from replaybench.runner import RunSpec, agent_class_and_config, make_agent, make_stream, run

SUBMISSIONS_DIR = "submissions"


def canonical_agent(agent: str) -> str:
    """``agent`` with a ``path/to/file.py:Class`` path made absolute (so verify finds it later)."""
    target, sep, attr = agent.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{Path(target).resolve()}:{attr}"
    return agent


@dataclass(frozen=True)
class PreparedSubmission:
    """A validated submission, ready to run."""

    board: Board
    agent: str
    options: Mapping[str, Any]
    """The agent's full validated config (what every run uses)."""
    streams: Mapping[str, Stream]
    source_files: Mapping[str, str]


def read_submit_config(path: str | Path, agent: str) -> dict[str, Any]:
    """Agent options from a ``--config`` TOML file (``[agent]``/``[agents.NAME]`` tables).

    A board fixes its streams and seeds, so ``[stream]``, ``seeds`` and ``out`` are refused here.
    """
    from replaybench.cli import load_config_file, options_for

    cfg = load_config_file(path)
    fixed = [k for k in ("stream", "seeds", "out") if k in cfg]
    if fixed:
        raise ConfigError(f"A board fixes its streams and seeds; remove {', '.join(repr(k) for k in fixed)} from {path}.")
    return options_for(agent, cfg, [])


def prepare(board: Board, agent: str, *, config_options: Mapping[str, Any] | None = None,
            data_dir: str | None = None, download: bool = False, device: str = "cpu") -> PreparedSubmission:
    """Check the agent, its options and every stream's fingerprint before any work.

    The board's agent options come first (only those the agent's Config
    declares), then ``config_options``.
    """
    agent = canonical_agent(agent)
    agent_cls, _ = AGENTS.load(agent)
    config_cls = getattr(agent_cls, "Config", None)
    declared = {f.name for f in dataclasses.fields(config_cls)} if dataclasses.is_dataclass(config_cls) else set()
    options = {**board.options_for(agent, declared), **dict(config_options or {})}
    _, config = agent_class_and_config(agent, options)
    full = config.to_dict() if hasattr(config, "to_dict") else dict(options)
    streams = {}
    for bs in board.streams:
        stream = make_stream(bs.name, data_dir=data_dir, download=download, **bs.options)
        board.check_fingerprint(bs.name, stream.fingerprint)
        streams[bs.name] = stream
    for stream in streams.values():  # refuses a kind mismatch, e.g. a supervised agent on an RL board
        make_agent(agent, stream, seed=board.seeds[0], options=full, device=device)
    return PreparedSubmission(board, agent, full, streams, agent_source_files(agent_cls))


def submission_dir(out: str | Path, board: Board, submission_id: int, display_name: str) -> Path:
    """Where a submission's result files go; user-given names are sanitised."""
    return Path(out) / SUBMISSIONS_DIR / safe_name(board.name) / f"{submission_id}-{safe_name(display_name)}"


def run_submission(prepared: PreparedSubmission, store: Store, *, display_name: str, out: str | Path,
                   data_dir: str | None = None, download: bool = False, device: str = "cpu",
                   wandb_mode: str | None = None, plots: bool = True) -> int:
    """Run every stream × seed of the board, recording each run; return the submission id."""
    board = prepared.board
    display_name = redact(check_display_name(display_name))
    files = dict(prepared.source_files)
    sub_id = store.add_submission(board=board, display_name=display_name, agent=prepared.agent,
                                  config=prepared.options, config_hash=config_hash(prepared.options),
                                  source_hash=source_hash(files), source_files=files)
    folder = submission_dir(out, board, sub_id, display_name)
    try:
        for stream_name, stream in prepared.streams.items():
            for seed in board.seeds:
                spec = RunSpec(stream=stream_name, agent=prepared.agent, seed=seed, agent_options=prepared.options,
                               stream_options=board.stream(stream_name).options, data_dir=data_dir,
                               download=download, device=device)
                result = run(spec, stream=stream)
                path = write_result(result, folder, heatmap=plots)
                where = None
                if wandb_mode is not None:
                    from replaybench.leaderboards.wandb_sink import log_run

                    where = log_run(result, mode=wandb_mode, results_path=path, extra_config={
                        "board": board.name, "board_version": board.version, "submission": sub_id})
                store.add_run(sub_id, board, result, results_path=str(path), wandb_run=where)
                print(f"recorded {stream_name} seed {seed} (acc {result.metrics['acc']:.3f}) -> {path}",
                      file=sys.stderr)
    except BaseException:
        store.finish_submission(sub_id, "failed")
        raise
    store.finish_submission(sub_id, "complete")
    return sub_id
