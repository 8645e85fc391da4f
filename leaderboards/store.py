"""The leaderboard store: SQLite (stdlib) in WAL mode.

Three tables hold the data: ``submissions`` (one agent entered on one board
version), ``runs`` (one RunResult per stream × seed, with its provenance) and
``metrics`` (one row per run and scalar metric); ``verifications`` records
re-runs. ``sweep_runs`` holds every run of every sweep, on a board or not,
including failed ones (keyed by the sweep's folder and the run's identity).
The schema version is SQLite's ``user_version``; :data:`MIGRATIONS`
brings an older file up to date when it is opened, and a file written by a
newer replaybench is refused.

Several processes may write at once: every write is one ``BEGIN IMMEDIATE``
transaction, and a busy database is waited for (``busy_timeout``), never
skipped. All SQL is parameterised.

Example:
    >>> store = Store(":memory:")
    >>> store.schema_version == SCHEMA_VERSION
    True
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replaybench.errors import ConfigError, ReplaybenchError
from replaybench.leaderboards.boards import Board
from replaybench.metrics import summarize
from replaybench.redact import redact
from replaybench.results import RunResult, result_from_json, result_json, without_non_finite

STORE_FILE = "leaderboard.sqlite"
BUSY_TIMEOUT_MS = 60_000

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: submissions, runs, metrics
        """CREATE TABLE submissions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            board TEXT NOT NULL,
            board_version TEXT NOT NULL,
            display_name TEXT NOT NULL,
            agent TEXT NOT NULL,
            config_json TEXT NOT NULL,
            config_hash TEXT NOT NULL,
            source_hash TEXT NOT NULL,
            source_files_json TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
            created TEXT NOT NULL,
            finished TEXT)""",
        "CREATE INDEX submissions_by_board ON submissions (board, board_version, status)",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            submission_id INTEGER NOT NULL REFERENCES submissions (id) ON DELETE CASCADE,
            stream TEXT NOT NULL,
            seed INTEGER NOT NULL,
            stream_fingerprint TEXT NOT NULL,
            stream_version TEXT NOT NULL,
            r_json TEXT NOT NULL,
            baseline_json TEXT NOT NULL,
            result_json TEXT NOT NULL,
            provenance_json TEXT NOT NULL,
            git_commit TEXT,
            replaybench_version TEXT,
            torch_version TEXT,
            hardware_json TEXT,
            wall_seconds REAL,
            results_path TEXT,
            created TEXT NOT NULL,
            UNIQUE (submission_id, stream, seed))""",
        """CREATE TABLE metrics (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (run_id, name))""",
    ),
    (  # 2: verification re-runs and the verified flag
        "ALTER TABLE submissions ADD COLUMN verified INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE verifications (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            submission_id INTEGER NOT NULL REFERENCES submissions (id) ON DELETE CASCADE,
            stream TEXT NOT NULL,
            seed INTEGER NOT NULL,
            max_abs_diff REAL NOT NULL,
            tolerance REAL NOT NULL,
            passed INTEGER NOT NULL,
            provenance_json TEXT NOT NULL,
            created TEXT NOT NULL)""",
    ),
    (  # 3: where each run was logged in W&B
        "ALTER TABLE runs ADD COLUMN wandb_run TEXT",
    ),
    (  # 4: every run of a sweep, on a board or not, finished or failed
        """CREATE TABLE sweep_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sweep TEXT NOT NULL,
            run_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            agent TEXT NOT NULL,
            seed INTEGER NOT NULL,
            spec_json TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
            r_json TEXT,
            metrics_json TEXT,
            result_json TEXT,
            failure_json TEXT,
            results_path TEXT NOT NULL,
            seconds REAL,
            host TEXT,
            created TEXT NOT NULL,
            UNIQUE (sweep, run_id))""",
        "CREATE INDEX sweep_runs_by_sweep ON sweep_runs (sweep, status)",
    ),
    (  # 5: shipped reference entries beside the user's own, and a note shown with an entry
        "ALTER TABLE submissions ADD COLUMN origin TEXT NOT NULL DEFAULT 'user'",
        "ALTER TABLE submissions ADD COLUMN reference_digest TEXT",
        "ALTER TABLE submissions ADD COLUMN note TEXT NOT NULL DEFAULT ''",
    ),
    (  # 6: the W&B artifact a run's results were logged as, so a published board links to it by name
        "ALTER TABLE runs ADD COLUMN wandb_artifact TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_store_path() -> Path:
    """``leaderboard.sqlite`` in the user data dir (XDG on Linux)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "replaybench" / STORE_FILE


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def redact_json(result: RunResult) -> str:
    """A result's strict JSON (non-finite numbers recorded, as in its results file), secrets redacted."""
    return result_json(RunResult.from_dict(redact(result.to_dict())), indent=None)


def _dumps(obj: Any) -> str:
    """Strict JSON (SQLite's json_extract and browsers refuse NaN): non-finite numbers as null."""
    return json.dumps(without_non_finite(redact(obj))[0], sort_keys=True, allow_nan=False)


@dataclass(frozen=True)
class Submission:
    """A row of ``submissions``."""

    id: int
    board: str
    board_version: str
    display_name: str
    agent: str
    config: dict[str, Any]
    config_hash: str
    source_hash: str
    source_files: dict[str, str]
    status: str
    created: str
    verified: bool
    origin: str = "user"
    """"user" (submitted here) or "reference" (shipped with the package, see references.py)."""
    note: str = ""
    """Shown with the entry, e.g. why a reference agent barely learns."""


@dataclass(frozen=True)
class SweepRun:
    """A row of ``sweep_runs``: one run of a sweep, finished (status 'done') or failed."""

    sweep: str
    run_id: str
    stream: str
    agent: str
    seed: int
    status: str
    R: list[list[float]] | None
    metrics: dict[str, Any]
    failure: dict[str, Any] | None
    results_path: str
    seconds: float | None
    host: str | None


@dataclass(frozen=True)
class StoredRun:
    """A row of ``runs`` with its metrics."""

    id: int
    submission_id: int
    stream: str
    seed: int
    stream_fingerprint: str
    R: list[list[float]]
    metrics: dict[str, float]
    provenance: dict[str, Any]
    result: dict[str, Any]
    wandb_run: str | None
    results_path: str | None = None
    """The results JSON written when the run was recorded (on the machine that recorded it)."""
    wandb_artifact: str | None = None
    """The W&B artifact holding the run's results JSON (None: not logged, or recorded before schema 6)."""


METRIC_TOLERANCE = 1e-9
"""How far a stated metric may be from the one recomputed from R (float summation order only)."""


def metrics_from_R(
    R: Any, baseline: Any, scenario: str | None, stated: Mapping[str, Any] | None = None
) -> dict[str, float | None]:
    """Every scalar metric :func:`replaybench.metrics.summarize` derives from R, the baseline and the scenario.

    Metrics that need more than R (intransigence and forward_transfer_cw need reference runs) are
    taken from ``stated``. A result from before provenance named the scenario (``scenario`` None)
    keeps FWT undefined where it states it so: its runner knew the scenario, and an undefined FWT is
    never ranked.
    """
    recomputed = {k: v for k, v in summarize(R, baseline, scenario=scenario).items() if not isinstance(v, list)}
    if scenario is None and stated is not None and stated.get("fwt") is None:
        recomputed["fwt"] = None
    extra = {
        k: v
        for k, v in (stated or {}).items()
        if k not in recomputed and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
    }
    return {**extra, **recomputed}


def check_stated_metrics(result: RunResult) -> dict[str, float | None]:
    """The result's scalar metrics recomputed from its R; refuse one whose stated metrics disagree.

    Raises:
        ConfigError: a stated metric differs from the recomputed one (or is missing, or is
            stated where it is undefined), naming the stream, seed and metric.
    """
    recomputed = metrics_from_R(result.R, result.baseline, result.provenance.get("scenario"), result.metrics)
    where = f"{result.spec.get('stream')} seed {result.spec.get('seed')}"
    for name, value in recomputed.items():
        stated = result.metrics.get(name)
        same = (stated is None and value is None) or (
            stated is not None and value is not None and abs(float(stated) - value) <= METRIC_TOLERANCE
        )
        if not same:
            raise ConfigError(
                f"The result for {where} states {name} = {stated!r}, but its R gives {value!r}; "
                "a result whose metrics disagree with its R matrix is refused."
            )
    return recomputed


def check_display_name(name: str) -> str:
    """A display name is 1–100 printable characters (any of them; outputs escape it)."""
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or not name.isprintable():
        raise ConfigError(f"The display name must be 1 to 100 printable characters. Got {name!r} instead.")
    return name.strip()


class Store:
    """A leaderboard database file (created and migrated on open).

    Args:
        path: The SQLite file, or ``None`` for :func:`default_store_path`.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path not in (None, ":memory:") else (default_store_path() if path is None else None)
        target = ":memory:" if self.path is None else str(self.path)
        if self.path is not None:
            if self.path.is_dir():
                raise ConfigError(
                    f"The store path {self.path} is a folder; give a file such as {self.path / STORE_FILE}."
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._check_integrity(target)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"Cannot open the leaderboard store {target}: {exc}.") from None

    def _check_integrity(self, target: str) -> None:
        """Refuse a damaged file at once, before a command runs anything that would be recorded in it."""
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            self._db.close()
            raise ConfigError(
                f"The leaderboard store {target} is damaged (SQLite: {' '.join(problems[0].split())}); "
                "restore it from a backup "
                "or point --store at another file."
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the lock is taken at BEGIN so writers queue instead of failing."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self, target: int = SCHEMA_VERSION) -> None:
        with self._write() as db:
            current = db.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise ReplaybenchError(
                    f"The leaderboard store {self.path} has schema version {current}, newer than this "
                    f"replaybench understands ({SCHEMA_VERSION}); upgrade replaybench."
                )
            for version in range(current, target):
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
            if target > current:
                db.execute(f"PRAGMA user_version = {int(target)}")

    # --- writing ------------------------------------------------------------------
    def add_submission(
        self,
        *,
        board: Board,
        display_name: str,
        agent: str,
        config: Mapping[str, Any],
        config_hash: str,
        source_hash: str,
        source_files: Mapping[str, str],
        origin: str = "user",
        reference_digest: str | None = None,
        note: str = "",
    ) -> int:
        """Open a submission (status 'running') and return its id."""
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO submissions (board, board_version, display_name, agent, config_json, config_hash, "
                "source_hash, source_files_json, status, created, origin, reference_digest, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (
                    board.name,
                    board.version,
                    redact(check_display_name(display_name)),
                    redact(agent),
                    _dumps(config),
                    config_hash,
                    source_hash,
                    _dumps(dict(source_files)),
                    now(),
                    origin,
                    reference_digest,
                    redact(note),
                ),
            )
            return int(cur.lastrowid)

    def delete_references(self, board: str) -> None:
        """Remove the shipped reference entries of ``board`` (all versions), with their runs."""
        with self._write() as db:
            db.execute("DELETE FROM submissions WHERE board = ? AND origin = 'reference'", (board,))

    def reference_digest(self, board: str, board_version: str) -> str | None:
        """The digest of the reference file the store's reference entries of this board version came from."""
        row = self._db.execute(
            "SELECT reference_digest FROM submissions WHERE board = ? AND board_version = ? AND origin = 'reference' "
            "ORDER BY id LIMIT 1",
            (board, board_version),
        ).fetchone()
        return row[0] if row else None

    def add_run(
        self,
        submission_id: int,
        board: Board,
        result: RunResult,
        *,
        results_path: str | None = None,
        wandb_run: str | None = None,
        wandb_artifact: str | None = None,
    ) -> int:
        """Record one run of a submission, refusing a result that does not belong to ``board``.

        Raises:
            ConfigError: the submission is for another board or board version, the
                stream or seed is not on the board, or the stream fingerprint differs
                from the pinned one.
        """
        sub = self.submission(submission_id)
        if (sub.board, sub.board_version) != (board.name, board.version):
            raise ConfigError(
                f"Submission {submission_id} is for board {sub.board!r} v{sub.board_version}, "
                f"not {board.name!r} v{board.version}; its results cannot be mixed."
            )
        stream, seed = result.spec["stream"], int(result.spec["seed"])
        board.check_fingerprint(stream, result.provenance.get("stream_fingerprint", ""))
        if seed not in board.seeds:
            raise ConfigError(f"Seed {seed} is not one of board {board.name!r}'s seeds {list(board.seeds)}.")
        missing = [m for m in board.metrics if m not in result.metrics]
        if missing:
            raise ConfigError(f"The result for {stream} seed {seed} lacks the board's metrics {missing}.")
        recomputed = check_stated_metrics(result)
        prov = result.provenance
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO runs (submission_id, stream, seed, stream_fingerprint, stream_version, r_json, "
                "baseline_json, result_json, provenance_json, git_commit, replaybench_version, torch_version, "
                "hardware_json, wall_seconds, results_path, created, wandb_run, wandb_artifact) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    submission_id,
                    stream,
                    seed,
                    prov["stream_fingerprint"],
                    str(prov.get("stream_version", "")),
                    json.dumps(result.R),
                    json.dumps(result.baseline),
                    redact_json(result),
                    _dumps(prov),
                    prov.get("git_commit"),
                    prov.get("replaybench_version"),
                    prov.get("torch_version"),
                    _dumps(prov.get("hardware", {})),
                    float(result.costs.get("wall_seconds", 0.0)),
                    redact(results_path),
                    now(),
                    wandb_run,
                    wandb_artifact,
                ),
            )
            run_id = int(cur.lastrowid)
            db.executemany(  # undefined metrics (None) have no row
                "INSERT INTO metrics (run_id, name, value) VALUES (?, ?, ?)",
                [(run_id, k, float(v)) for k, v in recomputed.items() if v is not None],
            )
            return run_id

    def record_sweep_run(
        self,
        *,
        sweep: str,
        run_id: str,
        spec: Mapping[str, Any],
        results_path: str,
        result: RunResult | None = None,
        failure: Mapping[str, Any] | None = None,
        seconds: float | None = None,
        host: str | None = None,
    ) -> None:
        """Record one run of a sweep (exactly one of ``result`` and ``failure``); a rerun replaces its row.

        Raises:
            ConfigError: the result's stated metrics disagree with its R (see :func:`check_stated_metrics`).
        """
        if (result is None) == (failure is None):
            raise ValueError("give exactly one of result and failure")
        done = result is not None
        # the row keeps the metrics recomputed from R, and a result whose stated ones disagree is refused
        metrics = {**result.metrics, **check_stated_metrics(result)} if result is not None else None
        with self._write() as db:
            db.execute(
                "INSERT INTO sweep_runs (sweep, run_id, stream, agent, seed, spec_json, status, r_json, metrics_json, "
                "result_json, failure_json, results_path, seconds, host, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (sweep, run_id) DO UPDATE SET spec_json = excluded.spec_json, status = excluded.status, "
                "r_json = excluded.r_json, metrics_json = excluded.metrics_json, result_json = excluded.result_json, "
                "failure_json = excluded.failure_json, results_path = excluded.results_path, "
                "seconds = excluded.seconds, host = excluded.host, created = excluded.created",
                (
                    redact(sweep),
                    run_id,
                    spec["stream"],
                    redact(spec["agent"]),
                    int(spec["seed"]),
                    _dumps(dict(spec)),
                    "done" if done else "failed",
                    json.dumps(result.R) if done else None,
                    _dumps(metrics) if done else None,
                    redact_json(result) if done else None,
                    None if done else _dumps(dict(failure)),
                    redact(results_path),
                    seconds,
                    host,
                    now(),
                ),
            )

    def finish_submission(self, submission_id: int, status: str) -> None:
        if status not in ("complete", "failed"):
            raise ValueError(f"status must be 'complete' or 'failed', got {status!r}")
        with self._write() as db:
            db.execute("UPDATE submissions SET status = ?, finished = ? WHERE id = ?", (status, now(), submission_id))

    def add_verification(
        self,
        submission_id: int,
        *,
        stream: str,
        seed: int,
        max_abs_diff: float,
        tolerance: float,
        passed: bool,
        provenance: Mapping[str, Any],
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO verifications (submission_id, stream, seed, max_abs_diff, tolerance, passed, "
                "provenance_json, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (submission_id, stream, seed, max_abs_diff, tolerance, int(passed), _dumps(dict(provenance)), now()),
            )

    def set_verified(self, submission_id: int, verified: bool) -> None:
        with self._write() as db:
            db.execute("UPDATE submissions SET verified = ? WHERE id = ?", (int(verified), submission_id))

    # --- reading ------------------------------------------------------------------
    _SUBMISSION_COLUMNS = (
        "id, board, board_version, display_name, agent, config_json, config_hash, source_hash, "
        "source_files_json, status, created, verified, origin, note"
    )

    @staticmethod
    def _submission(row: tuple) -> Submission:
        return Submission(
            id=row[0],
            board=row[1],
            board_version=row[2],
            display_name=row[3],
            agent=row[4],
            config=json.loads(row[5]),
            config_hash=row[6],
            source_hash=row[7],
            source_files=json.loads(row[8]),
            status=row[9],
            created=row[10],
            verified=bool(row[11]),
            origin=row[12],
            note=row[13],
        )

    def submission(self, submission_id: int) -> Submission:
        row = self._db.execute(
            f"SELECT {self._SUBMISSION_COLUMNS} FROM submissions WHERE id = ?", (submission_id,)
        ).fetchone()
        if row is None:
            where = self.path or "the in-memory store"
            raise ConfigError(f"No submission {submission_id} in {where}.")
        return self._submission(row)

    def submissions(
        self,
        board: str,
        board_version: str | None = None,
        *,
        status: str | None = "complete",
        origin: str | None = None,
    ) -> list[Submission]:
        """Submissions to ``board`` (optionally one version, one status, one origin), oldest first."""
        sql = f"SELECT {self._SUBMISSION_COLUMNS} FROM submissions WHERE board = ?"
        args: list[Any] = [board]
        if origin is not None:
            sql += " AND origin = ?"
            args.append(origin)
        if board_version is not None:
            sql += " AND board_version = ?"
            args.append(board_version)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        return [self._submission(r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def runs(self, submission_id: int) -> list[StoredRun]:
        rows = self._db.execute(
            "SELECT id, submission_id, stream, seed, stream_fingerprint, r_json, provenance_json, result_json, "
            "wandb_run, baseline_json, results_path, wandb_artifact "
            "FROM runs WHERE submission_id = ? ORDER BY stream, seed",
            (submission_id,),
        ).fetchall()
        out = []
        for r in rows:
            # The metrics are recomputed from the stored R on every read, so a value edited in the
            # metrics table never reaches a board; an edited R is what verify's rerun catches.
            stated = dict(self._db.execute("SELECT name, value FROM metrics WHERE run_id = ?", (r[0],)).fetchall())
            provenance = json.loads(r[6])
            recomputed = metrics_from_R(json.loads(r[5]), json.loads(r[9]), provenance.get("scenario"), stated)
            values = {k: v for k, v in recomputed.items() if v is not None}
            out.append(
                StoredRun(
                    id=r[0],
                    submission_id=r[1],
                    stream=r[2],
                    seed=r[3],
                    stream_fingerprint=r[4],
                    R=json.loads(r[5]),
                    metrics=values,
                    provenance=provenance,
                    result=json.loads(r[7]),
                    wandb_run=r[8],
                    results_path=r[10],
                    wandb_artifact=r[11],
                )
            )
        return out

    def sweep_runs(self, sweep: str) -> list[SweepRun]:
        """The recorded runs of one sweep (its folder, as recorded), in run-id order."""
        rows = self._db.execute(
            "SELECT sweep, run_id, stream, agent, seed, status, r_json, metrics_json, failure_json, results_path, "
            "seconds, host FROM sweep_runs WHERE sweep = ? ORDER BY run_id",
            (sweep,),
        ).fetchall()
        return [
            SweepRun(
                sweep=r[0],
                run_id=r[1],
                stream=r[2],
                agent=r[3],
                seed=r[4],
                status=r[5],
                R=json.loads(r[6]) if r[6] else None,
                metrics=json.loads(r[7]) if r[7] else {},
                failure=json.loads(r[8]) if r[8] else None,
                results_path=r[9],
                seconds=r[10],
                host=r[11],
            )
            for r in rows
        ]

    def finished_results(self) -> list[tuple[RunResult, str | None, str]]:
        """Every finished run the store holds, as ``(result, board or None, where)``, board runs first.

        What :func:`replaybench.analysis.load_results` reads (its ``ResultSource`` protocol). A board
        run's metrics are recomputed from its R, as :meth:`runs` gives them; a sweep's run (board None)
        was checked against its R when it was recorded.
        """
        where = str(self.path or ":memory:")
        out = []
        for submission_id, board in self._db.execute("SELECT id, board FROM submissions ORDER BY id").fetchall():
            for run in self.runs(submission_id):
                result = result_from_json(json.dumps(run.result))
                result.metrics = {**result.metrics, **run.metrics}
                out.append((result, board, f"{where} (submission {submission_id})"))
        for sweep, text in self._db.execute(
            "SELECT sweep, result_json FROM sweep_runs WHERE status = 'done' ORDER BY sweep, run_id"
        ).fetchall():
            out.append((result_from_json(text), None, f"{where} (sweep {sweep})"))
        return out

    def count(self, table: str) -> int:
        if table not in ("submissions", "runs", "metrics", "verifications", "sweep_runs"):
            raise ValueError(f"unknown table {table!r}")
        return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
