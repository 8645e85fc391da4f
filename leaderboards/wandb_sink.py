"""Weights & Biases sink: one W&B run per RunResult, and one per published board.

Mode: an explicit argument wins, then ``WANDB_MODE``, then ``"offline"``. A
missing API key is never an error: an online run without one falls back to
offline with a warning. Offline runs land in ``$WANDB_DIR/wandb/offline-run-*``
(``./wandb`` by default) and are uploaded later with ``wandb sync <dir>``.

Each run follows the conventions of ``docs/leaderboards.md``: ``group`` is the
stream, ``job_type="train"``, the config holds the agent config, the stream
version and fingerprint, the seed, the git commit and package versions; the
history holds one step per experience; the summary holds the metrics; the R
matrix is a ``wandb.Table`` (``R``) and an image (``R_heatmap``); the results
JSON is written into ``run.dir`` and logged as an artifact.

Example:
    >>> resolve_mode("disabled")
    'disabled'
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from replaybench.errors import ConfigError
from replaybench.redact import redact
from replaybench.results import RunResult, atomic_write_text, safe_name, write_heatmap

MODES = ("online", "offline", "disabled")
DEFAULT_PROJECT = "replaybench"
RESULTS_FILE = "results.json"


def resolve_mode(flag: str | None = None) -> str:
    """The W&B mode: ``flag``, else ``WANDB_MODE``, else offline."""
    mode = flag or os.environ.get("WANDB_MODE") or "offline"
    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)  # wandb's older spellings
    if mode not in MODES:
        source = "--wandb" if flag else "WANDB_MODE"
        raise ConfigError(f"The W&B mode ({source}) must be one of {', '.join(MODES)}. Got {mode!r} instead.")
    return mode


@contextmanager
def _redacted_argv() -> Iterator[None]:
    """W&B records the command line (``sys.argv``) when a run starts: give it a redacted copy."""
    saved = sys.argv
    sys.argv = redact(list(saved))
    try:
        yield
    finally:
        sys.argv = saved


def _init(**kwargs: Any) -> Any:
    """``wandb.init`` with secrets redacted from its names and command line; offline when online has no API key."""
    import wandb

    settings = wandb.Settings(console="off", quiet=True)
    kwargs = {k: redact(v) if k in ("name", "group", "job_type", "tags", "notes") else v for k, v in kwargs.items()}
    try:
        with _redacted_argv():
            return wandb.init(settings=settings, reinit="finish_previous", **kwargs)
    except wandb.errors.UsageError as exc:
        if kwargs.get("mode") == "online" and "api key" in str(exc).lower():
            print(
                "replaybench: warning: no W&B API key configured; logging offline instead "
                "(upload later with `wandb sync`).",
                file=sys.stderr,
            )
            with _redacted_argv():
                return wandb.init(settings=settings, reinit="finish_previous", **{**kwargs, "mode": "offline"})
        raise ConfigError(f"W&B refused to start a run: {exc}".splitlines()[0]) from None


def write_results_file(result: RunResult, path: Path) -> None:
    """The results artifact's one file, byte for byte the same wherever it is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(redact(result.to_dict()), indent=1))


def results_artifact_name(run_name: str) -> str:
    """The W&B artifact holding one run's results JSON: a run logs it, a published board uses it."""
    return f"results-{safe_name(run_name)}"


def run_config(result: RunResult, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The W&B config of a run: agent config, spec, stream identity, seed and versions."""
    prov = result.provenance
    config = {
        "agent": result.spec["agent"],
        "stream": result.spec["stream"],
        "seed": result.spec["seed"],
        "agent_config": prov.get("config", {}),
        "spec": result.spec,
        "stream_version": prov.get("stream_version"),
        "stream_fingerprint": prov.get("stream_fingerprint"),
        **{
            k: prov.get(k)
            for k in ("git_commit", "replaybench_version", "torch_version", "numpy_version", "python_version")
        },
        **dict(extra or {}),
    }
    return redact(config)


def log_run(
    result: RunResult,
    *,
    mode: str | None = None,
    project: str = DEFAULT_PROJECT,
    results_path: str | Path | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> str | None:
    """Log one RunResult as a W&B run; return where it went (URL or offline run folder), or None if disabled."""
    import wandb

    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    spec = result.spec
    run = _init(
        project=project,
        mode=mode,
        group=str(spec["stream"]),
        job_type="train",
        name=result.run_name,
        config=run_config(result, extra_config),
    )
    try:
        curve = result.metrics.get("average_accuracy_curve", [])
        per_exp = result.costs.get("per_experience", [])
        for i, row in enumerate(result.R):
            step: dict[str, Any] = {"experience": i, **{f"R/exp_{j}": v for j, v in enumerate(row)}}
            if i < len(curve):
                step["average_accuracy"] = curve[i]
            if i < len(per_exp):
                step.update({k: v for k, v in per_exp[i].items() if isinstance(v, (int, float))})
            run.log(step, step=i)
        columns = ["after_experience", *(f"exp_{j}" for j in range(len(result.R)))]
        run.log({"R": wandb.Table(columns=columns, data=[[i, *row] for i, row in enumerate(result.R)])})
        heatmap = Path(results_path).with_suffix(".png") if results_path else None
        if heatmap is None or not heatmap.is_file():
            heatmap = Path(run.dir) / "R_heatmap.png"
            write_heatmap(result, heatmap)
        run.log({"R_heatmap": wandb.Image(str(heatmap))})
        for key, value in result.metrics.items():
            if isinstance(value, (int, float)):
                run.summary[key] = value
        for key in ("wall_seconds", "learn_seconds", "peak_rss_mb", "replay_samples", "state_bytes"):
            if key in result.costs:
                run.summary[f"costs/{key}"] = result.costs[key]
        local = Path(run.dir) / RESULTS_FILE
        write_results_file(result, local)
        artifact = wandb.Artifact(results_artifact_name(result.run_name), type="results")
        artifact.add_file(str(local), name=RESULTS_FILE)
        run.log_artifact(artifact)
        where = run.url or str(Path(run.dir).parent)
    finally:
        run.finish()
    return where


def log_results(
    results: list[RunResult], *, mode: str | None = None, out: str | Path | None = None, project: str = DEFAULT_PROJECT
) -> list[str | None]:
    """Log each result (``replaybench run --wandb``); ``out`` is where their JSON files were written."""
    return [
        log_run(r, mode=mode, project=project, results_path=Path(out) / f"{r.run_name}.json" if out else None)
        for r in results
    ]


def log_board(
    columns: list[str],
    data: list[list[Any]],
    *,
    board: Mapping[str, Any],
    mode: str | None = None,
    project: str = DEFAULT_PROJECT,
    inputs: Sequence[RunResult] = (),
) -> str | None:
    """Write a ``job_type="leaderboard"`` run holding the board table (``leaderboard``).

    ``inputs`` are the ranked entries' runs that were logged to W&B: each is declared an input
    artifact with the name and the bytes :func:`log_run` gave it, so W&B links the board run to the
    runs it ranks (equal content is the same artifact version). W&B cannot use artifacts offline:
    there the inputs are written (``inputs/``) and named in ``inputs.json``; publish online for lineage.
    """
    import wandb

    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    name = f"leaderboard-{safe_name(board['board'])}-v{safe_name(str(board['version']))}"
    run = _init(
        project=project,
        mode=mode,
        job_type="leaderboard",
        group="leaderboards",
        name=name,
        config=redact({k: v for k, v in board.items() if k != "rows"}),
    )
    try:
        used = []
        for result in inputs:
            local = Path(run.dir) / "inputs" / f"{safe_name(result.run_name)}.json"
            write_results_file(result, local)
            used.append(results_artifact_name(result.run_name))
            if mode == "online":  # W&B cannot use artifacts offline; the manifest below names them
                artifact = wandb.Artifact(used[-1], type="results")
                artifact.add_file(str(local), name=RESULTS_FILE)
                run.use_artifact(artifact)
        atomic_write_text(Path(run.dir) / "inputs.json", json.dumps({"results_artifacts": used}, indent=1))
        run.log({"leaderboard": wandb.Table(columns=columns, data=data)})
        atomic_write_text(Path(run.dir) / "leaderboard.json", json.dumps(redact(dict(board)), indent=1))
        where = run.url or str(Path(run.dir).parent)
    finally:
        run.finish()
    return where
