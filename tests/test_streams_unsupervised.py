"""Unsupervised streams and the probe protocol, checked on embeddings whose
probe accuracy is known in advance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from replaybench.errors import ConfigError, ReplaybenchError
from replaybench.evaluation import (
    PROBE_LABELS_KEY,
    evaluate,
    evaluate_scores,
    knn_probe_accuracy,
    logistic_probe_accuracy,
)
from replaybench.params import Config
from replaybench.runner import RunSpec, make_agent, make_stream, run
from replaybench.streams.unsupervised import make_unsupervised_split
from replaybench.streams.vision import make_split


@pytest.fixture(scope="module")
def stream():
    return make_unsupervised_split(name="unsup-split-digits", dataset="digits")


class IdentityEmbedder:
    """A minimal unsupervised agent: embed(x) is x flattened; it records what learn() was given."""

    kinds: ClassVar[frozenset[str]] = frozenset({"unsupervised"})

    @dataclass(frozen=True)
    class Config(Config):
        pass

    def __init__(self, *, stream, config, seed: int, device: str = "cpu") -> None:
        self.config = config
        self.labels_seen: list = []

    def learn(self, experience):
        self.labels_seen.append(experience.train_y)
        return {"items": float(len(experience.train_x))}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class FixedEmbedding:
    """embed(x) = fn(x), for probing known embeddings directly."""

    def __init__(self, fn) -> None:
        self.embed = fn


def label_lookup(stream):
    """The true label of each image of ``stream`` (test-side knowledge, to build oracle embeddings)."""
    xs = torch.cat([torch.cat([e.train_x, e.test_x]).flatten(1) for e in stream.experiences])
    ys = torch.cat([torch.cat([e.info[PROBE_LABELS_KEY], e.test_y]) for e in stream.experiences])

    def labels(x: torch.Tensor) -> torch.Tensor:
        return ys[torch.cdist(x.flatten(1), xs).argmin(1)]

    return labels


def test_agent_sees_no_labels_and_the_data_is_shared(stream):
    split = make_split(name="unsup-split-digits", dataset="digits")
    for e, s in zip(stream.experiences, split.experiences):
        assert e.kind == "unsupervised" and e.train_y is None
        assert torch.equal(e.info[PROBE_LABELS_KEY], s.train_y) and torch.equal(e.test_y, s.test_y)
        assert torch.equal(e.train_x, s.train_x) and e.classes == s.classes
    # Views of one tensor, as in the split stream: no copy per experience.
    assert len({e.train_x.untyped_storage().data_ptr() for e in stream.experiences}) == 1
    assert stream.scenario == "unsupervised" and stream.fingerprint != split.fingerprint
    assert make_unsupervised_split(name="unsup-split-digits", dataset="digits").fingerprint == stream.fingerprint
    assert (
        make_unsupervised_split(name="unsup-split-digits", dataset="digits", class_order_seed=1).fingerprint
        != stream.fingerprint
    )


def test_identity_and_random_projection_separate_every_experience(stream):
    identity = FixedEmbedding(lambda x: x.flatten(1))
    projection = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    random_projection = FixedEmbedding(lambda x: x.flatten(1) @ projection)
    for agent in (identity, random_projection):
        for e in stream.experiences:
            scores = evaluate_scores(agent, e, stream)
            assert set(scores) == {"score", "knn_accuracy"}
            assert scores["score"] >= 0.85 and scores["knn_accuracy"] >= 0.9, (e.index, scores)
            assert evaluate(agent, e, stream) == scores["score"]


def test_constant_embedding_is_at_chance(stream):
    constant = FixedEmbedding(lambda x: torch.ones(len(x), 3))
    for e in stream.experiences:  # 36 test items per class: chance is exactly 1/2
        assert evaluate_scores(constant, e, stream) == {"score": 0.5, "knn_accuracy": 0.5}


def test_probe_is_fitted_per_experience(stream):
    labels = label_lookup(stream)
    # Parity separates the two classes of every experience (0|1, 2|3, ...); label // 2 merges them.
    parity = FixedEmbedding(lambda x: torch.nn.functional.one_hot(labels(x) % 2, 2).float())
    pairs = FixedEmbedding(lambda x: torch.nn.functional.one_hot(labels(x) // 2, 5).float())
    for e in stream.experiences:
        assert evaluate_scores(parity, e, stream) == {"score": 1.0, "knn_accuracy": 1.0}
        assert evaluate_scores(pairs, e, stream) == {"score": 0.5, "knn_accuracy": 0.5}


def test_probe_functions_on_hand_made_features():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=torch.float64)
    train_y = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.2], [0.2, 1.0], [0.6, 0.5]], dtype=torch.float64)
    test_y = torch.tensor([0, 1, 1])
    assert knn_probe_accuracy(train, train_y, test, test_y) == pytest.approx(2 / 3)  # [0.6, 0.5] is nearer class 0
    assert logistic_probe_accuracy(train, train_y, test, test_y) == pytest.approx(2 / 3)
    # One training class: the probe predicts it.
    assert logistic_probe_accuracy(train[:2], train_y[:2], test, test_y) == pytest.approx(1 / 3)


def test_bad_embeddings_are_refused(stream):
    e = stream.experiences[0]
    with pytest.raises(ReplaybenchError, match=r"embed\(\) must return features of shape"):
        evaluate(FixedEmbedding(lambda x: x), e, stream)
    with pytest.raises(ReplaybenchError, match="not finite"):
        evaluate(FixedEmbedding(lambda x: torch.full((len(x), 2), float("nan"))), e, stream)


def test_runner_fills_R_with_probe_accuracy(stream):
    result = run(RunSpec(stream="unsup-split-digits", agent=f"{Path(__file__)}:IdentityEmbedder"), stream=stream)
    expected = [evaluate(FixedEmbedding(lambda x: x.flatten(1)), e, stream) for e in stream.experiences]
    assert [expected] * 5 == result.R  # a fixed embedding: every row is the same and nothing is forgotten
    assert result.baseline == expected
    assert result.metrics["forgetting_max"] == pytest.approx(0.0)


def test_the_agent_is_never_given_labels(stream):
    agent = make_agent(f"{Path(__file__)}:IdentityEmbedder", stream, seed=0)
    for e in stream.experiences:
        agent.learn(e)
    assert agent.labels_seen == [None] * 5


def test_supervised_agents_are_refused():
    with pytest.raises(ConfigError, match="needs \\['unsupervised'\\]"):
        make_agent("naive", make_stream("unsup-split-digits"), seed=0)
