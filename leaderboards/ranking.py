"""Aggregate a board's submissions into ranked rows with bootstrap intervals.

For each submission and metric, the value of one seed is the metric's mean
over the board's streams; a row shows the mean over seeds and a 90%
percentile-bootstrap interval over seeds (Continual World reports its
metrics the same way; Efron & Tibshirani 1993, ch. 13). Only submissions
with a run for every stream × seed of the board are ranked. Rows are ranked
by the primary metric in the board's direction; equal means share a rank
(competition ranking: 1, 2, 2, 4) and are listed oldest submission first.

Example:
    >>> iv = bootstrap_interval([0.5, 0.5, 0.5])
    >>> (iv.mean, iv.low, iv.high)
    (0.5, 0.5, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from replaybench.leaderboards.boards import Board
from replaybench.leaderboards.store import Store, StoredRun, Submission

CONFIDENCE = 0.9
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
"""Fixed, so a board renders the same intervals every time."""
TIE_DECIMALS = 12
"""Means equal to this many decimals tie (float summation order is not part of a score)."""


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap interval."""

    mean: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def text(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def bootstrap_interval(
    values: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Mean of ``values`` and the percentile-bootstrap interval of the mean.

    Resamples ``values`` with replacement ``n_resamples`` times and takes the
    (1 − confidence)/2 and (1 + confidence)/2 quantiles of the resampled means.
    One value gives a zero-width interval.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"need a non-empty 1-d sequence of values, got shape {v.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(v.mean())
    if len(v) == 1 or np.all(v == v[0]):
        return Interval(mean, mean, mean)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_resamples, len(v)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(mean, float(low), float(high))


@dataclass(frozen=True)
class Row:
    """One ranked submission."""

    rank: int
    submission: Submission
    seeds: tuple[int, ...]
    metrics: Mapping[str, Interval]
    per_stream: Mapping[str, Mapping[str, Interval]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        s = self.submission
        return {
            "rank": self.rank,
            "submission": s.id,
            "name": s.display_name,
            "agent": s.agent,
            "verified": s.verified,
            "seeds": list(self.seeds),
            "config_hash": s.config_hash,
            "source_hash": s.source_hash,
            "created": s.created,
            "metrics": {k: vars(iv) for k, iv in self.metrics.items()},
            "per_stream": {st: {k: vars(iv) for k, iv in ms.items()} for st, ms in self.per_stream.items()},
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
            "streams": [{"name": s.name, "fingerprint": s.fingerprint} for s in b.streams],
            "rows": [r.to_dict() for r in self.rows],
        }


def seed_values(board: Board, runs: Sequence[StoredRun], metric: str) -> dict[int, float]:
    """Per seed, the mean of ``metric`` over the board's streams (only seeds with every stream)."""
    by_seed: dict[int, list[float]] = {}
    for r in runs:
        if r.stream in board.stream_names and metric in r.metrics:
            by_seed.setdefault(r.seed, []).append(r.metrics[metric])
    n_streams = len(board.streams)
    return {seed: float(np.mean(vals)) for seed, vals in sorted(by_seed.items()) if len(vals) == n_streams}


def rank_rows(
    unranked: Sequence[tuple[Submission, Mapping[str, Interval]]], *, metric: str, higher_is_better: bool
) -> list[tuple[int, Submission, Mapping[str, Interval]]]:
    """Sort by ``metric`` (best first, then oldest) and assign competition ranks."""
    sign = -1.0 if higher_is_better else 1.0

    def key(item: tuple[Submission, Mapping[str, Interval]]) -> tuple[float, int]:
        return (sign * round(item[1][metric].mean, TIE_DECIMALS), item[0].id)

    ordered = sorted(unranked, key=key)
    ranked, previous, rank = [], None, 0
    for position, (sub, ivs) in enumerate(ordered, start=1):
        value = round(ivs[metric].mean, TIE_DECIMALS)
        if value != previous:
            rank, previous = position, value
        ranked.append((rank, sub, ivs))
    return ranked


def board_table(board: Board, store: Store) -> BoardTable:
    """Rank every complete submission to this version of ``board``."""
    unranked, extras, partial = [], {}, 0
    needed = {(s, seed) for s in board.stream_names for seed in board.seeds}
    for sub in store.submissions(board.name, board.version):
        runs = store.runs(sub.id)
        if not needed <= {(r.stream, r.seed) for r in runs}:
            partial += 1  # e.g. a sweep over some of the seeds: not comparable with full entries
            continue
        ivs, seeds = {}, ()
        for metric in board.metrics:
            per_seed = seed_values(board, runs, metric)
            if not per_seed:
                break
            ivs[metric] = bootstrap_interval(list(per_seed.values()))
            seeds = tuple(per_seed)
        if len(ivs) != len(board.metrics):
            continue  # a complete submission always has every metric; skip a damaged one
        per_stream = {
            s: {m: bootstrap_interval([r.metrics[m] for r in runs if r.stream == s]) for m in board.metrics}
            for s in board.stream_names
            if any(r.stream == s for r in runs)
        }
        unranked.append((sub, ivs))
        extras[sub.id] = (seeds, per_stream)
    ranked = rank_rows(unranked, metric=board.primary_metric, higher_is_better=board.direction == "higher")
    rows = tuple(Row(rank, sub, extras[sub.id][0], ivs, extras[sub.id][1]) for rank, sub, ivs in ranked)
    others = len(store.submissions(board.name)) - len(store.submissions(board.name, board.version))
    return BoardTable(board, rows, others, partial)
