"""The biological replay options each do what they say, on digits and on
synthetic latents."""

from __future__ import annotations

import pytest
import torch

from replaybench.agents.er import ExperienceReplay
from replaybench.agents.replay import BiologicalReplay, ReplayConfig, sleep_consolidation
from replaybench.errors import ConfigError
from replaybench.memories.gsemm import DSEMConfig
from replaybench.memories.gsemm_replay import GSEMMReplayMemory, ScoredReservoir
from replaybench.runner import RunSpec, make_stream, run

REPLAY = "replaybench.agents.replay:BiologicalReplay"
FAST = {"epochs": 3, "lr": 0.05, "batch_size": 32, "hidden": (64,)}


@pytest.fixture(scope="module")
def digits():
    return make_stream("split-digits")


def _agent(stream, **options) -> BiologicalReplay:
    return BiologicalReplay(stream=stream, config=ReplayConfig(**{**FAST, **options}), seed=0)


def _class_latents(n_classes: int, per_class: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU-like latents: a positive class centre plus item-specific variation."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n_classes, width, generator=g) * 2
    x = (centres.repeat_interleave(per_class, 0) + torch.randn(n_classes * per_class, width, generator=g)).clamp_min(0)
    return x, torch.arange(n_classes).repeat_interleave(per_class)


def test_with_every_option_off_it_is_er(digits):
    torch.manual_seed(0)  # the networks' initialisation
    er = ExperienceReplay(stream=digits, config=ExperienceReplay.Config(**FAST, memory_bytes=60_000), seed=0)
    torch.manual_seed(0)
    replay = _agent(digits, memory_bytes=60_000)
    for exp in digits.experiences[:3]:
        er.learn(exp)
        replay.learn(exp)
    x = digits.experiences[0].test_x
    assert torch.allclose(er.predict(x), replay.predict(x), atol=1e-5)
    assert er.memory.nbytes == replay.memory.nbytes > 0


def test_gsemm_memory_completes_quarter_zeroed_cues_and_stays_in_budget():
    x, y = _class_latents(3, 80, 64)
    budget = 60_000
    memory = GSEMMReplayMemory(
        budget_bytes=budget,
        n_features=64,
        generator=torch.Generator().manual_seed(0),
        config=DSEMConfig(dt=0.1, integrator="euler", tau_d=20.0),
    )
    memory.add(x, y)
    assert 0.9 * budget < memory.nbytes <= budget
    pool = memory.recall_pool(cue_fraction=0.25, steps=150)
    assert pool.completed >= 0.9  # a 25%-zeroed cue falls into its own memory first
    # Every recalled item is (nearly) a stored exemplar of its own class.
    cos = torch.nn.functional.cosine_similarity(pool.x[:, None, :], x[None, :, :], dim=-1)
    best = cos.argmax(1)
    assert (y[best] == pool.y).float().mean() > 0.95
    assert cos.max(1).values.median() > 0.95


def test_gsemm_recall_replays_stored_sequences_in_order():
    x, y = _class_latents(1, 12, 64)
    memory = GSEMMReplayMemory(
        budget_bytes=100_000,
        n_features=64,
        generator=torch.Generator().manual_seed(1),
        config=DSEMConfig(dt=0.1, integrator="euler", tau_d=20.0),
    )
    memory.add(x, y)
    stored = memory.classes[0].model
    pool = memory.recall_pool(cue_fraction=0.25, steps=300)
    assert pool.items_per_cue >= 3  # each cue runs on through several memories
    index = stored.overlaps(pool.x - memory.classes[0].mean).argmax(1)
    successor = (index[1:] == (index[:-1] + 1) % stored.n_memories).float().mean()
    assert successor > 0.6  # most consecutive replay items follow the stored (arrival) order


def test_sequence_replay_draws_contiguous_windows(digits):
    agent = _agent(digits, memory_model="gsemm", sequence_replay=True, sequence_windows=4, memory_bytes=200_000)
    agent.learn(digits.experiences[0])
    assert len(agent.pool_x) > 20 and agent.stats["gsemm_items_per_cue"] > 1
    agent.pool_x = torch.arange(100.0)[:, None]  # stand-in pool whose items name their position
    position = agent._draw(20)[0].view(4, 5).long()
    steps = (position[:, 1:] - position[:, :-1]) % 100
    assert torch.all(steps == 1)  # 4 windows of 5 consecutive recalled items


def test_prioritised_sampling_favours_high_loss_items(digits):
    agent = _agent(digits, priority="loss")
    agent.learn(digits.experiences[0])
    agent.learn(digits.experiences[1])
    memory = agent.memory
    n = len(memory)
    assert not torch.all(memory.score[:n] == memory.score[0])  # replay losses were written back
    memory.score[:n] = 0.01
    memory.score[: n // 4] = 1.0
    idx = memory.sample_indices(4000, agent.replay_weights())
    share = (idx < n // 4).float().mean()
    assert share > 0.9  # a quarter of the items with 100x the loss take ~97% of the draws


def test_forgetting_events_count_correct_then_wrong():
    memory = ScoredReservoir(capacity=4, generator=torch.Generator().manual_seed(0))
    memory.add(torch.zeros(4, 3), torch.arange(4))
    agent = BiologicalReplay.__new__(BiologicalReplay)
    agent.memory = memory
    idx = torch.tensor([0, 1])
    agent._update_scores(idx, torch.ones(2), torch.tensor([True, True]))
    agent._update_scores(idx, torch.ones(2), torch.tensor([False, True]))
    agent._update_scores(idx, torch.ones(2), torch.tensor([False, False]))
    assert memory.forgets[:2].tolist() == [1.0, 1.0]


def test_decay_lowers_old_items_and_gist_pulls_them_to_the_prototype(digits):
    agent = _agent(digits, decay=0.5, gist=0.5, memory_bytes=1_000_000)  # large: nothing is evicted
    agent.learn(digits.experiences[0])
    x0 = agent.memory.x[: len(agent.memory)].clone()
    spread0 = (x0 - x0.mean(0)).flatten(1).norm(dim=1).mean()
    agent.learn(digits.experiences[1])
    m = agent.memory
    old = m.age[: len(m)] == 1
    assert old.any() and (~old).any()
    w = agent.replay_weights()[: len(m)]
    assert torch.allclose(w[old], torch.full_like(w[old], 0.5)) and torch.allclose(w[~old], torch.ones_like(w[~old]))
    classes = m.y[: len(m)][old].unique()
    x_old = m.x[: len(m)][old & (m.y[: len(m)] == classes[0])]
    spread1 = (x_old - x_old.mean(0)).flatten(1).norm(dim=1).mean()
    assert spread1 < 0.3 * spread0  # two gist steps of 0.5 shrink within-class spread by ~4x


def test_sleep_changes_weights_without_labels(digits):
    agent = _agent(digits)
    exp = digits.experiences[0]
    before = [p.clone() for p in agent.network.parameters()]
    mean = exp.train_x.flatten(1).mean(0)
    stats = sleep_consolidation(
        agent.network, mean, exp.train_x, ReplayConfig(**FAST, sleep_decrease=0.0), torch.Generator().manual_seed(0)
    )
    assert stats["sleep_spikes"] > 0 and stats["sleep_weight_change"] > 0
    weights = [p for p in agent.network.parameters() if p.ndim == 2]
    old = [p for p in before if p.ndim == 2]
    assert all(torch.all(w >= o) for w, o in zip(weights, old))  # no depression: only potentiation
    assert any(torch.any(w > o) for w, o in zip(weights, old))


def test_latent_replay_freezes_the_lower_layers_and_stores_features(digits):
    agent = _agent(digits, latent_layer=1, memory_bytes=50_000, hidden=(32,))
    agent.learn(digits.experiences[0])
    lower = agent.network[1].weight.clone()
    agent.learn(digits.experiences[1])
    assert torch.equal(agent.network[1].weight, lower)
    assert agent.memory.x.shape[1:] == (32,)
    er = ExperienceReplay(stream=digits, config=ExperienceReplay.Config(**FAST, memory_bytes=50_000), seed=0)
    assert agent.memory.capacity == 50_000 // (32 * 4 + 8) > 1.9 * er.memory.capacity  # half the width, twice the items


def test_cls_slow_learner_is_an_average_of_the_fast_one_and_predicts(digits):
    agent = _agent(digits, cls_distill=1.0, cls_ema=0.9)
    init = [p.clone() for p in agent.slow.parameters()]
    agent.learn(digits.experiences[0])
    agent.learn(digits.experiences[1])
    slow, fast = list(agent.slow.parameters()), list(agent.network.parameters())
    assert any(not torch.equal(s, i) for s, i in zip(slow, init))
    assert any(not torch.equal(s, f) for s, f in zip(slow, fast))
    x = digits.experiences[0].test_x
    assert torch.equal(agent.predict(x), agent.slow(x))


def test_a_replay_option_beats_naive_on_class_il_digits(digits):
    naive = run(RunSpec(stream="split-digits", agent="naive", agent_options=FAST), stream=digits)
    replay = run(
        RunSpec(
            stream="split-digits", agent=REPLAY, agent_options={**FAST, "memory_model": "gsemm", "memory_bytes": 40_000}
        ),
        stream=digits,
    )
    assert replay.metrics["acc"] > naive.metrics["acc"] + 0.2
    assert replay.costs["replay_samples"] > 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"sequence_replay": True}, "sequence_replay"),
        ({"memory_model": "gsemm", "priority": "loss"}, "priority"),
        ({"latent_layer": 3}, "latent_layer"),
        ({"memory_bytes": 10}, "holds no item"),
        ({"memory_model": "gsemm", "memory_bytes": 100}, "holds no exemplar"),
    ],
)
def test_bad_options_are_refused_at_construction(digits, options, message):
    with pytest.raises(ConfigError, match=message):
        _agent(digits, **options)
