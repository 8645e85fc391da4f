"""Submit an agent to a board: plan every stream × seed, validate, run through the pipeline.

Nothing runs until the agent name, its options, every stream's data and
fingerprint, and the agent's construction on every stream have been
checked. Each finished run is written to disk and recorded in the store at
once (:class:`replaybench.leaderboards.sinks.BoardSink`); a submission with a
failed run, or one interrupted (Ctrl-C, SIGTERM), is marked ``failed`` and
never ranked. Runs execute on any executor (``--executor local --workers 2``).

The agent's options are its preset for the board (:mod:`replaybench.leaderboards.presets`),
then the user's, then the board's budget, which no one may change. The
submission records the agent's full config and two hashes
(:mod:`replaybench.provenance`): ``config_hash`` and ``source_hash``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from replaybench.config_files import load_config_file, options_for
from replaybench.errors import ConfigError
from replaybench.leaderboards.boards import Board
from replaybench.leaderboards.presets import board_options, preset_label
from replaybench.leaderboards.sinks import full_config
from replaybench.pipeline import PlannedRun, plan
from replaybench.results import safe_name
from replaybench.runner import RunSpec

SUBMISSIONS_DIR = "submissions"


def canonical_agent(agent: str) -> str:
    """``agent`` with a ``path/to/file.py:Class`` path made absolute (so verify finds it later)."""
    target, sep, attr = agent.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{Path(target).resolve()}:{attr}"
    return agent


def read_submit_config(path: str | Path, agent: str) -> dict[str, Any]:
    """Agent options from a ``--config`` TOML file (``[agent]``/``[agents.NAME]`` tables).

    A board fixes its streams and seeds, so ``[stream]``, ``seeds`` and ``out`` are refused here.
    """
    cfg = load_config_file(path)
    fixed = [k for k in ("stream", "seeds", "out") if k in cfg]
    if fixed:
        raise ConfigError(
            f"A board fixes its streams and seeds; remove {', '.join(repr(k) for k in fixed)} from {path}."
        )
    return options_for(agent, cfg, [])


def submission_options(
    board: Board, agent: str, config_options: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], str | None]:
    """The agent's full validated config (its preset, ``config_options``, the board's budget) and the preset's label."""
    options, preset = board_options(board, agent, config_options)
    return full_config(agent, options), preset_label(board) if preset is not None else None


def plan_submission(
    board: Board,
    agent: str,
    *,
    config_options: Mapping[str, Any] | None = None,
    data_dir: str | None = None,
    download: bool = False,
    device: str = "cpu",
) -> list[PlannedRun]:
    """Every stream × seed of ``board`` for ``agent`` with its full config (the agent name made canonical)."""
    agent = canonical_agent(agent)
    options, preset = submission_options(board, agent, config_options)
    return plan(
        RunSpec(
            stream=bs.name,
            agent=agent,
            seed=seed,
            agent_options=options,
            stream_options=bs.options,
            data_dir=data_dir,
            download=download,
            device=device,
            preset=preset,
        )
        for bs in board.streams
        for seed in board.seeds
    )


def check_board_fingerprints(board: Board, plans: Sequence[PlannedRun], streams: Mapping[str, Any]) -> None:
    """Refuse a built stream whose fingerprint differs from the board's pin (``streams`` from ``validate``)."""
    from replaybench.executors import stream_key

    for p in plans:
        board.check_fingerprint(p.spec.stream, streams[stream_key(p.spec.to_dict())].fingerprint)


def submission_dir(out: str | Path, board: Board, submission_id: int, display_name: str) -> Path:
    """Where a submission's result files go; user-given names are sanitised."""
    return Path(out) / SUBMISSIONS_DIR / safe_name(board.name) / f"{submission_id}-{safe_name(display_name)}"
