"""How the runner scores an agent on one experience, by experience kind.

A stream that knows how to score its experiences (RL returns, sequence
tasks) provides ``evaluate(agent, experience) -> float`` and is used as is;
otherwise the kind's default evaluator below applies. Agents never score
themselves, so every agent is measured the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from replaybench.errors import DivergenceError, ReplaybenchError
from replaybench.protocols import Experience, Stream

EVAL_BATCH = 4096


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in chunks of :data:`EVAL_BATCH` and concatenate."""
    return torch.cat([fn(x[i : i + EVAL_BATCH]).detach().cpu() for i in range(0, len(x), EVAL_BATCH)])


def supervised_accuracy(agent: Any, experience: Experience, stream: Stream) -> float:
    """Top-1 accuracy of ``agent.predict`` on the experience's test split.

    In task-IL the task id is passed to the agent and the argmax is taken over
    the experience's own classes (a multi-head evaluation).
    """
    task_id = experience.task_id
    with torch.no_grad():
        logits = batched(lambda xb: agent.predict(xb, task_id), experience.test_x)
    if logits.ndim != 2 or len(logits) != len(experience.test_y):
        raise ReplaybenchError(
            f"predict() must return logits of shape [{len(experience.test_y)}, n_classes]; got {tuple(logits.shape)}."
        )
    if not torch.isfinite(logits).all():
        raise DivergenceError(f"The agent's predictions on experience {experience.index} are not finite.")
    if stream.scenario == "task-il":
        mask = torch.full((logits.shape[1],), float("-inf"))
        mask[list(experience.classes)] = 0.0
        logits = logits + mask
    return (logits.argmax(1) == experience.test_y).float().mean().item()


EVALUATORS: dict[str, Callable[[Any, Experience, Stream], float]] = {
    "supervised": supervised_accuracy,
}
"""Default evaluator per experience kind."""

AGENT_METHOD = {"supervised": "predict", "sequence": "predict", "unsupervised": "embed", "rl": "act"}
"""The query method an agent needs for each kind."""


def evaluate(agent: Any, experience: Experience, stream: Stream) -> float:
    """Score ``agent`` on ``experience`` with the stream's or the kind's evaluator."""
    stream_eval = getattr(stream, "evaluate", None)
    if stream_eval is not None:
        return float(stream_eval(agent, experience))
    if experience.kind not in EVALUATORS:
        raise ReplaybenchError(f"No evaluator for {experience.kind!r} experiences in stream {stream.name}.")
    return float(EVALUATORS[experience.kind](agent, experience, stream))
