"""Verify a submission: re-run one seed and compare its R matrices with the stored ones.

The re-run uses the stored agent string and full config on every stream of
the board (or the ones asked for). It passes when every entry of every R
matrix is within ``tolerance`` (absolute) of the stored one; then the
submission's verified flag is set. A failure clears the flag. Every attempt
is recorded in the ``verifications`` table with its own provenance.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from replaybench.errors import ConfigError, ReplaybenchError
from replaybench.leaderboards.boards import Board
from replaybench.leaderboards.store import Store
from replaybench.provenance import agent_source_files, source_hash
from replaybench.registry import AGENTS
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
    seed: int | None = None,
    streams: Sequence[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    data_dir: str | None = None,
    download: bool = False,
    device: str = "cpu",
) -> list[Check]:
    """Re-run ``seed`` (default: the board's first) and record whether R is reproduced.

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
    seed = board.seeds[0] if seed is None else seed
    if seed not in board.seeds:
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
    checks = []
    for name in names:
        if (name, seed) not in stored:
            raise ConfigError(f"Submission {submission_id} has no stored run for stream {name!r} seed {seed}.")
        options = board.stream(name).options
        stream = make_stream(name, data_dir=data_dir, download=download, **options)
        board.check_fingerprint(name, stream.fingerprint)
        result = run(
            RunSpec(
                stream=name,
                agent=sub.agent,
                seed=seed,
                agent_options=sub.config,
                stream_options=options,
                data_dir=data_dir,
                download=download,
                device=device,
            ),
            stream=stream,
        )
        old, new = np.asarray(stored[(name, seed)].R, dtype=float), np.asarray(result.R, dtype=float)
        diff = float(np.abs(old - new).max()) if old.shape == new.shape else float("inf")
        passed = diff <= tolerance
        store.add_verification(
            submission_id,
            stream=name,
            seed=seed,
            max_abs_diff=diff,
            tolerance=tolerance,
            passed=passed,
            provenance={**result.provenance, "source_hash": current_source},
        )
        checks.append(Check(name, seed, diff, passed))
    ok = all(c.passed for c in checks)
    store.set_verified(submission_id, ok)
    if not ok:
        worst = max(checks, key=lambda c: c.max_abs_diff)
        raise VerificationFailed(
            f"Submission {submission_id} was not reproduced: R on {worst.stream} seed {worst.seed} differs by "
            f"{worst.max_abs_diff:.3g} (tolerance {tolerance:g}); its verified flag is cleared."
        )
    return checks
