"""Accuracy of the STDP networks: one unsupervised epoch, then label-assignment readouts.

Protocol (BindsNET's ``examples/mnist``): present each training image once
per epoch with learning on, accumulating each neuron's per-class spike counts
(over the last epoch); assign labels; present the test images with learning
off and vote. LC-SNN also scores 2-grams of the firing order.

Examples::

    python benchmarks/snn_accuracy.py --model diehl-cook --neurons 100 --batch-size 16
    python benchmarks/snn_accuracy.py --model lc-snn --filters 25
    python benchmarks/snn_accuracy.py --dataset fashion-mnist --n-train 4000 --n-test 1000
    python benchmarks/snn_accuracy.py --reduction max --batch-size 256
    python benchmarks/snn_accuracy.py --model diehl-cook --neurons 400 --epochs 3

Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from replaybench.spiking.models import (
    DiehlCookConfig,
    LocalSNNConfig,
    PresentationConfig,
    build_diehl_cook,
    build_local_snn,
)
from replaybench.spiking.readout import ClassRates, NGramScores, all_activity, assign_labels, proportion_weighting

CONV_NU_POST = 1e-3
"""A shared filter's update is summed over its 9 locations, so LC-SNN's 1e-2 is ~9x too fast."""


def load(dataset: str, n_train: int, n_test: int):
    from replaybench.streams import datasets

    data = datasets.load_mnist5k() if dataset == "mnist5k" else datasets.load_fashion_mnist()
    # The splits are sorted by class: subsample at random, with a fixed seed.
    g = torch.Generator().manual_seed(1234)
    train = torch.randperm(len(data.train_x), generator=g)[:n_train]
    test = torch.randperm(len(data.test_x), generator=g)[:n_test]
    return data.train_x[train], data.train_y[train], data.test_x[test], data.test_y[test]


def build(args):
    if args.model == "diehl-cook":
        tuned = {
            name: getattr(args, name)
            for name in ("theta_plus", "tau_theta", "nu_pre", "nu_post", "theta_reduction")
            if getattr(args, name) is not None
        }
        config = DiehlCookConfig(n_neurons=args.neurons, inh_strength=args.inh, reduction=args.reduction, **tuned)
        presentation = PresentationConfig(time_steps=args.time_steps, max_rate_hz=args.max_rate)
        return build_diehl_cook((1, 28, 28), config, seed=args.seed, presentation=presentation)
    config = LocalSNNConfig(
        n_filters=args.filters,
        reduction=args.reduction,
        shared_weights=args.model == "conv-snn",
        **({"nu_post": CONV_NU_POST} if args.model == "conv-snn" else {}),
    )
    presentation = PresentationConfig(time_steps=args.time_steps, max_rate_hz=127.5)
    return build_local_snn((1, 28, 28), config, seed=args.seed, presentation=presentation)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("diehl-cook", "lc-snn", "conv-snn"), default="diehl-cook")
    parser.add_argument("--dataset", choices=("mnist5k", "fashion-mnist"), default="mnist5k")
    parser.add_argument("--neurons", type=int, default=100)
    parser.add_argument("--filters", type=int, default=25)
    parser.add_argument("--inh", type=float, default=120.0, help="D&C inhibition (BindsNET examples: 120)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--reduction", choices=("sum", "mean", "max"), default="sum")
    parser.add_argument("--time-steps", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training images")
    parser.add_argument("--max-rate", type=float, default=128.0, help="D&C Poisson rate at intensity 1 (Hz)")
    parser.add_argument("--theta-plus", type=float, help="D&C threshold increment (default 0.05)")
    parser.add_argument("--tau-theta", type=float, help="D&C threshold time constant in ms (default 1e7)")
    parser.add_argument(
        "--theta-reduction",
        choices=("sum", "mean", "max"),
        help="D&C batch reduction of theta (default sum, as BindsNET)",
    )
    parser.add_argument("--nu-pre", type=float, help="D&C depression rate (default 1e-4)")
    parser.add_argument("--nu-post", type=float, help="D&C potentiation rate (default 1e-2)")
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train_x, train_y, test_x, test_y = load(args.dataset, args.n_train, args.n_test)
    model = build(args)
    n_classes = 10
    rates = ClassRates(model.n_outputs, n_classes)
    ngrams = NGramScores(2, n_classes) if args.model == "lc-snn" else None
    shuffle = torch.Generator().manual_seed(args.seed)
    # Each epoch in a new order; the readout's class rates come from the last epoch only.
    order = torch.cat([torch.randperm(len(train_x), generator=shuffle) for _ in range(args.epochs)])
    last_epoch = (args.epochs - 1) * len(train_x)
    start = time.perf_counter()
    seen = 0
    for first in range(0, len(order), args.batch_size):
        idx = order[first : first + args.batch_size]
        if args.model == "lc-snn":  # learning rate x 0.99 every 250 samples (Saunders et al. 2019)
            model.set_rate_scale(0.99 ** (seen // 250))
        out = model.present(train_x[idx], learning=True, record=ngrams is not None)
        seen += len(idx)
        if first < last_epoch:
            continue
        rates.add(out.counts, train_y[idx])
        if ngrams is not None:
            ngrams.add(out.spikes, train_y[idx])
    train_s = time.perf_counter() - start
    assignments, proportions = assign_labels(rates.rates())
    correct = {"all_activity": 0, "proportion": 0, "ngram": 0}
    test_spikes, silent = 0.0, int((rates.rates().sum(1) == 0).sum())
    for first in range(0, len(test_x), 64):
        x, y = test_x[first : first + 64], test_y[first : first + 64]
        out = model.present(x, learning=False, record=ngrams is not None)
        test_spikes += out.counts.sum().item()
        correct["all_activity"] += int((all_activity(out.counts, assignments, n_classes).argmax(1) == y).sum())
        correct["proportion"] += int(
            (proportion_weighting(out.counts, assignments, proportions, n_classes).argmax(1) == y).sum()
        )
        if ngrams is not None:
            correct["ngram"] += int((ngrams.scores(out.spikes).argmax(1) == y).sum())
    result = {
        "model": args.model,
        "dataset": args.dataset,
        "neurons": model.n_outputs,
        "plastic_synapses": model.plastic_synapses,
        "batch_size": args.batch_size,
        "reduction": args.reduction,
        "time_steps": args.time_steps,
        "n_train": len(train_x),
        "n_test": len(test_x),
        "epochs": args.epochs,
        "seed": args.seed,
        "train_seconds": round(train_s, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        **{f"acc_{k}": round(v / len(test_x), 4) for k, v in correct.items() if k != "ngram" or ngrams},
        "test_spikes_per_sample": round(test_spikes / len(test_x), 2),
        "neurons_silent_in_training": silent,
    }
    if args.model == "diehl-cook":
        theta = model.network.layers["Ae"].theta
        result.update(
            theta_mean=round(theta.mean().item(), 3),
            theta_max=round(theta.max().item(), 3),
            **{
                k: getattr(args, k)
                for k in ("inh", "max_rate", "theta_plus", "tau_theta", "theta_reduction", "nu_pre", "nu_post")
                if getattr(args, k)
            },
        )
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
