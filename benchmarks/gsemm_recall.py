"""Cost of batched GSEMM recall: 64 cues at once versus one cue.

The dynamics are batched over cues ([B, N] states), so recalling 64 cues
should cost little more than one; the issue's budget is ≤ 4×. As the peer,
the same 64 cues are also recalled one at a time, which is what an
unbatched implementation such as the reference code's (one NumPy state
vector per network) has to do.

Run::

    .venv/bin/python benchmarks/gsemm_recall.py            # paper settings, ~1 min on 1 core
    .venv/bin/python benchmarks/gsemm_recall.py --steps 500 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import time

import torch

from memories.gsemm import DSEM, LISEM, random_patterns


def zero_last_quarter(x: torch.Tensor) -> torch.Tensor:
    cue = x.clone()
    cue[..., -x.shape[-1] // 4 :] = 0
    return cue


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-features", type=int, default=100)
    parser.add_argument("--n-memories", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000, help="integration steps per recall (dt = 0.01, RK4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sequential-sample", type=int, default=8,
                        help="time this many of the cues recalled one at a time and scale to the batch (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    patterns = random_patterns(args.n_memories, args.n_features, generator=torch.Generator().manual_seed(0))
    cues = zero_last_quarter(patterns[torch.arange(args.batch) % args.n_memories]).to(args.device)
    print(f"N={args.n_features}, K={args.n_memories}, steps={args.steps} (paper defaults: RK4, dt=0.01), "
          f"device={args.device}, 1 thread, best of {args.repeats}")
    header = f"{'model':6} {'1 cue [s]':>10} {f'{args.batch} cues [s]':>13} {'ratio':>7}"
    sample = min(args.sequential_sample, args.batch)
    if sample:
        header += f" {f'{args.batch}x1 cue [s]*':>15} {'batched speed-up':>17}"
    print(header)
    for cls in (DSEM, LISEM):
        model = cls.from_patterns(patterns, cycles=[range(args.n_memories)]).to(args.device)
        one = best_time(lambda: model.recall(cues[0], steps=args.steps), args.repeats)
        many = best_time(lambda: model.recall(cues, steps=args.steps), args.repeats)
        line = f"{cls.__name__:6} {one:10.3f} {many:13.3f} {many / one:7.2f}"
        if sample:
            seq = best_time(lambda: [model.recall(c, steps=args.steps) for c in cues[:sample]], 1)
            seq *= args.batch / sample
            line += f" {seq:15.3f} {seq / many:16.1f}x"
        print(line)
    if sample:
        print(f"* one cue at a time: {sample} recalls timed, scaled to {args.batch}")


if __name__ == "__main__":
    main()
