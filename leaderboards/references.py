"""Reference entries: every agent a board's kinds allow, run with its preset, shipped with the package.

``replaybench leaderboard references BOARD`` runs each agent on every
stream × seed of the board (on any executor) exactly as ``submit`` would,
with its preset, and writes the results to ``boards/<board>.references.json``.
A store shows them on a fresh machine: :func:`ensure_references` imports the
shipped file as submissions labelled ``reference`` (through the same checks
as any import: fingerprints, seeds, metrics recomputed from R), and replaces
them when the shipped file changes. ``verify`` reruns them like any entry.

An agent whose runs failed is listed in the file with the reason, and an
agent that barely learns keeps its preset's note, so nothing is hidden.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from replaybench.errors import ConfigError
from replaybench.leaderboards.boards import BOARDS_DIR, NOTES_SUFFIX, Board
from replaybench.leaderboards.presets import load_presets
from replaybench.leaderboards.sinks import full_config
from replaybench.leaderboards.store import Store
from replaybench.pipeline import PlannedRun, RunOutcome
from replaybench.provenance import agent_source_files, config_hash, source_hash
from replaybench.registry import AGENTS
from replaybench.results import RunResult, atomic_write_text, result_from_json, result_json

REFERENCES_SUFFIX = ".references.json"
REFERENCES_FORMAT = 1
REFERENCE = "reference"
"""The origin of a shipped reference entry (a user's own entries are "user")."""
DROPPED_EXTRAS = ("train_curves",)
"""Bulky per-step curves stay in the results folder; the shipped file keeps R and the metrics."""


def references_path(board: Board) -> Path:
    folder = board.path.parent if board.path is not None else BOARDS_DIR
    return folder / f"{board.name}{REFERENCES_SUFFIX}"


def notes_path(board: Board) -> Path:
    folder = board.path.parent if board.path is not None else BOARDS_DIR
    return folder / f"{board.name}{NOTES_SUFFIX}"


def load_notes(board: Board) -> dict[str, str]:
    """Hand-written notes by agent: why an entry stands where it does, with sources (``<board>.notes.toml``)."""
    path = notes_path(board)
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            notes = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Malformed notes file {path}: {exc}.") from None
    if not all(isinstance(v, str) for v in notes.values()):
        raise ConfigError(f'Every entry of {path} must be a string: agent = "note".')
    return notes


def load_references(board: Board) -> tuple[str, dict[str, Any]] | None:
    """The shipped references of ``board`` with the board's notes, and a digest of both.

    None when there are none for this board version.
    """
    path = references_path(board)
    if not path.is_file():
        return None
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Malformed reference file {path}: {exc}.") from None
    if data.get("board_version") != board.version:
        return None  # built for another version of the board: not comparable, not shown
    notes = load_notes(board)
    for entry in data["entries"]:
        extra = notes.get(entry["agent"], "")
        entry["note"] = " ".join(n for n in (entry.get("note", ""), extra) if n)
    digest = hashlib.sha256(text.encode() + json.dumps(notes, sort_keys=True).encode()).hexdigest()
    return digest, data


def ensure_references(store: Store, board: Board) -> int:
    """Import the shipped references of ``board`` into ``store`` unless it holds these already.

    Returns the number of reference entries the store holds for this board version.
    """
    loaded = load_references(board)
    if loaded is None:
        return 0
    digest, data = loaded
    if store.reference_digest(board.name, board.version) == digest:
        return len(store.submissions(board.name, board.version, origin=REFERENCE))
    store.delete_references(board.name)
    count = 0
    for entry in data["entries"]:
        if not entry.get("runs") or entry.get("failed"):
            continue  # listed in the file (with its reason), but there is nothing to rank
        sub_id = store.add_submission(
            board=board,
            display_name=entry["display_name"],
            agent=entry["agent"],
            config=entry["config"],
            config_hash=entry["config_hash"],
            source_hash=entry["source_hash"],
            source_files=entry["source_files"],
            origin=REFERENCE,
            reference_digest=digest,
            note=entry.get("note", ""),
        )
        for run in entry["runs"]:
            store.add_run(sub_id, board, result_from_json(json.dumps(run)))
        store.finish_submission(sub_id, "complete")
        count += 1
    return count


def failed_references(board: Board) -> list[dict[str, Any]]:
    """The shipped entries whose runs failed, with their reasons."""
    loaded = load_references(board)
    return [e for e in loaded[1]["entries"] if e.get("failed")] if loaded else []


def _shipped(result: RunResult) -> dict[str, Any]:
    """The result as its strict results-file JSON (non-finite numbers recorded), less bulky extras."""
    data = result.to_dict()
    data["extras"] = {k: v for k, v in data.get("extras", {}).items() if k not in DROPPED_EXTRAS}
    return json.loads(result_json(RunResult.from_dict(data), indent=None))


class ReferenceSink:
    """Collects a reference build's outcomes; on close, merges them into the board's reference file.

    Agents not rebuilt keep their entries. An interrupted build writes nothing.
    """

    def __init__(
        self, board: Board, *, meta: Mapping[str, Any] | None = None, refused: Mapping[str, str] | None = None
    ) -> None:
        self.board = board
        self.meta = dict(meta or {})
        self.refused = dict(refused or {})
        """Agents refused before any run (they could not be built), with the reason."""
        self.results: dict[str, list[RunResult]] = {}
        self.failures: dict[str, str] = {}
        self.agents: list[str] = []
        self.options: dict[str, Mapping[str, Any]] = {}
        self.expected: dict[str, int] = {}

    def open(self, plans: Sequence[PlannedRun]) -> None:
        for p in plans:
            agent = p.spec.agent
            if agent not in self.expected:
                self.agents.append(agent)
                self.options[agent] = p.spec.agent_options
            self.expected[agent] = self.expected.get(agent, 0) + 1

    def record(self, outcome: RunOutcome) -> None:
        agent = outcome.plan.spec.agent
        if outcome.result is not None:
            self.results.setdefault(agent, []).append(outcome.result)
        else:
            failure = outcome.failure or {}
            self.failures.setdefault(agent, f"{failure.get('kind')}: {failure.get('error')}")

    def close(self, *, interrupted: bool) -> None:
        if interrupted:
            print("replaybench: interrupted; the reference file is left as it was.", file=sys.stderr)
            return
        write_references(self.board, self.entries(), meta=self.meta)

    def entries(self) -> list[dict[str, Any]]:
        presets = load_presets(self.board)
        out = [
            {
                "agent": agent,
                "display_name": agent,
                "preset": None,
                "note": "",
                "failed": f"refused: {reason}",
                "runs": [],
            }
            for agent, reason in self.refused.items()
        ]
        for agent in self.agents:
            config = full_config(agent, self.options[agent])
            files = agent_source_files(AGENTS.load(agent)[0])
            runs = sorted(self.results.get(agent, []), key=lambda r: (r.spec["stream"], r.spec["seed"]))
            failed = self.failures.get(agent)
            if not failed and len(runs) != self.expected[agent]:
                failed = f"only {len(runs)} of {self.expected[agent]} runs finished"
            preset = presets.get(agent)
            out.append(
                {
                    "agent": agent,
                    "display_name": agent,
                    "preset": f"{self.board.name} v{self.board.version}" if preset else None,
                    "note": preset.note if preset else "No preset: the agent's own defaults.",
                    "config": config,
                    "config_hash": config_hash(config),
                    "source_hash": source_hash(files),
                    "source_files": files,
                    "failed": failed,
                    "runs": [] if failed else [_shipped(r) for r in runs],
                }
            )
        return out


def write_references(board: Board, entries: Sequence[Mapping[str, Any]], *, meta: Mapping[str, Any]) -> Path:
    """Merge ``entries`` (by agent) into the board's reference file, one entry per line."""
    path = references_path(board)
    kept: dict[str, Any] = {}
    path_text = path.read_text() if path.is_file() else ""
    if path_text and json.loads(path_text).get("board_version") == board.version:
        kept = {e["agent"]: e for e in json.loads(path_text)["entries"]}  # as written, without the notes
    kept.update({e["agent"]: dict(e) for e in entries})
    header = {"format": REFERENCES_FORMAT, "board": board.name, "board_version": board.version, **meta}
    lines = [json.dumps(header, sort_keys=True)[:-1] + ', "entries": [']
    body = [json.dumps(kept[a], sort_keys=True, allow_nan=False) for a in sorted(kept)]
    text = "\n".join(lines) + "\n" + ",\n".join(body) + "\n]}\n"
    json.loads(text)  # what is shipped must parse
    atomic_write_text(path, text)
    return path
