"""Cost of one traveling-wave step against one ``nn.RNN`` step of equal state size.

Target (issue #6): one wave step with s = 8, d = 8, batch 64 costs at most 2x
an Elman ``nn.RNN`` step whose hidden state has s*d = 64 units. Both get the
same 8-wide input; the wave lattice writes it into its start boundary through
the LBC (and, for reference, the SBC). Forward and forward+backward over a
64-step sequence are timed too. Run::

    .venv/bin/python benchmarks/wave_step.py
"""

from __future__ import annotations

import argparse
import timeit

import torch

from replaybench.memories.wave import WaveLattice


def best_times(stmts: list[str], env: dict, rounds: int, number: int) -> list[float]:
    """Seconds per call of each statement: the best of ``rounds`` interleaved rounds of ``number`` calls.

    Interleaving and taking the minimum keep the ratios fair on a shared,
    loaded machine, where a median would mostly measure the neighbours.
    """
    timers = [timeit.Timer(stmt, globals=env) for stmt in stmts]
    for timer in timers:
        timer.timeit(max(1, number // 10))  # warm-up
    best = [float("inf")] * len(stmts)
    for _ in range(rounds):
        for i, timer in enumerate(timers):
            best[i] = min(best[i], timer.timeit(number) / number)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64, help="sequence length of the BPTT comparison")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=200, help="calls per round (divided by --steps for BPTT)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    s, d, b = args.slots, args.features, args.batch
    rnn = torch.nn.RNN(d, s * d, nonlinearity="tanh", bias=False, batch_first=True)
    lbc = WaveLattice(slots=s, features=d, boundary="linear", activation="tanh")
    sbc = WaveLattice(slots=s, features=d, boundary="attention", activation="tanh", heads=d, position_bias=True)
    encoder = torch.nn.Linear(d, d, bias=False)  # the wave agents' input map, the analogue of RNN's W_ih
    x_step = torch.randn(b, 1, d)
    h = torch.zeros(1, b, s * d)
    lattice = lbc.initial_state(b)
    x_seq = torch.randn(b, args.steps, d)
    env = {
        "rnn": rnn,
        "lbc": lbc,
        "sbc": sbc,
        "encoder": encoder,
        "x_step": x_step,
        "x": x_step[:, 0],
        "h": h,
        "lattice": lattice,
        "x_seq": x_seq,
        "torch": torch,
    }
    rows = [
        (
            "one step, no grad",
            "with torch.no_grad(): rnn(x_step, h)",
            "with torch.no_grad(): lbc.step(lattice, encoder(x))",
            "with torch.no_grad(): sbc.step(lattice, encoder(x))",
        ),
        ("one step, autograd", "rnn(x_step, h)", "lbc.step(lattice, encoder(x))", "sbc.step(lattice, encoder(x))"),
        (
            f"{args.steps} steps fwd+bwd",
            "rnn(x_seq)[0].sum().backward()",
            "lbc(encoder(x_seq)).sum().backward()",
            "sbc(encoder(x_seq)).sum().backward()",
        ),
    ]
    print(
        f"s={s} d={d} batch={b}; nn.RNN hidden={s * d}; torch {torch.__version__}, 1 thread; "
        f"best of {args.rounds} interleaved rounds"
    )
    print(f"{'measurement':<24}{'nn.RNN':>12}{'wave LBC':>12}{'LBC/RNN':>10}{'wave SBC':>12}{'SBC/RNN':>10}")
    for name, rnn_stmt, lbc_stmt, sbc_stmt in rows:
        number = args.number if "steps" not in name else max(1, args.number // args.steps)
        t_rnn, t_lbc, t_sbc = best_times([rnn_stmt, lbc_stmt, sbc_stmt], env, args.rounds, number)
        print(
            f"{name:<24}{t_rnn * 1e6:>10.1f}us{t_lbc * 1e6:>10.1f}us{t_lbc / t_rnn:>9.2f}x"
            f"{t_sbc * 1e6:>10.1f}us{t_sbc / t_rnn:>9.2f}x"
        )
    print("target: wave LBC one step <= 2.00x nn.RNN one step")


if __name__ == "__main__":
    main()
