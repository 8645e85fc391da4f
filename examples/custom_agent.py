"""A custom agent: a nearest-class-mean classifier, held to the contract and run by replaybench.

The agent keeps one running mean per class and predicts the class whose mean
is nearest (the nearest-class-mean rule of Mensink et al. 2013, "Distance-based
image classification", IEEE TPAMI 35(11); iCaRL's classifier, Rebuffi et al.
2017, applies it to learned features). The means of old classes never change:
what it loses on them in class-IL comes only from new classes whose means lie
nearer.

Nothing here inherits from replaybench: an agent is a class with ``kinds``, a
frozen ``Config`` dataclass, ``__init__(*, stream, config, seed, device)``,
``learn(experience)`` and the query method of each kind (``predict`` for
supervised streams). ``state_bytes`` (the ``CountsState`` hook) and the
``state_dict`` pair are optional. The same class works from the command line::

    replaybench check agent examples/custom_agent.py:NearestClassMean
    replaybench run --stream split-digits --agent examples/custom_agent.py:NearestClassMean -o metric=cosine

This script does both from Python, then one run through ``replaybench.runner.run``::

    python examples/custom_agent.py --out /tmp/ncm
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from replaybench.checks import check_agent
from replaybench.cli import main as replaybench_main
from replaybench.protocols import Experience, Stream, tensor_bytes
from replaybench.runner import RunSpec, run

SPEC = f"{Path(__file__).resolve()}:NearestClassMean"
"""How the registry names a class in a file: ``path/to/file.py:Class``."""


# --8<-- [start:agent]
class NearestClassMean:
    """Predicts the class whose mean input is nearest; one running mean per class seen."""

    kinds = frozenset({"supervised"})

    @dataclass(frozen=True)
    class Config:
        """The agent's options: ``-o metric=cosine`` on the command line, ``[agents.NAME]`` in a config file."""

        metric: Literal["euclidean", "cosine"] = "euclidean"
        """Distance to a class mean: Euclidean, or one minus the cosine similarity."""
        per_class: int | None = None
        """Learn each class from at most its first k training items (None: all of them)."""

    def __init__(self, *, stream: Stream, config: Config, seed: int, device: str = "cpu") -> None:
        self.config = config
        width = math.prod(stream.input_shape)
        # float64 sums: a mean over thousands of items stays exact enough that runs are bit-identical
        self.sums = torch.zeros(stream.n_classes, width, dtype=torch.float64, device=device)
        self.counts = torch.zeros(stream.n_classes, dtype=torch.int64, device=device)

    def learn(self, experience: Experience) -> dict[str, float]:
        assert experience.train_x is not None and experience.train_y is not None  # supervised kind
        x = experience.train_x.flatten(1).to(self.sums)
        y = experience.train_y.to(self.counts.device)
        for label in y.unique().tolist():
            rows = x[y == label][: self.config.per_class]
            self.sums[label] += rows.sum(0)
            self.counts[label] += len(rows)
        return {"classes_seen": float((self.counts > 0).sum())}  # numbers land in the result's costs

    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        means = self.sums / self.counts.clamp(min=1).unsqueeze(1)
        inputs = x.flatten(1).to(means)
        if self.config.metric == "cosine":
            distance = 1 - torch.nn.functional.normalize(inputs, dim=1) @ torch.nn.functional.normalize(means, dim=1).T
        else:
            distance = torch.cdist(inputs, means)
        # -inf masks classes not seen yet: the runner allows it (NaN and +inf are refused as divergence)
        return (-distance).masked_fill(self.counts == 0, float("-inf")).float()

    # --- optional: the CountsState hook and a state round trip -------------------------------
    def state_bytes(self) -> dict[str, int]:
        """What the agent keeps across experiences, by part (the result's ``costs["state_bytes"]``)."""
        return {"class_sums": tensor_bytes([self.sums]), "class_counts": tensor_bytes([self.counts])}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"sums": self.sums.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.sums.copy_(state["sums"])
        self.counts.copy_(state["counts"])


# --8<-- [end:agent]


# --8<-- [start:main]
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="replaybench-results/custom-agent", help="results folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small nets on a busy machine run fastest on one thread (README)

    # 1. The contract, check by check (what `replaybench check agent SPEC` prints).
    report = check_agent(SPEC)
    print(report.format())
    if not report.ok:
        return 1

    # 2. The command line: a run on split-digits with an option, its result written to --out.
    code = replaybench_main(
        ["run", "--stream", "split-digits", "--agent", SPEC, "-o", "metric=cosine", "--out", args.out, "--no-plots"]
    )
    if code != 0:
        return code

    # 3. Python: one run, nothing written; the result carries R, the metrics and the costs.
    result = run(RunSpec(stream="split-digits", agent=SPEC, seed=0, agent_options={"per_class": 20}))
    final = " ".join(f"{score:.2f}" for score in result.R[-1])
    print(f"per_class=20: acc {result.metrics['acc']:.3f}, forgetting_max {result.metrics['forgetting_max']:.3f}")
    print(f"per_class=20: R after the last experience: {final}; state {result.costs['state_bytes']} bytes")
    return 0


# --8<-- [end:main]
if __name__ == "__main__":
    raise SystemExit(main())
