"""Final accuracy of the biological replay options against naive, ER and joint
at one memory budget in bytes, over seeds (class-IL).

    .venv/bin/python benchmarks/replay_accuracy.py --stream split-mnist5k --seeds 0 1 2 3 4 \
        --epochs 5 --memory-bytes 500000 --json docs/replay_split-mnist5k.json

Prints one row per configuration: mean ± std of final ACC, BWT, memory bytes
actually held, and learn seconds per run. One thread (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from replaybench.runner import RunSpec, make_stream, run

REPLAY = "replaybench.agents.replay:BiologicalReplay"

# name -> (agent, options); the replay-* entries are the options registered in agents/catalog.py.
CONFIGS: dict[str, tuple[str, dict]] = {
    "naive": ("naive", {}),
    "er": ("er", {}),
    "er-balanced": ("er", {"class_balanced": True}),
    "replay-sleep": (REPLAY, {"sleep": True}),
    "replay-gsemm": (REPLAY, {"memory_model": "gsemm"}),
    "replay-gsemm-latent": (REPLAY, {"memory_model": "gsemm", "latent_layer": 1}),
    "replay-sequence": (REPLAY, {"memory_model": "gsemm", "sequence_replay": True}),
    "replay-prioritized": (REPLAY, {"priority": "loss"}),
    "replay-forgetting": (REPLAY, {"priority": "forgetting"}),
    "replay-latent": (REPLAY, {"latent_layer": 1}),
    "replay-cls": (REPLAY, {"cls_distill": 1.0}),
    "replay-decay": (REPLAY, {"decay": 0.3, "gist": 0.1}),
    "replay-gsemm-cls": (REPLAY, {"memory_model": "gsemm", "cls_distill": 1.0}),
    "joint": ("joint", {}),
}
BUDGETED = {"er", "er-balanced"} | {n for n, (a, _) in CONFIGS.items() if a == REPLAY}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stream", default="split-mnist5k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--memory-bytes", type=int, default=500_000)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="write every run's final ACC here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    stream = make_stream(args.stream, data_dir=args.data_dir)
    rows: dict[str, dict[str, list[float]]] = {}
    for name in args.configs:
        agent, options = CONFIGS[name]
        options = {**options, "epochs": args.epochs}
        if name in BUDGETED:
            options["memory_bytes"] = args.memory_bytes
        row = rows.setdefault(name, {"acc": [], "bwt": [], "bytes": [], "seconds": []})
        for seed in args.seeds:
            t0 = time.process_time()
            result = run(RunSpec(stream=args.stream, agent=agent, seed=seed, agent_options=options), stream=stream)
            row["acc"].append(result.metrics["acc"])
            row["bwt"].append(result.metrics["bwt"])
            row["bytes"].append(result.costs["per_experience"][-1].get("memory_bytes", 0.0))
            row["seconds"].append(time.process_time() - t0)
        print(
            f"{name:22s} ACC {_ms(row['acc'])}  BWT {_ms(row['bwt'])}  bytes {statistics.mean(row['bytes']):9.0f}"
            f"  cpu s/run {statistics.mean(row['seconds']):6.1f}",
            flush=True,
        )
    print(f"\n{args.stream}, class-IL, seeds {args.seeds}, {args.epochs} epochs, memory {args.memory_bytes} bytes\n")
    print("| agent | final ACC | BWT | memory bytes held |\n|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {_ms(row['acc'])} | {_ms(row['bwt'])} | {statistics.mean(row['bytes']):.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "stream": args.stream,
                    "seeds": args.seeds,
                    "epochs": args.epochs,
                    "memory_bytes": args.memory_bytes,
                    "rows": rows,
                },
                f,
                indent=1,
            )


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


if __name__ == "__main__":
    main()
