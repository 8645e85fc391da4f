"""Experiments reproducing the TWM/EMT/flip-flop claims (issue #6); plots go to ``docs/``.

Three experiments, each a subcommand; results are written to
``docs/wave_<experiment>.json`` and plotted by ``plot``:

- ``table1``: EMT Table 1. Updates until the test sign accuracy reaches the
  threshold (0.97) on T1..T4 (d = s = 8), for the Elman RNN (hidden 128, tanh,
  no bias; EMT's recipe) and the wave models. Evaluated every ``--eval-every``
  updates on held-out sequences; training stops at the threshold or at
  ``--max-updates``.
- ``gradient``: the diminishing-gradient claim. ``||dL_k/dx(1)||`` against the
  horizon k, where ``L_k`` is the squared error of the output k steps after
  x(1) in a stream of random ±1 inputs, for the Elman RNN and the wave-LBC
  model, at initialisation and after training on repeat copy.
- ``flipflop``: learning curves of TI and TD accuracy on the time-of-day
  automaton (P = 6) and the relative-timing variant, to see the phases.
- ``spectrum``: the Elman RNN's TI/TD curves on the time-of-day automaton
  with |λ_max| of its Jacobian at the null-input fixed point.

Run (each takes minutes on one CPU thread)::

    .venv/bin/python benchmarks/wave_experiments.py table1
    .venv/bin/python benchmarks/wave_experiments.py gradient
    .venv/bin/python benchmarks/wave_experiments.py flipflop
    .venv/bin/python benchmarks/wave_experiments.py spectrum
    .venv/bin/python benchmarks/wave_experiments.py plot
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from replaybench.agents.sequence import ElmanAgent, LSTMAgent, SequenceAgent, WaveLBCAgent, WaveSBCAgent
from replaybench.streams.sequence_tasks import (
    flipflop_accuracies,
    make_flipflop_periods,
    make_vb_compose,
    make_vb_repeat_copy,
    score_sequence,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"

MODELS: dict[str, tuple[type[SequenceAgent], dict[str, Any]]] = {
    "elman-128": (ElmanAgent, {"hidden": 128}),
    "wave-lbc": (WaveLBCAgent, {"slots": 8, "features": 8}),
    "wave-sbc": (WaveSBCAgent, {"slots": 8, "features": 8, "heads": 8}),
    "lstm-128": (LSTMAgent, {"hidden": 128}),
}


def save(name: str, value: Any) -> None:
    (DOCS / f"wave_{name}.json").write_text(json.dumps(value, indent=1))


def load_results() -> dict[str, Any]:
    """Every saved experiment; the table1 files (one per ``--tag``) are merged."""
    results: dict[str, Any] = {}
    for path in sorted(DOCS.glob("wave_*.json")):
        value = json.loads(path.read_text())
        if path.stem.startswith("wave_table1"):
            results.setdefault("table1", {**value, "rows": []})["rows"].extend(value["rows"])
        else:
            results[path.stem.removeprefix("wave_")] = value
    return results


def run_table1(args: argparse.Namespace) -> None:
    stream = make_vb_compose(d=8, s=8, horizon=args.horizon, n_train=args.n_train, n_test=512, seed=args.seed)
    rows = []
    for model in args.models:
        cls, options = MODELS[model]
        for lr in args.lrs:
            for exp in stream.experiences:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    agent = cls(stream=stream, config=cls.Config(lr=lr, **options), seed=seed)
                    start, curve, reached = time.process_time(), [], None
                    while agent.updates_done < args.max_updates:
                        agent.train_updates(exp, args.eval_every)
                        acc = score_sequence(exp, agent.predict(exp.test_x))
                        curve.append((agent.updates_done, acc))
                        if acc >= args.threshold:
                            reached = agent.updates_done
                            break
                    row = {
                        "model": model,
                        "lr": lr,
                        "task": exp.info["task"],
                        "seed": seed,
                        "updates_to_threshold": reached,
                        "final_accuracy": curve[-1][1],
                        "cpu_s": round(time.process_time() - start, 1),
                        "curve": curve,
                    }
                    print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
                    rows.append(row)
                    save(
                        args.tag,
                        {
                            "threshold": args.threshold,
                            "horizon": args.horizon,
                            "max_updates": args.max_updates,
                            "rows": rows,
                        },
                    )


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


def run_gradient(args: argparse.Namespace) -> None:
    stream = make_vb_repeat_copy(d=8, s=8, horizons=(args.horizon,), n_train=args.n_train, n_test=512)
    exp = stream.experiences[0]
    out: dict[str, Any] = {"horizons": list(range(1, args.max_horizon + 1))}
    for model, lr in (("elman-128", 1e-3), ("wave-lbc", 1e-2)):
        cls, options = MODELS[model]
        agent = cls(stream=stream, config=cls.Config(lr=lr, **options), seed=0)
        out[f"{model}/init"] = gradient_norms(agent, args.max_horizon, 256, torch.Generator().manual_seed(1))
        if model == "wave-lbc":  # also with a random (nn.Linear default) boundary instead of the zero one
            other = cls(stream=stream, config=cls.Config(lr=lr, **options), seed=0)
            other.core.lattice.boundary.map.reset_parameters()
            out[f"{model}/init-random-f"] = gradient_norms(
                other, args.max_horizon, 256, torch.Generator().manual_seed(1)
            )
        agent.train_updates(exp, args.train_updates)
        out[f"{model}/trained"] = gradient_norms(agent, args.max_horizon, 256, torch.Generator().manual_seed(1))
        out[f"{model}/trained_accuracy"] = score_sequence(exp, agent.predict(exp.test_x))
        print(
            model,
            {k: [round(v, 4) for v in out[k]] for k in out if k.startswith(model) and "acc" not in k},
            out[f"{model}/trained_accuracy"],
            flush=True,
        )
    save("gradient", out)


def run_flipflop(args: argparse.Namespace) -> None:
    runs = []
    for clock in ("periodic", "relative"):
        stream = make_flipflop_periods(
            periods=(6,),
            length=args.length,
            clock=clock,
            tau=2,
            null_prob=0.1 if clock == "periodic" else 0.5,
            n_train=args.n_train,
            n_test=512,
            seed=args.seed,
        )
        exp = stream.experiences[0]
        for model in args.models:
            cls, options = MODELS[model]
            if "hidden" in options:
                options, model = {**options, "hidden": args.hidden}, f"{model.split('-')[0]}-{args.hidden}"
            agent = cls(stream=stream, config=cls.Config(lr=args.lr, bias=True, **options), seed=args.seed)
            curve = []
            while agent.updates_done < args.max_updates:
                agent.train_updates(exp, args.eval_every)
                curve.append({"updates": agent.updates_done, **flipflop_accuracies(exp, agent.predict(exp.test_x))})
            print(clock, model, curve[-1], flush=True)
            runs.append({"clock": clock, "model": model, "curve": curve})
            save("flipflop", {"lr": args.lr, "length": args.length, "hidden": args.hidden, "runs": runs})


def table1_markdown(rows: list[dict[str, Any]]) -> str:
    """Updates to threshold per model, lr and task (one entry per seed; "-" = not reached, final accuracy)."""
    lines = ["| model | lr | T1 | T2 | T3 | T4 |", "| --- | --- | --- | --- | --- | --- |"]
    for model, lr in sorted({(r["model"], r["lr"]) for r in rows}):
        cells = []
        for task in ("T1", "T2", "T3", "T4"):
            runs = sorted(
                (r for r in rows if (r["model"], r["lr"], r["task"]) == (model, lr, task)), key=lambda r: r["seed"]
            )
            cells.append(
                ", ".join(
                    str(r["updates_to_threshold"]) if r["updates_to_threshold"] else f"- ({r['final_accuracy']:.3f})"
                    for r in runs
                )
                or "n/a"
            )
        lines.append(f"| {model} | {lr:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    stream = make_flipflop_periods(periods=(6,), length=args.length, n_train=args.n_train, n_test=512, seed=args.seed)
    exp = stream.experiences[0]
    agent = ElmanAgent(
        stream=stream, config=ElmanAgent.Config(lr=args.lr, bias=True, hidden=args.hidden), seed=args.seed
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
        print(curve[-1], flush=True)
    save("spectrum", {"lr": args.lr, "hidden": args.hidden, "curve": curve})


def run_plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = load_results()
    if "table1" in results:
        rows = results["table1"]["rows"]
        configs = sorted({(r["model"], r["lr"]) for r in rows})
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharey=True)
        for ax, task in zip(axes, ("T1", "T2", "T3", "T4")):
            for model, lr in configs:
                for r in rows:
                    if r["model"] == model and r["lr"] == lr and r["task"] == task and r["seed"] == 0:
                        u, a = zip(*r["curve"])
                        ax.plot(u, a, label=f"{model} lr={lr:g}")
            ax.axhline(results["table1"]["threshold"], color="gray", ls=":")
            ax.set_title(task)
            ax.set_xlabel("updates")
        axes[0].set_ylabel("test sign accuracy")
        handles = {h.get_label(): h for ax in axes for h in ax.get_lines() if not h.get_label().startswith("_")}
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        fig.savefig(DOCS / "wave_table1.png", dpi=110)
        print(table1_markdown(rows))
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
            if key in g:
                ax.semilogy(g["horizons"], [max(v, 1e-8) for v in g[key]], style, marker=".", label=key)
        ax.axvline(8, color="gray", ls=":", label="s = 8")
        ax.set_xlabel("horizon k (steps after x(1))")
        ax.set_ylabel("||dL_k / dx(1)||")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(DOCS / "wave_gradient.png", dpi=110)
    if "flipflop" in results:
        runs = results["flipflop"]["runs"]
        clocks = sorted({r["clock"] for r in runs}, reverse=True)
        fig, axes = plt.subplots(1, len(clocks), figsize=(6 * len(clocks), 4), squeeze=False)
        for ax, clock in zip(axes[0], clocks):
            for i, r in enumerate(x for x in runs if x["clock"] == clock):
                u = [c["updates"] for c in r["curve"]]
                ax.plot(u, [c["ti_accuracy"] for c in r["curve"]], f"C{i}-", label=f"{r['model']} TI")
                ax.plot(u, [c["td_accuracy"] for c in r["curve"]], f"C{i}--", label=f"{r['model']} TD")
            ax.set_title(f"{clock} clock")
            ax.set_xlabel("updates")
            ax.set_ylabel("test accuracy")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(DOCS / "wave_flipflop.png", dpi=110)
    if "spectrum" in results:
        curve = results["spectrum"]["curve"]
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
    parser.add_argument("--seed", type=int, default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="experiment", required=True)
    t1 = sub.add_parser("table1")
    t1.add_argument("--models", nargs="+", default=["elman-128", "wave-lbc", "wave-sbc"])
    t1.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 1e-2])
    t1.add_argument("--seeds", type=int, default=1, help="agent seeds per configuration")
    t1.add_argument("--first-seed", type=int, default=0)
    t1.add_argument("--tag", default="table1", help="results go to docs/wave_<tag>.json (starts with table1)")
    t1.add_argument("--seed", type=int, default=0, help="data seed")
    t1.add_argument("--horizon", type=int, default=16)
    t1.add_argument("--n-train", type=int, default=4096)
    t1.add_argument("--threshold", type=float, default=0.97)
    t1.add_argument("--max-updates", type=int, default=3000)
    t1.add_argument("--eval-every", type=int, default=50)
    gr = sub.add_parser("gradient")
    gr.add_argument("--horizon", type=int, default=16)
    gr.add_argument("--max-horizon", type=int, default=24)
    gr.add_argument("--n-train", type=int, default=4096)
    gr.add_argument("--train-updates", type=int, default=1500)
    ff = sub.add_parser("flipflop")
    ff.add_argument("--models", nargs="+", default=["elman-128", "lstm-128", "wave-lbc"])
    flipflop_arguments(ff, max_updates=3000)
    flipflop_arguments(sub.add_parser("spectrum"), max_updates=1500)
    sub.add_parser("plot")
    args = parser.parse_args()
    torch.set_num_threads(1)
    experiments = {
        "table1": run_table1,
        "gradient": run_gradient,
        "flipflop": run_flipflop,
        "spectrum": run_spectrum,
        "plot": run_plot,
    }
    experiments[args.experiment](args)


if __name__ == "__main__":
    main()
