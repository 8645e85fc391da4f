"""EMT's Table 1 under EMT's own protocol, for the Elman RNN and the wave models (issue #22).

The protocol follows the EMT repository (Karuvally et al., arXiv 2310.02430;
github arjunkaruvally/emt_variable_binding, ``em_discrete/tasks/binary_linearVB.py``
and ``experiments_public/2_all_linearVB/1_0_binary_linearVB.slurm``):

- tasks T1..T4 at d = s = 8 (``VB_TABLE1_TASK_IDS``);
- a fresh batch of 64 random sequences for every update (no fixed training set);
- a curriculum over output horizons 10, 20, 40, 60, 100 that moves on when
  the sign accuracy of the current training batch exceeds 0.96;
- Adam, gradient clipping at 1.0, L2 as Adam's ``weight_decay``, MSE on the
  output phase; the Elman RNN is tanh, without biases, hidden 128, 64 or 32,
  with L2 in {0, 1e-3, 0.1};
- the score is the final sign accuracy at horizon 100, here on 512 held-out
  test sequences drawn once per task (the same for every model); the
  accuracy at horizon 200 (EMT's repeat-copy claim) is recorded beside it.

Where this differs from EMT: EMT trains 10 epochs of 2000 updates (20,000);
``--updates`` sets the budget (2,000 by default, to fit a 2-core machine), and
the docs say which was used. EMT used lr 1e-3 for every run; here each model's
learning rate is chosen by ``select`` on validation sequences (their own seed,
at horizon 100, mean over T1..T4, agent seed 100, never a test seed), and
``run`` then trains seeds 0, 1, 2 at that rate. The wave-LBC runs at the
task's lattice size (s = 8) and at s = 16, a size not taken from the task (its
state, 128 numbers, equals the Elman-128's).

Spectra (``spectrum``): for the Elman-128 at L2 = 0, the eigenvalues of W_hh
and of the mean Jacobian ``diag(1 - h_t²) W_hh`` over the output phase are
compared with those of the task's companion matrix Φ (shift + F as the last
block row, built by ``LinearBoundary.companion_matrix``), every 250 updates
during ``run``. EMT reports W_hh's angles agreeing with Φ's to about 0.01°;
TWM (arXiv 2402.10163) says trained RNNs' Jacobian spectra converge to Φ's.

Run (one CPU thread; results go to ``docs/emt_*.jsonl``)::

    python benchmarks/emt_protocol.py select
    python benchmarks/emt_protocol.py run
    python benchmarks/emt_protocol.py table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from replaybench.agents.sequence import ElmanAgent, SequenceAgent, WaveLBCAgent, WaveSBCAgent
from replaybench.cli import interval_text
from replaybench.memories.wave import LinearBoundary
from replaybench.streams.sequence_tasks import (
    VB_TABLE1_TASK_IDS,
    make_vb_compose,
    sign_agreement,
    vb_operator,
    vb_sequences,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
D = S = 8
BATCH = 64
CURRICULUM = (10, 20, 40, 60, 100)
ADVANCE_ABOVE = 0.96
EVAL_HORIZON = CURRICULUM[-1]
LONG_HORIZON = 200  # EMT reports repeat copy at horizon 200, beyond the curriculum
TASKS = tuple(VB_TABLE1_TASK_IDS)
LRS = (1e-3, 3e-3, 1e-2, 3e-2)
L2S = (0.0, 1e-3, 0.1)
SELECT_SEED = 100
FINAL_SEEDS = (0, 1, 2)
TRACK_EVERY = 250

MODELS: dict[str, tuple[type[SequenceAgent], dict[str, Any]]] = {
    "elman-128": (ElmanAgent, {"hidden": 128}),
    "elman-64": (ElmanAgent, {"hidden": 64}),
    "elman-32": (ElmanAgent, {"hidden": 32}),
    "wave-lbc-s8": (WaveLBCAgent, {"slots": 8, "features": 8}),
    "wave-lbc-s16": (WaveLBCAgent, {"slots": 16, "features": 8}),
    "wave-sbc-s8": (WaveSBCAgent, {"slots": 8, "features": 8, "heads": 8}),
}
ELMAN = ("elman-128", "elman-64", "elman-32")


def held_out(task: str, horizon: int, split: str, n: int = 512) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validation or test sequences of a task: drawn once, from a seed no training generator uses."""
    offset = {"validation": 7_000_000, "test": 9_000_000}[split]
    generator = torch.Generator().manual_seed(offset + TASKS.index(task))
    return vb_sequences(vb_operator(VB_TABLE1_TASK_IDS[task], d=D, s=S), n=n, horizon=horizon, generator=generator)


def companion_matrix(task: str) -> torch.Tensor:
    """Φ: the task's own recurrence w(t+1) = Fᵀ flat(w(t-s+1..t)) as a block companion matrix."""
    boundary = LinearBoundary(slots=S, features=D)
    with torch.no_grad():
        boundary.map.weight.copy_(vb_operator(VB_TABLE1_TASK_IDS[task], d=D, s=S).T)
    return boundary.companion_matrix().detach()


def spectral_error(matrix: torch.Tensor, target: np.ndarray) -> dict[str, float]:
    """Match ``matrix``'s largest eigenvalues one-to-one with ``target``'s nonzero ones (least total distance).

    Φ of T2..T4 is nilpotent on part of its state (zero eigenvalues, without
    an angle), so only its nonzero eigenvalues are matched. Returns the mean
    angle error in degrees, the mean complex distance and the mean modulus of
    the matched eigenvalues.
    """
    target = target[np.abs(target) > 1e-6]
    eigenvalues = np.linalg.eigvals(matrix.double().numpy())
    top = eigenvalues[np.argsort(-np.abs(eigenvalues))[: len(target)]]
    rows, cols = linear_sum_assignment(np.abs(top[:, None] - target[None, :]))
    matched, wanted = top[rows], target[cols]
    angle = np.abs(np.angle(matched / wanted, deg=True))
    return {
        "angle_deg": float(angle.mean()),
        "distance": float(np.abs(matched - wanted).mean()),
        "modulus": float(np.abs(matched).mean()),
    }


def jacobian_spectra(agent: SequenceAgent, task: str, target: np.ndarray) -> dict[str, Any]:
    """W_hh's and the mean output-phase Jacobian's spectral errors against Φ (Elman only)."""
    rnn = agent.core.rnn
    x, _, mask = held_out(task, EVAL_HORIZON, "validation", n=64)
    with torch.no_grad():
        hidden = rnn(x)[0][:, mask]  # [n, T_out, H]
        w_hh = rnn.weight_hh_l0.detach()
        gain = (1 - hidden.pow(2)).mean(dim=(0, 1))
        jacobian = gain[:, None] * w_hh
    return {"w_hh": spectral_error(w_hh, target), "jacobian": spectral_error(jacobian, target)}


def train_with_curriculum(
    model: str, task: str, *, lr: float, l2: float, seed: int, updates: int, track: bool = False
) -> dict[str, Any]:
    """One run of EMT's protocol; returns the final validation/test accuracies and the curriculum's progress."""
    cls, options = MODELS[model]
    shape = make_vb_compose(d=D, s=S, horizon=CURRICULUM[0], n_train=1, n_test=1, tasks=(task,))
    agent = cls(stream=shape, config=cls.Config(lr=lr, weight_decay=l2, batch_size=BATCH, **options), seed=seed)
    operator = vb_operator(VB_TABLE1_TASK_IDS[task], d=D, s=S)
    data = torch.Generator().manual_seed(1_000_003 * (seed + 1) + TASKS.index(task))
    target = np.linalg.eigvals(companion_matrix(task).double().numpy()) if track else None
    stage, passed, spectra = 0, {}, []
    start = time.process_time()
    for update in range(updates):
        if track and update % TRACK_EVERY == 0:
            spectra.append({"update": update, **jacobian_spectra(agent, task, target)})
        horizon = CURRICULUM[stage]
        x, y, mask = vb_sequences(operator, n=BATCH, horizon=horizon, generator=data)
        _, outputs = agent.train_batch(x, y, mask)
        if sign_agreement(outputs, y, mask) > ADVANCE_ABOVE and str(horizon) not in passed:
            passed[str(horizon)] = update + 1
            stage = min(stage + 1, len(CURRICULUM) - 1)
    if track:
        spectra.append({"update": updates, **jacobian_spectra(agent, task, target)})
    scores = {}
    for split, horizon in (("validation", EVAL_HORIZON), ("test", EVAL_HORIZON), ("test", LONG_HORIZON)):
        x, y, mask = held_out(task, horizon, split)
        scores[f"{split}@{horizon}"] = sign_agreement(agent.predict(x), y, mask)
    return {
        "model": model,
        "task": task,
        "lr": lr,
        "l2": l2,
        "seed": seed,
        "updates": updates,
        "validation_accuracy": scores[f"validation@{EVAL_HORIZON}"],
        "test_accuracy": scores[f"test@{EVAL_HORIZON}"],
        "test_accuracy_long": scores[f"test@{LONG_HORIZON}"],
        "horizon_reached": CURRICULUM[stage],
        "passed_at": passed,
        "cpu_s": round(time.process_time() - start, 1),
        **({"spectra": spectra} if track else {}),
    }


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["model"], row["task"], row["lr"], row["l2"], row["seed"], row["updates"])


def run_all(jobs: list[dict[str, Any]], path: Path, updates: int) -> None:
    """Run each job not yet in ``path`` (so an interrupted sweep resumes), appending one JSON line per run."""
    done = {run_key(row) for row in read_rows(path)}
    for job in jobs:
        if (job["model"], job["task"], job["lr"], job["l2"], job["seed"], updates) in done:
            continue
        row = train_with_curriculum(**job, updates=updates)
        print(json.dumps({k: v for k, v in row.items() if k != "spectra"}), flush=True)
        with path.open("a") as out:
            out.write(json.dumps(row) + "\n")


def selected_lrs(updates: int) -> dict[str, float]:
    """Per model, the learning rate with the best mean validation accuracy over T1..T4 (L2 = 0)."""
    by_model: dict[str, dict[float, list[float]]] = {}
    for row in read_rows(DOCS / "emt_select.jsonl"):
        if row["updates"] == updates:
            by_model.setdefault(row["model"], {}).setdefault(row["lr"], []).append(row["validation_accuracy"])
    return {
        model: max(scores, key=lambda lr: float(np.mean(scores[lr])))
        for model, scores in by_model.items()
        if all(len(v) == len(TASKS) for v in scores.values())
    }


def command_select(args: argparse.Namespace) -> None:
    jobs = [
        {"model": m, "task": t, "lr": lr, "l2": 0.0, "seed": SELECT_SEED}
        for m in args.models
        for lr in args.lrs
        for t in TASKS
    ]
    run_all(jobs, DOCS / "emt_select.jsonl", args.updates)
    print(json.dumps(selected_lrs(args.updates)))


def command_run(args: argparse.Namespace) -> None:
    chosen = selected_lrs(args.select_updates or args.updates)
    missing = [m for m in args.models if m not in chosen]
    if missing:
        raise SystemExit(f"No selected learning rate for {missing}; run 'select' for them first.")
    jobs = [
        {"model": m, "task": t, "lr": chosen[m], "l2": l2, "seed": seed, "track": m == "elman-128" and l2 == 0.0}
        for m in args.models
        for l2 in (args.l2s if m in ELMAN else (0.0,))
        for seed in FINAL_SEEDS
        for t in TASKS
    ]
    run_all(jobs, DOCS / "emt_runs.jsonl", args.updates)


def command_table(args: argparse.Namespace) -> None:
    rows = [r for r in read_rows(DOCS / "emt_runs.jsonl") if r["updates"] == args.updates]
    groups: dict[tuple[str, float, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["lr"], row["l2"]), []).append(row)
    groups = dict(sorted(groups.items(), key=lambda item: (list(MODELS).index(item[0][0]), item[0][2])))
    print("| model | lr (selected) | L2 | " + " | ".join(TASKS) + f" | T1 at horizon {LONG_HORIZON} | seeds |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in TASKS) + " | --- | --- |")
    for (model, lr, l2), runs in groups.items():
        cells = [interval_text([r["test_accuracy"] for r in runs if r["task"] == t]) for t in TASKS]
        cells.append(interval_text([r["test_accuracy_long"] for r in runs if r["task"] == "T1"]))
        seeds = sorted({r["seed"] for r in runs})
        print(f"| {model} | {lr:g} | {l2:g} | " + " | ".join(cells) + f" | {len(seeds)} |")
    print()
    print("Updates until the curriculum is passed at horizon 100 (runs that passed / runs):")
    print("| model | L2 | " + " | ".join(TASKS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in TASKS) + " |")
    for (model, _, l2), runs in groups.items():
        cells = []
        for t in TASKS:
            task_runs = [r for r in runs if r["task"] == t]
            done = [r["passed_at"][str(EVAL_HORIZON)] for r in task_runs if str(EVAL_HORIZON) in r["passed_at"]]
            text = interval_text(done, 0) if done else "-"
            cells.append(f"{text} ({len(done)}/{len(task_runs)})")
        print(f"| {model} | {l2:g} | " + " | ".join(cells) + " |")
    print()
    print("Spectral error against Φ (Elman-128, L2 = 0): mean matched angle (degrees) at init → end")
    print(
        "| task | W_hh at init | W_hh at end | Jacobian at init | Jacobian at end "
        "| modulus of W_hh's matched eigenvalues, end |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for t in TASKS:
        tracked = [r for r in rows if r["task"] == t and "spectra" in r]
        if not tracked:
            continue
        first, last = ([r["spectra"][i] for r in tracked] for i in (0, -1))
        print(
            f"| {t} | {interval_text([s['w_hh']['angle_deg'] for s in first], 2)} "
            f"| {interval_text([s['w_hh']['angle_deg'] for s in last], 2)} "
            f"| {interval_text([s['jacobian']['angle_deg'] for s in first], 2)} "
            f"| {interval_text([s['jacobian']['angle_deg'] for s in last], 2)} "
            f"| {interval_text([s['w_hh']['modulus'] for s in last], 3)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("select", "run", "table"):
        p = sub.add_parser(name)
        p.add_argument("--updates", type=int, default=2000, help="updates per run (EMT: 20000)")
        p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
        p.add_argument("--lrs", nargs="+", type=float, default=list(LRS))
        p.add_argument("--l2s", nargs="+", type=float, default=list(L2S), help="run: the Elman RNN's L2 values")
        p.add_argument(
            "--select-updates", type=int, default=None, help="run: take the learning rates selected at this budget"
        )
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"select": command_select, "run": command_run, "table": command_table}[args.command](args)


if __name__ == "__main__":
    main()
