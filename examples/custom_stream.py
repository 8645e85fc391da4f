"""A custom stream: scikit-learn's digits under growing pixel noise, one noise level per experience.

A domain-IL stream (every experience has all ten classes; what changes is
the input distribution), built on the container every tensor stream shares,
:class:`replaybench.streams.base.TensorStream`. A stream can be brought in
three ways, all shown here:

1. A file spec, on the command line or anywhere a stream name goes::

       replaybench check stream examples/custom_stream.py:make_noisy_digits
       replaybench run --stream examples/custom_stream.py:make_noisy_digits --agent naive er

2. A built stream handed to the runner from Python: ``run(spec, stream=...)``.
3. A registered name, from a package's ``replaybench.streams`` entry point or
   a ``replaybench.registrations`` module that calls :func:`register`.

Run it::

    python examples/custom_stream.py --out /tmp/noisy
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch

from replaybench.checks import check_stream
from replaybench.cli import main as replaybench_main
from replaybench.params import Interval, check_param
from replaybench.protocols import Experience
from replaybench.registry import STREAMS
from replaybench.runner import RunSpec, run
from replaybench.streams.base import TensorStream
from replaybench.streams.datasets import load_digits

SPEC = f"{Path(__file__).resolve()}:make_noisy_digits"
"""How the registry names a builder in a file: ``path/to/file.py:function``."""


# --8<-- [start:builder]
def make_noisy_digits(
    *,
    name: str = "noisy-digits",
    n_experiences: int = 4,
    noise_step: float = 0.25,
    noise_seed: int = 0,
    version: str = "1",
    data_dir: str | None = None,
    download: bool = False,
) -> TensorStream:
    """Digits with Gaussian pixel noise of standard deviation ``i * noise_step`` in experience ``i``.

    Args:
        name: The stream's name (results and boards use it).
        n_experiences: Noise levels, starting at 0 (the clean digits).
        noise_step: Standard deviation added per experience, in pixel units of [0, 1].
        noise_seed: Seed of the noise; each experience draws its own from it.
        version: Bump it whenever the definition changes: it is part of the fingerprint.
        data_dir: Unused (the digits ship with scikit-learn); every builder accepts it.
        download: Unused, as ``data_dir``.
    """
    # Refuse bad options at once, with the built-in streams' one-line message (a ConfigError: exit code 2).
    check_param(f"stream {name}", "n_experiences", n_experiences, Interval(int, 1, None))
    check_param(f"stream {name}", "noise_step", noise_step, Interval(float, 0, 1))
    data = load_digits()
    experiences, records = [], []
    for i in range(n_experiences):
        generator = torch.Generator().manual_seed(noise_seed * 1_000 + i)  # each level its own noise, seeded
        sigma = i * float(noise_step)
        train_x, test_x = (
            (x + sigma * torch.randn(x.shape, generator=generator)).clamp(0, 1) for x in (data.train_x, data.test_x)
        )
        experiences.append(
            Experience(
                index=i,
                kind="supervised",
                train_x=train_x,
                train_y=data.train_y,
                test_x=test_x,
                test_y=data.test_y,
                classes=tuple(range(data.n_classes)),
            )
        )
        # The fingerprint covers the data's digest and these bytes: here, the noisy images themselves.
        records.append(hashlib.sha256(train_x.numpy().tobytes() + test_x.numpy().tobytes()).digest())
    return TensorStream(
        name=name,
        version=version,
        scenario="domain-il",
        experiences=tuple(experiences),
        n_classes=data.n_classes,
        input_shape=tuple(data.train_x.shape[1:]),
        source=f"{data.source} + Gaussian pixel noise",
        params={"n_experiences": n_experiences, "noise_step": noise_step, "noise_seed": noise_seed},
        data_digest=data.digest,
        split_record=tuple(records),
    )


# --8<-- [end:builder]
# --8<-- [start:register]
def register() -> None:
    """Register ``noisy-digits`` (and a harder variant) by name.

    A package does this in the module its ``replaybench.registrations`` entry
    point names; the registry imports it the first time a name is looked up.
    """
    STREAMS.register("noisy-digits", "custom_stream:make_noisy_digits", summary="digits under growing pixel noise")
    STREAMS.register(
        "noisy-digits-hard",
        "custom_stream:make_noisy_digits",
        summary="digits under faster-growing pixel noise",
        name="noisy-digits-hard",
        noise_step=0.5,
    )


# --8<-- [end:register]
# --8<-- [start:main]
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="replaybench-results/custom-stream", help="results folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small nets on a busy machine run fastest on one thread (README)

    # 1. The stream contract, check by check (what `replaybench check stream SPEC` prints).
    report = check_stream(SPEC)
    print(report.format())
    if not report.ok:
        return 1
    # ... and the file spec as a stream name on the command line.
    code = replaybench_main(["run", "--stream", SPEC, "--agent", "naive", "--out", args.out, "--no-plots"])
    if code != 0:
        return code

    # 2. A built stream, handed to the runner (its options are the builder's arguments).
    stream = make_noisy_digits(name="noisy-digits-hard", noise_step=0.5)
    result = run(RunSpec(stream=stream.name, agent="naive", seed=0, agent_options={"epochs": 10}), stream=stream)
    print(f"built in Python: {stream.name} {stream.fingerprint[:12]}, naive acc {result.metrics['acc']:.3f}")
    print("built in Python: accuracy on each noise level after the last:", " ".join(f"{r:.2f}" for r in result.R[-1]))

    # 3. By name, once registered; the registry imports "custom_stream" from sys.path.
    register()
    hard = run(RunSpec(stream="noisy-digits-hard", agent="naive", seed=0, agent_options={"epochs": 10}))
    same = hard.provenance["stream_fingerprint"] == stream.fingerprint
    print(f"registered: noisy-digits-hard, same fingerprint as the built stream: {same}")
    return 0


# --8<-- [end:main]
if __name__ == "__main__":
    raise SystemExit(main())
