"""Episode streams: pattern cycles, corrupted cues, and recall scoring with a
store-and-look-up memory whose R matrix is known in advance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from replaybench.errors import ConfigError
from replaybench.evaluation import evaluate, evaluate_scores
from replaybench.params import Config
from replaybench.runner import RunSpec, make_stream, run
from replaybench.streams.episodes import corrupt, make_episode_cycles, recall_scores


class LookupMemory:
    """Stores every pattern with its successor; recalls the successor of the
    stored pattern most similar to the cue (zeros in an empty memory)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"sequence"})

    @dataclass(frozen=True)
    class Config(Config):
        pass

    def __init__(self, *, stream, config, seed: int, device: str = "cpu") -> None:
        self.config = config
        self.keys = torch.zeros(0, stream.input_shape[0])
        self.values = torch.zeros(0, stream.input_shape[0])

    def learn(self, experience):
        d = experience.train_x.shape[-1]
        self.keys = torch.cat([self.keys, experience.train_x.reshape(-1, d)])
        self.values = torch.cat([self.values, experience.train_y.reshape(-1, d)])

    def predict(self, cues: torch.Tensor, task_id=None) -> torch.Tensor:
        if not len(self.keys):
            return torch.zeros_like(cues)
        return self.values[(cues[:, -1] @ self.keys.T).argmax(1)][:, None]


def test_episodes_are_cycles_and_cues_are_corrupted_patterns():
    stream = make_episode_cycles(n_experiences=3, cycles_per_experience=2, cycle_length=4, n_features=20)
    assert stream.scenario == "sequence" and stream.input_shape == (20,) and stream.output_size == 20
    for i, e in enumerate(stream.experiences):
        assert e.kind == "sequence" and e.task_id == i
        assert e.train_x.shape == (2, 4, 20) and set(e.train_x.unique().tolist()) == {-1.0, 1.0}
        assert torch.equal(e.train_y[:, :-1], e.train_x[:, 1:]) and torch.equal(e.train_y[:, -1], e.train_x[:, 0])
        cues, patterns = e.test_x[:, 0], e.train_x.reshape(-1, 20)
        assert e.test_x.shape == e.test_y.shape == (8, 1, 20)
        assert ((cues == 0).sum(1) == 5).all()  # 25% of 20 entries zeroed
        assert torch.equal(cues[cues != 0], patterns[cues != 0])
        assert torch.equal(e.test_y[:, 0], e.train_y.reshape(-1, 20))
        assert e.info["output_mask"].shape == (4,) and e.info["output_mask"].all()


def test_seed_and_parameters_set_the_fingerprint():
    build = lambda **kw: make_episode_cycles(n_features=16, **kw)  # noqa: E731
    a, b = build(seed=1), build(seed=1)
    assert a.fingerprint == b.fingerprint
    assert all(torch.equal(x.test_x, y.test_x) for x, y in zip(a.experiences, b.experiences))
    others = [
        build(seed=2),
        build(seed=1, corruption=0.5),
        build(seed=1, cycle_length=6),
        build(seed=1, n_experiences=4),
    ]
    assert len({a.fingerprint, *(o.fingerprint for o in others)}) == 5


def test_standard_stream_is_registered():
    stream = make_stream("episode-cycles")
    assert stream.name == "episode-cycles" and len(stream.experiences) == 5
    assert stream.experiences[0].test_x.shape == (10, 1, 100)
    assert ((stream.experiences[0].test_x == 0).sum(-1) == 25).all()


def test_runner_fills_R_with_recall_accuracy():
    stream = make_episode_cycles(n_experiences=4, n_features=64)
    result = run(RunSpec(stream="episode-cycles", agent=f"{Path(__file__)}:LookupMemory"), stream=stream)
    # Stored episodes are recalled perfectly; episodes not yet stored are not recalled.
    assert [[1.0 if j <= i else 0.0 for j in range(4)] for i in range(4)] == result.R
    assert result.baseline == [0.0] * 4


def test_recall_scores_count_whole_patterns_and_entries():
    targets = torch.tensor([[1.0, -1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, -1.0]])
    recalled = targets.clone()
    recalled[1, 0] = 0.0  # a zero entry counts as wrong
    assert recall_scores(recalled * 3, targets) == {"score": 0.5, "bit_accuracy": 7 / 8}


def test_returning_the_cue_is_not_recall():
    stream = make_episode_cycles(n_experiences=1, n_features=100, cycle_length=5, cycles_per_experience=20)

    class Echo:
        def predict(self, cues, task_id=None):
            return cues

    scores = evaluate_scores(Echo(), stream.experiences[0], stream)
    assert scores["score"] == 0.0
    assert scores["bit_accuracy"] == pytest.approx(0.75 * 0.5, abs=0.03)  # the unzeroed entries agree by chance


def test_wrong_output_shape_is_a_clear_error():
    stream = make_episode_cycles(n_experiences=1, n_features=8)

    class Flat:
        def predict(self, cues, task_id=None):
            return cues[:, 0]

    with pytest.raises(ConfigError, match=r"shape \[N, 1, d\]"):
        evaluate(Flat(), stream.experiences[0], stream)


def test_bad_parameters_are_refused():
    with pytest.raises(ConfigError, match="'corruption' parameter of stream episode-cycles"):
        make_episode_cycles(corruption=1.0)
    with pytest.raises(ConfigError, match="'cycle_length' parameter"):
        make_episode_cycles(cycle_length=1)


def test_corrupt_zeroes_the_requested_fraction():
    patterns = torch.ones(50, 40)
    cues = corrupt(patterns, 0.25, generator=torch.Generator().manual_seed(0))
    assert ((cues == 0).sum(1) == 10).all() and ((cues == 1).sum(1) == 30).all()
    assert not torch.equal(cues[0], cues[1])  # positions differ per pattern


def test_sequence_agents_train_on_episodes():
    from replaybench.agents.sequence import ElmanAgent

    stream = make_episode_cycles(n_experiences=2, n_features=16, cycle_length=3)
    agent = ElmanAgent(stream=stream, config=ElmanAgent.Config.from_dict({"updates": 3}), seed=0)
    agent.learn(stream.experiences[0])
    scores = evaluate_scores(agent, stream.experiences[0], stream)
    assert 0.0 <= scores["score"] <= 1.0 and 0.0 < scores["bit_accuracy"] < 1.0
