"""From results files to a table and the four figures: ``replaybench.load_results`` and ``replaybench.plots``.

Runs naive and ER on split-digits over two seeds (each with its preset for
the quick board), reads the results folder back as a tidy DataFrame, prints
mean ± 90% Student-t interval over seeds per agent, and draws the figures
that continual-learning papers print. The same on the command line::

    replaybench run --stream split-digits --agent naive er --seeds 0 1 --out runs
    replaybench plot runs --out figures

Run it::

    python examples/analysis.py --out /tmp/analysis
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import replaybench
from replaybench.analysis import runs_frame
from replaybench.cli import main as replaybench_main
from replaybench.metrics import forgetting_per_experience, t_interval
from replaybench.plots import plot_average_accuracy, write_figures

AGENTS = ("naive", "er")
SEEDS = ("0", "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="replaybench-results/analysis", help="folder for the runs and figures")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small nets on a busy machine run fastest on one thread (README)
    out = Path(args.out)
    runs_dir, figures_dir = out / "runs", out / "figures"

    # 1. Results files: one JSON per run (stream x agent x seed).
    code = replaybench_main(
        ["run", "--stream", "split-digits", "--agent", *AGENTS, "--seeds", *SEEDS, "--out", str(runs_dir), "--no-plots"]
    )
    if code != 0:
        return code

    # 2. Tidy data: one row per run and scalar metric; R rides along in its own column.
    df = replaybench.load_results(runs_dir)
    print(f"{df.run_id.nunique()} runs, {len(df)} rows, metrics: {', '.join(sorted(df.metric.unique()))}")
    for agent, rows in df[df.metric.isin(["acc", "forgetting_max"])].groupby("agent"):
        cells = []
        for metric, values in rows.groupby("metric").value:
            mean, half = t_interval(values.tolist())
            cells.append(f"{metric} {mean:.3f} ± {half:.3f}")
        print(f"{agent}: " + ", ".join(cells) + f" over {rows.seed.nunique()} seeds")

    # 3. Anything else is a function of R: here each experience's forgetting, averaged over seeds.
    for agent, runs in runs_frame(df).groupby("agent"):
        per_seed = [forgetting_per_experience(R.tolist()) for R in runs.R]
        mean = [sum(f[j] for f in per_seed) / len(per_seed) for j in range(len(per_seed[0]))]
        print(f"{agent}: forgetting of each experience at the end: " + " ".join(f"{f:.2f}" for f in mean))

    # 4. Figures: one at a time as a matplotlib Figure, or all four as files.
    figure = plot_average_accuracy(df)
    figures_dir.mkdir(parents=True, exist_ok=True)
    figure.savefig(figures_dir / "A_k.png", dpi=100)
    paths = write_figures(df, figures_dir, formats=["png"])
    print("figures:", ", ".join(p.name for p in [figures_dir / "A_k.png", *paths]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
