"""The leaderboard commands: ``verify`` and ``leaderboard show|export|publish|pin|list``.

``replaybench.cli.build_parser`` (the assembly, which also owns ``submit``,
as every command that runs agents goes through the pipeline) calls
:func:`register_commands`; user errors raise :class:`ReplaybenchError` and
become one line with exit code 2 there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from replaybench.errors import ConfigError

DEFAULT_OUT = "replaybench-results"


def _seed_choice(text: str) -> int | str:
    if text == "random":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a seed or 'random', got {text!r}") from None


def _store(args: argparse.Namespace):
    from replaybench.leaderboards.store import Store

    return Store(args.store)


def _table(args: argparse.Namespace):
    from replaybench.leaderboards.boards import load_board
    from replaybench.leaderboards.ranking import board_table
    from replaybench.leaderboards.references import ensure_references

    board = load_board(args.name)
    with _store(args) as store:
        ensure_references(store, board)
        return board_table(board, store)


def cmd_verify(args: argparse.Namespace) -> None:
    from replaybench.leaderboards.boards import load_board
    from replaybench.leaderboards.verify import DEFAULT_TOLERANCE, verify

    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    with _store(args) as store:
        sub = store.submission(args.submission)
        board = load_board(args.board or sub.board)
        checks = verify(
            store,
            args.submission,
            board,
            seed=args.seed,
            streams=args.stream,
            tolerance=tolerance,
            data_dir=args.data_dir,
            download=args.download,
            device=args.device,
        )
    for c in checks:
        print(f"{c.stream} seed {c.seed}: max |Δ| over R and metrics = {c.max_abs_diff:.3g}  ok")
    print(f"submission #{args.submission} verified")


def cmd_show(args: argparse.Namespace) -> None:
    from replaybench.leaderboards.export import print_table

    print_table(_table(args))


def cmd_export(args: argparse.Namespace) -> None:
    from replaybench.leaderboards.export import only_metrics, render
    from replaybench.results import atomic_write_text, safe_name

    table = _table(args)
    if args.metrics:
        table = only_metrics(table, args.metrics)
    text = render(table, args.format)
    if args.format == "html" and args.out is None:
        args.out = f"leaderboard-{safe_name(table.board.name)}.html"
    if args.out is None or args.out == "-":
        sys.stdout.write(text)
        return
    out = Path(args.out)
    if out.is_dir():
        out = out / f"leaderboard-{safe_name(table.board.name)}.{args.format}"
    atomic_write_text(out, text)
    print(f"wrote {out}", file=sys.stderr)


def cmd_publish(args: argparse.Namespace) -> None:
    from replaybench.leaderboards.export import rows_for_wandb
    from replaybench.leaderboards.wandb_sink import log_board, options_from_args
    from replaybench.results import result_from_json

    if args.project is not None:  # the older spelling of --wandb-project
        args.wandb_project = args.wandb_project or args.project
    options = options_from_args(args, args.mode)
    table = _table(args)
    columns, data = rows_for_wandb(table)
    with _store(args) as store:  # the logged runs of the ranked entries: the board run's inputs
        inputs = [
            (result_from_json(json.dumps(r.result)), r.wandb_artifact)
            for row in table.rows
            for r in store.runs(row.submission.id)
            if r.wandb_artifact  # runs logged before the store kept the name are not linked
        ]
    where = log_board(columns, data, board=table.to_dict(), options=options, inputs=inputs)
    if where is None:
        print("W&B is disabled; nothing published.", file=sys.stderr)
    elif options.mode == "offline" or "://" not in where:
        print(f"wrote offline W&B run {where}; upload it with: wandb sync {where}")
    else:
        print(f"published {where}")


def cmd_site(args: argparse.Namespace) -> None:
    """Write every board as a Markdown page and a sortable HTML page, with an index."""
    from replaybench.leaderboards.site import write_site

    with _store(args) as store:
        for path in write_site(Path(args.out), store, names=args.board):
            print(f"wrote {path}", file=sys.stderr)


def cmd_pin(args: argparse.Namespace) -> None:
    from replaybench.leaderboards.boards import board_path, load_board, pin_fingerprints
    from replaybench.registry import STREAMS
    from replaybench.results import atomic_write_text
    from replaybench.runner import make_stream

    board = load_board(args.name)
    path = board_path(args.name)
    found, mismatched = {}, []
    for bs in board.streams:
        if bs.name not in STREAMS:
            print(f"{bs.name}: not registered yet; left unpinned")
            continue
        fingerprint = make_stream(bs.name, data_dir=args.data_dir, download=args.download, **bs.options).fingerprint
        status = "unchanged" if fingerprint == bs.fingerprint else ("new" if not bs.fingerprint else "CHANGED")
        print(f"{bs.name}: {fingerprint} ({status})")
        found[bs.name] = fingerprint
        if bs.fingerprint and fingerprint != bs.fingerprint:
            mismatched.append(bs.name)
    if args.check:
        if mismatched:
            raise ConfigError(f"Board {board.name!r} pins stale fingerprints for {', '.join(mismatched)}.")
        return
    atomic_write_text(path, pin_fingerprints(path, found))
    print(f"wrote {path}")
    if mismatched:
        print(
            f"fingerprints changed for {', '.join(mismatched)}: bump the board's version "
            f"(now {board.version!r}) so old results are not mixed with new ones."
        )


def cmd_boards(args: argparse.Namespace) -> None:
    from replaybench.leaderboards.boards import board_names, load_board

    for name in board_names():
        board = load_board(name)
        pinned = sum(bool(s.fingerprint) for s in board.streams)
        print(
            f"{name:22s} v{board.version:4s} {', '.join(board.stream_names)} "
            f"({pinned}/{len(board.streams)} pinned) - {board.description}"
        )


def register_commands(
    subparsers: argparse._SubParsersAction, parents: list | None = None
) -> argparse._SubParsersAction:
    """Add ``verify`` and ``leaderboard`` to the ``replaybench`` parser (``parents``: shared options).

    Returns the ``leaderboard`` group, where the assembly adds the commands that run agents
    (``tune``, ``references``) with its execution options.
    """
    from replaybench.leaderboards.wandb_sink import add_wandb_target_args

    parents = list(parents or [])

    def store_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", help="leaderboard SQLite file (default: leaderboard.sqlite in the user data dir)")

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="folder holding dataset files")
        p.add_argument("--download", action="store_true", help="let torchvision download missing datasets")

    p = subparsers.add_parser(
        "verify", parents=parents, help="rerun a submission's seeds and compare R and every metric"
    )
    p.add_argument("submission", metavar="SUBMISSION", type=int, help="submission id (the # column)")
    p.add_argument("--board", help="board name or .toml file (default: the submission's board)")
    p.add_argument(
        "--seed",
        type=_seed_choice,
        help="rerun only this seed, or 'random' for one drawn here (default: every seed of the board)",
    )
    p.add_argument("--stream", action="append", help="re-run only this stream (repeatable)")
    p.add_argument("--tolerance", type=float, default=None, help="largest allowed |ΔR| per entry (default 1e-6)")
    p.add_argument("--device", default="cpu")
    store_arg(p)
    data_args(p)
    p.set_defaults(func=cmd_verify)

    lb = subparsers.add_parser("leaderboard", parents=parents, help="show, export, publish or pin boards")
    lsub = lb.add_subparsers(dest="leaderboard_command", required=True)
    p = lsub.add_parser("show", parents=parents, help="the ranked board with mean ± 90%% bootstrap interval")
    p.add_argument("name", metavar="NAME", help="board name or .toml file")
    store_arg(p)
    p.set_defaults(func=cmd_show)

    p = lsub.add_parser("export", parents=parents, help="write the board as Markdown, HTML, CSV or JSON")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--format", required=True, choices=("md", "html", "csv", "json"))
    p.add_argument("--metrics", nargs="+", help="show only these of the board's metrics (the primary one always)")
    p.add_argument("--out", help="file or folder ('-' for stdout; default: stdout, html: leaderboard-NAME.html)")
    store_arg(p)
    p.set_defaults(func=cmd_export)

    p = lsub.add_parser("publish", parents=parents, help="write a job_type=board W&B run holding the board table")
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--mode",
        help="online, offline or disabled (default: $WANDB_MODE, else online when logged in, else offline)",
    )
    p.add_argument("--project", help=argparse.SUPPRESS)  # kept: the older spelling of --wandb-project
    add_wandb_target_args(p)
    store_arg(p)
    p.set_defaults(func=cmd_publish)

    p = lsub.add_parser(
        "pin", parents=parents, help="compute the streams' fingerprints and write them into the board file"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--check", action="store_true", help="only compare; exit 2 if a pinned fingerprint is stale")
    data_args(p)
    p.set_defaults(func=cmd_pin)

    p = lsub.add_parser("list", parents=parents, help="the built-in boards")
    p.set_defaults(func=cmd_boards)

    p = lsub.add_parser(
        "site", parents=parents, help="write docs/leaderboards/: a Markdown and an HTML page per board, and an index"
    )
    p.add_argument("--out", default="docs/leaderboards", help="folder (default: docs/leaderboards)")
    p.add_argument("--board", action="append", help="only this board (repeatable; default: every built-in board)")
    p.add_argument(
        "--store", help="leaderboard SQLite file (default: the user's; ':memory:' for the shipped references only)"
    )
    p.set_defaults(func=cmd_site)
    return lsub
