"""Experiments reproducing the TWM/EMT/flip-flop claims (issue #6); plots go to ``docs/``.

Experiments, each a subcommand; results are written to
``docs/wave_<experiment>.json`` and plotted by ``plot``. EMT's Table 1 has
its own script, ``benchmarks/emt_protocol.py``, which follows EMT's protocol.

- ``gradient``: the diminishing-gradient claim. ``||dL_k/dx(1)||`` against the
  horizon k, where ``L_k`` is the squared error of the output k steps after
  x(1) in a stream of random ±1 inputs, for the Elman RNN and the wave-LBC
  model, at initialisation and after training on repeat copy.
- ``flipflop``: learning curves of TI and TD accuracy on the time-of-day
  automaton (P = 6) and the relative-timing variant, to see the phases.
- ``spectrum``: the Elman RNN's TI/TD curves on the time-of-day automaton
  with |λ_max| of its Jacobian at the null-input fixed point.

Run (each takes minutes on one CPU thread)::

    .venv/bin/python benchmarks/wave_experiments.py gradient
    .venv/bin/python benchmarks/wave_experiments.py flipflop
    .venv/bin/python benchmarks/wave_experiments.py spectrum
    .venv/bin/python benchmarks/wave_experiments.py plot
    .venv/bin/python benchmarks/wave_experiments.py tables
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from replaybench.agents.sequence import ElmanAgent, LSTMAgent, SequenceAgent, WaveLBCAgent
from replaybench.cli import interval_text
from replaybench.metrics import t_interval
from replaybench.streams.sequence_tasks import (
    flipflop_accuracies,
    make_flipflop_periods,
    make_vb_repeat_copy,
    score_sequence,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"

MODELS: dict[str, tuple[type[SequenceAgent], dict[str, Any]]] = {
    "elman-128": (ElmanAgent, {"hidden": 128}),
    "wave-lbc": (WaveLBCAgent, {"slots": 8, "features": 8}),
    "lstm-128": (LSTMAgent, {"hidden": 128}),
}


def save(name: str, value: Any) -> None:
    (DOCS / f"wave_{name}.json").write_text(json.dumps(value, indent=1))


def load_results() -> dict[str, Any]:
    """Every saved experiment, by name."""
    return {path.stem.removeprefix("wave_"): json.loads(path.read_text()) for path in sorted(DOCS.glob("wave_*.json"))}


def gradient_norms(agent: SequenceAgent, horizons: int, n: int, generator: torch.Generator) -> list[float]:
    """Mean ||dL_k/dx(1)|| for k = 1..horizons (L_k: squared error of output k against a ±1 target)."""
    x = (torch.randint(0, 2, (n, horizons, agent.d_in), generator=generator) * 2 - 1).float().requires_grad_(True)
    target = (torch.randint(0, 2, (n, horizons, agent.d_out), generator=generator) * 2 - 1).float()
    outputs = agent.core(x)
    norms = []
    for k in range(horizons):
        loss = ((outputs[:, k] - target[:, k]) ** 2).sum()
        (grad,) = torch.autograd.grad(loss, x, retain_graph=True)
        norms.append(grad[:, 0].norm(dim=-1).mean().item())
    return norms


def probe(seed: int) -> torch.Generator:
    """The same probe sequences for every model and checkpoint of one seed."""
    return torch.Generator().manual_seed(1_000 + seed)


def run_gradient(args: argparse.Namespace) -> None:
    stream = make_vb_repeat_copy(d=8, s=8, horizons=(args.horizon,), n_train=args.n_train, n_test=512)
    exp = stream.experiences[0]
    out: dict[str, Any] = {"horizons": list(range(1, args.max_horizon + 1)), "seeds": args.seeds, "runs": []}
    for seed in args.seeds:
        run: dict[str, Any] = {"seed": seed}
        for model, lr in (("elman-128", 1e-3), ("wave-lbc", 1e-2)):
            cls, options = MODELS[model]
            agent = cls(stream=stream, config=cls.Config(lr=lr, **options), seed=seed)
            run[f"{model}/init"] = gradient_norms(agent, args.max_horizon, 256, probe(seed))
            if model == "wave-lbc":  # also with a random (nn.Linear default) boundary instead of the zero one
                other = cls(stream=stream, config=cls.Config(lr=lr, **options), seed=seed)
                other.core.lattice.boundary.map.reset_parameters()
                run[f"{model}/init-random-f"] = gradient_norms(other, args.max_horizon, 256, probe(seed))
            agent.train_updates(exp, args.train_updates)
            run[f"{model}/trained"] = gradient_norms(agent, args.max_horizon, 256, probe(seed))
            run[f"{model}/trained_accuracy"] = score_sequence(exp, agent.predict(exp.test_x))
        print(json.dumps({k: v for k, v in run.items() if "accuracy" in k or k == "seed"}), flush=True)
        out["runs"].append(run)
        save("gradient", out)


def run_flipflop(args: argparse.Namespace) -> None:
    runs = []
    for seed in args.seeds:
        for clock in ("periodic", "relative"):
            stream = make_flipflop_periods(
                periods=(6,),
                length=args.length,
                clock=clock,
                tau=2,
                null_prob=0.1 if clock == "periodic" else 0.5,
                n_train=args.n_train,
                n_test=512,
                seed=seed,
            )
            exp = stream.experiences[0]
            for model in args.models:
                cls, options = MODELS[model]
                if "hidden" in options:
                    options, model = {**options, "hidden": args.hidden}, f"{model.split('-')[0]}-{args.hidden}"
                agent = cls(stream=stream, config=cls.Config(lr=args.lr, bias=True, **options), seed=seed)
                curve = []
                while agent.updates_done < args.max_updates:
                    agent.train_updates(exp, args.eval_every)
                    curve.append({"updates": agent.updates_done, **flipflop_accuracies(exp, agent.predict(exp.test_x))})
                print(seed, clock, model, curve[-1], flush=True)
                runs.append({"seed": seed, "clock": clock, "model": model, "curve": curve})
                save("flipflop", {"lr": args.lr, "length": args.length, "hidden": args.hidden, "runs": runs})


def null_input_spectral_radius(core: torch.nn.Module) -> float:
    """|λ_max| of the Elman RNN's Jacobian at its fixed point under null input.

    The fixed point h* = tanh(W_hh h* + b) is found by Newton's method from 0
    (it may be unstable, so iterating the map would not find it); the
    Jacobian there is diag(1 - h*²) W_hh.
    """
    rnn = core.rnn
    w = rnn.weight_hh_l0.detach().double()
    b = (rnn.bias_hh_l0 + rnn.bias_ih_l0).detach().double() if rnn.bias else torch.zeros(len(w), dtype=w.dtype)
    h = torch.zeros(len(w), dtype=w.dtype)
    eye = torch.eye(len(w), dtype=w.dtype)
    for _ in range(50):
        f = torch.tanh(w @ h + b)
        jacobian = (1 - f**2).unsqueeze(1) * w
        h = h - torch.linalg.solve(eye - jacobian, h - f)
    jacobian = (1 - torch.tanh(w @ h + b) ** 2).unsqueeze(1) * w
    return torch.linalg.eigvals(jacobian).abs().max().item()


def run_spectrum(args: argparse.Namespace) -> None:
    runs = []
    for seed in args.seeds:
        stream = make_flipflop_periods(periods=(6,), length=args.length, n_train=args.n_train, n_test=512, seed=seed)
        exp = stream.experiences[0]
        agent = ElmanAgent(
            stream=stream, config=ElmanAgent.Config(lr=args.lr, bias=True, hidden=args.hidden), seed=seed
        )
        curve = []
        while agent.updates_done < args.max_updates:
            agent.train_updates(exp, args.eval_every)
            curve.append(
                {
                    "updates": agent.updates_done,
                    **flipflop_accuracies(exp, agent.predict(exp.test_x)),
                    "rho": null_input_spectral_radius(agent.core),
                }
            )
        print(seed, curve[-1], flush=True)
        runs.append({"seed": seed, "curve": curve})
        save("spectrum", {"lr": args.lr, "hidden": args.hidden, "runs": runs})


def first_update(curve: list[dict[str, Any]], key: str, at_least: float) -> int | None:
    """The first evaluation (in updates) at which ``curve``'s ``key`` reached ``at_least``."""
    return next((c["updates"] for c in curve if c[key] >= at_least), None)


def interval_cell(values: list[float | None], digits: int) -> str:
    """``mean ± half-width`` (90% t-interval) over seeds, with the count of seeds that reached a threshold."""
    reached = [float(v) for v in values if v is not None]
    if not reached:
        return "never"
    text = interval_text(reached, digits)
    return text if len(reached) == len(values) else f"{text} ({len(reached)}/{len(values)} seeds)"


def run_tables(args: argparse.Namespace) -> None:
    """The docs' tables, mean ± 90% t-interval over the saved seeds."""
    results = load_results()
    if "gradient" in results:
        g = results["gradient"]
        ks = [k for k in (1, 4, 8, 9, 16, 24) if k <= len(g["horizons"])]
        print(f"gradient norms, {len(g['runs'])} seeds")
        print("| k (horizon) | " + " | ".join(map(str, ks)) + " |")
        print("| --- |" + " --- |" * len(ks))
        for key in (
            "elman-128/init",
            "wave-lbc/init",
            "wave-lbc/init-random-f",
            "elman-128/trained",
            "wave-lbc/trained",
        ):
            cells = []
            for k in ks:
                mean, half = t_interval([run[key][k - 1] for run in g["runs"]])
                cells.append("0" if mean == 0 else f"{mean:.2g} ± {half:.1g}")
            print(f"| {key} | " + " | ".join(cells) + " |")
        for model in ("elman-128", "wave-lbc"):
            accuracy = [run[f"{model}/trained_accuracy"] for run in g["runs"]]
            print(f"{model} trained repeat-copy accuracy: {interval_cell(accuracy, 3)}")
    if "flipflop" in results:
        runs = results["flipflop"]["runs"]
        print(f"\nflip-flops, {len({r['seed'] for r in runs})} seeds")
        print("| clock | model | TI ≥ 0.99 at | TD ≥ 0.9 at | final accuracy |")
        print("| --- | --- | --- | --- | --- |")
        for clock, model in dict.fromkeys((r["clock"], r["model"]) for r in runs):
            group = [r for r in runs if (r["clock"], r["model"]) == (clock, model)]
            ti = [first_update(r["curve"], "ti_accuracy", 0.99) for r in group]
            td = [first_update(r["curve"], "td_accuracy", 0.9) for r in group]
            final = [r["curve"][-1]["accuracy"] for r in group]
            print(
                f"| {clock} | {model} | {interval_cell(ti, 0)} | {interval_cell(td, 0)} | {interval_cell(final, 3)} |"
            )
    if "spectrum" in results:
        print("\nspectrum: per seed, the TD jump and |λ_max| around it")
        for run in results["spectrum"]["runs"]:
            jump = first_update(run["curve"], "td_accuracy", 0.9)
            before = [c for c in run["curve"] if jump is None or c["updates"] < jump]
            after = [c for c in run["curve"] if jump is not None and c["updates"] >= jump]
            crossing = first_update(run["curve"], "rho", 1.0)
            print(
                f"seed {run['seed']}: ρ > 1 first at {crossing}, TD ≥ 0.9 first at {jump}; "
                f"before it TD {min(c['td_accuracy'] for c in before):.2f}"
                f"–{max(c['td_accuracy'] for c in before):.2f}, ρ {min(c['rho'] for c in before):.2f}"
                f"–{max(c['rho'] for c in before):.2f}; at the jump ρ {after[0]['rho'] if after else float('nan'):.2f}"
                f"; at the end ρ {run['curve'][-1]['rho']:.2f}, TD {run['curve'][-1]['td_accuracy']:.2f}"
            )


def run_plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = load_results()
    if "gradient" in results:
        g = results["gradient"]
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, style in (
            ("elman-128/init", "C0--"),
            ("elman-128/trained", "C0-"),
            ("wave-lbc/init", "C1--"),
            ("wave-lbc/init-random-f", "C2--"),
            ("wave-lbc/trained", "C1-"),
        ):
            if key in g["runs"][0]:
                mean = torch.tensor([run[key] for run in g["runs"]]).mean(0)
                ax.semilogy(g["horizons"], mean.clamp_min(1e-8).tolist(), style, marker=".", label=key)
        ax.axvline(8, color="gray", ls=":", label="s = 8")
        ax.set_xlabel("horizon k (steps after x(1))")
        ax.set_ylabel(f"||dL_k / dx(1)||, mean of {len(g['runs'])} seeds")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(DOCS / "wave_gradient.png", dpi=110)
    if "flipflop" in results:
        runs = results["flipflop"]["runs"]
        clocks = sorted({r["clock"] for r in runs}, reverse=True)
        fig, axes = plt.subplots(1, len(clocks), figsize=(6 * len(clocks), 4), squeeze=False)
        for ax, clock in zip(axes[0], clocks):
            first_seed = runs[0]["seed"]  # one seed's curves: averaging would blur the jumps
            for i, r in enumerate(x for x in runs if x["clock"] == clock and x["seed"] == first_seed):
                u = [c["updates"] for c in r["curve"]]
                ax.plot(u, [c["ti_accuracy"] for c in r["curve"]], f"C{i}-", label=f"{r['model']} TI")
                ax.plot(u, [c["td_accuracy"] for c in r["curve"]], f"C{i}--", label=f"{r['model']} TD")
            ax.set_title(f"{clock} clock (seed {first_seed})")
            ax.set_xlabel("updates")
            ax.set_ylabel("test accuracy")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(DOCS / "wave_flipflop.png", dpi=110)
    if "spectrum" in results:
        curve = results["spectrum"]["runs"][0]["curve"]
        u = [c["updates"] for c in curve]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(u, [c["ti_accuracy"] for c in curve], "C0-", label="TI accuracy")
        ax.plot(u, [c["td_accuracy"] for c in curve], "C0--", label="TD accuracy")
        ax.set_xlabel("updates")
        ax.set_ylabel("test accuracy")
        twin = ax.twinx()
        twin.plot(u, [c["rho"] for c in curve], "C3.-", label="|λ_max| of J at the null-input fixed point")
        twin.axhline(1.0, color="C3", ls=":")
        twin.set_ylabel("|λ_max|")
        lines = ax.get_lines() + twin.get_lines()[:1]
        ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
        ax.set_title("Elman RNN on the time-of-day automaton (P = 6)")
        fig.tight_layout()
        fig.savefig(DOCS / "wave_spectrum.png", dpi=110)


def flipflop_arguments(parser: argparse.ArgumentParser, *, max_updates: int) -> None:
    """The flip-flop training options shared by the ``flipflop`` and ``spectrum`` experiments."""
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-updates", type=int, default=max_updates)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="data and agent seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="experiment", required=True)
    gr = sub.add_parser("gradient")
    gr.add_argument("--horizon", type=int, default=16)
    gr.add_argument("--max-horizon", type=int, default=24)
    gr.add_argument("--n-train", type=int, default=4096)
    gr.add_argument("--train-updates", type=int, default=1500)
    gr.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="agent seeds")
    ff = sub.add_parser("flipflop")
    ff.add_argument("--models", nargs="+", default=["elman-128", "lstm-128", "wave-lbc"])
    flipflop_arguments(ff, max_updates=3000)
    flipflop_arguments(sub.add_parser("spectrum"), max_updates=1500)
    sub.add_parser("plot")
    sub.add_parser("tables")
    args = parser.parse_args()
    torch.set_num_threads(1)
    experiments = {
        "gradient": run_gradient,
        "flipflop": run_flipflop,
        "spectrum": run_spectrum,
        "plot": run_plot,
        "tables": run_tables,
    }
    experiments[args.experiment](args)


if __name__ == "__main__":
    main()
