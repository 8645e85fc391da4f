"""Runner overhead: replaybench against a plain PyTorch loop and Avalanche.

Same work for everyone: split-fmnist (5 experiences × 2 classes, 60k train
images), one epoch per experience, MLP 784-400-400-10, SGD lr 0.1, batch
128, and after every experience an evaluation on all five test sets (the full
R matrix). Replay methods keep 1000 items.

    python benchmarks/runner_overhead.py [--repeats 1] [--threads N]

Avalanche runs twice: as its tutorials run it (its own SplitFMNIST over the
same files, per-sample torchvision transforms, its default evaluator), and
on our tensors with an accuracy-only evaluator, which isolates the cost of
its training loop from the cost of its data pipeline and logging.

Targets (issue #2): naive ≤ 1.25× the plain loop; naive ≥ 10× faster than
Avalanche's Naive; ER ≥ 10× faster than Avalanche's Replay, with final ACC
within 2 points.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F

from replaybench.agents._nets import mlp
from replaybench.interop import to_avalanche_benchmark
from replaybench.runner import RunSpec, make_stream, run, seed_everything

EPOCHS, BATCH, LR, HIDDEN, MEMORY = 1, 128, 0.1, (400, 400), 1000


def plain_loop(stream, seed: int) -> tuple[float, float]:
    """The reference: a hand-written loop over the same tensors."""
    seed_everything(seed)
    net = mlp(stream.input_shape, HIDDEN, stream.n_classes)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for exp in stream.experiences:
        net.train()
        for _ in range(EPOCHS):
            order = torch.randperm(len(exp.train_x), generator=g)
            for i in range(0, len(order), BATCH):
                idx = order[i : i + BATCH]
                loss = F.cross_entropy(net(exp.train_x[idx]), exp.train_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            row = [(net(e.test_x).argmax(1) == e.test_y).float().mean().item() for e in stream.experiences]
    return time.perf_counter() - start, sum(row) / len(row)


def replaybench_run(stream, agent: str, seed: int, **options) -> tuple[float, float]:
    opts = {"epochs": EPOCHS, "batch_size": BATCH, "lr": LR, "hidden": list(HIDDEN), **options}
    start = time.perf_counter()
    result = run(RunSpec(stream=stream.name, agent=agent, seed=seed, agent_options=opts), stream=stream)
    return time.perf_counter() - start, result.metrics["acc"]


def avalanche_run(stream, strategy: str, seed: int, **kwargs) -> tuple[float, float]:
    """Avalanche's own strategy and loop, evaluating after every experience."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import avalanche.training as training
        from avalanche.evaluation.metrics import accuracy_metrics
        from avalanche.training.plugins import EvaluationPlugin
    seed_everything(seed)
    net = mlp(stream.input_shape, HIDDEN, stream.n_classes)
    start = time.perf_counter()
    bm = to_avalanche_benchmark(stream)
    strat = getattr(training, strategy)(
        model=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=LR),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=BATCH,
        train_epochs=EPOCHS,
        eval_mb_size=1024,
        evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]),
        **kwargs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for exp in bm.train_stream:
            strat.train(exp, num_workers=0)
            res = strat.eval(bm.test_stream, num_workers=0)
    acc = [res[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"] for j in range(len(bm.test_stream))]
    return time.perf_counter() - start, sum(acc) / len(acc)


def avalanche_classic_run(strategy: str, seed: int, **kwargs) -> tuple[float, float]:
    """Avalanche as its tutorials run it: its own ``SplitFMNIST`` (torchvision
    dataset, per-sample ToTensor + Normalize) and its ``default_evaluator``.
    The same Fashion-MNIST files are laid out where torchvision expects them."""
    import contextlib
    import gzip
    import io
    import shutil
    import tempfile
    from pathlib import Path

    from replaybench.streams.datasets import DEBIAN_FASHION_MNIST

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import avalanche.training as training
        from avalanche.benchmarks.classic import SplitFMNIST
    root = Path(tempfile.mkdtemp())
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in DEBIAN_FASHION_MNIST.glob("*.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    seed_everything(seed)
    net = mlp((1, 28, 28), HIDDEN, 10)
    start = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        bm = SplitFMNIST(5, fixed_class_order=list(range(10)), seed=seed, dataset_root=root)
        strat = getattr(training, strategy)(
            model=net,
            optimizer=torch.optim.SGD(net.parameters(), lr=LR),
            criterion=torch.nn.CrossEntropyLoss(),
            train_mb_size=BATCH,
            train_epochs=EPOCHS,
            eval_mb_size=1024,
            **kwargs,
        )
        for exp in bm.train_stream:
            strat.train(exp, num_workers=0)
            res = strat.eval(bm.test_stream, num_workers=0)
    shutil.rmtree(root)
    acc = [res[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"] for j in range(len(bm.test_stream))]
    return time.perf_counter() - start, sum(acc) / len(acc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--skip-avalanche", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    stream = make_stream("split-fmnist")
    _ = stream.fingerprint  # hashing is setup, not loop time
    rows = []
    plain_s, plain_acc = plain_loop(stream, args.seed)
    rows.append(("plain PyTorch loop", plain_s, plain_acc))
    rows.append(("replaybench naive", *replaybench_run(stream, "naive", args.seed)))
    rows.append(("replaybench er (reservoir 1000)", *replaybench_run(stream, "er", args.seed, memory_size=MEMORY)))
    if not args.skip_avalanche:
        rows.append(("avalanche Naive", *avalanche_classic_run("Naive", args.seed)))
        rows.append(("avalanche Replay (mem 1000)", *avalanche_classic_run("Replay", args.seed, mem_size=MEMORY)))
        rows.append(("avalanche Naive, our tensors", *avalanche_run(stream, "Naive", args.seed)))
        rows.append(("avalanche Replay, our tensors", *avalanche_run(stream, "Replay", args.seed, mem_size=MEMORY)))
    print(
        f"split-fmnist, 5 experiences, {EPOCHS} epoch, MLP 784-400-400-10, SGD, batch {BATCH}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'run':34s} {'wall s':>8s} {'× plain':>8s} {'final ACC':>9s}")
    for name, secs, acc in rows:
        print(f"{name:34s} {secs:8.2f} {secs / plain_s:8.2f} {acc:9.3f}")
    t = {name: secs for name, secs, _ in rows}
    a = {name: acc for name, _, acc in rows}
    print(f"naive / plain loop:            {t['replaybench naive'] / plain_s:.2f}× (target ≤ 1.25×)")
    if not args.skip_avalanche:
        print(
            f"avalanche Naive / naive:       {t['avalanche Naive'] / t['replaybench naive']:.1f}× faster (target ≥ 10×)"
        )
        er, av = "replaybench er (reservoir 1000)", "avalanche Replay (mem 1000)"
        print(
            f"avalanche Replay / er:         {t[av] / t[er]:.1f}× faster (target ≥ 10×); "
            f"ACC gap {abs(a[er] - a[av]) * 100:.1f} points (target ≤ 2)"
        )
        print(
            "on our tensors, accuracy-only evaluator: "
            f"Naive {t['avalanche Naive, our tensors'] / t['replaybench naive']:.1f}×, "
            f"Replay {t['avalanche Replay, our tensors'] / t[er]:.1f}× slower than replaybench"
        )


if __name__ == "__main__":
    main()
