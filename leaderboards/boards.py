"""Boards are data: one TOML file per board under ``leaderboards/boards/``.

A board names its version, its streams with pinned fingerprints, the seeds,
the metrics it shows and the primary metric it ranks by, with its direction.
Results are comparable only across equal fingerprints, so a board refuses a
stream whose fingerprint differs from the pinned one.

Layout::

    name = "quick"
    version = "1"
    description = "..."
    seeds = [0, 1, 2]
    metrics = ["acc", "forgetting_max", "bwt", "fwt"]
    primary_metric = "acc"
    direction = "higher"               # "higher" or "lower" is better
    baselines = ["naive", "er"]        # agents `replaybench quick` runs

    [streams.split-digits]
    fingerprint = "3f2a..."            # `replaybench leaderboard pin quick` fills it
    options = { train_per_class = 50 } # optional stream builder overrides

    [budget]                           # the board's budget, the same for every agent, for the
    epochs = 10                        # options its Config declares (BUDGET_KEYS); learning
    batch_size = 32                    # rates and the rest come from the agent's preset
    memory_bytes = 50_000              # (replaybench.leaderboards.presets)

Example:
    >>> board = load_board("quick")
    >>> board.primary_metric, board.direction
    ('acc', 'higher')
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from replaybench.errors import ConfigError, UnknownNameError
from replaybench.metrics import HIGHER_IS_BETTER
from replaybench.params import did_you_mean

BOARDS_DIR = Path(__file__).resolve().parent / "boards"
BOARD_KEYS = (
    "name",
    "version",
    "description",
    "seeds",
    "metrics",
    "primary_metric",
    "direction",
    "baselines",
    "streams",
    "budget",
)
BUDGET_KEYS = ("epochs", "batch_size", "memory_bytes", "updates")
"""What a board may fix: the passes over the data (or updates), the batch size and the memory in bytes.
Everything else an agent can tune is its preset's business, so no agent is held to another's learning rate."""
STREAM_KEYS = ("fingerprint", "options")
NOTES_SUFFIX = ".notes.toml"
"""Beside a board: hand-written notes on its entries (see references.py)."""
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
"""Board names are used in file names and W&B run names, so they are plain."""


@dataclass(frozen=True)
class BoardStream:
    """One stream of a board."""

    name: str
    fingerprint: str
    """The pinned content hash; empty while the stream is not pinned yet."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Stream builder overrides (part of what the fingerprint pins)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


@dataclass(frozen=True)
class Board:
    """A parsed, validated board definition."""

    name: str
    version: str
    streams: tuple[BoardStream, ...]
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]
    primary_metric: str
    direction: str
    """"higher" or "lower": which way the primary metric is better."""
    description: str = ""
    baselines: tuple[str, ...] = ()
    budget: Mapping[str, Any] = field(default_factory=dict)
    """The training budget every agent gets (keys of :data:`BUDGET_KEYS`)."""
    path: Path | None = None

    @property
    def stream_names(self) -> list[str]:
        return [s.name for s in self.streams]

    def stream(self, name: str) -> BoardStream:
        for s in self.streams:
            if s.name == name:
                return s
        raise UnknownNameError(f"Board {self.name!r} has no stream {name!r}; it has {', '.join(self.stream_names)}.")

    def higher_is_better(self, metric: str) -> bool:
        if metric == self.primary_metric:
            return self.direction == "higher"
        return HIGHER_IS_BETTER[metric]

    def budget_for(self, declared: set[str]) -> dict[str, Any]:
        """The budget options among ``declared`` (an agent's Config fields).

        Options an agent's Config does not declare are left out, so a third-party
        agent can enter a board whose budget sets e.g. ``epochs``.
        """
        return {k: v for k, v in self.budget.items() if k in declared}

    def check_fingerprint(self, stream: str, fingerprint: str) -> None:
        """Refuse a stream whose fingerprint is not the pinned one."""
        pinned = self.stream(stream).fingerprint
        if not pinned:
            raise ConfigError(
                f"Board {self.name!r} has no pinned fingerprint for stream {stream!r}; "
                f"run 'replaybench leaderboard pin {self.name}' first."
            )
        if fingerprint != pinned:
            raise ConfigError(
                f"Stream {stream!r} has fingerprint {fingerprint[:12]}…, but board {self.name!r} "
                f"v{self.version} pins {pinned[:12]}…; the data or the stream definition changed, "
                f"so results would not be comparable."
            )


def board_path(name_or_path: str) -> Path:
    """The TOML file of a built-in board name, or the given ``.toml`` path."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"Board file not found: {path}.")
        return path
    known = board_names()
    if name_or_path not in known:
        raise UnknownNameError(
            f"Unknown board {name_or_path!r}.{did_you_mean(name_or_path, known)} Known: {', '.join(known)}."
        )
    return BOARDS_DIR / f"{name_or_path}.toml"


def board_names() -> list[str]:
    """The built-in boards (``<board>.notes.toml`` beside a board holds its notes, not a board)."""
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml") if not p.name.endswith(NOTES_SUFFIX))


def load_board(name_or_path: str) -> Board:
    """Load and validate a board by built-in name or ``.toml`` path.

    Raises:
        ConfigError: a malformed file or any invalid field, with a one-line message.
        UnknownNameError: an unknown board name.
    """
    path = board_path(name_or_path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Malformed board file {path}: {exc}.") from None
    return parse_board(data, path=path)


def parse_board(data: Mapping[str, Any], *, path: Path | None = None) -> Board:
    """Validate a board's TOML table into a :class:`Board`."""
    where = f"board file {path}" if path else "board"
    for key in data:
        if key not in BOARD_KEYS:
            raise ConfigError(
                f"Unknown key {key!r} in {where}.{did_you_mean(key, BOARD_KEYS)} Expected: {', '.join(BOARD_KEYS)}."
            )
    for key in ("name", "version", "streams", "seeds", "metrics", "primary_metric", "direction"):
        if key not in data:
            raise ConfigError(f"The {where} lacks the required key {key!r}.")

    def expect(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise ConfigError(f"The {key!r} key of {where} must be {what}. Got {data[key]!r} instead.")

    name, version = data["name"], data["version"]
    expect(
        "name",
        isinstance(name, str) and bool(NAME_PATTERN.match(name)),
        "a lower-case name of letters, digits, '.', '_' or '-'",
    )
    expect("version", isinstance(version, str) and bool(version.strip()), "a non-empty string")
    seeds = data["seeds"]
    expect(
        "seeds",
        isinstance(seeds, list)
        and bool(seeds)
        and len(set(map(repr, seeds))) == len(seeds)
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds),
        "a non-empty list of distinct ints >= 0",
    )
    metrics = data["metrics"]
    expect(
        "metrics",
        isinstance(metrics, list) and bool(metrics) and all(isinstance(m, str) for m in metrics),
        "a non-empty list of metric names",
    )
    for m in metrics:
        if m not in HIGHER_IS_BETTER:
            raise ConfigError(
                f"Unknown metric {m!r} in {where}.{did_you_mean(m, HIGHER_IS_BETTER)} "
                f"Known: {', '.join(HIGHER_IS_BETTER)}."
            )
    primary, direction = data["primary_metric"], data["direction"]
    expect("primary_metric", primary in metrics, f"one of the board's metrics ({', '.join(metrics)})")
    expect("direction", direction in ("higher", "lower"), "'higher' or 'lower'")
    if (direction == "higher") != HIGHER_IS_BETTER[primary]:
        raise ConfigError(
            f"The {where} says {direction} {primary!r} is better, but {primary!r} is "
            f"{'higher' if HIGHER_IS_BETTER[primary] else 'lower'}-is-better."
        )
    streams_table = data["streams"]
    expect(
        "streams", isinstance(streams_table, dict) and bool(streams_table), "a non-empty table of [streams.NAME] tables"
    )
    streams = []
    for sname, stable in streams_table.items():
        if not isinstance(stable, dict):
            raise ConfigError(f"[streams.{sname}] in {where} must be a table with a 'fingerprint' key.")
        for key in stable:
            if key not in STREAM_KEYS:
                raise ConfigError(
                    f"Unknown key {key!r} in [streams.{sname}] of {where}; expected {', '.join(STREAM_KEYS)}."
                )
        fingerprint = stable.get("fingerprint", "")
        if not isinstance(fingerprint, str) or (fingerprint and not re.fullmatch(r"[0-9a-f]{16,128}", fingerprint)):
            raise ConfigError(
                f'The fingerprint of [streams.{sname}] in {where} must be a hex digest or "". '
                f"Got {fingerprint!r} instead."
            )
        options = stable.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"The options of [streams.{sname}] in {where} must be a table.")
        streams.append(BoardStream(sname, fingerprint, options))
    baselines = data.get("baselines", [])
    expect(
        "baselines", isinstance(baselines, list) and all(isinstance(b, str) for b in baselines), "a list of agent names"
    )
    budget = data.get("budget", {})
    expect("budget", isinstance(budget, dict), "a table")
    for key, value in budget.items():
        if key not in BUDGET_KEYS:
            raise ConfigError(
                f"Unknown key {key!r} in [budget] of {where}: a board fixes only {', '.join(BUDGET_KEYS)}; "
                "learning rates and other options belong in the agents' presets."
            )
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"The budget's {key!r} in {where} must be an int >= 1. Got {value!r} instead.")
    description = data.get("description", "")
    expect("description", isinstance(description, str), "a string")
    return Board(
        name=name,
        version=version,
        streams=tuple(streams),
        seeds=tuple(seeds),
        metrics=tuple(metrics),
        primary_metric=primary,
        direction=direction,
        description=description,
        baselines=tuple(baselines),
        budget=MappingProxyType(dict(budget)),
        path=path,
    )


def pin_fingerprints(path: Path, fingerprints: Mapping[str, str]) -> str:
    """Return the TOML text of ``path`` with ``fingerprint`` lines set for the given streams.

    Only the ``fingerprint = "..."`` line of each ``[streams.NAME]`` table is
    touched (added if absent), so comments and layout survive.
    """
    lines = path.read_text().splitlines(keepends=True)
    out: list[str] = []
    section: str | None = None
    done: set[str] = set()

    def flush_missing() -> None:
        if section in fingerprints and section not in done:
            out.append(f'fingerprint = "{fingerprints[section]}"\n')
            done.add(section)

    for line in lines:
        header = re.match(r'^\s*\[\s*streams\s*\.\s*"?([^"\]]+?)"?\s*\]\s*(#.*)?$', line)
        if header or re.match(r"^\s*\[", line):
            flush_missing()
            section = header.group(1).strip() if header else None
            out.append(line)
            continue
        if section in fingerprints and re.match(r"^\s*fingerprint\s*=", line):
            out.append(f'fingerprint = "{fingerprints[section]}"\n')
            done.add(section)
            continue
        out.append(line)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    flush_missing()
    return "".join(out)
