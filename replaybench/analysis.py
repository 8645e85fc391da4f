"""Results as tidy data: one pandas row per run and scalar metric.

:func:`load_results` reads what the suite wrote (a results folder, a sweep's
folder with its nested folders, JSON files) or a leaderboard store, and
returns a long-format DataFrame, the shape seaborn and ``groupby`` expect::

    df = replaybench.load_results("replaybench-sweep")
    df[df.metric == "acc"].groupby(["stream", "agent"]).value.agg(["mean", "std", "count"])

Each run's R matrix rides in the ``R`` column (the same array on each of the
run's rows); one row per run is ``df.drop_duplicates("run_id")``.

A store is read through :class:`ResultSource`, a one-method protocol, so this
module (the core) never imports the leaderboards: pass the store object
(``replaybench.leaderboards.store.Store(path)``); ``replaybench plot`` opens
a store path itself.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from replaybench.errors import ConfigError
from replaybench.results import FAILED_SUFFIX, RunResult, options_hash, result_from_json, run_id, run_name

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    "run_id",
    "run_name",
    "stream",
    "agent",
    "config",
    "seed",
    "board",
    "metric",
    "value",
    "R",
    "options",
    "source",
)
"""The DataFrame's columns, in order (see :func:`load_results`)."""

SQLITE_HEADER = b"SQLite format 3\x00"
NOT_RESULTS = frozenset({"sweep.json"})
"""JSON files a results folder holds besides results (a sweep's manifest)."""


@runtime_checkable
class ResultSource(Protocol):
    """Anything that holds finished runs, e.g. a leaderboard store (``Store.finished_results``)."""

    def finished_results(self) -> Iterable[tuple[RunResult, str | None, str]]:
        """Every finished run as ``(result, board or None, where it was read)``; a board's rows first."""
        ...


@dataclass(frozen=True)
class _Run:
    result: RunResult
    board: str | None
    source: str


def load_results(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | ResultSource) -> pd.DataFrame:
    """Read finished runs into a tidy DataFrame: one row per run and scalar metric.

    Args:
        source: A results folder (as ``replaybench run --out`` or ``replaybench sweep`` write it;
            sub-folders are read too, ``*.failed.json`` and ``sweep.json`` are skipped), a result
            JSON file, a list of folders and files, or a :class:`ResultSource` such as a
            leaderboard store object.

    Returns:
        A DataFrame with the columns :data:`COLUMNS`: ``run_id`` (the run's identity,
        :func:`replaybench.results.run_id`), ``run_name``, ``stream``, ``agent``, ``config`` (the
        hash of the options, which tells a sweep's option sets apart), ``seed``, ``board`` (the board
        a store's run was submitted to; None otherwise), ``metric`` and ``value`` (NaN where the
        metric is undefined, e.g. FWT on a class-IL stream), ``R`` (the run's score matrix, a
        NumPy array), ``options`` (the agent's options, a dict) and ``source`` (the file or store
        it came from). Every run has the same metric rows as in its file. A run read twice (the
        same run id) is kept once: the first read, and from a store its board row.

    Raises:
        ConfigError: a path that does not exist, a store given as a path (pass the store
            object), a file that is not valid JSON or not a result, or no finished run at all.

    Example:
        >>> df = load_results("replaybench-sweep")  # doctest: +SKIP
        >>> df.pivot_table(index="agent", columns="metric", values="value")  # doctest: +SKIP
    """
    import pandas as pd

    runs = _dedupe(_read(source))
    if not runs:
        raise ConfigError(f"No finished runs found in {_describe(source)}.")
    rows = []
    for run in runs:
        r = run.result
        R = np.asarray(r.R, dtype=float)
        identity = run_id(r.spec)
        for metric, value in r.metrics.items():
            if isinstance(value, bool) or not (value is None or isinstance(value, (int, float))):
                continue  # curves (average_accuracy_curve) are derived from R, not rows
            rows.append(
                (
                    identity,
                    run_name(r.spec["stream"], r.spec["agent"], r.spec["seed"]),
                    r.spec["stream"],
                    r.spec["agent"],
                    options_hash(r.spec),
                    int(r.spec["seed"]),
                    run.board,
                    metric,
                    math.nan if value is None else float(value),
                    R,
                    dict(r.spec.get("agent_options", {})),
                    run.source,
                )
            )
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["seed"] = df["seed"].astype("int64")
    df["value"] = df["value"].astype("float64")
    return df


def runs_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run of a :func:`load_results` frame (its metric columns dropped), R included.

    Example:
        >>> [R.shape for R in runs_frame(load_results("replaybench-sweep")).R]  # doctest: +SKIP
        [(5, 5), (5, 5), ...]
    """
    return df.drop_duplicates("run_id").drop(columns=["metric", "value"]).reset_index(drop=True)


def is_store_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an SQLite file (a leaderboard store), by its header."""
    p = Path(path)
    if not p.is_file():
        return False
    with p.open("rb") as f:
        return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER


# --- reading ------------------------------------------------------------------------------------
def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, ResultSource):
        return repr(source)
    return ", ".join(str(s) for s in source) or "an empty list"


def _read(source: Any) -> list[_Run]:
    if isinstance(source, ResultSource):
        return [_Run(result, board, where) for result, board, where in source.finished_results()]
    if isinstance(source, (str, os.PathLike)):
        return _read_path(Path(source))
    if isinstance(source, Sequence) and not isinstance(source, bytes):
        return [run for item in source for run in _read_path(Path(_check_path_like(item)))]
    raise ConfigError(
        f"load_results reads a results folder, a result JSON file, a list of them or a store object; "
        f"got an object of type {type(source).__name__}."
    )


def _check_path_like(item: Any) -> str | os.PathLike[str]:
    if not isinstance(item, (str, os.PathLike)):
        raise ConfigError(f"load_results expects paths in its list; got {item!r} of type {type(item).__name__}.")
    return item


def _read_path(path: Path) -> list[_Run]:
    if not path.exists():
        raise ConfigError(f"No such results folder or file: {path}.")
    if path.is_dir():
        return [run for file in _result_files(path) if (run := _read_file(file, strict=False)) is not None]
    if is_store_file(path):
        raise ConfigError(
            f"{path} is a leaderboard store: pass replaybench.leaderboards.store.Store({str(path)!r}) "
            "to load_results, or run 'replaybench plot' on it."
        )
    run = _read_file(path, strict=True)
    assert run is not None  # strict: a file that is not a result raised
    return [run]


def _result_files(folder: Path) -> list[Path]:
    """The JSON files under ``folder`` that may be results, sorted; hidden folders (``.submitit``) skipped."""
    return sorted(
        p
        for p in folder.rglob("*.json")
        if p.is_file()
        and not p.name.endswith(FAILED_SUFFIX)
        and p.name not in NOT_RESULTS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _read_file(path: Path, *, strict: bool) -> _Run | None:
    """A result file as a run; a JSON file that is not a result is None in a folder, an error if named."""
    try:
        text = path.read_text()
        data = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}.") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}.") from None
    if not (isinstance(data, dict) and {"spec", "R", "metrics"} <= data.keys()):
        if strict:
            raise ConfigError(f"{path} is not a replaybench result (it lacks 'spec', 'R' or 'metrics').")
        return None
    try:
        result = result_from_json(text)
        R = np.asarray(result.R, dtype=float)
        if R.ndim != 2 or R.shape[0] != R.shape[1] or R.size == 0:
            raise ValueError(f"R has shape {R.shape}, not T × T")
        for key in ("stream", "agent", "seed"):
            if key not in result.spec:
                raise ValueError(f"its spec lacks {key!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path} is a malformed result: {exc}.") from None
    return _Run(result, None, str(path))


def _dedupe(runs: list[_Run]) -> list[_Run]:
    seen: set[str] = set()
    kept = []
    for run in runs:
        identity = run_id(run.result.spec)
        if identity not in seen:
            seen.add(identity)
            kept.append(run)
    return kept
