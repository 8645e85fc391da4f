"""Presets: each agent's options for a board, chosen on a validation split (Mammoth's ``best_args``).

A board fixes the budget (:data:`replaybench.leaderboards.boards.BUDGET_KEYS`);
everything else an agent can tune comes from its preset. The presets of a
board live beside it, in ``boards/<board>.presets.json``, written by
``replaybench leaderboard tune`` (:mod:`replaybench.leaderboards.tune`) with
the record of the search that chose them: the space, the trials, the chosen
values and the validation score. They are never chosen on the test split.

An agent's options on a board are, in order of precedence: the board's
budget (never overridden on a board), the user's own options, its preset.
``replaybench run --agent X --stream S`` uses X's preset from the board that
holds S (with that board's budget), and records which one in the result.

Example:
    >>> from replaybench.leaderboards.boards import load_board
    >>> options, preset = board_options(load_board("quick"), "naive")
    >>> options["epochs"], preset is not None
    (10, True)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replaybench.errors import ConfigError
from replaybench.leaderboards.boards import BOARDS_DIR, Board, board_names, load_board
from replaybench.results import atomic_write_text
from replaybench.runner import agent_class_and_config

PRESETS_SUFFIX = ".presets.json"
PRESETS_FORMAT = 1


@dataclass(frozen=True)
class Preset:
    """One agent's chosen options on one board, with the record of how they were chosen."""

    agent: str
    options: Mapping[str, Any]
    search: Mapping[str, Any] = field(default_factory=dict)
    """Space, trials (values and scores), chosen values, validation score, engine and seed."""
    note: str = ""
    """Why the agent still sits near chance after its search, where it does."""

    def to_dict(self) -> dict[str, Any]:
        return {"options": dict(self.options), "search": dict(self.search), "note": self.note}


def presets_path(board: Board) -> Path:
    """``<board>.presets.json`` beside the board's file."""
    folder = board.path.parent if board.path is not None else BOARDS_DIR
    return folder / f"{board.name}{PRESETS_SUFFIX}"


def load_presets(board: Board) -> dict[str, Preset]:
    """The board's presets by agent name; none if the file does not exist.

    Raises:
        ConfigError: a malformed file, or presets chosen for another version of the board.
    """
    path = presets_path(board)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Malformed presets file {path}: {exc}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("agents"), dict):
        raise ConfigError(f"Malformed presets file {path}: expected an object with an 'agents' table.")
    if data.get("board_version") != board.version:
        raise ConfigError(
            f"The presets in {path} were chosen for {board.name!r} v{data.get('board_version')}, not "
            f"v{board.version}; rerun 'replaybench leaderboard tune {board.name}'."
        )
    return {
        agent: Preset(agent, dict(entry.get("options", {})), dict(entry.get("search", {})), entry.get("note", ""))
        for agent, entry in data["agents"].items()
    }


def write_presets(board: Board, presets: Mapping[str, Preset], *, meta: Mapping[str, Any] | None = None) -> Path:
    """Write (merge into) the board's presets file; agents not in ``presets`` keep theirs."""
    path = presets_path(board)
    try:
        kept = load_presets(board)
    except ConfigError:
        kept = {}  # presets of an older board version are replaced, not merged
    merged = {**kept, **presets}
    data = {
        "format": PRESETS_FORMAT,
        "board": board.name,
        "board_version": board.version,
        **dict(meta or {}),
        "agents": {name: merged[name].to_dict() for name in sorted(merged)},
    }
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


def declared_options(agent: str) -> set[str]:
    """The option names ``agent``'s Config declares."""
    _, config = agent_class_and_config(agent, {})
    return {f.name for f in dataclasses.fields(config)}


def board_options(
    board: Board, agent: str, user_options: Mapping[str, Any] | None = None, *, use_preset: bool = True
) -> tuple[dict[str, Any], Preset | None]:
    """``agent``'s options on ``board``: its preset, then ``user_options``, then the board's budget.

    Raises:
        ConfigError: ``user_options`` try to change the board's budget.
    """
    user = dict(user_options or {})
    budget = board.budget_for(declared_options(agent))
    changed = sorted(k for k in user if k in budget and user[k] != budget[k])
    if changed:
        raise ConfigError(
            f"Board {board.name!r} fixes {', '.join(f'{k}={budget[k]}' for k in changed)} for every agent; "
            "remove those options."
        )
    preset = load_presets(board).get(agent) if use_preset else None
    return {**(dict(preset.options) if preset else {}), **user, **budget}, preset


def preset_label(board: Board) -> str:
    """How a result records the preset it used: ``board v<version>``."""
    return f"{board.name} v{board.version}"


def untuned_choices(agent: str, user_options: Mapping[str, Any]) -> list[str]:
    """The user's options that make ``agent`` another algorithm than the one its presets were tuned for.

    An agent's Config may name such options in a ``preset_scope`` class
    attribute (the replay agent: ``learner``, ``source``, ``schedule``): a
    learning rate tuned for backprop replay is no setting for EFP.
    """
    agent_class_and_config(agent, user_options)  # a bad option is refused before anything is said of presets
    _, config = agent_class_and_config(agent, {})
    scope = getattr(type(config), "preset_scope", ())
    return [f"{k}={user_options[k]}" for k in scope if k in user_options and user_options[k] != getattr(config, k)]


def preset_for_stream(agent: str, stream: str, stream_options: Mapping[str, Any]) -> tuple[dict[str, Any], str] | None:
    """``agent``'s preset options (with the budget) from a board holding ``stream``, if any, and its label.

    A board whose stream has exactly these options is preferred. A board that
    builds the stream with other options (e.g. a smaller training set) still
    lends its preset, and the label says so.
    """
    candidates = []
    for name in board_names():
        board = load_board(name)
        for s in board.streams:
            if s.name == stream:
                candidates.append((dict(s.options) != dict(stream_options), board, dict(s.options)))
    for differs, board, options_there in sorted(candidates, key=lambda c: c[0]):
        if agent in load_presets(board):
            options, _ = board_options(board, agent)
            label = preset_label(board)
            if differs:
                label += f" (tuned on {stream} with {options_there or 'its defaults'})"
            return options, label
    return None
