"""The replay family: every learner x source x schedule that makes sense builds, runs and
replays; the review's buffer options do what they say; memory is counted whole; bad
combinations are refused in one line."""

from __future__ import annotations

import pytest
import torch

from replaybench.agents.er import ExperienceReplay
from replaybench.agents.replay import ReplayAgent, ReplayConfig
from replaybench.agents.replay.sources import BufferSource
from replaybench.errors import ConfigError
from replaybench.memories.gsemm import DSEMConfig
from replaybench.memories.gsemm_replay import GSEMMReplayMemory
from replaybench.protocols import module_bytes
from replaybench.runner import RunSpec, make_stream, run

FAST = {"epochs": 3, "lr": 0.05, "batch_size": 32, "hidden": (64,)}
FAST_LEARNER = {
    "backprop": FAST,
    "sigprop": {"epochs": 10, "lr": 2e-3, "batch_size": 32, "hidden": (64,)},
    "efp": {"epochs": 3, "batch_size": 32, "hidden": (64,)},
    # 8x8 digits give few input spikes at the default 128 Hz; 512 Hz makes 100 steps enough.
    "stdp": {"n_neurons": 100, "time_steps": 100, "batch_size": 16, "assignment": "relabel", "max_rate_hz": 512.0},
}


@pytest.fixture(scope="module")
def digits():
    return make_stream("split-digits")


def _agent(stream, **options) -> ReplayAgent:
    learner = options.get("learner", "backprop")
    return ReplayAgent(stream=stream, config=ReplayConfig(**{**FAST_LEARNER.get(learner, {}), **options}), seed=0)


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
    assert er.memory.nbytes == replay.source.nbytes > 0
    assert replay.state_bytes() == {"source_buffer": er.memory.nbytes}


COMBINATIONS = [
    (learner, source, schedule)
    for learner in ("backprop", "sigprop", "efp", "stdp")
    for source in ("none", "buffer", "gsemm", "generative", "wave")
    for schedule in ("interleaved", "sleep", "sequence")
    if not (schedule == "sequence" and source in ("none", "buffer"))
    and not (learner == "efp" and schedule == "sleep" and source == "none")  # SRC needs ReLU layers; EFP's are tanh
]


@pytest.mark.parametrize("learner, source, schedule", COMBINATIONS)
def test_every_combination_that_makes_sense_runs_and_replays(digits, learner, source, schedule):
    options = {"learner": learner, "source": source, "schedule": schedule, "memory_bytes": 40_000}
    if schedule == "sleep" and learner != "stdp":
        options["src_steps_scale"] = 0.002  # 30-40 simulator steps: this test checks the wiring, not SRC
        options["hidden"] = (64, 64)  # SRC's tuned thresholds are for three weight layers
    agent = _agent(digits, **options)
    stats = {}
    for exp in digits.experiences[:2]:
        stats = agent.learn(exp)
    parts = agent.state_bytes()
    assert 0 < sum(parts.values()) <= 40_000 or (source == "none" and schedule != "sleep")
    if source != "none":
        assert parts[f"source_{source}"] > 0
        assert stats.get("replay_samples", 0) > 0  # the second experience replayed the first
    if schedule == "sleep" and learner in ("backprop", "sigprop"):  # EFP's tanh layers sleep without SRC
        assert stats["src_steps"] > 0
    assert agent.predict(digits.experiences[0].test_x).shape == (len(digits.experiences[0].test_x), 10)


@pytest.mark.parametrize("learner", ["backprop", "sigprop", "efp", "stdp"])
def test_replay_cuts_forgetting_for_every_learner(digits, learner):
    """Exemplar replay against the same learner without it (measured: forgetting_max 0.83 -> 0.12
    for sigprop, 0.58 -> 0.19 for stdp; ACC 0.17 -> 0.83 and 0.33 -> 0.61)."""
    results = {}
    for source in ("none", "buffer"):
        options = {**FAST_LEARNER[learner], "learner": learner, "source": source, "memory_bytes": 60_000}
        results[source] = run(RunSpec(stream="split-digits", agent="replay", agent_options=options), stream=digits)
    none, buffer = results["none"].metrics, results["buffer"].metrics
    assert buffer["forgetting_max"] < 0.6 * none["forgetting_max"]
    assert buffer["acc"] > none["acc"] + 0.15
    assert results["buffer"].costs["state_bytes"] <= 60_000


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


def test_prioritised_sampling_favours_high_loss_items(digits):
    agent = _agent(digits, priority="loss")
    agent.learn(digits.experiences[0])
    agent.learn(digits.experiences[1])
    source = agent.source
    memory, n = source.memory, len(source)
    assert not torch.all(memory.score[:n] == memory.score[0])  # replay losses were written back
    memory.score[:n] = 0.01
    memory.score[: n // 4] = 1.0
    idx = memory.sample_indices(4000, source.weights())
    share = (idx < n // 4).float().mean()
    assert share > 0.9  # a quarter of the items with 100x the loss take ~97% of the draws


def test_forgetting_events_count_correct_then_wrong():
    source = BufferSource(
        budget_bytes=4 * (3 * 4 + 8 + 4), example=torch.zeros(3), generator=torch.Generator(), priority="forgetting"
    )
    source.add(torch.zeros(4, 3), torch.arange(4))
    source.last = torch.tensor([0, 1])
    source.feedback(torch.ones(2), torch.tensor([True, True]))
    source.feedback(torch.ones(2), torch.tensor([False, True]))
    source.feedback(torch.ones(2), torch.tensor([False, False]))
    assert source.memory.forgets[:2].tolist() == [1.0, 1.0]


def test_decay_lowers_old_items_and_gist_pulls_them_to_the_prototype(digits):
    agent = _agent(digits, decay=0.5, gist=0.5, memory_bytes=1_000_000)  # large: nothing is evicted
    agent.learn(digits.experiences[0])
    m = agent.source.memory
    x0 = m.x[: len(m)].clone()
    spread0 = (x0 - x0.mean(0)).flatten(1).norm(dim=1).mean()
    agent.learn(digits.experiences[1])
    old = m.age[: len(m)] == 1
    assert old.any() and (~old).any()
    w = agent.source.weights()[: len(m)]
    assert torch.allclose(w[old], torch.full_like(w[old], 0.5)) and torch.allclose(w[~old], torch.ones_like(w[~old]))
    classes = m.y[: len(m)][old].unique()
    x_old = m.x[: len(m)][old & (m.y[: len(m)] == classes[0])]
    spread1 = (x_old - x_old.mean(0)).flatten(1).norm(dim=1).mean()
    assert spread1 < 0.3 * spread0  # two gist steps of 0.5 shrink within-class spread by ~4x


def test_latent_replay_freezes_the_lower_layers_and_stores_features(digits):
    agent = _agent(digits, latent_layer=1, memory_bytes=50_000, hidden=(32,))
    agent.learn(digits.experiences[0])
    lower = agent.learner.network[1].weight.clone()
    agent.learn(digits.experiences[1])
    assert torch.equal(agent.learner.network[1].weight, lower)
    assert agent.source.memory.x.shape[1:] == (32,)
    er = ExperienceReplay(stream=digits, config=ExperienceReplay.Config(**FAST, memory_bytes=50_000), seed=0)
    capacity = agent.source.memory.capacity
    assert capacity == 50_000 // (32 * 4 + 8) > 1.9 * er.memory.capacity  # half the width, twice the items


def test_cls_slow_learner_is_an_average_of_the_fast_one_predicts_and_is_counted(digits):
    agent = _agent(digits, cls_distill=1.0, cls_ema=0.9, memory_bytes=100_000)
    learner = agent.learner
    init = [p.clone() for p in learner.slow.parameters()]
    agent.learn(digits.experiences[0])
    agent.learn(digits.experiences[1])
    slow, fast = list(learner.slow.parameters()), list(learner.network.parameters())
    assert any(not torch.equal(s, i) for s, i in zip(slow, init))
    assert any(not torch.equal(s, f) for s, f in zip(slow, fast))
    x = digits.experiences[0].test_x
    assert torch.equal(agent.predict(x), learner.slow(x))
    parts = agent.state_bytes()
    assert parts["slow_network"] == module_bytes(learner.network) == 4 * (64 * 64 + 64 + 64 * 10 + 10)
    assert sum(parts.values()) <= 100_000
    er = _agent(digits, memory_bytes=100_000)
    assert agent.source.memory.capacity < er.source.memory.capacity  # the slow copy takes from the items


def test_a_replay_source_beats_naive_on_class_il_digits(digits):
    naive = run(RunSpec(stream="split-digits", agent="naive", agent_options=FAST), stream=digits)
    replay = run(
        RunSpec(stream="split-digits", agent="replay-gsemm", agent_options={**FAST, "memory_bytes": 40_000}),
        stream=digits,
    )
    assert replay.metrics["acc"] > naive.metrics["acc"] + 0.2
    assert replay.costs["replay_samples"] > 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"learner": "efpp"}, "Did you mean 'efp'"),
        ({"source": "gsem"}, "Did you mean 'gsemm'"),
        ({"schedule": "interleave"}, "Did you mean 'interleaved'"),
        ({"schedule": "sequence", "source": "buffer"}, "keeps an order"),
        ({"source": "gsemm", "priority": "loss"}, "priority"),
        ({"latent_layer": 3}, "latent_layer"),
        ({"learner": "sigprop", "latent_layer": 1}, "options of learner=backprop"),
        ({"learner": "sigprop", "free_steps": 3}, "'free_steps' is an option of learner efp"),
        ({"learner": "stdp", "src": True}, "sleep natively"),
        ({"src": True}, "tuned for 3 weight layers"),
        ({"learner": "efp", "src": True, "hidden": (64, 64)}, "ReLU units"),
        ({"learner": "efp", "source": "none", "schedule": "sleep"}, "nothing to do in sleep"),
        ({"memory_bytes": 10}, "holds no item"),
        ({"source": "gsemm", "memory_bytes": 100}, "memory_bytes=100"),
        ({"cls_distill": 1.0, "memory_bytes": 19_000}, "slow_network"),
    ],
)
def test_bad_options_are_refused_at_construction_in_one_line(digits, options, message):
    with pytest.raises(ConfigError, match=message) as caught:
        _agent(digits, **options)
    assert "\n" not in str(caught.value)


def test_an_unknown_learner_exits_2_with_one_line(tmp_path, capsys):
    from replaybench.cli import main

    code = main(["run", "--agent", "replay", "--stream", "split-digits", "-o", "learner=efpp", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Did you mean 'efp'" in err and len(err.splitlines()) == 1
