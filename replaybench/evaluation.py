"""How the runner scores an agent on one experience, by experience kind.

A stream that knows how to score its experiences (RL returns, sequence
tasks) provides ``evaluate(agent, experience)`` and is used as is;
otherwise the kind's default evaluator below applies. Agents never score
themselves, so every agent is measured the same way.

A scorer returns a float, or a mapping of named scores whose ``"score"``
entry is the one that goes in R; the other entries are secondary scores of
the same cell (e.g. the kNN probe's accuracy next to the logistic probe's).
:func:`evaluate_scores` returns them all, :func:`evaluate` only ``"score"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from replaybench.errors import DivergenceError, ReplaybenchError
from replaybench.protocols import Experience, SelfScoringStream, Stream

EVAL_BATCH = 4096


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in chunks of :data:`EVAL_BATCH` and concatenate."""
    return torch.cat([fn(x[i : i + EVAL_BATCH]).detach().cpu() for i in range(0, len(x), EVAL_BATCH)])


def supervised_accuracy(agent: Any, experience: Experience, stream: Stream) -> float:
    """Top-1 accuracy of ``agent.predict`` on the experience's test split.

    In task-IL the task id is passed to the agent and the argmax is taken over
    the experience's own classes (a multi-head evaluation).
    """
    task_id, test_x, test_y = experience.task_id, experience.test_x, experience.test_y
    if test_x is None or test_y is None:
        raise ReplaybenchError(f"Supervised experience {experience.index} of stream {stream.name} has no test split.")
    with torch.no_grad():
        logits = batched(lambda xb: agent.predict(xb, task_id), test_x)
    if logits.ndim != 2 or len(logits) != len(test_y):
        raise ReplaybenchError(
            f"predict() must return logits of shape [{len(test_y)}, n_classes]; got {tuple(logits.shape)}."
        )
    if torch.isnan(logits).any() or torch.isposinf(logits).any():  # -inf masks a class; NaN/+inf diverged
        raise DivergenceError(f"The agent's predictions on experience {experience.index} hold NaN or +inf.")
    if stream.scenario == "task-il":
        mask = torch.full((logits.shape[1],), float("-inf"))
        mask[list(experience.classes)] = 0.0
        logits = logits + mask
    return (logits.argmax(1) == test_y).to(torch.float32).mean().item()


# --- unsupervised: fixed probes on the agent's embedding ----------------------------------------

PROBE_LABELS_KEY = "probe_train_y"
"""``Experience.info`` key of an unsupervised experience's training labels.

They exist for the probe alone: an unsupervised experience has
``train_y=None``, and an agent must not read this entry (nor ``test_y``,
as in every kind)."""

KNN_NEIGHBOURS = 20
"""k of the kNN probe (fewer when the experience has fewer training items)."""
KNN_TEMPERATURE = 0.07
"""Temperature of the kNN probe's vote weights ``exp(cos / T)`` (Wu et al., CVPR 2018)."""
LOGISTIC_C = 1.0
"""Inverse L2 strength of the logistic probe (scikit-learn's default)."""
LOGISTIC_MAX_ITER = 1000


def _embedding(agent: Any, x: torch.Tensor, experience: Experience) -> torch.Tensor:
    with torch.no_grad():
        features = batched(agent.embed, x)
    if features.ndim != 2 or len(features) != len(x):
        raise ReplaybenchError(f"embed() must return features of shape [{len(x)}, F]; got {tuple(features.shape)}.")
    if not torch.isfinite(features).all():
        raise DivergenceError(f"The agent's embedding of experience {experience.index} is not finite.")
    return features.double()


def logistic_probe_accuracy(
    train_features: torch.Tensor, train_y: torch.Tensor, test_features: torch.Tensor, test_y: torch.Tensor
) -> float:
    """Accuracy of a multinomial logistic regression fitted on standardised features.

    The features are standardised with the training split's mean and
    standard deviation (a constant feature stays 0), and the probe is
    scikit-learn's L-BFGS ``LogisticRegression`` with ``C`` =
    :data:`LOGISTIC_C`. With a single training class it predicts that class.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    classes = torch.unique(train_y)
    if len(classes) == 1:
        return (test_y == classes[0]).double().mean().item()
    mean, std = train_features.mean(0), train_features.std(0, unbiased=False)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    probe = LogisticRegression(C=LOGISTIC_C, max_iter=LOGISTIC_MAX_ITER)
    with warnings.catch_warnings():  # an unconverged probe is still a fixed, reproducible probe
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(((train_features - mean) / std).numpy(), train_y.numpy())
    predicted = probe.predict(((test_features - mean) / std).numpy())
    return float(np.mean(predicted == test_y.numpy()))


def knn_probe_accuracy(
    train_features: torch.Tensor, train_y: torch.Tensor, test_features: torch.Tensor, test_y: torch.Tensor
) -> float:
    """Accuracy of a weighted kNN vote on cosine similarity (Wu et al., CVPR 2018).

    Each test item takes its :data:`KNN_NEIGHBOURS` most similar training
    items; each votes for its label with weight ``exp(cos / T)``,
    T = :data:`KNN_TEMPERATURE`, and the heaviest label wins.
    """
    k = min(KNN_NEIGHBOURS, len(train_features))
    train_unit = torch.nn.functional.normalize(train_features, dim=1)
    test_unit = torch.nn.functional.normalize(test_features, dim=1)
    n_labels = int(max(train_y.max(), test_y.max())) + 1
    correct = 0.0
    for start in range(0, len(test_unit), EVAL_BATCH):
        similarity = test_unit[start : start + EVAL_BATCH] @ train_unit.T
        top, index = similarity.topk(k, dim=1)
        votes = torch.zeros(len(top), n_labels, dtype=top.dtype)
        votes.scatter_add_(1, train_y[index], torch.exp(top / KNN_TEMPERATURE))
        correct += (votes.argmax(1) == test_y[start : start + EVAL_BATCH]).sum().item()
    return correct / len(test_unit)


def unsupervised_probe_scores(agent: Any, experience: Experience, stream: Stream) -> dict[str, float]:
    """Probe ``agent.embed`` on one experience: fit on its train split, score on its test split.

    Both probes are fixed (no hyperparameter search) and refitted from
    scratch for every cell R[i][j], on experience j's own training
    embedding and labels (``info["probe_train_y"]``), so a cell depends only
    on the agent's current embedding and experience j.

    Returns:
        ``{"score": logistic-probe accuracy, "knn_accuracy": kNN-probe accuracy}``.
    """
    train_y, test_y = experience.info.get(PROBE_LABELS_KEY), experience.test_y
    train_x, test_x = experience.train_x, experience.test_x
    if train_y is None or test_y is None or train_x is None or test_x is None:
        raise ReplaybenchError(
            f"Unsupervised experience {experience.index} of stream {stream.name} carries no "
            f"probe labels (info[{PROBE_LABELS_KEY!r}] and test_y) or no data."
        )
    train_features = _embedding(agent, train_x, experience)
    test_features = _embedding(agent, test_x, experience)
    if train_features.shape[1] != test_features.shape[1]:
        raise ReplaybenchError("embed() returned different widths for the train and test splits.")
    return {
        "score": logistic_probe_accuracy(train_features, train_y, test_features, test_y),
        "knn_accuracy": knn_probe_accuracy(train_features, train_y, test_features, test_y),
    }


Scorer = Callable[[Any, Experience, Stream], "float | Mapping[str, float]"]

EVALUATORS: dict[str, Scorer] = {
    "supervised": supervised_accuracy,
    "unsupervised": unsupervised_probe_scores,
}
"""Default evaluator per experience kind."""


def evaluate_scores(agent: Any, experience: Experience, stream: Stream) -> dict[str, float]:
    """Every score of ``agent`` on ``experience``: ``"score"`` (for R) and any secondary ones."""
    if isinstance(stream, SelfScoringStream):
        result = stream.evaluate(agent, experience)
    elif experience.kind in EVALUATORS:
        result = EVALUATORS[experience.kind](agent, experience, stream)
    else:
        raise ReplaybenchError(f"No evaluator for {experience.kind!r} experiences in stream {stream.name}.")
    if isinstance(result, Mapping):
        if "score" not in result:
            raise ReplaybenchError(f"The scorer of stream {stream.name} returned {sorted(result)} without 'score'.")
        return {key: float(value) for key, value in result.items()}
    return {"score": float(result)}


def evaluate(agent: Any, experience: Experience, stream: Stream) -> float:
    """Score ``agent`` on ``experience`` with the stream's or the kind's evaluator (the R entry)."""
    return evaluate_scores(agent, experience, stream)["score"]
