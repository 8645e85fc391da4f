"""Capacity of LISEM and DSEM: for K memories in a cycle, the smallest N that recalls it.

Protocol (after the reference code's ``experiments/capacity_*.py``, made
cheaper; see ``docs/gsemm.md`` for the differences):

- K random ±1 memories of N features, joined in one cycle 0 → 1 → … → K−1 → 0
  with ``from_patterns``.
- Cues: up to 8 memories spread over the cycle, each with its last 25% of
  entries zeroed, recalled together as one batch.
- A cue succeeds if the decoded sequence starts at the cued memory and runs
  one full lap in order (K transitions) within a time budget of 1.4× the
  expected dwell per memory.
- (K, N) recalls the cycle if at least 80% of the cues over ``--seeds``
  pattern draws succeed.
- The smallest such N is found by bisection over a geometric grid of N
  (factor √2, 4 … 1024).

Parameters: the paper's defaults (integrated with Euler at dt = 0.1 for DSEM,
0.2 for LISEM), except T_d = 20 (dwell times scale with T_d; results at
T_d = 100 were the same in spot checks, at 4× the cost), and, for LISEM,
α_s = 4.5/N and α_c = 0.55/N: LISEM's gain α_s N must stay above 1 for any
memory to be stable, so its N = 100 tuning (α_s = 0.045; α_c = 0.0055, see
``docs/gsemm.md``) is kept per neuron. DSEM keeps α_s = 1, α_c = 0.7.

Run (about 3 minutes on one core)::

    .venv/bin/python benchmarks/gsemm_capacity.py --plot docs/gsemm_capacity.png

``--rule energy --memories 2 4 8 16 32 64`` instead gives DSEM's recall rate
against K at N = 16, 23 and 32 with weights set directly next to weights learned
by the energy rule from presentations (mean ± 90% t-interval over seeds).

``--lisem-coupling-scan --seeds 4`` instead measures how LISEM's recall at
N = 100 depends on α_c (the table behind LISEM's α_c in ``docs/gsemm.md``).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from replaybench.memories.gsemm import DSEM, LISEM, DSEMConfig, LISEMConfig, random_patterns
from replaybench.memories.gsemm.learning import cosine_overlaps
from replaybench.metrics import t_interval

N_GRID = sorted({round(4 * math.sqrt(2) ** i) for i in range(17)})  # 4, 6, 8, 11, …, 1024
DWELL = {"DSEM": 15.0, "LISEM": 35.0}  # time per memory at T_d = 20, measured at N = 100
SUCCESS_RATE = 0.8
MAX_CUES = 8


def make_model(name: str, patterns: torch.Tensor):
    n_features = patterns.shape[1]
    if name == "DSEM":
        config = DSEMConfig(tau_d=20.0, dt=0.1, integrator="euler")
        cls = DSEM
    else:
        config = LISEMConfig(
            alpha_s=4.5 / n_features, alpha_c=0.55 / n_features, tau_d=20.0, dt=0.2, integrator="euler"
        )
        cls = LISEM
    return cls.from_patterns(patterns, cycles=[range(len(patterns))], config=config)


def laps_in_order(sequence: list[int], start: int, n_memories: int, laps: int = 1) -> bool:
    visits = laps * n_memories + 1
    return sequence[:visits] == [(start + i) % n_memories for i in range(visits)]


def laps_from_cues(model, dwell: float, laps: int = 1) -> list[bool]:
    """Cue up to MAX_CUES memories (last 25% zeroed) at once; which run ``laps`` laps in order?"""
    patterns, n_memories = model.patterns, model.n_memories
    starts = torch.linspace(0, n_memories - 1, min(n_memories, MAX_CUES)).round().long()
    cues = patterns[starts].clone()
    cues[:, -patterns.shape[1] // 4 :] = 0
    steps = int((laps * n_memories + 1) * dwell / model.config.dt)
    sequences = model.recall(cues, steps=steps, record_every=5).sequences(min_dwell=3)
    return [laps_in_order(s, int(start), n_memories, laps) for s, start in zip(sequences, starts)]


def success_rate(name: str, n_memories: int, n_features: int, seeds: int) -> float:
    """Fraction of cues, over ``seeds`` pattern draws, that recall one lap in order."""
    successes = []
    for seed in range(seeds):
        patterns = random_patterns(n_memories, n_features, generator=torch.Generator().manual_seed(seed))
        successes += laps_from_cues(make_model(name, patterns), 1.4 * DWELL[name])
    return sum(successes) / len(successes)


def smallest_n(name: str, n_memories: int, seeds: int, log: list[str]) -> int | None:
    """Bisection over N_GRID for the smallest N whose success rate reaches SUCCESS_RATE."""
    lo, hi = -1, len(N_GRID) - 1  # invariant: N_GRID[hi] succeeds (checked), lo fails or is -1
    cache: dict[int, float] = {}

    def ok(i: int) -> bool:
        if i not in cache:
            cache[i] = success_rate(name, n_memories, N_GRID[i], seeds)
            log.append(f"{name} K={n_memories} N={N_GRID[i]}: {cache[i]:.2f}")
        return cache[i] >= SUCCESS_RATE

    if not ok(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return N_GRID[hi]


def dsem_set(patterns: torch.Tensor) -> DSEM:
    """DSEM with the K-cycle set directly (Ξ = patterns, Φ = the successor map)."""
    return make_model("DSEM", patterns)


def dsem_learned(patterns: torch.Tensor, epochs: int, rule: str = "energy") -> DSEM:
    """DSEM whose Ξ and Φ are learned by ``rule`` from ``epochs`` presentations of the cycle."""
    config = DSEMConfig(tau_d=20.0, dt=0.1, integrator="euler", learning_rule=rule)
    model = DSEM(n_features=patterns.shape[1], config=config)
    for _ in range(epochs):
        model.store(patterns, cyclic=True)
    return model


def laps_from_pattern_cues(model, patterns: torch.Tensor, dwell: float) -> list[bool]:
    """Like :func:`laps_from_cues`, but cued with the true patterns and scored in pattern indices.

    A learned model's slots need not be the patterns or in their order: each
    slot is read as the pattern it overlaps best, if that cosine is ≥ 0.9 (else
    it matches none and any lap through it fails).
    """
    n_memories = len(patterns)
    overlaps = cosine_overlaps(patterns, model.xi)  # [K patterns, slots]
    best, slot_pattern = overlaps.max(dim=0)
    slot_pattern = torch.where(best >= 0.9, slot_pattern, -1).tolist()
    starts = torch.linspace(0, n_memories - 1, min(n_memories, MAX_CUES)).round().long()
    cues = patterns[starts].clone()
    cues[:, -patterns.shape[1] // 4 :] = 0
    steps = int((n_memories + 1) * dwell / model.config.dt)
    results = []
    for sequence, start in zip(model.recall(cues, steps=steps, record_every=5).sequences(min_dwell=3), starts):
        in_patterns = [slot_pattern[slot] for slot in sequence]
        results.append(laps_in_order(in_patterns, int(start), n_memories))
    return results


def rule_curve(features: list[int], memories: list[int], seeds: int, epochs: int) -> None:
    """DSEM's recall rate against K at fixed N: weights set directly versus learned by the energy rule."""
    dwell = 1.4 * DWELL["DSEM"]
    print(
        f"DSEM, T_d=20, Euler dt=0.1: fraction of cues (up to {MAX_CUES} per draw, last 25% zeroed) that run "
        f"one lap in order; mean ± 90% t-interval over {seeds} seeds; energy rule: {epochs} presentations "
        "of the cycle"
    )
    print("| N | K | set weights | energy rule | cluster rule | energy rule: slots learned (mean) |")
    print("|---|---|---|---|---|---|")
    for n_features in features:
        for n_memories in memories:
            set_rates, learned_rates, cluster_rates, slots = [], [], [], []
            for seed in range(seeds):
                patterns = random_patterns(n_memories, n_features, generator=torch.Generator().manual_seed(seed))
                hits = laps_from_pattern_cues(dsem_set(patterns), patterns, dwell)
                set_rates.append(sum(hits) / len(hits))
                learned = dsem_learned(patterns, epochs)
                slots.append(learned.n_memories)
                hits = laps_from_pattern_cues(learned, patterns, dwell)
                learned_rates.append(sum(hits) / len(hits))
                hits = laps_from_pattern_cues(dsem_learned(patterns, epochs, "cluster"), patterns, dwell)
                cluster_rates.append(sum(hits) / len(hits))
            cells = []
            for rates in (set_rates, learned_rates, cluster_rates):
                mean, half = t_interval(rates)
                cells.append(f"{mean:.2f} ± {half:.2f}")
            print(
                f"| {n_features} | {n_memories} | " + " | ".join(cells) + f" | {sum(slots) / len(slots):.1f} |",
                flush=True,
            )


def lisem_coupling_scan(seeds: int) -> None:
    """LISEM at N = 100 and the paper's T_d = 100: how often a cue runs two laps, per α_c."""
    n_features, couplings, lengths = 100, (0.004, 0.0045, 0.005, 0.0055, 0.007, 0.01), (3, 4, 5, 7)
    print(
        f"LISEM, N={n_features}, T_d=100, Euler dt=0.2: fraction of cues (up to {MAX_CUES} per draw, "
        f"{seeds} draws) that run two laps in order"
    )
    print("| α_c | " + " | ".join(f"K={k}" for k in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    for alpha_c in couplings:
        config = LISEMConfig(alpha_c=alpha_c, dt=0.2, integrator="euler")
        rates = []
        for k in lengths:
            hits = []
            for seed in range(seeds):
                patterns = random_patterns(k, n_features, generator=torch.Generator().manual_seed(seed))
                model = LISEM.from_patterns(patterns, cycles=[range(k)], config=config)
                hits += laps_from_cues(model, 250.0, laps=2)  # dwell ≈ 150 at α_c = 0.0055, longer below
            rates.append(sum(hits) / len(hits))
        print(f"| {alpha_c:g} | " + " | ".join(f"{r:.2f}" for r in rates) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--models", nargs="+", default=["DSEM", "LISEM"], choices=["DSEM", "LISEM"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--plot", default=None, help="write a PNG of N*(K) here")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--lisem-coupling-scan",
        action="store_true",
        help="instead, measure LISEM's recall rate against α_c at N = 100 (docs/gsemm.md)",
    )
    parser.add_argument(
        "--rule",
        choices=["energy"],
        default=None,
        help="instead, DSEM's recall rate against K at the N of --features, weights set directly next to "
        "weights learned by the energy rule (docs/gsemm.md)",
    )
    parser.add_argument("--features", type=int, nargs="+", default=[16, 23, 32], help="N values for --rule")
    parser.add_argument("--epochs", type=int, default=2, help="presentations of the cycle for --rule")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.lisem_coupling_scan:
        lisem_coupling_scan(args.seeds)
        return
    if args.rule:
        rule_curve(args.features, args.memories, args.seeds, args.epochs)
        return

    start = time.perf_counter()
    table: dict[str, dict[int, int | None]] = {}
    for name in args.models:
        table[name] = {}
        for k in args.memories:
            log: list[str] = []
            table[name][k] = smallest_n(name, k, args.seeds, log)
            if args.verbose:
                print("\n".join(log), flush=True)
    elapsed = time.perf_counter() - start

    def cell(n: int | None) -> str:
        return f"> {N_GRID[-1]}" if n is None else str(n)

    print(f"Smallest N recalling a K-cycle (≥{SUCCESS_RATE:.0%} of cues, {args.seeds} seeds), grid {N_GRID}")
    print("| K | " + " | ".join(args.models) + " |")
    print("|---|" + "---|" * len(args.models))
    for k in args.memories:
        print(f"| {k} | " + " | ".join(cell(table[m][k]) for m in args.models) + " |")
    print(f"({elapsed:.0f} s)")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, marker in zip(args.models, "os"):
            ks = [k for k in args.memories if table[name][k] is not None]
            line = ax.plot(ks, [table[name][k] for k in ks], marker=marker, label=name)[0]
            beyond = [k for k in args.memories if table[name][k] is None]
            if beyond:  # not recalled anywhere on the grid: mark above its top
                ax.plot(beyond, [N_GRID[-1] * 1.4] * len(beyond), marker="^", ls="", color=line.get_color())
                for k in beyond:
                    ax.annotate(
                        f"> {N_GRID[-1]}",
                        (k, N_GRID[-1] * 1.4),
                        textcoords="offset points",
                        xytext=(-14, -12),
                        fontsize=7,
                        color=line.get_color(),
                    )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("K, memories in the cycle")
        ax.set_ylabel("smallest N recalling the cycle")
        ax.set_title("GSEMM capacity (benchmarks/gsemm_capacity.py)", fontsize=9)
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
