"""Submit scaling: one board submission, inline against a local pool, as a user runs it.

Each executor runs the real command in a fresh process, so its wall time
holds everything a user waits for: the interpreter, importing torch,
validation (every stream built, the agent built once per stream), the runs,
the store's rows and the board table::

    replaybench submit AGENT --board BOARD --executor inline
    replaybench submit AGENT --board BOARD --executor local --workers 2

Every R matrix of the two submissions is checked to be equal (the pool's
workers run one torch thread each; the inline process is given one too, so
both compute the same numbers the same way). A third submission runs inline
with torch's default intra-op threads (all cores: what a user gets without
``--threads``); its ratio is reported too. Its R differs in the last digits
(another summation order), so it is not compared.

    python benchmarks/submit_scaling.py [--agent er] [--board standard-supervised] [--workers 2] [--repeats 1]

Target (issue #17): on 2 cores, ``--executor local --workers 2`` takes ≤ 0.6×
the inline wall time on the standard-supervised board (15 runs: 3 streams ×
5 seeds). The load average is printed before and after: on a shared machine
the ratio is only as good as the cores that were free. With ``--repeats``
the executors alternate, and the median ratio is reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from replaybench.leaderboards.store import Store


def submit(mode: str, workers: int, agent: str, board: str, root: Path) -> tuple[float, dict]:
    """Wall seconds of one ``replaybench submit`` and its R matrices by (stream, seed).

    ``mode``: "inline" (one torch thread), "local" (``workers`` workers, one thread each) or
    "inline-threads" (inline with torch's default threads).
    """
    executor = "local" if mode == "local" else "inline"
    store, out = root / f"{mode}.sqlite", root / f"{mode}-out"
    cmd = [sys.executable, "-m", "replaybench", "submit", agent, "--board", board, "--store", str(store)]
    cmd += ["--out", str(out), "--no-plots", "--executor", executor]
    env = dict(os.environ)
    if mode != "inline-threads":
        cmd += ["--threads", "1"]
        env["OMP_NUM_THREADS"] = "1"
    if executor == "local":
        cmd += ["--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    with Store(store) as s:
        (sub,) = s.submissions(Path(board).stem if board.endswith(".toml") else board, status=None)
        runs = {(r.stream, r.seed): r.R for r in s.runs(sub.id)}
    return wall, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="er")
    parser.add_argument("--board", default="standard-supervised")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    ratios, threaded_ratios, rows = [], [], []
    modes = ["inline", "local", "inline-threads"]
    for k in range(args.repeats):
        order = modes[k % 3 :] + modes[: k % 3]  # rotate, so a slow spell of the VM hits each in turn
        with tempfile.TemporaryDirectory() as tmp:
            timed = {m: submit(m, args.workers, args.agent, args.board, Path(tmp)) for m in order}
        (inline_s, inline_R), (local_s, local_R) = timed["inline"], timed["local"]
        threaded_s = timed["inline-threads"][0]
        if inline_R != local_R:
            raise SystemExit("the pool's R matrices differ from inline's")
        ratios.append(local_s / inline_s)
        threaded_ratios.append(local_s / threaded_s)
        rows.append((k + 1, len(inline_R), inline_s, threaded_s, local_s))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\n{args.agent} on {args.board}, local pool of {args.workers} workers against inline (fresh processes)")
    print(
        "| round | runs | inline, 1 thread s | inline, default threads s | local s | local / inline 1t "
        "| local / inline default |\n|---:|---:|---:|---:|---:|---:|---:|"
    )
    for k, n, inline_s, threaded_s, local_s in rows:
        print(
            f"| {k} | {n} | {inline_s:.1f} | {threaded_s:.1f} | {local_s:.1f} | {local_s / inline_s:.2f} "
            f"| {local_s / threaded_s:.2f} |"
        )
    print(
        f"\nmedian local / inline (one thread each): {statistics.median(ratios):.2f} (target ≤ 0.60); "
        "R identical in every round"
    )
    print(f"median local / inline with torch's default threads: {statistics.median(threaded_ratios):.2f}")


if __name__ == "__main__":
    main()
