"""Sigprop and EFP against backprop on one device: wall seconds per epoch, peak device memory, test accuracy.

``benchmarks/forward_learners.py`` measures CPU time and resident memory on the
CPU; this is its counterpart for a GPU, where CPU time says nothing. Every
learner trains the same network (hidden widths, batch size, optimiser,
learning rate) on the whole training set as one experience, after a warm-up
of a few minibatches. Per learner:

- wall seconds per epoch, the device synchronised before and after;
- peak memory the device allocator held during training (CUDA only:
  ``torch.cuda.max_memory_allocated`` after a reset), weights, optimiser
  state and the minibatches included; sigprop's claim is about the
  activations kept for backward (``forward_learners.py`` counts those);
- test accuracy after training.

Usage::

    python benchmarks/forward_gpu.py --device cuda --dataset fashion-mnist --epochs 2 --json-out forward.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from forward_learners import LEARNERS, stream_stub  # this folder is on sys.path when run as a script


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(args: argparse.Namespace, name: str, data) -> dict:
    """Train learner ``name`` for ``args.epochs`` epochs on ``args.device``; its time, memory and accuracy."""
    import torch

    from replaybench.evaluation import supervised_accuracy
    from replaybench.protocols import Experience
    from replaybench.registry import load_entry_point
    from replaybench.runner import seed_everything

    cls = load_entry_point(LEARNERS[name])
    stub = stream_stub(args.dataset, data)
    options = {"hidden": tuple(args.hidden), "batch_size": args.batch_size, "optimizer": "adam", "lr": args.lr}
    n, classes = args.subset or len(data.train_x), tuple(range(data.n_classes))
    seed_everything(args.seed)
    warm = cls(stream=stub, config=cls.Config.from_dict({**options, "epochs": 1}), seed=args.seed, device=args.device)
    head = slice(0, 4 * args.batch_size)  # allocator, kernels' first calls, optimiser state
    warm.learn(Experience(index=0, kind="supervised", train_x=data.train_x[head], train_y=data.train_y[head]))
    del warm
    seed_everything(args.seed)
    agent = cls(
        stream=stub, config=cls.Config.from_dict({**options, "epochs": args.epochs}), seed=args.seed, device=args.device
    )
    experience = Experience(
        index=0,
        kind="supervised",
        train_x=data.train_x[:n],
        train_y=data.train_y[:n],
        test_x=data.test_x,
        test_y=data.test_y,
        classes=classes,
    )
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _sync(args.device)
    start = time.perf_counter()
    agent.learn(experience)
    _sync(args.device)
    seconds = time.perf_counter() - start
    return {
        "learner": name,
        "device": args.device,
        "dataset": args.dataset,
        "train_items": n,
        "hidden": list(args.hidden),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "seconds_per_epoch": seconds / args.epochs,
        "peak_device_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "test_accuracy": supervised_accuracy(agent, experience, stub),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="forward-only learners against backprop on one device")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", help="where the dataset's files are (as `replaybench run --data-dir`)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[400, 400])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--subset", type=int, default=0, help="train on the first N items (0: all)")
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=list(LEARNERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", help="write the rows here as a JSON list")
    args = parser.parse_args(argv)

    from replaybench.streams.vision import load_dataset

    data = load_dataset(args.dataset, data_dir=args.data_dir)
    rows = [measure(args, name, data) for name in args.learners]
    base = next((r for r in rows if r["learner"] == "backprop"), None)
    print(f"{args.dataset}, hidden {args.hidden}, batch {args.batch_size}, adam lr {args.lr}, on {args.device}")
    print(f"{'learner':<10}{'s/epoch':>10}{'x bp':>7}{'peak MiB':>10}{'x bp':>7}{'test acc':>10}")
    for r in rows:
        ratio = f"{r['seconds_per_epoch'] / base['seconds_per_epoch']:.2f}" if base else ""
        peak = "-" if r["peak_device_mib"] is None else f"{r['peak_device_mib']:.1f}"
        peak_ratio = f"{r['peak_device_mib'] / base['peak_device_mib']:.2f}" if base and base["peak_device_mib"] else ""
        print(
            f"{r['learner']:<10}{r['seconds_per_epoch']:>10.3f}{ratio:>7}{peak:>10}{peak_ratio:>7}{r['test_accuracy']:>10.4f}"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
