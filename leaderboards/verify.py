"""Verify a submission: rerun it and compare R and every metric with the stored ones.

The rerun uses the stored agent string and full config on every stream of
the board (or the ones asked for) and, by default, on **every seed** of the
board; ``seed="random"`` reruns one seed drawn here from the operating
system's randomness (never a seed the submitter picked). It passes when every
entry of every R matrix, and every metric recomputed from the new R, is within
``tolerance`` (absolute) of the stored one (an undefined metric must stay
undefined); then the submission's verified flag is set. A failure clears the
flag. Every attempt is recorded in the ``verifications`` table with its own
provenance.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from replaybench.errors import ConfigError, ReplaybenchError
from replaybench.leaderboards.boards import Board
from replaybench.leaderboards.store import Store, StoredRun, metrics_from_R
from replaybench.protocols import Stream
from replaybench.provenance import agent_source_files, source_hash
from replaybench.registry import AGENTS
from replaybench.results import RunResult
from replaybench.runner import RunSpec, make_stream, run

DEFAULT_TOLERANCE = 1e-6
"""Absolute, per R entry. A CPU re-run on the same software reproduces R exactly;
raise it (e.g. to 0.01) across machines, where kernels may round differently."""


@dataclass(frozen=True)
class Check:
    """One re-run stream."""

    stream: str
    seed: int
    max_abs_diff: float
    passed: bool


class VerificationFailed(ReplaybenchError):
    """A re-run did not reproduce the stored R matrix within the tolerance."""


def verify(
    store: Store,
    submission_id: int,
    board: Board,
    *,
    seed: int | str | None = None,
    streams: Sequence[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    data_dir: str | None = None,
    download: bool = False,
    device: str = "cpu",
) -> list[Check]:
    """Rerun every seed (or ``seed``, or one drawn at random with ``"random"``); record whether R and metrics match.

    Raises:
        ConfigError: an unknown submission, a submission to another board or
            board version, an incomplete submission, or a seed/stream not on it.
        VerificationFailed: some R entry differs by more than ``tolerance``.
    """
    if not tolerance >= 0:
        raise ConfigError(
            f"The 'tolerance' parameter of verify must be a float in the range [0, inf). Got {tolerance!r} instead."
        )
    sub = store.submission(submission_id)
    if (sub.board, sub.board_version) != (board.name, board.version):
        raise ConfigError(
            f"Submission {submission_id} was made to board {sub.board!r} v{sub.board_version}; "
            f"the board file is {board.name!r} v{board.version}."
        )
    if sub.status != "complete":
        raise ConfigError(f"Submission {submission_id} is {sub.status}, not complete; there is nothing to verify.")
    if seed == "random":
        seeds = [secrets.choice(board.seeds)]
        print(f"replaybench: verifying seed {seeds[0]}, drawn at random from {list(board.seeds)}", file=sys.stderr)
    elif seed is None:
        seeds = list(board.seeds)
    elif seed in board.seeds:
        seeds = [int(seed)]
    else:
        raise ConfigError(f"Seed {seed} is not one of board {board.name!r}'s seeds {list(board.seeds)}.")
    names = list(streams) if streams else board.stream_names
    stored = {(r.stream, r.seed): r for r in store.runs(submission_id)}
    agent_cls, _ = AGENTS.load(sub.agent)
    current_source = source_hash(agent_source_files(agent_cls))
    if current_source != sub.source_hash:
        print(
            f"replaybench: warning: the agent's source changed since submission {submission_id} "
            f"({sub.source_hash[:12]}… then, {current_source[:12]}… now).",
            file=sys.stderr,
        )
    for name in names:
        for s in seeds:
            if (name, s) not in stored:
                raise ConfigError(f"Submission {submission_id} has no stored run for stream {name!r} seed {s}.")
    checks = []
    for name in names:
        options = board.stream(name).options
        stream = make_stream(name, data_dir=data_dir, download=download, **options)
        board.check_fingerprint(name, stream.fingerprint)
        for s in seeds:
            spec = RunSpec(
                stream=name,
                agent=sub.agent,
                seed=s,
                agent_options=sub.config,
                stream_options=options,
                data_dir=data_dir,
                download=download,
                device=device,
            )
            diff, result = _rerun(spec, stream, stored[(name, s)])
            passed = diff <= tolerance
            store.add_verification(
                submission_id,
                stream=name,
                seed=s,
                max_abs_diff=diff,
                tolerance=tolerance,
                passed=passed,
                provenance={**result.provenance, "source_hash": current_source},
            )
            checks.append(Check(name, s, diff, passed))
    ok = all(c.passed for c in checks)
    store.set_verified(submission_id, ok)
    if not ok:
        worst = max(checks, key=lambda c: c.max_abs_diff)
        raise VerificationFailed(
            f"Submission {submission_id} was not reproduced: R or a metric on {worst.stream} seed {worst.seed} "
            "differs by "
            f"{worst.max_abs_diff:.3g} (tolerance {tolerance:g}); its verified flag is cleared."
        )
    return checks


def _rerun(spec: RunSpec, stream: Stream, stored: StoredRun) -> tuple[float, RunResult]:
    """Rerun one stream and seed: the largest difference in R or in a metric recomputed from it."""
    result = run(spec, stream=stream)
    old, new = np.asarray(stored.R, dtype=float), np.asarray(result.R, dtype=float)
    diff = float(np.abs(old - new).max()) if old.shape == new.shape else float("inf")
    for metric, value in metrics_from_R(result.R, result.baseline, result.provenance.get("scenario")).items():
        before = stored.metrics.get(metric)
        if (before is None) != (value is None):
            diff = float("inf")  # defined in one run, undefined in the other
        elif value is not None and before is not None:
            diff = max(diff, abs(float(before) - value))
    return diff, result
