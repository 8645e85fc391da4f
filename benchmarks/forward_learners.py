"""Time per epoch and peak memory of sigprop and EFP, side by side with backprop.

Every learner trains the same network (hidden widths, batch size, optimiser,
learning rate) on the same data; backprop is ``replaybench.agents.naive.NaiveAgent``.
Reported per learner:

- CPU seconds per epoch (process time) and its ratio to backprop's, plus the
  wall seconds. All learners train in this one process, taking turns of
  ``--chunk`` minibatches each in a rotating order over ``--epochs`` epochs
  (:func:`run_interleaved`), so that a slow spell of a busy machine hits them
  alike; the quartiles of the per-turn ratios show the spread;
- peak resident memory added by training (VmHWM after training minus VmRSS
  before it, with the high-water mark reset in between through
  ``/proc/self/clear_refs``), and its ratio, from a fresh process per learner
  (``--repeats`` of them; the smallest counts);
- peak bytes held for backward: tensors saved by autograd and alive at the
  same time (parameters excluded), and its ratio. This is the activation
  memory the sigprop paper's claim is about. Sigprop's hand-written MLP step
  builds no autograd graph, so it shows "n/a" there (its working memory is
  one layer's activations and their gradients, inside the peak RSS);
  ``--option sigprop:manual_gradients=false`` measures the autograd path.

``--accuracy`` instead trains each learner for ``--epochs`` epochs on the
whole training set, in this process, and prints its test error (and its
error on up to 10k of the training images): the accuracy figures of
``docs/forward.md``. ``--validation N`` holds out the last N training images
and reports their error instead, for choosing settings without the test set.

Learner-specific options go through ``--option LEARNER:KEY=VALUE``.

Usage::

    python benchmarks/forward_learners.py                      # Fashion-MNIST, 784-400-400-10, 2 timed epochs
    python benchmarks/forward_learners.py --dataset digits --hidden 64 64 --epochs 3
    python benchmarks/forward_learners.py --accuracy --learners efp --epochs 30 --option efp:cosine_lr=true
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

LEARNERS = {
    "backprop": "replaybench.agents.naive:NaiveAgent",
    "sigprop": "replaybench.agents.forward.sigprop:SigpropAgent",
    "efp": "replaybench.agents.forward.efp:EFPAgent",
}


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class SavedTensorMeter:
    """Tracks the bytes autograd holds for backward, and their peak."""

    def __init__(self) -> None:
        self.live: dict[int, list] = {}  # storage pointer → [bytes, references]
        self.current = 0
        self.peak = 0

    def pack(self, tensor):
        import torch

        if isinstance(tensor, torch.nn.Parameter) or tensor.device.type == "meta":
            return tensor
        return _Held(self, tensor)

    @staticmethod
    def unpack(held):
        return held.tensor if isinstance(held, _Held) else held

    def add(self, key: int, nbytes: int) -> None:
        entry = self.live.setdefault(key, [nbytes, 0])
        if entry[1] == 0:
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1

    def remove(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]


class _Held:
    __slots__ = ("meter", "tensor", "key")

    def __init__(self, meter: SavedTensorMeter, tensor) -> None:
        self.meter, self.tensor = meter, tensor
        storage = tensor.untyped_storage()
        self.key = storage.data_ptr()
        meter.add(self.key, storage.nbytes())

    def __del__(self) -> None:
        self.meter.remove(self.key)


def stream_stub(dataset: str, data):
    """The stream metadata a learner is built from (class-IL over ``data``'s classes)."""
    return type(
        "Stream",
        (),
        {
            "name": dataset,
            "scenario": "class-il",
            "n_classes": data.n_classes,
            "input_shape": tuple(data.train_x.shape[1:]),
            "experiences": (),
        },
    )()


def build(args: argparse.Namespace, name: str, data, epochs: int = 1):
    """The learner ``name`` with the shared options and its own ``--option`` overrides."""
    from replaybench.params import parse_option
    from replaybench.registry import load_entry_point
    from replaybench.runner import seed_everything

    cls = load_entry_point(LEARNERS[name])
    stream = stream_stub(args.dataset, data)
    options = {
        "hidden": tuple(args.hidden),
        "epochs": epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": args.lr,
    }
    for text in args.option:
        learner, _, option = text.partition(":")
        if learner == name:
            key, value = parse_option(option)
            options[key] = value
    seed_everything(args.seed)  # as the runner does: backprop's weights come from the global generator
    return cls(stream=stream, config=cls.Config.from_dict(options), seed=args.seed)


def run_accuracy(args: argparse.Namespace) -> None:
    """Train each learner for ``args.epochs`` epochs; print its test (or validation) error and train error.

    With ``--validation N`` the last N training images are held out and scored
    instead of the test set, so that settings can be chosen without it.
    """
    import torch

    torch.set_num_threads(args.threads)
    from replaybench.protocols import Experience
    from replaybench.streams.vision import load_dataset

    data = load_dataset(args.dataset)
    train_x, train_y, eval_x, eval_y, split = data.train_x, data.train_y, data.test_x, data.test_y, "test"
    if args.validation:
        if not 0 < args.validation < len(train_x):
            raise SystemExit(f"--validation must be in [1, {len(train_x) - 1}]; got {args.validation}.")
        eval_x, eval_y, split = train_x[-args.validation :], train_y[-args.validation :], "validation"
        train_x, train_y = train_x[: -args.validation], train_y[: -args.validation]
    n = min(args.subset or len(train_x), len(train_x))
    print(
        f"{args.dataset}: {n} train / {len(eval_x)} {split}, hidden {args.hidden}, batch {args.batch_size}, "
        f"{args.optimizer} lr {args.lr}, seed {args.seed}, options {args.option}",
        flush=True,
    )
    summary = {}
    for name in args.learners:
        agent = build(args, name, data, epochs=args.epochs)
        start = time.perf_counter()
        stats = agent.learn(
            Experience(
                index=0,
                kind="supervised",
                train_x=train_x[:n],
                train_y=train_y[:n],
                classes=tuple(range(data.n_classes)),
            )
        )
        error = (agent.predict(eval_x).argmax(1) != eval_y).float().mean().item()
        seen = slice(0, min(n, 10000))  # the training error on (at most) 10k of the images it learned
        train_error = (agent.predict(train_x[seen]).argmax(1) != train_y[seen]).float().mean().item()
        summary[name] = error
        print(
            f"{name}: {split} error {100 * error:.2f}% (train error {100 * train_error:.2f}%) after {args.epochs} "
            f"epochs ({time.perf_counter() - start:.0f} s; {stats})",
            flush=True,
        )
    print(f"summary ({split}): " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in summary.items()))


def run_interleaved(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Time every learner in this process, taking turns: each trains on the next ``--chunk``
    minibatches, in a rotating order, until each has seen ``--epochs`` epochs.

    A slow spell of a shared machine then hits every learner alike, where
    separate runs one after another each get their own spell (runs of the
    same learner vary by ±10% on the 2-core VM this was written on).

    Returns, per learner: CPU and wall seconds per epoch, and the median and
    quartiles over turns of its time divided by backprop's in the same round.
    """
    import torch

    torch.set_num_threads(args.threads)
    from replaybench.protocols import Experience
    from replaybench.streams.vision import load_dataset

    data = load_dataset(args.dataset)
    n = args.subset or len(data.train_x)
    learners = {name: build(args, name, data) for name in args.learners}
    classes = tuple(range(data.n_classes))
    for agent in learners.values():  # warm-up: allocator, optimiser state
        agent.learn(
            Experience(
                index=0,
                kind="supervised",
                train_x=data.train_x[: 4 * args.batch_size],
                train_y=data.train_y[: 4 * args.batch_size],
                classes=classes,
            )
        )
    size = args.chunk * args.batch_size
    chunks = [(start, min(start + size, n)) for start in range(0, n, size)]
    cpu = {name: 0.0 for name in learners}
    wall = dict(cpu)
    turns: dict[str, list[float]] = {name: [] for name in learners}
    names = list(learners)
    for k, (start, stop) in enumerate(chunks * args.epochs):
        chunk = Experience(
            index=k,
            kind="supervised",
            train_x=data.train_x[start:stop],
            train_y=data.train_y[start:stop],
            classes=classes,
        )
        for name in names[k % len(names) :] + names[: k % len(names)]:
            w, c = time.perf_counter(), time.process_time()
            learners[name].learn(chunk)
            turns[name].append(time.process_time() - c)
            cpu[name] += turns[name][-1]
            wall[name] += time.perf_counter() - w
    out = {}
    for name in learners:
        per_turn = sorted(t / b for t, b in zip(turns[name], turns.get("backprop", turns[name])))
        quartile = len(per_turn) // 4
        out[name] = {
            "seconds_per_epoch": cpu[name] / args.epochs,
            "wall_per_epoch": wall[name] / args.epochs,
            "turn_ratio_median": per_turn[len(per_turn) // 2],
            "turn_ratio_q1": per_turn[quartile],
            "turn_ratio_q3": per_turn[-1 - quartile],
        }
    return out


def run_memory(args: argparse.Namespace) -> dict:
    """Train one learner for one epoch in this (fresh) process and measure its memory."""
    import torch

    torch.set_num_threads(args.threads)
    from replaybench.protocols import Experience
    from replaybench.streams.vision import load_dataset

    data = load_dataset(args.dataset)
    n = args.subset or len(data.train_x)
    agent = build(args, args.worker, data)

    def experience(size: int, index: int) -> Experience:
        return Experience(
            index=index,
            kind="supervised",
            train_x=data.train_x[:size],
            train_y=data.train_y[:size],
            classes=tuple(range(data.n_classes)),
        )

    meter = SavedTensorMeter()  # warm-up (allocator, optimiser state), measuring what backward holds
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        agent.learn(experience(4 * args.batch_size, 0))
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
    rss_before = _proc_status_kib("VmRSS")
    agent.learn(experience(n, 1))
    peak_rss = _proc_status_kib("VmHWM") - rss_before
    accuracy = (agent.predict(data.test_x).argmax(1) == data.test_y).float().mean().item()
    return {
        "learner": args.worker,
        "peak_rss_mib": peak_rss / 1024,
        "peak_saved_mib": meter.peak / 2**20,
        "test_accuracy": accuracy,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--hidden", type=int, nargs="+", default=[400, 400])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (--accuracy: training epochs)")
    parser.add_argument("--chunk", type=int, default=20, help="minibatches per learner per turn in the timed run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--subset", type=int, default=0, help="train on the first N items (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="fresh one-epoch runs per learner for memory")
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=list(LEARNERS))
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="LEARNER:KEY=VALUE",
        help="a config option for one learner, e.g. sigprop:loss=top-k (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accuracy", action="store_true", help="train --epochs epochs and report test error")
    parser.add_argument(
        "--validation",
        type=int,
        default=0,
        metavar="N",
        help="with --accuracy: hold out the last N training images and report their error, not the test set's",
    )
    parser.add_argument("--worker", choices=list(LEARNERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.accuracy:
        run_accuracy(args)
        return
    if args.worker:
        print(json.dumps(run_memory(args)))
        return

    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    memory: dict[str, list[dict]] = {name: [] for name in args.learners}
    for _ in range(args.repeats):
        for name in args.learners:  # memory: each learner alone in a fresh process, one epoch
            out = subprocess.run(
                [sys.executable, __file__, *passthrough, "--worker", name], check=True, capture_output=True, text=True
            )
            memory[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    timing = run_interleaved(args)
    base, base_memory = timing.get("backprop"), memory.get("backprop", [None])[0]
    print(
        f"{args.dataset}, hidden {args.hidden}, batch {args.batch_size}, {args.optimizer} lr {args.lr}, "
        f"{args.threads} thread(s); time: {args.epochs} epoch(s) in turns of {args.chunk} minibatches; "
        f"memory: {args.repeats} fresh run(s) of one epoch"
    )
    print(
        f"{'learner':<10}{'CPU s/epoch':>12}{'× bp':>7}{'(per turn: q1-median-q3)':>26}{'wall s':>8}"
        f"{'peak RSS MiB':>14}{'× bp':>7}{'saved MiB':>11}{'× bp':>7}{'test acc':>10}"
    )
    for name in args.learners:
        t, m = timing[name], min(memory[name], key=lambda r: r["peak_rss_mib"])
        ratio = "" if base is None else f"{t['seconds_per_epoch'] / base['seconds_per_epoch']:.2f}"
        spread = (
            "" if base is None else f"{t['turn_ratio_q1']:.2f}-{t['turn_ratio_median']:.2f}-{t['turn_ratio_q3']:.2f}"
        )
        ratios = [
            "" if base_memory is None else f"{m[k] / base_memory[k]:.2f}" if base_memory[k] else "-"
            for k in ("peak_rss_mib", "peak_saved_mib")
        ]
        saved = f"{m['peak_saved_mib']:.2f}"
        if not m["peak_saved_mib"]:  # no autograd graph at all (hand-written gradients)
            saved, ratios[1] = "n/a", "n/a"
        print(
            f"{name:<10}{t['seconds_per_epoch']:>12.2f}{ratio:>7}{spread:>26}{t['wall_per_epoch']:>8.1f}"
            f"{m['peak_rss_mib']:>14.1f}{ratios[0]:>7}{saved:>11}{ratios[1]:>7}{m['test_accuracy']:>10.4f}"
        )


if __name__ == "__main__":
    main()
