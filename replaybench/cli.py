"""The ``replaybench`` command line.

User errors (unknown names, malformed configs, missing data, failing agents)
print one line on stderr and exit with code 2; nothing already written is
removed. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from replaybench.errors import ConfigError, ReplaybenchError

DEFAULT_OUT = "replaybench-results"
CONFIG_KEYS = ("agent", "agents", "stream", "seeds", "out")
TABLE_METRICS = ("acc", "forgetting_max", "forgetting_first_last", "bwt", "fwt", "plasticity")
OPTIONAL_METRICS = ("intransigence", "forward_transfer_cw")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a run config TOML; malformed files and unknown keys are errors.

    Layout: ``[agent]`` options for every agent, ``[agents.NAME]`` options for
    one agent, ``[stream]`` stream options, and optional ``seeds``/``out``.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            cfg = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"Config file not found: {p}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Malformed config {p}: {exc}.") from None
    for key, value in cfg.items():
        if key not in CONFIG_KEYS:
            raise ConfigError(f"Unknown key {key!r} in {p}; expected one of {', '.join(CONFIG_KEYS)}.")
        if key in ("agent", "agents", "stream") and not isinstance(value, dict):
            raise ConfigError(f"Key {key!r} in {p} must be a table, e.g. [{key}].")
    return cfg


def options_for(agent: str, cfg: Mapping[str, Any], cli_options: Sequence[str]) -> dict[str, Any]:
    """Agent options: file-wide, then per-agent, then ``-o key=value`` (last wins)."""
    from replaybench.params import parse_option

    opts = dict(cfg.get("agent", {}))
    opts.update(cfg.get("agents", {}).get(agent, {}))
    opts.update(parse_option(o) for o in cli_options)
    return opts


def run_grid(*, streams: Sequence[str], agents: Sequence[str], seeds: Sequence[int],
             agent_options: Mapping[str, Mapping[str, Any]], stream_options: Mapping[str, Any],
             out: str | None, data_dir: str | None = None, download: bool = False, device: str = "cpu",
             plots: bool = True, intransigence: bool = False, forward_transfer: bool = False,
             wandb_mode: str | None = None) -> list:
    """Validate every spec, then run and write each one; returns the results.

    With ``intransigence``, a ``joint`` reference run per (stream, seed), with
    the options of the training loop, supplies a*_k (Chaudhry et al. 2018).
    """
    from replaybench.results import write_result
    from replaybench.runner import RunSpec, agent_class_and_config, make_stream, run

    specs = [RunSpec(stream=s, agent=a, seed=seed, agent_options=agent_options.get(a, {}),
                     stream_options=stream_options, data_dir=data_dir, download=download, device=device,
                     forward_transfer_reference=forward_transfer)
             for s in streams for a in agents for seed in seeds]
    for a in agents:  # fail on a bad agent name or option before any work starts
        agent_class_and_config(a, agent_options.get(a, {}))
    built = {s: make_stream(s, data_dir=data_dir, download=download, **stream_options) for s in streams}
    joint: dict[tuple[str, int], list[list[float]]] = {}
    results = []
    for spec in specs:
        key = (spec.stream, spec.seed)
        if intransigence and key not in joint:
            joint[key] = run(RunSpec(stream=spec.stream, agent="joint", seed=spec.seed, data_dir=data_dir,
                                     download=download, device=device,
                                     agent_options=_training_options(spec.agent_options)),
                             stream=built[spec.stream]).R
        result = run(spec, stream=built[spec.stream], joint_R=joint.get(key))
        path = None
        if out:
            path = write_result(result, out, heatmap=plots)
            print(f"wrote {path}", file=sys.stderr)
        if wandb_mode is not None:  # each run is logged as soon as it is written
            from replaybench.leaderboards.wandb_sink import log_run

            log_run(result, mode=wandb_mode, results_path=path)
        results.append(result)
    return results


def _training_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a joint reference accepts (its training loop's), taken from ``options``."""
    import dataclasses

    from replaybench.registry import AGENTS

    joint_cls, _ = AGENTS.load("joint")
    names = {f.name for f in dataclasses.fields(joint_cls.Config)}
    return {k: v for k, v in options.items() if k in names}


def print_results(results: Sequence) -> None:
    """Per-seed rows, then mean ± std per (stream, agent)."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=200)  # don't squeeze piped tables
    shown = [*TABLE_METRICS, *(k for k in OPTIONAL_METRICS if all(k in r.metrics for r in results))]
    per_seed = Table(title="Per seed")
    for col in ("stream", "agent", "seed", *shown, "wall s", "peak MB"):
        per_seed.add_column(col, justify="right" if col not in ("stream", "agent") else "left")
    groups: dict[tuple[str, str], list] = {}
    for r in results:
        m = r.metrics
        per_seed.add_row(r.spec["stream"], r.spec["agent"], str(r.spec["seed"]),
                         *(f"{m[k]:.3f}" for k in shown),
                         f"{r.costs['wall_seconds']:.1f}", f"{r.costs['peak_rss_mb']:.0f}")
        groups.setdefault((r.spec["stream"], r.spec["agent"]), []).append(r)
    console.print(per_seed)
    summary = Table(title="Mean ± std over seeds")
    for col in ("stream", "agent", "seeds", *shown, "wall s", "peak MB"):
        summary.add_column(col, justify="right" if col not in ("stream", "agent") else "left")
    for (stream, agent), rs in groups.items():
        cells = [mean_std([r.metrics[k] for r in rs]) for k in shown]
        summary.add_row(stream, agent, str(len(rs)), *cells, mean_std([r.costs["wall_seconds"] for r in rs], 1),
                        f"{max(r.costs['peak_rss_mb'] for r in rs):.0f}")
    console.print(summary)


def mean_std(values: Sequence[float], digits: int = 3) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


# --- commands -------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> None:
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    cfg = load_config_file(args.config) if args.config else {}
    seeds = args.seeds if args.seeds is not None else cfg.get("seeds", [0])
    out = args.out or cfg.get("out") or DEFAULT_OUT
    opts = {a: options_for(a, cfg, args.option) for a in args.agent}
    wandb_mode = None
    if args.wandb is not None:
        from replaybench.leaderboards.wandb_sink import resolve_mode

        wandb_mode = resolve_mode(args.wandb)
    results = run_grid(streams=[args.stream], agents=args.agent, seeds=seeds, agent_options=opts,
                       stream_options=cfg.get("stream", {}), out=out, data_dir=args.data_dir,
                       download=args.download, device=args.device, plots=not args.no_plots,
                       intransigence=args.intransigence, forward_transfer=args.forward_transfer,
                       wandb_mode=wandb_mode)
    print_results(results)


def cmd_quick(args: argparse.Namespace) -> None:
    import torch

    from replaybench.leaderboards.boards import load_board

    torch.set_num_threads(1)  # the quick board's nets are tiny: extra threads only add synchronisation
    board = load_board("quick")
    opts = {a: board.options_for(a) for a in board.baselines}
    results = run_grid(streams=board.stream_names, agents=board.baselines, seeds=board.seeds,
                       agent_options=opts, stream_options={}, out=args.out or DEFAULT_OUT,
                       plots=not args.no_plots)
    print_results(results)


def cmd_list(args: argparse.Namespace) -> None:
    from replaybench.registry import AGENTS, STREAMS

    registry = STREAMS if args.what == "streams" else AGENTS
    for spec in registry.specs():
        print(f"{spec.name:24s} {spec.summary}")


def cmd_streams_show(args: argparse.Namespace) -> None:
    import json

    from replaybench.runner import make_stream

    stream = make_stream(args.name, data_dir=args.data_dir, download=args.download)
    describe = getattr(stream, "describe", None)
    info = describe() if describe else {"name": stream.name, "version": stream.version,
                                        "scenario": stream.scenario, "fingerprint": stream.fingerprint}
    print(json.dumps(info, indent=1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replaybench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="folder holding dataset files (e.g. Fashion-MNIST IDX files)")
        p.add_argument("--download", action="store_true", help="let torchvision download missing datasets")

    p = sub.add_parser("run", help="run agents on a stream over seeds")
    p.add_argument("--stream", required=True, help="a stream name (see 'replaybench list streams')")
    p.add_argument("--agent", required=True, nargs="+", help="one or more agent names")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the config's, else 0)")
    p.add_argument("--config", help="TOML file with [agent], [agents.NAME], [stream] tables")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="agent option, e.g. -o lr=0.05 -o hidden=[256,256]")
    p.add_argument("--out", help=f"results folder (default: ./{DEFAULT_OUT})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads (1 is fastest for small nets on a busy machine)")
    p.add_argument("--no-plots", action="store_true", help="skip the R heatmaps")
    p.add_argument("--intransigence", action="store_true",
                   help="also run a joint reference per seed and report intransigence")
    p.add_argument("--wandb", nargs="?", const="", default=None, metavar="MODE",
                   help="log each run to W&B: online, offline or disabled (default: $WANDB_MODE, else offline)")
    p.add_argument("--forward-transfer", action="store_true",
                   help="RL: also train on each task alone and report Continual World's forward transfer")
    data_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("quick", help="the embedded default: several agents on split-digits, offline")
    p.add_argument("--out", help=f"results folder (default: ./{DEFAULT_OUT})")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=cmd_quick)

    p = sub.add_parser("list", help="list registered streams or agents")
    p.add_argument("what", choices=("streams", "agents"))
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("streams", help="inspect streams")
    ssub = p.add_subparsers(dest="streams_command", required=True)
    show = ssub.add_parser("show", help="scenario, sizes, classes, fingerprint and source of a stream")
    show.add_argument("name")
    data_args(show)
    show.set_defaults(func=cmd_streams_show)

    from replaybench.leaderboards.cli import register_commands

    register_commands(sub)  # submit, verify, leaderboard show|export|publish|pin|list
    from replaybench.sweep import register_sweep_command

    register_sweep_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except ReplaybenchError as exc:
        print(f"replaybench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("replaybench: interrupted; finished runs are kept.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
