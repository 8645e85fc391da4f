"""Sweep scaling: the same grid of 8 quick runs, inline, in a local pool, and on Ray (started, or running).

The grid is split-digits × {naive, er} × seeds 0-3, an MLP 64-256-256-10
trained for ``--epochs`` epochs per experience (5-10 s of one core per run
at the default, depending on the VM's day). Each executor runs the whole sweep from this process, and
its time includes its own start-up: spawning and warming the pool's workers,
or starting the Ray cluster (``ray.init(num_cpus=workers)``) and its workers.
``ray-cluster`` joins a cluster that is already running, as a lab's would be:
``--address`` names it, or the benchmark starts one before the rounds and off
the clock (``ray start --head --num-cpus workers``, a private temp dir, free
ports) and stops it at the end; its time includes connecting, the job's
workers starting and importing, and disconnecting.
The inline reference runs in this already-warm process. The results of all
executors are checked to be equal. CPU seconds (this process and the pool's
workers) show the pool's start-up cost apart from the machine's load: on
idle cores its wall time approaches its CPU seconds / workers. The runs' own
seconds (``costs["wall_seconds"]``: training and scoring, not the worker's
imports or the agent's construction) split an executor's time in two: how
much slower each run is while the other cores compute too, and the fixed
cost left over (wall time − run seconds / workers: start-up, the last run's
tail, the driver's writes).

    python benchmarks/sweep_scaling.py [--epochs 200] [--workers 2] [--repeats 3]
        [--executors inline local ray ray-cluster] [--address HOST:PORT]

Targets (issues #10, #21), on 2 cores: local pool with 2 workers ≥ 1.7×
faster than inline; Ray started for the sweep ≤ 1.2× the local pool's time;
Ray on a running cluster ≤ 1.1× the local pool's time. The load average is
printed before and after: on a shared machine the ratios are only as good as
the cores that were free. On this 2-core VM single runs vary by ±10% between
repetitions, so ``--repeats`` runs every executor once per round, rotating
the order, and reports per-round ratios and their medians.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from replaybench.executors import run_one
from replaybench.sweep import SweepConfig, expand_grid, run_sweep

RAY_EXECUTORS = {"ray": "Ray, started for the sweep", "ray-cluster": "Ray, a running cluster"}
RAY_TARGETS = {"ray": 1.2, "ray-cluster": 1.1}


def grid(out: Path, executor: str, epochs: int, workers: int, address: str | None = None) -> SweepConfig:
    return SweepConfig.from_dict(
        {
            "streams": ["split-digits"],
            "agents": ["naive", "er"],
            "seeds": [0, 1, 2, 3],
            "agent_options": {"epochs": epochs, "hidden": [256, 256]},
            "agent_options_by_agent": {"er": {"memory_size": 200}},
            "executor": "ray" if executor == "ray-cluster" else executor,
            "workers": workers,
            "out": str(out),
            **({"address": address} if executor == "ray-cluster" else {}),
        }
    )


def _session_pids(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(stat.parent.name))
    return pids


@contextlib.contextmanager
def running_cluster(cpus: int) -> Iterator[str]:
    """``ray start --head`` in a new session, private temp dir and free ports; yields its address.

    Stopped by signalling the processes of that session, not with ``ray stop``, which would stop
    every Ray cluster on the machine.
    """
    temp = tempfile.mkdtemp(prefix="rb-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    sockets = [socket.socket() for _ in range(7)]
    for s in sockets:
        s.bind(("", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    flags = (
        "port",
        "ray-client-server-port",
        "dashboard-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    )
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        f"--num-cpus={cpus}",
        "--disable-usage-stats",
        "--include-dashboard=false",
        f"--temp-dir={temp}",
    ]
    command += [f"--{flag}={port}" for flag, port in zip(flags, ports)]
    # Without a token this driver reaches an explicit address with no RAY_AUTH_MODE of its own.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    starter = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        output, _ = starter.communicate(timeout=300)
        address_file = Path(temp) / "ray_current_cluster"
        if starter.returncode != 0 or not address_file.is_file():
            raise SystemExit(f"ray start --head failed: {output.strip().splitlines()[-1:]}")
        yield address_file.read_text().strip()
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _session_pids(starter.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 15
            while _session_pids(starter.pid) and time.monotonic() < deadline:
                time.sleep(0.2)


def _cpu_seconds() -> float:
    """CPU time of this process plus its reaped children (the local pool's workers, once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_sweep(
    name: str, out: Path, epochs: int, workers: int, address: str | None = None
) -> tuple[float, float, float, dict]:
    """Run the grid with one executor: wall seconds, CPU seconds visible to this process, the runs'
    own seconds summed, and R by run."""
    cfg = grid(out, name, epochs, workers, address)
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
    parser.add_argument(
        "--executors",
        nargs="+",
        default=["inline", "local", "ray", "ray-cluster"],
        choices=["inline", "local", "ray", "ray-cluster"],
    )
    parser.add_argument(
        "--address", help="the running cluster of ray-cluster (default: one started here, off the clock)"
    )
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
    with contextlib.ExitStack() as stack:
        address = args.address
        if "ray-cluster" in args.executors and address is None:
            address = stack.enter_context(running_cluster(args.workers))
            print(f"started a Ray cluster of {args.workers} CPUs at {address} (off the clock)", flush=True)
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        warm_up = expand_grid(grid(Path(tmp) / "warm", "inline", 1, 1))[0].spec  # imports, off the clock
        run_one(warm_up.to_dict())
        for round_ in range(args.repeats):
            order = args.executors[round_ % len(args.executors) :] + args.executors[: round_ % len(args.executors)]
            for name in order:
                wall, cpu, own, results[name, round_] = time_sweep(
                    name, Path(tmp) / f"{name}{round_}", args.epochs, args.workers, address
                )
                seconds[name].append(wall)
                run_seconds[name].append(own)
                # Ray's workers are the raylet's children, not ours: their CPU time is not counted.
                cpu_text = f"{cpu:6.1f} CPU s" if name not in RAY_EXECUTORS else "(CPU s of Ray workers not visible)"
                print(
                    f"round {round_ + 1}: {name:11s} {wall:7.1f} s wall for {len(results[name, round_])} runs "
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
    for name in (n for n in RAY_EXECUTORS if n in seconds and "local" in seconds):
        per_round = [r / l for r, l in zip(seconds[name], seconds["local"])]
        print(
            f"{RAY_EXECUTORS[name]} / local pool time: median {statistics.median(per_round):.2f} "
            f"(per round {', '.join(f'{r:.2f}' for r in per_round)}; target ≤ {RAY_TARGETS[name]})"
        )


if __name__ == "__main__":
    main()
