"""Sleep Replay Consolidation alone (no stored data) against naive fine-tuning, class-IL.

    .venv/bin/python benchmarks/src_sleep.py --stream split-mnist5k --seeds 0 1 2 3 4 --json docs/src_split-mnist5k.json
    .venv/bin/python benchmarks/src_sleep.py --stream split-fmnist --seeds 0 1 2 3 4 --json docs/src_split-fmnist.json

Both agents are the replay agent's backprop learner with SRC's network
(Tadros et al. 2022, Nat. Commun. 13:7742; the recipe of the authors' code,
tmtadros/SleepReplayConsolidation):
a bias-free ReLU MLP 784-1200-1200-10, SGD lr 0.1, momentum 0.5, batch 100,
cross-entropy on a linear output (better than the code's MSE here). Naive is
``source=none``; SRC is ``source=none, schedule=sleep`` (``replay-src``):
after each experience the network sleeps in the spiking simulator for
15,000 + 5,000·k steps, driven by the running mean of the inputs seen, with
the authors' constants for the dataset. Epochs: 10 on split-mnist5k (800
images per experience: [M]'s 2 epochs would be 16 SGD steps) and [M]'s 2 on
full split-fmnist (12,000 per experience).

Printed per seed: the mean accuracy over the experiences seen so far, right
after training on experience k and after its sleep; then final ACC of both
agents as mean ± 90% t-interval. The reference point, second-hand and on
full MNIST: sequential 19.5%, SRC 48.5%.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from replaybench.agents.replay import ReplayAgent, ReplayConfig
from replaybench.evaluation import supervised_accuracy
from replaybench.metrics import t_interval
from replaybench.runner import make_stream, seed_everything

SETTINGS = {
    "split-mnist5k": {"epochs": 10, "src_constants": "mnist"},
    "split-fmnist": {"epochs": 2, "src_constants": "fashion-mnist"},
}
LEARNER = {"bias": False, "hidden": (1200, 1200), "lr": 0.1, "momentum": 0.5, "batch_size": 100}


def seen_accuracy(agent: ReplayAgent, stream, k: int) -> float:
    """Mean test accuracy over experiences 0..k."""
    return sum(supervised_accuracy(agent, stream.experiences[j], stream) for j in range(k + 1)) / (k + 1)


def run_one(stream, schedule: str, seed: int, setting: dict) -> dict:
    seed_everything(seed)
    config = ReplayConfig(source="none", schedule=schedule, **LEARNER, **setting)
    agent = ReplayAgent(stream=stream, config=config, seed=seed)
    before, after, sleep_seconds = [], [], []
    for k, experience in enumerate(stream.experiences):
        agent.learner.learn(experience)
        before.append(seen_accuracy(agent, stream, k))
        t0 = time.process_time()
        agent.consolidate(experience)
        sleep_seconds.append(time.process_time() - t0)
        after.append(seen_accuracy(agent, stream, k))
    return {"before_sleep": before, "after_sleep": after, "acc": after[-1], "consolidate_seconds": sleep_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stream", default="split-mnist5k", choices=list(SETTINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    stream = make_stream(args.stream)
    setting = SETTINGS[args.stream]
    runs: dict[str, list[dict]] = {"naive": [], "src": []}
    for seed in args.seeds:
        for name, schedule in (("naive", "interleaved"), ("src", "sleep")):
            result = run_one(stream, schedule, seed, setting)
            runs[name].append(result)
            print(
                f"seed {seed} {name:5s}: after training "
                + " ".join(f"{a:.3f}" for a in result["before_sleep"])
                + " | after sleep "
                + " ".join(f"{a:.3f}" for a in result["after_sleep"])
                + f" | sleep s {sum(result['consolidate_seconds']):.1f}",
                flush=True,
            )
    print(f"\n{args.stream}, class-IL, {len(args.seeds)} seeds, {setting['epochs']} epochs, constants {setting}")
    print("| agent | final ACC (mean ± 90% t-interval) |\n|---|---|")
    for name, results in runs.items():
        mean, half = t_interval([r["acc"] for r in results])
        print(f"| {name} | {mean:.3f} ± {half:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"stream": args.stream, "setting": setting, "learner": LEARNER, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
