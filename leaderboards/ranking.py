"""Aggregate a board's submissions into ranked rows with Student-t intervals.

For each submission, stream and metric, the values over seeds give a mean and
its 90% Student-t interval (:func:`replaybench.metrics.t_interval`, the one
place the formula lives; a percentile bootstrap over 3–5 seeds covers the
true mean far less often than it claims). The board-level value of a seed is
the metric's mean over the streams where it is *defined*: an undefined metric
(FWT on a class-IL stream, forgetting after one experience) is missing from
the run, shown as n/a, and never counted as 0. Only submissions with a run
for every stream × seed of the board are ranked, by the primary metric in its
direction (:data:`replaybench.metrics.HIGHER_IS_BETTER`, the one place
directions live); a row whose primary metric is undefined is ranked last.
Equal means share a rank (competition ranking: 1, 2, 2, 4), oldest first.
Beside the metrics each row carries its memory, the mean ``state_bytes`` of
its runs (:func:`mean_state_bytes`): unknown where an agent does not count it.

Example:
    >>> iv = seed_interval([0.70, 0.72, 0.74])
    >>> round(iv.mean, 3), round(iv.half_width, 4)
    (0.72, 0.0337)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from replaybench.leaderboards.boards import Board
from replaybench.leaderboards.store import Store, StoredRun, Submission
from replaybench.metrics import t_interval

CONFIDENCE = 0.9
TIE_DECIMALS = 12
"""Means equal to this many decimals tie (float summation order is not part of a score)."""


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with the half-width of its Student-t interval (NaN for one seed)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def text(self, digits: int = 3) -> str:
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"

    def to_dict(self) -> dict[str, Any]:
        half = None if math.isnan(self.half_width) else self.half_width
        return {
            "mean": self.mean,
            "half_width": half,
            "low": self.low if half is not None else None,
            "high": self.high if half is not None else None,
            "n": self.n,
        }


def seed_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of per-seed ``values`` and its Student-t interval."""
    mean, half = t_interval(values, confidence)
    return Interval(mean, half, len(values))


@dataclass(frozen=True)
class Row:
    """One ranked submission."""

    rank: int
    submission: Submission
    seeds: tuple[int, ...]
    metrics: Mapping[str, Interval]
    per_stream: Mapping[str, Mapping[str, Interval]] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    """W&B runs of the entry, by stream and seed (``"split-digits/0"``), where they were logged."""
    state_bytes: float | None = None
    """Mean of ``costs["state_bytes"]`` over the board's runs; None (unknown) unless every run reports it."""

    def to_dict(self) -> dict[str, Any]:
        s = self.submission
        return {
            "rank": self.rank,
            "submission": s.id,
            "name": s.display_name,
            "agent": s.agent,
            "origin": s.origin,
            "note": s.note,
            "verified": s.verified,
            "seeds": list(self.seeds),
            "config_hash": s.config_hash,
            "source_hash": s.source_hash,
            "created": s.created,
            "metrics": {k: iv.to_dict() for k, iv in self.metrics.items()},
            "per_stream": {st: {k: iv.to_dict() for k, iv in ms.items()} for st, ms in self.per_stream.items()},
            "wandb_runs": dict(self.links),
            "state_bytes": self.state_bytes,
        }


@dataclass(frozen=True)
class BoardTable:
    """A board with its ranked rows, ready to print or export."""

    board: Board
    rows: tuple[Row, ...]
    hidden_other_versions: int = 0
    """Complete submissions to other versions of the board (not comparable, not shown)."""
    hidden_partial: int = 0
    """Complete submissions lacking some stream × seed of the board (not shown)."""

    def to_dict(self) -> dict[str, Any]:
        b = self.board
        return {
            "board": b.name,
            "version": b.version,
            "description": b.description,
            "primary_metric": b.primary_metric,
            "direction": b.direction,
            "metrics": list(b.metrics),
            "seeds": list(b.seeds),
            "confidence": CONFIDENCE,
            "interval": "Student-t over seeds",
            "streams": [{"name": s.name, "fingerprint": s.fingerprint} for s in b.streams],
            "rows": [r.to_dict() for r in self.rows],
        }


def seed_values(board: Board, runs: Sequence[StoredRun], metric: str) -> dict[int, float]:
    """Per seed, the mean of ``metric`` over the board's streams where it is defined.

    Only seeds with a run on every stream count; a seed where the metric is undefined on every stream is left out.
    """
    by_seed: dict[int, list[float]] = {}
    streams_by_seed: dict[int, int] = {}
    for r in runs:
        if r.stream not in board.stream_names:
            continue
        streams_by_seed[r.seed] = streams_by_seed.get(r.seed, 0) + 1
        value = r.metrics.get(metric)
        if value is not None and math.isfinite(value):
            by_seed.setdefault(r.seed, []).append(value)
    n_streams = len(board.streams)
    return {
        seed: float(np.mean(vals)) for seed, vals in sorted(by_seed.items()) if streams_by_seed.get(seed) == n_streams
    }


def mean_state_bytes(runs: Sequence[StoredRun]) -> float | None:
    """The mean of the runs' ``costs["state_bytes"]``, or None when any run lacks it.

    A run whose agent does not count its state is unknown, so an entry with one is unknown too:
    averaging the others would pass off part of its memory as the whole.
    """
    values = [(r.result.get("costs") or {}).get("state_bytes") for r in runs]
    if not values or any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
        return None
    return float(np.mean(values))


def rank_rows(
    unranked: Sequence[tuple[Submission, Mapping[str, Interval]]], *, metric: str, higher_is_better: bool
) -> list[tuple[int, Submission, Mapping[str, Interval]]]:
    """Sort by ``metric`` (best first, undefined last, then oldest) and assign competition ranks."""
    sign = -1.0 if higher_is_better else 1.0

    def value(ivs: Mapping[str, Interval]) -> float | None:
        return round(ivs[metric].mean, TIE_DECIMALS) if metric in ivs else None

    def key(item: tuple[Submission, Mapping[str, Interval]]) -> tuple[bool, float, int]:
        v = value(item[1])
        return (v is None, 0.0 if v is None else sign * v, item[0].id)

    ordered = sorted(unranked, key=key)
    ranked: list[tuple[int, Submission, Mapping[str, Interval]]] = []
    previous: object = object()
    rank = 0
    for position, (sub, ivs) in enumerate(ordered, start=1):
        v = value(ivs)
        if v != previous:
            rank, previous = position, v
        ranked.append((rank, sub, ivs))
    return ranked


def board_table(board: Board, store: Store) -> BoardTable:
    """Rank every complete submission to this version of ``board``."""
    unranked, extras, partial = [], {}, 0
    needed = {(s, seed) for s in board.stream_names for seed in board.seeds}
    for sub in store.submissions(board.name, board.version):
        runs = [r for r in store.runs(sub.id) if r.seed in board.seeds and r.stream in board.stream_names]
        if not needed <= {(r.stream, r.seed) for r in runs}:
            partial += 1  # e.g. a sweep over some of the seeds: not comparable with full entries
            continue
        ivs = {}
        for metric in board.metrics:
            per_seed = seed_values(board, runs, metric)
            if per_seed:
                ivs[metric] = seed_interval(list(per_seed.values()))
        per_stream: dict[str, dict[str, Interval]] = {}
        for s in board.stream_names:
            for m in board.metrics:
                values = [r.metrics[m] for r in runs if r.stream == s and r.metrics.get(m) is not None]
                if len(values) == len(board.seeds):  # defined on every seed, else n/a
                    per_stream.setdefault(s, {})[m] = seed_interval(values)
        links = {f"{r.stream}/{r.seed}": r.wandb_run for r in runs if r.wandb_run}
        unranked.append((sub, ivs))
        extras[sub.id] = (tuple(board.seeds), per_stream, links, mean_state_bytes(runs))
    ranked = rank_rows(unranked, metric=board.primary_metric, higher_is_better=board.direction == "higher")
    rows = tuple(Row(rank, sub, extras[sub.id][0], ivs, *extras[sub.id][1:]) for rank, sub, ivs in ranked)
    others = len(store.submissions(board.name)) - len(store.submissions(board.name, board.version))
    return BoardTable(board, rows, others, partial)
