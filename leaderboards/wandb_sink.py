"""Weights & Biases sink: one W&B run per RunResult, and one per published board.

**Mode.** The first that applies: the explicit flag (``--wandb MODE``,
``leaderboard publish --mode``); ``WANDB_MODE``; ``online`` when an API key
is configured (``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``, or a netrc
entry for the W&B host, the one ``wandb login`` writes); else ``offline``.
Nothing here needs the network to decide. An online run that W&B refuses for
want of a key logs offline with a warning. Offline runs land in
``$WANDB_DIR/wandb/offline-run-*`` (``./wandb`` by default) and are uploaded
later with ``wandb sync <dir>``.

**Where a run is filed** (:func:`resolve_options`): project, entity, group
and tags each come from the flag, else the standard variable
(``WANDB_PROJECT``, ``WANDB_ENTITY``, ``WANDB_RUN_GROUP``, ``WANDB_TAGS``),
else the default: project ``replaybench``, W&B's default entity, group
``<stream>/<agent>`` (so W&B's grouping aggregates one agent's seeds), no
tags. ``job_type`` is ``WANDB_JOB_TYPE``, else what the run was (:data:`KINDS`).

**Names.** A run is named ``<run id>__<kind>`` (the run id holds the stream,
agent, seed and a hash of the options), so a plain run and a submission of
the same spec never share a name; its results artifact is
:func:`results_artifact_name`.

**History and summary** (``docs/leaderboards.md`` has the table): the step
axis is ``experience``; one row per experience holds ``R/exp_j``, ``eval/*``
(the metrics as if the run stopped there) and ``stats/*`` (what the runner
measured and the agent reported); per-epoch rows hold ``train/loss`` against
``train/epoch``. History keys have no summary: the summary holds the final
``metrics/*``, the ``costs/*`` totals, and the ``R`` table and ``R_heatmap``
image, so media add no history step.

Example:
    >>> resolve_mode("disabled")
    'disabled'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from replaybench import metrics
from replaybench.errors import ConfigError, require_extra
from replaybench.redact import redact
from replaybench.results import RunResult, atomic_write_text, safe_name, write_heatmap

MODES = ("online", "offline", "disabled")
DEFAULT_PROJECT = "replaybench"
DEFAULT_HOST = "https://api.wandb.ai"
RESULTS_FILE = "results.json"
NAME_MAX = 128  # W&B refuses longer artifact names and groups
KINDS = ("run", "submission", "sweep", "board")
"""What a W&B run was, its default ``job_type``: ``replaybench run``, a board submission
(``submit``, ``quick``), a run of a ``sweep``, a published board."""
EVAL_CURVES: dict[str, Callable[[Any], float | None]] = {
    "average_accuracy": metrics.accuracy,  # on R's first k rows: A_k
    "forgetting_max": metrics.forgetting_max,
    "forgetting_first_last": metrics.forgetting_first_last,
    "bwt": metrics.bwt,
    "plasticity": metrics.plasticity,
}
"""The ``eval/*`` history of each experience k, computed on R's first k rows (:func:`metrics.metric_curve`)."""
_BAD_NAME_CHARS = "/\\#?%:"  # W&B refuses them in project and entity names


def api_key_configured() -> bool:
    """Whether W&B has credentials here, read as W&B reads them, without the network."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth
    except ImportError:  # an older wandb: read the netrc the same way
        import netrc
        from urllib.parse import urlsplit

        try:
            found = netrc.netrc(os.environ.get("NETRC")).authenticators(urlsplit(host).netloc)
        except (OSError, netrc.NetrcParseError):
            return False
        return bool(found and found[2])
    try:
        return bool(read_netrc_auth(host=host))
    except Exception:  # a malformed key: W&B would refuse it too
        return False


def resolve_mode(flag: str | None = None) -> str:
    """The W&B mode: ``flag``, else ``WANDB_MODE``, else online with an API key, else offline."""
    mode = flag or os.environ.get("WANDB_MODE") or ("online" if api_key_configured() else "offline")
    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)  # wandb's older spellings
    if mode not in MODES:
        source = "--wandb" if flag else "WANDB_MODE"
        raise ConfigError(f"The W&B mode ({source}) must be one of {', '.join(MODES)}. Got {mode!r} instead.")
    return mode


@dataclass(frozen=True)
class WandbOptions:
    """Where W&B runs are filed; :func:`resolve_options` fills it from flags, variables and defaults."""

    mode: str = "offline"
    project: str = DEFAULT_PROJECT
    entity: str | None = None
    """None: W&B's default entity for the key."""
    group: str | None = None
    """None: ``<stream>/<agent>`` for each run."""
    tags: tuple[str, ...] = ()


def _pick(flag: str | None, flag_name: str, var: str) -> tuple[str | None, str]:
    """The flag's value, else the variable's; and which of them it came from (for the error message)."""
    if flag is not None:
        return flag, flag_name
    return os.environ.get(var) or None, var


def _check_name(what: str, value: str | None, source: str, *, max_len: int = 128, chars: str = "") -> None:
    if value is None:
        return
    bad = sorted({c for c in value if c in chars})
    if not value.strip() or len(value) > max_len or bad:
        why = f"must not contain {' '.join(bad)}" if bad else f"must be 1 to {max_len} characters"
        raise ConfigError(f"The W&B {what} ({source}) {why}. Got {value!r} instead.")


def resolve_options(
    mode: str | None = None,
    *,
    project: str | None = None,
    entity: str | None = None,
    group: str | None = None,
    tags: Sequence[str] | None = None,
) -> WandbOptions:
    """Flag, else the ``WANDB_*`` variable, else the default, for each of mode, project, entity, group and tags.

    Args:
        mode: ``--wandb`` (see :func:`resolve_mode`).
        project: ``--wandb-project``, else ``WANDB_PROJECT``, else ``replaybench``.
        entity: ``--wandb-entity``, else ``WANDB_ENTITY``, else W&B's default.
        group: ``--wandb-group``, else ``WANDB_RUN_GROUP``, else ``<stream>/<agent>`` per run.
        tags: ``--wandb-tags``, else ``WANDB_TAGS`` (comma-separated), else none.

    Raises:
        ConfigError: a bad mode, a project or entity with ``/ \\ # ? % :``, or a tag over 64 characters.
        MissingExtraError: a mode other than disabled without the ``wandb`` package.
    """
    project_value, project_source = _pick(project, "--wandb-project", "WANDB_PROJECT")
    entity_value, entity_source = _pick(entity, "--wandb-entity", "WANDB_ENTITY")
    group_value, group_source = _pick(group, "--wandb-group", "WANDB_RUN_GROUP")
    _check_name("project", project_value, project_source, chars=_BAD_NAME_CHARS)
    _check_name("entity", entity_value, entity_source, chars=_BAD_NAME_CHARS)
    _check_name("group", group_value, group_source)
    if tags is not None:
        tag_values, tag_source = [str(t).strip() for t in tags], "--wandb-tags"
    else:
        tag_values = [t.strip() for t in os.environ.get("WANDB_TAGS", "").split(",") if t.strip()]
        tag_source = "WANDB_TAGS"
    for tag in tag_values:
        _check_name("tag", tag, tag_source, max_len=64)
    mode = resolve_mode(mode)
    if mode != "disabled":  # checked here, where the flags are read, so no run starts without it
        require_extra("wandb", "wandb", "W&B logging")
    return WandbOptions(
        mode=mode,
        project=project_value or DEFAULT_PROJECT,
        entity=entity_value,
        group=group_value,
        tags=tuple(dict.fromkeys(tag_values)),
    )


def job_type(kind: str) -> str:
    """``WANDB_JOB_TYPE``, else ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return os.environ.get("WANDB_JOB_TYPE") or kind


def wandb_run_name(result: RunResult, kind: str) -> str:
    """``<stream>__<agent>__seed<k>__<options hash>__<kind>``: one name per run spec and kind."""
    return f"{result.run_id}__{safe_name(kind)}"


def results_artifact_name(result: RunResult, kind: str) -> str:
    """The W&B artifact holding one run's results JSON: a run logs it, a published board uses it.

    ``results-<run name>``; past W&B's 128 characters (an agent given as a file path), its head
    and a hash of the whole.
    """
    return _bounded(f"results-{wandb_run_name(result, kind)}")


def _bounded(name: str, limit: int = NAME_MAX) -> str:
    """``name``, or past ``limit`` characters its head and a hash of the whole (still one name per input)."""
    if len(name) <= limit:
        return name
    return f"{name[: limit - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


@contextmanager
def _redacted_argv() -> Iterator[None]:
    """W&B records the command line (``sys.argv``) when a run starts: give it a redacted copy."""
    saved = sys.argv
    sys.argv = redact(list(saved))
    try:
        yield
    finally:
        sys.argv = saved


def _init(options: WandbOptions, **kwargs: Any) -> Any:
    """``wandb.init`` with secrets redacted from its names and command line; offline when online has no API key."""
    import wandb

    settings = wandb.Settings(console="off", quiet=True)
    kwargs = {k: redact(v) if k in ("name", "group", "job_type", "tags", "notes") else v for k, v in kwargs.items()}
    kwargs.update(project=options.project, entity=options.entity, mode=options.mode)
    try:
        with _redacted_argv():
            return wandb.init(settings=settings, reinit="finish_previous", **kwargs)
    except (wandb.errors.UsageError, wandb.errors.AuthenticationError) as exc:
        if options.mode == "online" and "api key" in str(exc).lower():
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


def run_config(result: RunResult, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The W&B config of a run: agent config, spec, stream identity, seed and versions."""
    prov = result.provenance
    config = {
        "agent": result.spec["agent"],
        "stream": result.spec["stream"],
        "seed": result.spec["seed"],
        "run_id": result.run_id,
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


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _define_axes(run: Any) -> None:
    """Experience and epoch step axes; no history key leaves its last value in the summary."""
    run.define_metric("experience", summary="none")
    for namespace in ("R/*", "eval/*", "stats/*"):
        run.define_metric(namespace, step_metric="experience", summary="none")
    run.define_metric("train/epoch", summary="none")
    for key in ("train/loss", "train/experience"):
        run.define_metric(key, step_metric="train/epoch", summary="none")


def _log_history(run: Any, result: RunResult) -> None:
    """Per experience k: its epochs' losses, then one row of R, the metrics up to k, and its statistics."""
    curves = {name: metrics.metric_curve(metric, result.R) for name, metric in EVAL_CURVES.items()}
    per_exp = result.costs.get("per_experience", [])
    epoch = 0
    for k, row in enumerate(result.R):
        stats = per_exp[k] if k < len(per_exp) else {}
        for loss in stats.get("epoch_losses", []):
            run.log({"train/epoch": epoch, "train/experience": k, "train/loss": loss})
            epoch += 1
        step: dict[str, Any] = {"experience": k, **{f"R/exp_{j}": v for j, v in enumerate(row)}}
        step.update({f"eval/{name}": curve[k] for name, curve in curves.items() if curve[k] is not None})
        step.update({f"stats/{key}": v for key, v in stats.items() if _number(v)})
        run.log(step)


def log_run(
    result: RunResult,
    *,
    options: WandbOptions | None = None,
    kind: str = "run",
    results_path: str | Path | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> str | None:
    """Log one RunResult as a W&B run.

    Args:
        result: The finished run.
        options: Mode, project, entity, group and tags (default: :func:`resolve_options` of the environment).
        kind: What the run was (:data:`KINDS`): its job type and part of its name.
        results_path: Where its results JSON was written; the heatmap beside it is reused.
        extra_config: Added to the W&B config (a submission's board, a sweep's folder).

    Returns:
        The run's URL, its offline run folder, or None when W&B is disabled.
    """
    import wandb

    options = options if options is not None else resolve_options()
    if options.mode == "disabled":
        return None
    spec = result.spec
    run = _init(
        options,
        group=options.group or _bounded(f"{spec['stream']}/{spec['agent']}"),
        job_type=job_type(kind),
        name=wandb_run_name(result, kind),
        tags=list(options.tags),
        config=run_config(result, extra_config),
    )
    try:
        _define_axes(run)
        _log_history(run, result)
        columns: list[str | int] = ["after_experience", *(f"exp_{j}" for j in range(len(result.R)))]
        heatmap = Path(results_path).with_suffix(".png") if results_path else None
        if heatmap is None or not heatmap.is_file():
            heatmap = Path(run.dir) / "R_heatmap.png"
            write_heatmap(result, heatmap)
        run.summary.update(
            {
                **{f"metrics/{k}": v for k, v in result.metrics.items() if _number(v)},
                **{f"costs/{k}": v for k, v in result.costs.items() if _number(v)},
                "R": wandb.Table(columns=columns, data=[[i, *row] for i, row in enumerate(result.R)]),
                "R_heatmap": wandb.Image(str(heatmap)),
            }
        )
        local = Path(run.dir) / RESULTS_FILE
        write_results_file(result, local)
        artifact = wandb.Artifact(results_artifact_name(result, kind), type="results")
        artifact.add_file(str(local), name=RESULTS_FILE)
        run.log_artifact(artifact)
        where = run.url or str(Path(run.dir).parent)
    finally:
        run.finish()
    return where


def log_board(
    columns: list[str],
    data: list[list[Any]],
    *,
    board: Mapping[str, Any],
    options: WandbOptions | None = None,
    inputs: Sequence[tuple[RunResult, str]] = (),
) -> str | None:
    """Write a ``job_type="board"`` run holding the board table (``leaderboard``).

    ``inputs`` are the ranked entries' runs that were logged to W&B, each with the name of the
    artifact it was logged as (:func:`results_artifact_name`, kept in the store): each is declared
    an input artifact with that name and the bytes :func:`log_run` gave it, so W&B links the
    board run to the runs it ranks (equal content is the same artifact version). W&B cannot use
    artifacts offline: there the inputs are written (``inputs/``) and named in ``inputs.json``;
    publish online for lineage.
    """
    import wandb

    options = options if options is not None else resolve_options()
    if options.mode == "disabled":
        return None
    name = f"leaderboard-{safe_name(board['board'])}-v{safe_name(str(board['version']))}"
    run = _init(
        options,
        job_type=job_type("board"),
        group=options.group or "leaderboards",
        name=name,
        tags=list(options.tags),
        config=redact({k: v for k, v in board.items() if k != "rows"}),
    )
    try:
        used = []
        for result, artifact_name in inputs:
            used.append(artifact_name)
            local = Path(run.dir) / "inputs" / f"{used[-1]}.json"
            write_results_file(result, local)
            if not run.offline:  # W&B cannot use artifacts offline; the manifest below names them
                artifact = wandb.Artifact(used[-1], type="results")
                artifact.add_file(str(local), name=RESULTS_FILE)
                run.use_artifact(artifact)
        atomic_write_text(Path(run.dir) / "inputs.json", json.dumps({"results_artifacts": used}, indent=1))
        table_columns: list[str | int] = [*columns]
        run.summary["leaderboard"] = wandb.Table(columns=table_columns, data=data)
        atomic_write_text(Path(run.dir) / "leaderboard.json", json.dumps(redact(dict(board)), indent=1))
        where = run.url or str(Path(run.dir).parent)
    finally:
        run.finish()
    return where


def add_wandb_target_args(p: argparse.ArgumentParser) -> None:
    """Where W&B runs are filed (project, entity, group, tags): every command that logs takes these."""
    p.add_argument("--wandb-project", metavar="NAME", help="W&B project (default: $WANDB_PROJECT, else replaybench)")
    p.add_argument("--wandb-entity", metavar="NAME", help="W&B entity (default: $WANDB_ENTITY, else W&B's default)")
    p.add_argument("--wandb-group", metavar="NAME", help="W&B group (default: $WANDB_RUN_GROUP, else STREAM/AGENT)")
    p.add_argument(
        "--wandb-tags",
        action="append",
        metavar="TAG[,TAG...]",
        help="W&B tags, comma-separated, repeatable (default: $WANDB_TAGS)",
    )


def options_from_args(args: argparse.Namespace, mode: str | None, *, tags: Sequence[str] = ()) -> WandbOptions:
    """:func:`resolve_options` of the flags of :func:`add_wandb_target_args`; ``tags`` are added to theirs."""
    flagged = [t for arg in args.wandb_tags for t in arg.split(",")] if args.wandb_tags else None
    options = resolve_options(
        mode, project=args.wandb_project, entity=args.wandb_entity, group=args.wandb_group, tags=flagged
    )
    return replace(options, tags=tuple(dict.fromkeys([*options.tags, *tags])))
