"""A custom board: pin it, enter two agents, rank them, export the table.

The board is data, ``examples/custom_board.toml``: its streams with builder
options, seeds, metrics, the primary metric and the budget every entry gets.
The same steps on the command line::

    cp examples/custom_board.toml my-board.toml
    replaybench leaderboard pin my-board.toml            # writes each stream's fingerprint into the file
    replaybench submit naive --board my-board.toml --store lb.sqlite
    replaybench submit examples/custom_agent.py:NearestClassMean --board my-board.toml --store lb.sqlite
    replaybench leaderboard show my-board.toml --store lb.sqlite
    replaybench leaderboard export my-board.toml --store lb.sqlite --format md --out board.md

This script runs them in a folder of its own (``--out``), so nothing else is touched::

    python examples/custom_board.py --out /tmp/board
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from replaybench.cli import main as replaybench
from replaybench.leaderboards.boards import load_board
from replaybench.leaderboards.store import Store

HERE = Path(__file__).resolve().parent
BOARD = HERE / "custom_board.toml"
AGENTS = {"naive": "naive", "nearest class mean": f"{HERE / 'custom_agent.py'}:NearestClassMean"}
"""Display name on the board -> agent spec (a registered name or ``file.py:Class``)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="replaybench-results/custom-board", help="folder for the board, store and runs"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small nets on a busy machine run fastest on one thread (README)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    board_file = out / "digits-mini.toml"
    shutil.copyfile(BOARD, board_file)  # pinning writes into the file: pin a copy
    store, runs = str(out / "lb.sqlite"), str(out / "runs")

    # Pin: the board refuses any run whose stream's fingerprint differs from the pinned one.
    if replaybench(["leaderboard", "pin", str(board_file)]) != 0:
        return 2
    board = load_board(str(board_file))
    print(
        f"pinned {board.name} v{board.version}: " + ", ".join(f"{s.name} {s.fingerprint[:12]}" for s in board.streams)
    )

    # Submit: every stream x seed of the board, with its budget; each run recorded in the store.
    for name, agent in AGENTS.items():
        code = replaybench(
            ["submit", agent, "--board", str(board_file), "--store", store, "--out", runs, "--name", name, "--no-plots"]
        )
        if code != 0:
            return code

    # Rank and export: mean and interval over seeds, per stream and averaged.
    if replaybench(["leaderboard", "show", str(board_file), "--store", store]) != 0:
        return 2
    table = out / "digits-mini.md"
    export = ["leaderboard", "export", str(board_file), "--store", store, "--format", "md", "--out", str(table)]
    if replaybench(export) != 0:
        return 2
    with Store(store) as s:
        for sub in s.submissions(board.name):
            print(f"submission {sub.id}: {sub.display_name} ({sub.status}), {len(s.runs(sub.id))} runs")
    print(f"exported {table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
