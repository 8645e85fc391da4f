"""The ``replaybench`` command: the assembly layer.

It parses arguments, builds run specs, picks the sinks (results folder,
store, board, W&B) and hands everything to the one pipeline
(:mod:`replaybench.pipeline`). It is the only module of ``replaybench/``
that imports ``replaybench.leaderboards``.

Exit codes: 0 every run finished; 1 some runs failed (the others are kept);
2 bad input, refused before any work, one line on stderr (``--traceback``
shows the trace); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), the
finished runs kept.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from replaybench.errors import ConfigError, ReplaybenchError, require_extra

DEFAULT_OUT = "replaybench-results"
TABLE_METRICS = ("acc", "forgetting_max", "forgetting_first_last", "bwt", "fwt", "plasticity")
OPTIONAL_METRICS = ("intransigence", "forward_transfer_cw")
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


# --- shared options --------------------------------------------------------------------------
def add_execution_args(p: argparse.ArgumentParser, *, default_executor: str = "inline") -> None:
    """Where runs execute: every command that runs agents takes these."""
    from replaybench.executors import EXECUTORS
    from replaybench.leaderboards.wandb_sink import add_wandb_target_args

    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=default_executor,
        help=f"where runs execute (default: {default_executor})",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="parallel runs (local pool size, Ray CPUs, Slurm array parallelism; default: the CPUs available)",
    )
    p.add_argument("--timeout", type=float, help="per-run limit in seconds; a run past it is recorded as failed")
    p.add_argument("--address", help="Ray cluster: 'auto' or ray://host:10001 (default: start a local one)")
    p.add_argument("--cluster", choices=("slurm", "local", "debug"), help="submitit cluster (default: detect)")
    p.add_argument("--partition", help="Slurm partition")
    slurm = p.add_argument_group("Slurm jobs (--executor slurm; docs/sweeps.md)")
    slurm.add_argument("--slurm-mem", metavar="SIZE", help="memory per job, as sbatch --mem: 4G, 500M")
    slurm.add_argument("--slurm-gpus-per-task", type=int, metavar="N", help="GPUs per job")
    slurm.add_argument("--slurm-account", metavar="NAME", help="account charged")
    slurm.add_argument("--slurm-qos", metavar="NAME", help="quality of service")
    slurm.add_argument(
        "--slurm-time", type=int, metavar="MINUTES", help="job time limit (default: --timeout plus allowances)"
    )
    slurm.add_argument(
        "--slurm-sbatch",
        action="append",
        metavar="OPTION",
        help="an extra #SBATCH option, repeatable: --slurm-sbatch constraint=a100 (or =--constraint=a100)",
    )
    slurm.add_argument(
        "--slurm-setup", action="append", metavar="LINE", help="a shell line run in each job first, repeatable"
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps (default: cpu)")
    p.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads per run (inline: this process; local: each worker, default 1)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the R heatmaps")
    p.add_argument(
        "--wandb",
        nargs="?",
        const="",
        default=None,
        metavar="MODE",
        help="log every run to W&B: online, offline or disabled (default: $WANDB_MODE, else online when "
        "logged in, else offline; docs/leaderboards.md)",
    )
    add_wandb_target_args(p)  # shared with 'leaderboard publish'
    p.add_argument("--data-dir", help="folder holding dataset files (e.g. Fashion-MNIST IDX files)")
    p.add_argument("--download", action="store_true", help="let torchvision download missing datasets")


def add_option_arg(p: argparse.ArgumentParser, help: str) -> None:
    """``-o KEY=VALUE``, repeatable; the value is read as TOML (``replaybench.params.parse_option``)."""
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help=help)


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise ConfigError(f"The '--threads' option must be an int in the range [1, inf). Got {threads} instead.")


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` to this process (where inline runs execute)."""
    check_threads(threads)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def wandb_sinks(
    args: argparse.Namespace, kind: str, extra_config: dict[str, Any] | None = None, tags: Sequence[str] = ()
) -> list[Any]:
    """A W&B sink when ``--wandb`` was given (its options are checked now, before any work).

    ``kind`` is what the runs are (``run``, ``submission``, ``sweep``); ``tags`` join ``--wandb-tags``.
    """
    if args.wandb is None:
        given = [f"--wandb-{k}" for k in ("project", "entity", "group", "tags") if getattr(args, f"wandb_{k}")]
        if given:  # a target without logging is a forgotten --wandb, not a request for nothing
            raise ConfigError(f"{', '.join(given)} needs --wandb [MODE] to log anything.")
        return []
    from replaybench.leaderboards.sinks import WandbSink
    from replaybench.leaderboards.wandb_sink import options_from_args

    return [WandbSink(options_from_args(args, args.wandb, tags=tags), kind=kind, extra_config=extra_config)]


def slurm_options_from(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--slurm-*`` flags that were given, as :class:`~replaybench.executors.SlurmOptions` keys."""
    flags = {
        "mem": args.slurm_mem,
        "gpus_per_task": args.slurm_gpus_per_task,
        "account": args.slurm_account,
        "qos": args.slurm_qos,
        "time_min": args.slurm_time,
        "sbatch_lines": args.slurm_sbatch,
        "setup": args.slurm_setup,
    }
    return {k: v for k, v in flags.items() if v is not None}


def make_executor_from(args: argparse.Namespace, folder: Path) -> Any:
    from replaybench.executors import make_executor

    return make_executor(
        args.executor,
        workers=args.workers,
        timeout_s=args.timeout,
        address=args.address,
        folder=folder / ".submitit",
        cluster=args.cluster,
        partition=args.partition,
        threads=args.threads,
        slurm=slurm_options_from(args),
    )


def execute(plans: list, args: argparse.Namespace, *, folder: Path, sinks: Sequence[Any], description: str) -> Any:
    """Validate ``plans`` (nothing written on failure) while the executor starts, then run the pipeline."""
    from replaybench.pipeline import run_pipeline, start_and_validate
    from replaybench.results import ResultsFolder

    ResultsFolder(folder).open(plans)  # an unwritable or clashing --out fails before the streams are built
    executor = make_executor_from(args, folder)
    streams = start_and_validate(plans, executor, local_devices=args.executor in ("inline", "local"))
    return run_pipeline(
        plans,
        executor=executor,
        sinks=[ResultsFolder(folder, heatmaps=not args.no_plots), *sinks],
        streams=streams,
        description=description,
    )


# --- printing -----------------------------------------------------------------------------------
def _cell(value: Any, digits: int = 3) -> str:
    """A metric's table cell: "n/a" when it is undefined (None) or NaN."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def interval_text(values: Sequence[float | None], digits: int = 3) -> str:
    """``mean ± half-width`` of the 90% t-interval (:func:`replaybench.metrics.t_interval`) over the
    defined values: ``None`` (an undefined metric) is left out, and "n/a" when nothing is left."""
    from replaybench.metrics import t_interval

    mean, half = t_interval([v for v in values if v is not None])
    if mean != mean:
        return "n/a"
    return f"{mean:.{digits}f}" if half != half else f"{mean:.{digits}f} ± {half:.{digits}f}"


def _state_bytes_of(results: Sequence[Any]) -> float | None:
    """The mean ``state_bytes`` over seeds (as the boards show it), None if any seed's is unknown."""
    values = [r.costs.get("state_bytes") for r in results]
    return None if any(v is None for v in values) else sum(values) / len(values)


def print_results(results: Sequence[Any]) -> None:
    """Per-seed rows, then mean ± 90% t-interval per (stream, agent)."""
    from rich.console import Console
    from rich.table import Table

    if not results:
        return
    console = Console() if sys.stdout.isatty() else Console(width=200)  # don't squeeze piped tables
    from replaybench.results import format_bytes

    shown = [*TABLE_METRICS, *(k for k in OPTIONAL_METRICS if all(k in r.metrics for r in results))]
    memory = ["state"] if any("state_bytes" in r.costs for r in results) else []  # n/a where an agent can't say
    per_seed = Table(title="Per seed")
    for col in ("stream", "agent", "seed", *shown, "wall s", "peak MB", *memory):
        per_seed.add_column(col, justify="right" if col not in ("stream", "agent") else "left")
    groups: dict[tuple[str, str, str], list] = {}
    for r in results:
        m = r.metrics
        per_seed.add_row(
            r.spec["stream"],
            r.spec["agent"],
            str(r.spec["seed"]),
            *(_cell(m.get(k)) for k in shown),
            f"{r.costs['wall_seconds']:.1f}",
            f"{r.costs['peak_rss_mb']:.0f}",
            *([format_bytes(r.costs.get("state_bytes"))] if memory else []),
        )
        groups.setdefault((r.spec["stream"], r.spec["agent"], r.run_id.rpartition("__")[2]), []).append(r)
    console.print(per_seed)
    summary = Table(title="Mean ± 90% t-interval over seeds")
    for col in ("stream", "agent", "seeds", *shown, "wall s", "peak MB", *memory):
        summary.add_column(col, justify="right" if col not in ("stream", "agent") else "left")
    for (stream, agent, _), rs in groups.items():
        cells = [interval_text([r.metrics.get(k) for r in rs]) for k in shown]  # None: undefined, left out
        summary.add_row(
            stream,
            agent,
            str(len(rs)),
            *cells,
            interval_text([r.costs["wall_seconds"] for r in rs], 1),
            f"{max(r.costs['peak_rss_mb'] for r in rs):.0f}",
            *([format_bytes(_state_bytes_of(rs))] if memory else []),
        )
    console.print(summary)


def print_report(report: Any, *, folder: Path | None = None) -> None:
    """The results tables, then one row per failed run, then a count."""
    from rich.console import Console
    from rich.table import Table

    print_results(report.ordered_results())
    console = Console() if sys.stdout.isatty() else Console(width=200)
    if report.failures:
        table = Table(title="Failed runs")
        for col in ("run", "kind", "error"):
            table.add_column(col)
        for p in report.plans:
            if p.run_id in report.failures:
                f = report.failures[p.run_id]
                table.add_row(p.run_id, f.get("kind", "?"), f.get("error", ""))
        console.print(table)
    where = f"; results in {folder}" if folder is not None else ""
    console.print(
        f"{len(report.results)} finished, {len(report.failures)} failed of {len(report.plans)} runs "
        f"({len(report.executed)} run now, {len(report.skipped)} skipped){where}"
    )


# --- commands -----------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from replaybench.config_files import check_seeds, load_config_file, options_for
    from replaybench.pipeline import plan
    from replaybench.runner import RunSpec

    set_threads(args.threads)
    cfg = load_config_file(args.config) if args.config else {}
    seeds = check_seeds(
        args.seeds if args.seeds is not None else cfg.get("seeds", [0]),
        where="--seeds" if args.seeds is not None else str(args.config),
    )
    folder = Path(args.out or cfg.get("out") or DEFAULT_OUT)
    stream_options = cfg.get("stream", {})
    specs, used_presets = [], {}
    for agent in args.agent:
        options, preset = options_for(agent, cfg, args.option), None
        if not args.no_preset:
            from replaybench.leaderboards.presets import preset_for_stream, untuned_choices

            found = preset_for_stream(agent, args.stream, stream_options)
            changed = untuned_choices(agent, options) if found is not None else []
            if changed:  # the board's budget still applies; its tuned values do not
                from replaybench.leaderboards.boards import BUDGET_KEYS

                budget = {k: v for k, v in found[0].items() if k in BUDGET_KEYS}
                print(
                    f"{agent}: the board's budget only, no preset: it was tuned without {', '.join(changed)}",
                    file=sys.stderr,
                )
                options, preset = {**budget, **options}, f"{found[1]}, budget only"
                used_presets[agent] = preset
            elif found is not None:
                options, preset = {**found[0], **options}, found[1]
                used_presets[agent] = preset
        specs += [
            RunSpec(
                stream=args.stream,
                agent=agent,
                seed=seed,
                agent_options=options,
                stream_options=stream_options,
                data_dir=args.data_dir,
                download=args.download,
                device=args.device,
                intransigence_reference=args.intransigence,
                forward_transfer_reference=args.forward_transfer,
                preset=preset,
            )
            for seed in seeds
        ]
    plans = plan(specs)
    report = execute(plans, args, folder=folder, sinks=wandb_sinks(args, "run"), description=f"run ({args.executor})")
    print_report(report, folder=folder)
    for agent, preset in used_presets.items():
        print(f"{agent}: options from its preset for board {preset} (--no-preset: its defaults)", file=sys.stderr)
    return report.exit_code


def cmd_quick(args: argparse.Namespace) -> int:
    """The quick board's baselines, with their presets, recorded in the user's store; then the board."""
    from replaybench.leaderboards.boards import load_board
    from replaybench.leaderboards.export import print_table
    from replaybench.leaderboards.ranking import board_table
    from replaybench.leaderboards.references import ensure_references
    from replaybench.leaderboards.sinks import BoardSink, open_submissions
    from replaybench.leaderboards.store import Store
    from replaybench.leaderboards.submit import plan_submission

    set_threads(args.threads if args.threads is not None else 1)  # tiny nets: threads only add synchronisation
    board = load_board("quick")
    folder = Path(args.out or DEFAULT_OUT)
    plans = [p for agent in board.baselines for p in plan_submission(board, agent, device=args.device)]
    wandb = wandb_sinks(args, "submission", {"board": board.name, "board_version": board.version})  # checked first
    with Store(args.store) as store:  # a damaged store is refused before any run
        ids: dict[str, int] = {}
        for agent in board.baselines:
            ids.update(open_submissions(store, board, [p for p in plans if p.spec.agent == agent], display_name=agent))
        sinks = [*wandb, BoardSink(store, board, ids)]
        report = execute(plans, args, folder=folder, sinks=sinks, description="quick")
        print_report(report, folder=folder)
        ensure_references(store, board)
        print_table(board_table(board, store), file=sys.stdout)
        print(f"recorded in {store.path}; see it again with: replaybench leaderboard show quick", file=sys.stderr)
    return report.exit_code


def cmd_tune(args: argparse.Namespace) -> int:
    """Search each agent's preset on the board's validation split and write them beside the board."""
    from replaybench.leaderboards.boards import load_board
    from replaybench.leaderboards.presets import write_presets
    from replaybench.leaderboards.tune import allowed_agents, tune

    require_extra("optuna", "tune", "leaderboard tune")  # before the board's streams are built
    set_threads(args.threads)
    board = load_board(args.board)
    agents = args.agent or allowed_agents(board, data_dir=args.data_dir, download=args.download)
    presets = tune(
        board,
        agents,
        executor=make_executor_from(args, Path(args.out or DEFAULT_OUT)),
        trials=args.trials,
        batch=args.batch,
        data_dir=args.data_dir,
        download=args.download,
        device=args.device,
        log=lambda line: print(line, file=sys.stderr),
    )
    for agent, preset in presets.items():
        score = preset.search.get("validation_acc")
        shown = "failed" if score is None else f"{score:.3f}"
        print(f"{agent:32s} validation ACC {shown}  {dict(preset.options)}  {preset.note}")
    if args.dry_run:
        return 0
    path = write_presets(board, presets)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_references(args: argparse.Namespace) -> int:
    """Run every agent of a board (or those named) with its preset; write the shipped reference file.

    An agent that cannot be built (e.g. an Avalanche strategy without its required options and no
    preset) is listed in the file with the reason instead of stopping the others.
    """
    import time

    from replaybench.leaderboards.boards import load_board
    from replaybench.leaderboards.references import ReferenceSink, references_path
    from replaybench.leaderboards.submit import check_board_fingerprints, plan_submission
    from replaybench.leaderboards.tune import allowed_agents
    from replaybench.pipeline import run_pipeline, validate
    from replaybench.provenance import git_commit
    from replaybench.results import ResultsFolder, read_result, result_path

    set_threads(args.threads)
    board = load_board(args.board)
    agents = args.agent or allowed_agents(board, data_dir=args.data_dir, download=args.download)
    folder = Path(args.out or DEFAULT_OUT) / "references" / board.name
    executor = make_executor_from(args, folder)
    plans: list[Any] = []
    refused: dict[str, str] = {}
    streams: dict[str, Any] = {}
    executor.start(len(agents) * len(board.streams) * len(board.seeds))
    try:
        for agent in agents:
            try:
                agent_plans = plan_submission(
                    board, agent, data_dir=args.data_dir, download=args.download, device=args.device
                )
                validate(agent_plans, local_devices=args.executor in ("inline", "local"), streams=streams)
            except ReplaybenchError as exc:
                refused[agent] = str(exc)
                print(f"replaybench: {agent}: refused: {exc}", file=sys.stderr)
                continue
            plans += agent_plans
        check_board_fingerprints(board, plans, streams)
    except BaseException:
        executor.close()
        raise
    finished = {}
    if args.resume:  # runs an interrupted build finished: same identity, same options, same code
        for p in plans:
            path = result_path(folder, p.run_id)
            if path.is_file():
                finished[p.run_id] = read_result(path)
    start = time.monotonic()
    meta = {"executor": args.executor, "workers": args.workers, "git_commit": git_commit()}
    sink = ReferenceSink(board, meta=meta, refused=refused)
    report = run_pipeline(
        plans,
        executor=executor,
        streams=streams,
        sinks=[ResultsFolder(folder, heatmaps=False), sink],
        finished=finished,
        description=f"references ({args.executor})",
    )
    print(
        f"{len(agents)} agents ({len(refused)} refused), {len(plans)} runs in {time.monotonic() - start:.0f} s; "
        f"wrote {references_path(board)}",
        file=sys.stderr,
    )
    return 1 if refused else report.exit_code


def cmd_submit(args: argparse.Namespace) -> int:
    from replaybench.leaderboards.boards import load_board
    from replaybench.leaderboards.export import print_table
    from replaybench.leaderboards.ranking import board_table
    from replaybench.leaderboards.sinks import BoardSink, open_submissions
    from replaybench.leaderboards.store import Store, check_display_name
    from replaybench.leaderboards.submit import (
        check_board_fingerprints,
        plan_submission,
        read_submit_config,
        submission_dir,
    )
    from replaybench.pipeline import run_pipeline, start_and_validate
    from replaybench.redact import redact
    from replaybench.results import ResultsFolder, check_writable_folder

    set_threads(args.threads)
    board = load_board(args.board)
    display_name = redact(check_display_name(args.name or args.agent))
    options = read_submit_config(args.config, args.agent) if args.config else {}
    plans = plan_submission(
        board, args.agent, config_options=options, data_dir=args.data_dir, download=args.download, device=args.device
    )
    wandb = wandb_sinks(args, "submission")  # checked now; the submission id joins the config below
    check_writable_folder(args.out)
    executor = make_executor_from(args, Path(args.out))
    streams = start_and_validate(plans, executor, local_devices=args.executor in ("inline", "local"))
    try:
        check_board_fingerprints(board, plans, streams)
        store = Store(args.store)
    except BaseException:
        executor.close()
        raise
    with store:
        ids = open_submissions(store, board, plans, display_name=display_name)
        (sub_id,) = ids.values()
        folder = submission_dir(args.out, board, sub_id, display_name)
        for sink in wandb:
            sink.extra_config.update({"board": board.name, "board_version": board.version, "submission": sub_id})
        try:
            report = run_pipeline(
                plans,
                executor=executor,
                streams=streams,
                sinks=[
                    ResultsFolder(folder, heatmaps=not args.no_plots),
                    *wandb,
                    BoardSink(store, board, ids, echo=True),
                ],
                description=f"submit ({args.executor})",
            )
        except BaseException:
            if store.submission(sub_id).status == "running":
                store.finish_submission(sub_id, "failed")
            raise
        status = store.submission(sub_id).status
        print_report(report, folder=folder)
        print_table(board_table(board, store), highlight=sub_id)
    print(f"submission #{sub_id} recorded in {store.path} ({status})", file=sys.stderr)
    return report.exit_code


def sweep_config_from(args: argparse.Namespace) -> Any:
    """The sweep file's values, overridden by the flags that were given."""
    from replaybench.params import parse_option
    from replaybench.sweep import SweepConfig, load_sweep_file

    values = load_sweep_file(args.file) if args.file else {}
    flags = {
        "streams": args.streams,
        "agents": args.agents,
        "seeds": args.seeds,
        "out": args.out,
        "executor": args.executor,
        "workers": args.workers,
        "timeout_s": args.timeout,
        "address": args.address,
        "cluster": args.cluster,
        "partition": args.partition,
        "board": args.board,
        "store": args.store,
        "data_dir": args.data_dir,
        "device": args.device,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    if slurm_options_from(args):  # each flag wins over the file's [slurm] key
        values["slurm"] = {**values.get("slurm", {}), **slurm_options_from(args)}
    if args.download:
        values["download"] = True
    if args.option:  # last wins, as in 'replaybench run': over the file's shared and per-agent options
        cli = dict(parse_option(o) for o in args.option)
        values["agent_options"] = {**values.get("agent_options", {}), **cli}
        values["agent_options_by_agent"] = {
            a: {**opts, **cli} for a, opts in values.get("agent_options_by_agent", {}).items()
        }
    return SweepConfig.from_dict(values)


def cmd_sweep(args: argparse.Namespace) -> int:
    from replaybench.leaderboards.boards import load_board
    from replaybench.leaderboards.sinks import BoardSink, SweepRowsSink, open_submissions
    from replaybench.leaderboards.store import Store
    from replaybench.leaderboards.submit import check_board_fingerprints
    from replaybench.sweep import execute_sweep, prepare_sweep

    set_threads(args.threads)
    config = sweep_config_from(args)
    board = load_board(config.board) if config.board is not None else None
    sweep_name = Path(config.out).resolve().name  # W&B's group stays STREAM/AGENT; the tag gathers the sweep
    wandb = wandb_sinks(args, "sweep", {"sweep": str(Path(config.out).resolve())}, tags=[f"sweep-{sweep_name}"[:64]])
    prepared = prepare_sweep(config, resume=args.resume, skip_failed=args.skip_failed)
    if board is not None:
        check_board_fingerprints(board, prepared.plans, prepared.streams)
    with Store(config.store) as store:
        sinks: list[Any] = [*wandb, SweepRowsSink(store, prepared.out)]
        if board is not None:
            ids = open_submissions(
                store, board, prepared.plans, display_name=f"sweep {prepared.out.resolve().name}", resume=True
            )
            sinks.append(BoardSink(store, board, ids, resumable=True))
        try:
            report = execute_sweep(prepared, sinks=sinks, plots=not args.no_plots, threads=args.threads)
        except KeyboardInterrupt:
            print(f"sweep interrupted; finished runs are in {prepared.out}; continue with --resume", file=sys.stderr)
            raise
    print_report(report, folder=prepared.out)
    return report.exit_code


def cmd_list(args: argparse.Namespace) -> int:
    from replaybench.registry import AGENTS, STREAMS

    registry = STREAMS if args.what == "streams" else AGENTS
    for spec in registry.specs():
        print(f"{spec.name:24s} {spec.summary}")
    return 0


def cmd_streams_show(args: argparse.Namespace) -> int:
    import json

    from replaybench.protocols import DescribedStream
    from replaybench.runner import make_stream

    stream = make_stream(args.name, data_dir=args.data_dir, download=args.download)
    info = (
        stream.describe()
        if isinstance(stream, DescribedStream)
        else {
            "name": stream.name,
            "version": stream.version,
            "scenario": stream.scenario,
            "fingerprint": stream.fingerprint,
        }
    )
    print(json.dumps(info, indent=1))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """The four analysis figures of results folders, result files or one store file."""
    from replaybench.analysis import is_store_file, load_results
    from replaybench.plots import write_figures

    sources = [Path(s) for s in args.source]
    if len(sources) == 1 and is_store_file(sources[0]):
        from replaybench.leaderboards.store import Store

        with Store(sources[0]) as store:  # the core reads a store only through the object
            df = load_results(store)
    else:
        df = load_results(sources)
    out = Path(args.out) if args.out else (sources[0] / "figures" if sources[0].is_dir() else Path("figures"))
    paths = write_figures(df, out, formats=args.format)
    print(f"{len(paths)} figures of {df.run_id.nunique()} runs in {out}")
    return 0


# --- the parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--traceback",
        action="store_true",
        default=argparse.SUPPRESS,
        help="on an error, show the full trace, not one line",
    )
    parser = argparse.ArgumentParser(prog="replaybench", description=__doc__.splitlines()[0], parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    p = add("run", help="run agents on a stream over seeds")
    p.add_argument("--stream", required=True, help="a stream name (see 'replaybench list streams')")
    p.add_argument("--agent", required=True, nargs="+", help="one or more agent names")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the config's, else 0)")
    p.add_argument("--config", help="TOML file with [agent], [agents.NAME], [stream] tables")
    add_option_arg(p, "agent option, e.g. -o lr=0.05 -o hidden=[256,256]")
    p.add_argument("--out", help=f"results folder (default: ./{DEFAULT_OUT})")
    p.add_argument(
        "--intransigence", action="store_true", help="also run a joint reference per seed and report intransigence"
    )
    p.add_argument(
        "--forward-transfer",
        action="store_true",
        help="RL: also train on each task alone and report Continual World's forward transfer",
    )
    p.add_argument(
        "--no-preset", action="store_true", help="use the agents' defaults, not their preset for the stream's board"
    )
    add_execution_args(p)
    p.set_defaults(func=cmd_run)

    p = add("quick", help="the embedded default: the quick board's baselines on split-digits, recorded in the store")
    p.add_argument("--out", help=f"results folder (default: ./{DEFAULT_OUT})")
    p.add_argument("--store", help="leaderboard SQLite file (default: leaderboard.sqlite in the user data dir)")
    add_execution_args(p)
    p.set_defaults(func=cmd_quick)

    p = add("submit", help="run an agent on every stream × seed of a board and record it")
    p.add_argument("agent", metavar="AGENT", help="a registered name, module:Class or path/to/file.py:Class")
    p.add_argument("--board", required=True, help="a board name (see 'replaybench leaderboard list') or .toml file")
    p.add_argument("--name", help="display name on the board (default: AGENT)")
    p.add_argument("--config", help="TOML with [agent] / [agents.NAME] option tables")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"results folder (default: ./{DEFAULT_OUT})")
    p.add_argument("--store", help="leaderboard SQLite file (default: leaderboard.sqlite in the user data dir)")
    add_execution_args(p)
    p.set_defaults(func=cmd_submit)

    p = add("sweep", help="run a grid of streams × agents × options × seeds, resumably")
    p.add_argument("file", nargs="?", help="sweep TOML (flags override its values)")
    p.add_argument("--streams", nargs="+", help="stream names")
    p.add_argument("--agents", nargs="+", help="agent names")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0)")
    add_option_arg(p, "option for every agent, e.g. -o epochs=1")
    p.add_argument("--out", help="results folder (default: ./replaybench-sweep)")
    p.add_argument("--resume", action="store_true", help="skip finished runs, rerun the rest")
    p.add_argument("--skip-failed", action="store_true", help="with --resume, do not rerun failed runs")
    p.add_argument("--board", help="also record each finished run on this leaderboard")
    p.add_argument("--store", help="store file that records every run (default: the user's leaderboard store)")
    add_execution_args(p, default_executor=None)  # type: ignore[arg-type]  # the file's, else local
    p.set_defaults(func=cmd_sweep, device=None)  # unset flags leave the sweep file's values

    p = add("list", help="list registered streams or agents")
    p.add_argument("what", choices=("streams", "agents"))
    p.set_defaults(func=cmd_list)

    p = add("streams", help="inspect streams")
    ssub = p.add_subparsers(dest="streams_command", required=True)
    show = ssub.add_parser("show", parents=[common], help="scenario, sizes, classes, fingerprint and source")
    show.add_argument("name")
    show.add_argument("--data-dir", help="folder holding dataset files")
    show.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    show.set_defaults(func=cmd_streams_show)

    p = add("plot", help="figures of results: A_k, forgetting, agents across streams, mean R heatmaps")
    p.add_argument(
        "source", nargs="+", metavar="SOURCE", help="results or sweep folders, result JSON files, or a store file"
    )
    p.add_argument("--out", help="folder for the figures (default: SOURCE/figures for a folder, else ./figures)")
    p.add_argument(
        "--format", nargs="+", default=["png", "svg"], choices=("png", "svg", "pdf"), help="(default: png svg)"
    )
    p.set_defaults(func=cmd_plot)

    from replaybench.checks import register_check_command
    from replaybench.leaderboards.cli import register_commands

    register_check_command(sub, parents=[common])  # check agent|stream|memory
    board_commands = register_commands(sub, parents=[common])  # verify, leaderboard show|export|publish|pin|list

    p = board_commands.add_parser(
        "tune", parents=[common], help="choose each agent's preset on the board's validation split (Optuna TPE)"
    )
    p.add_argument("board", metavar="BOARD", help="board name or .toml file")
    p.add_argument("--agent", action="append", help="tune only this agent (repeatable; default: every agent)")
    p.add_argument("--trials", type=int, default=16, help="trials per agent, the same for every agent (default 16)")
    p.add_argument(
        "--batch",
        type=int,
        default=1,
        help="trials of each agent asked at once and run in parallel (default 1, as the shipped presets); "
        "part of the search: the same batch gives the same presets on every executor",
    )
    p.add_argument("--dry-run", action="store_true", help="print the chosen presets; write nothing")
    p.add_argument("--out", help=f"folder for executor files (default: ./{DEFAULT_OUT})")
    add_execution_args(p)
    p.set_defaults(func=cmd_tune)

    p = board_commands.add_parser(
        "references", parents=[common], help="rebuild the board's shipped reference entries (every agent, its preset)"
    )
    p.add_argument("board", metavar="BOARD", help="board name or .toml file")
    p.add_argument("--agent", action="append", help="rebuild only this agent's entry (repeatable)")
    p.add_argument("--out", help=f"results folder (default: ./{DEFAULT_OUT})")
    p.add_argument("--resume", action="store_true", help="reuse the runs an interrupted build left in --out")
    add_execution_args(p)
    p.set_defaults(func=cmd_references)
    return parser


# --- entry point --------------------------------------------------------------------------------
class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: runs in flight are stopped, finished ones kept, submissions closed."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return int(args.func(args) or 0)
    except ReplaybenchError as exc:
        if getattr(args, "traceback", False):
            traceback.print_exc()
        print(f"replaybench: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("replaybench: terminated; finished runs are kept.", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("replaybench: interrupted; finished runs are kept.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
