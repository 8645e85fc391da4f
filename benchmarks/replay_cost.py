"""What replay costs: interleaved replay against the learner alone, and one SRC sleep against one epoch.

    .venv/bin/python benchmarks/replay_cost.py --stream split-fmnist --repeats 3

For each learner, the second experience of the stream is learned (one
epoch, batch 128) with ``source=none`` and with each replay source at
500,000 bytes; the ratio is replay's time over the learner's own, at equal
minibatch size of new items (replay adds a minibatch of the same size, so
each step sees twice the items). Target: ≤ 2x.

For Sleep Replay Consolidation, one sleep phase after that experience
(``T_k`` = 20,000 simulator steps for k = 2, batch 1, the MNIST constants),
against one training epoch of the backprop learner on the experience.
Target: ≤ 1x. Timings are process CPU seconds on one thread, the median
over ``--repeats``; the same process runs both sides of each ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from replaybench.agents.replay import ReplayAgent, ReplayConfig
from replaybench.agents.replay.sleep import src_phase
from replaybench.runner import make_stream

STREAM_OPTIONS = {"split-fmnist": {"train_per_class": 1000}, "split-mnist5k": {}}
LEARNERS = {
    "backprop": {"lr": 0.08},
    "sigprop": {"lr": 2e-3},
    "efp": {"lr": 1.6e-3},
    "stdp": {"n_neurons": 100, "batch_size": 16},
}


def seconds(fn, *args) -> float:
    start = time.process_time()
    fn(*args)
    return time.process_time() - start


def learn_time(stream, learner: str, source: str, repeats: int) -> float:
    """Median CPU seconds of learning experience 1 after experience 0 (replay has something to draw)."""
    times = []
    for seed in range(repeats):
        options = {"epochs": 1, "batch_size": 128, **LEARNERS[learner]}
        config = ReplayConfig(learner=learner, source=source, memory_bytes=500_000, **options)
        agent = ReplayAgent(stream=stream, config=config, seed=seed)
        agent.learn(stream.experiences[0])
        times.append(seconds(agent.learner.learn, stream.experiences[1]))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stream", default="split-fmnist", choices=list(STREAM_OPTIONS))
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=list(LEARNERS))
    parser.add_argument("--sources", nargs="+", default=["buffer", "gsemm", "generative", "wave"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    stream = make_stream(args.stream, **STREAM_OPTIONS[args.stream])
    n = len(stream.experiences[1].train_x)
    print(f"{args.stream}: experience 1 has {n} items; one epoch, batch 128; CPU s, median of {args.repeats}\n")
    print("| learner | alone (s) | " + " | ".join(f"{s} (s, ratio)" for s in args.sources) + " |")
    print("|---" * (len(args.sources) + 2) + "|")
    for learner in args.learners:
        alone = learn_time(stream, learner, "none", args.repeats)
        cells = []
        for source in args.sources:
            t = learn_time(stream, learner, source, args.repeats)
            cells.append(f"{t:.2f} ({t / alone:.2f}x)")
        print(f"| {learner} | {alone:.2f} | " + " | ".join(cells) + " |", flush=True)

    epochs, sleeps = [], []
    for seed in range(args.repeats):
        config = ReplayConfig(source="none", schedule="sleep", epochs=1, batch_size=128, lr=0.08, memory_bytes=500_000)
        agent = ReplayAgent(stream=stream, config=config, seed=seed)
        agent.learn(stream.experiences[0])
        epochs.append(seconds(agent.learner.learn, stream.experiences[1]))
        agent.sleep_stats.update(stream.experiences[1].train_x, agent.learner.linear_layers())
        sleeps.append(seconds(src_phase, agent.learner, agent.sleep_stats, 1, agent.config))
    epoch, sleep = statistics.median(epochs), statistics.median(sleeps)
    print(
        f"\nSRC: one sleep after experience 1 (20,000 steps) {sleep:.2f} s; one backprop epoch on it "
        f"{epoch:.2f} s; ratio {sleep / epoch:.2f}x"
    )


if __name__ == "__main__":
    main()
