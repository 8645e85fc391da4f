"""Sweep scaling: the same grid of 8 quick runs, inline, in a local pool, and on a local Ray cluster.

The grid is split-digits × {naive, er} × seeds 0-3, an MLP 64-256-256-10
trained for ``--epochs`` epochs per experience (5-10 s of one core per run
at the default, depending on the VM's day). Each executor runs the whole sweep from this process, and
its time includes its own start-up: spawning and warming the pool's workers,
or starting the Ray cluster (``ray.init(num_cpus=workers)``) and its workers.
The inline reference runs in this already-warm process. The results of all
executors are checked to be equal. CPU seconds (this process and the pool's
workers) show the pool's start-up cost apart from the machine's load: on
idle cores its wall time approaches its CPU seconds / workers. The runs' own
seconds (``costs["wall_seconds"]``: training and scoring, not the worker's
imports or the agent's construction) split an executor's time in two: how
much slower each run is while the other cores compute too, and the fixed
cost left over (wall time − run seconds / workers: start-up, the last run's
tail, the driver's writes).

    python benchmarks/sweep_scaling.py [--epochs 200] [--workers 2] [--executors inline local ray] [--repeats 3]

Targets (issue #10), on 2 cores: local pool with 2 workers ≥ 1.7× faster
than inline; local Ray ≤ 1.2× the local pool's time. The load average is
printed before and after: on a shared machine the ratios are only as good as
the cores that were free. On this 2-core VM single runs vary by ±10% between
repetitions, so ``--repeats`` runs every executor once per round, rotating
the order, and reports per-round ratios and their medians.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from replaybench.executors import run_one
from replaybench.sweep import SweepConfig, expand_grid, run_sweep


def grid(out: Path, executor: str, epochs: int, workers: int) -> SweepConfig:
    return SweepConfig.from_dict(
        {
            "streams": ["split-digits"],
            "agents": ["naive", "er"],
            "seeds": [0, 1, 2, 3],
            "agent_options": {"epochs": epochs, "hidden": [256, 256]},
            "agent_options_by_agent": {"er": {"memory_size": 200}},
            "executor": executor,
            "workers": workers,
            "out": str(out),
        }
    )


def _cpu_seconds() -> float:
    """CPU time of this process plus its reaped children (the local pool's workers, once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_sweep(name: str, out: Path, epochs: int, workers: int) -> tuple[float, float, float, dict]:
    """Run the grid with one executor: wall seconds, CPU seconds visible to this process, the runs'
    own seconds summed, and R by run."""
    cfg = grid(out, name, epochs, workers)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    report = run_sweep(cfg, show_progress=False, plots=False)
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    if report.failures:
        raise SystemExit(f"{name}: failed runs {sorted(report.failures)}")
    run_seconds = sum(r.costs["wall_seconds"] for r in report.results.values())
    return wall, cpu, run_seconds, {i: r.R for i, r in report.results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200, help="epochs per experience (run length)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executors", nargs="+", default=["inline", "local", "ray"])
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds of every executor (the order rotates each round); medians are reported",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # inline runs use one core, like each pool worker

    print(f"cpus {os.cpu_count()}, load average before {os.getloadavg()[0]:.1f}")
    seconds: dict[str, list[float]] = {name: [] for name in args.executors}
    run_seconds: dict[str, list[float]] = {name: [] for name in args.executors}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        warm_up = expand_grid(grid(Path(tmp) / "warm", "inline", 1, 1))[0].spec  # imports, off the clock
        run_one(warm_up.to_dict())
        for round_ in range(args.repeats):
            order = args.executors[round_ % len(args.executors) :] + args.executors[: round_ % len(args.executors)]
            for name in order:
                wall, cpu, own, results[name, round_] = time_sweep(
                    name, Path(tmp) / f"{name}{round_}", args.epochs, args.workers
                )
                seconds[name].append(wall)
                run_seconds[name].append(own)
                # Ray's workers are the raylet's children, not ours: their CPU time is not counted.
                cpu_text = f"{cpu:6.1f} CPU s" if name != "ray" else "(CPU s of Ray workers not visible)"
                print(
                    f"round {round_ + 1}: {name:7s} {wall:7.1f} s wall for {len(results[name, round_])} runs "
                    f"({own:.1f} s in the runs themselves), {cpu_text}",
                    flush=True,
                )
    reference = next(iter(results.values()))
    same = all(r == reference for r in results.values())
    print(f"load average after {os.getloadavg()[0]:.1f}; results equal across executors and rounds: {same}")
    for name, walls in seconds.items():
        print(
            f"{name:7s} median {statistics.median(walls):6.1f} s over {len(walls)} round(s): "
            + ", ".join(f"{w:.1f}" for w in walls)
        )
    if "inline" in seconds and "local" in seconds:
        per_round = [i / l for i, l in zip(seconds["inline"], seconds["local"])]
        print(
            f"local pool ({args.workers} workers) speed-up over inline: median "
            f"{statistics.median(per_round):.2f}× (per round {', '.join(f'{r:.2f}' for r in per_round)}; "
            "target ≥ 1.7×)"
        )
    if "inline" in seconds:
        for name in (n for n in seconds if n != "inline"):
            relative = [own / ref - 1 for own, ref in zip(run_seconds[name], run_seconds["inline"])]
            fixed = [wall - own / args.workers for wall, own in zip(seconds[name], run_seconds[name])]
            print(
                f"{name:7s} runs' own seconds against inline's: median {100 * statistics.median(relative):+.0f}% "
                f"(per round {', '.join(f'{100 * x:+.0f}%' for x in relative)}); fixed cost (wall − run s / "
                f"workers) median {statistics.median(fixed):.1f} s ({', '.join(f'{x:.1f}' for x in fixed)})"
            )
    if "ray" in seconds and "local" in seconds:
        per_round = [r / l for r, l in zip(seconds["ray"], seconds["local"])]
        print(
            f"local Ray time / local pool time: median {statistics.median(per_round):.2f} "
            f"(per round {', '.join(f'{r:.2f}' for r in per_round)}; target ≤ 1.2)"
        )


if __name__ == "__main__":
    main()
