"""The replay family's learner x source table: final ACC and forgetting at equal total memory.

    .venv/bin/python benchmarks/replay_family.py --streams split-mnist5k split-fmnist \
        --seeds 0 1 2 3 4 --json docs/replay_family.json

Every cell is ``replaybench run --agent replay -o learner=L -o source=S`` on a
class-IL stream, with the standard-supervised board's budget (5 epochs,
batch 128, ``memory_bytes`` 500,000 counted whole: the cell's
``state_bytes`` is printed beside it) and its stream options. Each learner
keeps one setting across sources, so the source is the only thing that
changes along a row: ``backprop``, ``sigprop`` and ``efp`` take the learning
rates that ``replaybench leaderboard tune standard-supervised`` chose on the
validation split for ``er``, ``sigprop`` and ``efp``
(leaderboards/boards/standard-supervised.presets.json); ``stdp`` is the
Diehl & Cook network with 100 neurons, one epoch and the relabel readout.
``source=none`` is each learner's no-replay control and ``buffer`` its
exemplar control.

Cells are mean ± 90% t-interval over seeds (``metrics.t_interval``). Runs
already in ``--json`` are kept, so an interrupted table resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from replaybench.metrics import t_interval
from replaybench.runner import RunSpec, make_stream, run

PRESETS = Path(__file__).resolve().parents[1] / "leaderboards" / "boards" / "standard-supervised.presets.json"
STREAM_OPTIONS = {"split-fmnist": {"train_per_class": 1000}, "split-mnist5k": {}}
BUDGET = {"epochs": 5, "batch_size": 128}
MEMORY_BYTES = 500_000
SOURCES = ("none", "buffer", "gsemm", "generative", "wave")


def learner_options() -> dict[str, dict]:
    """Each learner's setting: the tuned preset of its plain agent, and the board's budget."""
    tuned = json.loads(PRESETS.read_text())["agents"]
    return {
        "backprop": {**BUDGET, **tuned["er"]["options"]},
        "sigprop": {**BUDGET, **tuned["sigprop"]["options"]},
        "efp": {**BUDGET, **tuned["efp"]["options"]},
        "stdp": {"epochs": 1, "batch_size": 16, "n_neurons": 100, "assignment": "relabel"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", nargs="+", default=list(STREAM_OPTIONS), choices=list(STREAM_OPTIONS))
    parser.add_argument("--learners", nargs="+", default=["backprop", "sigprop", "efp", "stdp"])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--schedule", default="interleaved", choices=["interleaved", "sleep", "sequence"])
    parser.add_argument("--json", default=None, help="every run's metrics, kept and extended across calls")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = Path(args.json) if args.json else None
    runs: list[dict] = json.loads(path.read_text())["runs"] if path and path.exists() else []
    done = {(r["stream"], r["learner"], r["source"], r["schedule"], r["seed"]) for r in runs}
    settings = learner_options()
    for stream_name in args.streams:
        stream = make_stream(stream_name, **STREAM_OPTIONS[stream_name])
        for learner in args.learners:
            for source in args.sources:
                for seed in args.seeds:
                    key = (stream_name, learner, source, args.schedule, seed)
                    if key in done:
                        continue
                    options = {
                        **settings[learner],
                        "learner": learner,
                        "source": source,
                        "schedule": args.schedule,
                        "memory_bytes": MEMORY_BYTES,
                    }
                    spec = RunSpec(
                        stream=stream_name,
                        stream_options=STREAM_OPTIONS[stream_name],
                        agent="replay",
                        agent_options=options,
                        seed=seed,
                    )
                    t0 = time.perf_counter()
                    result = run(spec, stream=stream)
                    runs.append(
                        {
                            "stream": stream_name,
                            "learner": learner,
                            "source": source,
                            "schedule": args.schedule,
                            "seed": seed,
                            "acc": result.metrics["acc"],
                            "forgetting_max": result.metrics["forgetting_max"],
                            "plasticity": result.metrics["plasticity"],
                            "state_bytes": result.costs.get("state_bytes"),
                            "learn_seconds": result.costs["learn_seconds"],
                            "wall_seconds": time.perf_counter() - t0,
                        }
                    )
                    print(
                        f"{stream_name} {learner:8s} {source:10s} seed {seed}: ACC {result.metrics['acc']:.3f} "
                        f"F {result.metrics['forgetting_max']:.3f} bytes {result.costs.get('state_bytes')} "
                        f"{time.perf_counter() - t0:.0f} s",
                        flush=True,
                    )
                    if path:
                        path.write_text(json.dumps({"memory_bytes": MEMORY_BYTES, "runs": runs}, indent=1))
    print(table(runs))


def table(runs: list[dict]) -> str:
    """One Markdown table per stream and schedule: learners as rows, sources as columns."""
    out = []
    for stream_name, schedule in sorted({(r["stream"], r["schedule"]) for r in runs}):
        rows = [r for r in runs if r["stream"] == stream_name and r["schedule"] == schedule]
        learners = [name for name in ("backprop", "sigprop", "efp", "stdp") if any(r["learner"] == name for r in rows)]
        sources = [name for name in SOURCES if any(r["source"] == name for r in rows)]
        seeds = sorted({r["seed"] for r in rows})
        out.append(
            f"\n{stream_name}, class-IL, schedule={schedule}, {len(seeds)} seeds, memory_bytes {MEMORY_BYTES:,} "
            "(total state): final ACC / forgetting_max, mean ± 90% t-interval\n"
        )
        out.append("| learner | " + " | ".join(f"source={s}" for s in sources) + " |")
        out.append("|---" * (len(sources) + 1) + "|")
        for learner in learners:
            cells = []
            for source in sources:
                cell = [r for r in rows if r["learner"] == learner and r["source"] == source]
                if not cell:
                    cells.append("")
                    continue
                acc, acc_h = t_interval([r["acc"] for r in cell])
                forget, forget_h = t_interval([r["forgetting_max"] for r in cell])
                n = f" (n={len(cell)})" if len(cell) != len(seeds) else ""
                cells.append(f"{acc:.3f} ± {acc_h:.3f} / {forget:.3f} ± {forget_h:.3f}{n}")
            out.append(f"| {learner} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
