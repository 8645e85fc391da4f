"""Cost of batched GSEMM recall: 64 cues at once versus one cue.

The dynamics are batched over cues ([B, N] states), so recalling 64 cues
should cost little more than one; the issue's budget is ≤ 4×. As peers, the
same 64 cues are also recalled one at a time, and, given a checkout of the
reference code (github.com/arjun23496/gsemm) with ``--reference-dir``, its
own NumPy models (one state vector per network) run the same single-cue
recall, so their cost for 64 cues is 64 single recalls.

Run::

    .venv/bin/python benchmarks/gsemm_recall.py            # paper settings, ~1 min on 1 core
    .venv/bin/python benchmarks/gsemm_recall.py --reference-dir ../gsemm   # with the reference
    .venv/bin/python benchmarks/gsemm_recall.py --steps 500 --repeats 1   # quick look

``--alpha-c-scan`` instead counts, per α_c, the pattern draws in which LISEM
recalls its cycle in order (the α_c table in docs/gsemm.md)::

    .venv/bin/python benchmarks/gsemm_recall.py --alpha-c-scan --seeds 20 --first-seed 0
    .venv/bin/python benchmarks/gsemm_recall.py --alpha-c-scan --seeds 20 --first-seed 1000  # held out
    .venv/bin/python benchmarks/gsemm_recall.py --alpha-c-scan --scan-memories 7   # K = 7
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

from replaybench.memories.gsemm import DSEM, LISEM, LISEMConfig, random_patterns


def zero_last_quarter(x: torch.Tensor) -> torch.Tensor:
    cue = x.clone()
    cue[..., -x.shape[-1] // 4 :] = 0
    return cue


# In-order recall protocol (tests/test_gsemm.py uses the same): N = 100, K = 4
# in one cycle (about LISEM's capacity at N = 100, where α_c decides), T_d = 100,
# Euler dt = 0.2; a draw succeeds when its cue (memory 0, last 25% zeroed)
# gives at least VISITS in-order visits, i.e. 1.5 laps.
SCAN_N, SCAN_K, VISITS = 100, 4, 6
SCAN_DT, SCAN_TIME = 0.2, 1500.0  # ≈ 300 time units per transition; dwell is 100-200 here
SCAN_GRID = (0.004, 0.0045, 0.005, 0.0055, 0.006, 0.0065, 0.007, 0.008, 0.009, 0.01)


def recalls_in_order(alpha_c: float, seed: int, n_features: int = SCAN_N, n_memories: int = SCAN_K) -> list[bool]:
    """For one pattern draw: does each cue (every memory, last 25% zeroed) give VISITS in-order visits?"""
    patterns = random_patterns(n_memories, n_features, generator=torch.Generator().manual_seed(seed))
    config = LISEMConfig(alpha_c=alpha_c, dt=SCAN_DT, integrator="euler")
    model = LISEM.from_patterns(patterns, cycles=[range(n_memories)], config=config)
    recall = model.recall(zero_last_quarter(patterns), steps=int(SCAN_TIME / SCAN_DT), record_every=5)
    return [
        s[:VISITS] == [(mu + i) % n_memories for i in range(VISITS)]
        for mu, s in enumerate(recall.sequences(min_dwell=3))
    ]


def alpha_c_scan(seeds: range, grid: tuple[float, ...], n_memories: int = SCAN_K) -> None:
    print(
        f"LISEM, N={SCAN_N}, K={n_memories} cycle, T_d=100, Euler dt={SCAN_DT}, {SCAN_TIME:g} time units; "
        f"seeds {seeds.start}..{seeds.stop - 1}: draws whose cue 0 gives >= {VISITS} in-order visits; "
        f"all {n_memories} cues per draw"
    )
    print("| α_c | draws (cue 0) | cues (all) |")
    print("|---|---|---|")
    for alpha_c in grid:
        hits = [recalls_in_order(alpha_c, seed, n_memories=n_memories) for seed in seeds]
        draws = sum(h[0] for h in hits)
        cues = sum(sum(h) for h in hits)
        print(f"| {alpha_c:g} | {draws}/{len(hits)} | {cues}/{len(hits) * n_memories} |", flush=True)


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


def load_reference(root: Path) -> dict[str, type]:
    """The reference's LISEM and DSEM classes, loaded from their files.

    Its ``episodic_memory.networks`` package imports modules missing from the
    repository, so the two model files and their helpers are loaded directly.
    """
    for package in ("episodic_memory", "episodic_memory.utils", "episodic_memory.networks"):
        sys.modules.setdefault(package, types.ModuleType(package))

    def load(name: str, path: str):
        spec = importlib.util.spec_from_file_location(name, root / path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    load("episodic_memory.dynSim", "episodic_memory/dynSim.py")
    load("episodic_memory.utils.functions", "episodic_memory/utils/functions.py")
    exp = load("episodic_memory.networks.AdiabaticEpisodicExp", "episodic_memory/networks/AdiabaticEpisodicExp.py")
    tanh = load("episodic_memory.networks.AdiabaticEpisodicTanh", "episodic_memory/networks/AdiabaticEpisodicTanh.py")
    return {"DSEM": exp.AdiabaticEpisodicExponential, "LISEM": tanh.AdiabaticEpisodicTanh}


def reference_recall(cls: type, patterns: torch.Tensor, cue: torch.Tensor, steps: int, dt: float) -> np.ndarray:
    """One single-cue recall with the reference model at its defaults (RK4) and step dt; the final v."""
    net = cls()
    net.initialize(N=patterns.shape[1], n_patterns=patterns.shape[0], step_size=dt)
    net.set_interactions(patterns.T.double().numpy(), np.roll(np.identity(patterns.shape[0]), 1, axis=1).T)
    net.v = cue.double().numpy().copy()
    for _ in range(steps):
        net.update()
    return net.v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-features", type=int, default=100)
    parser.add_argument("--n-memories", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000, help="RK4 integration steps per recall")
    parser.add_argument("--dt", type=float, default=0.01, help="integration step (the paper's 0.01)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--sequential-sample",
        type=int,
        default=8,
        help="time this many of the cues recalled one at a time and scale to the batch (0: skip)",
    )
    parser.add_argument(
        "--reference-dir",
        type=Path,
        default=None,
        help="a checkout of github.com/arjun23496/gsemm, to time its models too",
    )
    parser.add_argument("--alpha-c-scan", action="store_true", help="instead, score LISEM's in-order recall per α_c")
    parser.add_argument("--seeds", type=int, default=20, help="--alpha-c-scan: pattern draws per α_c")
    parser.add_argument("--first-seed", type=int, default=0, help="--alpha-c-scan: seed of the first draw")
    parser.add_argument("--scan-memories", type=int, default=SCAN_K, help="--alpha-c-scan: K in the cycle")
    parser.add_argument("--grid", type=float, nargs="+", default=SCAN_GRID, help="--alpha-c-scan: α_c values")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.alpha_c_scan:
        alpha_c_scan(range(args.first_seed, args.first_seed + args.seeds), tuple(args.grid), args.scan_memories)
        return
    reference = load_reference(args.reference_dir) if args.reference_dir else {}

    patterns = random_patterns(args.n_memories, args.n_features, generator=torch.Generator().manual_seed(0))
    cues = zero_last_quarter(patterns[torch.arange(args.batch) % args.n_memories]).to(args.device)
    print(
        f"N={args.n_features}, K={args.n_memories}, steps={args.steps}, dt={args.dt} (paper defaults, RK4), "
        f"device={args.device}, 1 thread, best of {args.repeats}"
    )
    header = f"{'model':6} {'1 cue [s]':>10} {f'{args.batch} cues [s]':>13} {'ratio':>7}"
    sample = min(args.sequential_sample, args.batch)
    if sample:
        header += f" {f'{args.batch}x1 cue [s]*':>15} {'batched speed-up':>17}"
    if reference:
        header += f" {'ref 1 cue [s]':>14} {f'ref {args.batch} cues [s]':>16} {'ref/ours, 64 cues':>18}"
        header += f" {'|v - v_ref|/|v_ref|':>14}"
    print(header)
    for cls in (DSEM, LISEM):
        # The cue enters as given, as in the reference (the default "unit" transform would rescale it).
        config = cls.config_class(pattern_transform="none", dt=args.dt)
        model = cls.from_patterns(patterns, cycles=[range(args.n_memories)], config=config).to(args.device)
        one = best_time(lambda model=model: model.recall(cues[0], steps=args.steps), args.repeats)
        many = best_time(lambda model=model: model.recall(cues, steps=args.steps), args.repeats)
        line = f"{cls.__name__:6} {one:10.3f} {many:13.3f} {many / one:7.2f}"
        if sample:
            seq = best_time(lambda model=model: [model.recall(c, steps=args.steps) for c in cues[:sample]], 1)
            seq *= args.batch / sample
            line += f" {seq:15.3f} {seq / many:16.1f}x"
        if reference:
            ref_one = best_time(
                lambda cls=cls: reference_recall(reference[cls.__name__], patterns, cues[0].cpu(), args.steps, args.dt),
                args.repeats,
            )
            ref_many = ref_one * args.batch  # one state vector per network: the cues run one after another
            line += f" {ref_one:14.3f} {ref_many:16.3f} {ref_many / many:17.1f}x"
            # Same trajectory? (The reference splits each RK4 step between v and v_d; we step them jointly.)
            ours = model.double().recall(cues[0].cpu(), steps=args.steps).states[-1, 0].numpy()
            theirs = reference_recall(reference[cls.__name__], patterns, cues[0].cpu(), args.steps, args.dt)
            line += f" {np.abs(ours - theirs).max() / np.abs(theirs).max():14.1e}"
        print(line)
    if sample:
        print(f"* one cue at a time: {sample} recalls timed, scaled to {args.batch}")
    if reference:
        print(
            f"ref: the reference code's NumPy models, one cue (float64); {args.batch} cues = {args.batch} x 1 cue; "
            "last column: max difference of the final state from ours (float64), relative to its max"
        )


if __name__ == "__main__":
    main()
