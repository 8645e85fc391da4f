"""Replay for the sequence agents (agents/sequence.py): ``source``, ``memory_bytes``, ``replay_batch_size``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from replaybench.agents.sequence import (
    ElmanAgent,
    LSTMAgent,
    SequenceShares,
    SequenceWave,
    WaveLBCAgent,
    WaveSBCAgent,
)
from replaybench.errors import ConfigError
from replaybench.metrics import forgetting_max
from replaybench.runner import RunSpec, run
from replaybench.streams.sequence_tasks import make_flipflop_periods, make_vb_compose, make_vb_repeat_copy

SMALL = {
    ElmanAgent: {"hidden": 16},
    LSTMAgent: {"hidden": 16},
    WaveLBCAgent: {"slots": 4, "features": 4},
    WaveSBCAgent: {"slots": 4, "features": 4, "heads": 2},
}


@pytest.fixture(scope="module")
def horizons():
    """Repeat copy at three horizons: the experiences' sequences have 6, 8 and 10 steps."""
    return make_vb_repeat_copy(d=4, s=4, horizons=(2, 4, 6), n_train=32, n_test=8)


@pytest.fixture(scope="module")
def compose():
    """EMT's T1 then T2 (d = s = 8), short horizon: a stream on which the agents forget T1."""
    return make_vb_compose(tasks=("T1", "T2"), horizon=4, n_train=256, n_test=64)


def _todays_learn(agent, experience) -> None:
    """The training loop as it was before replay (a copy of the old ``train_updates``)."""
    x_all, y_all = experience.train_x, experience.train_y
    mask = experience.info["output_mask"]
    agent.core.train()
    for _ in range(agent.config.updates):
        idx = torch.randint(len(x_all), (agent.config.batch_size,), generator=agent.generator)
        loss = agent.sequence_loss(agent.core(x_all[idx]), y_all[idx], mask)
        agent.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(agent.core.parameters(), agent.config.grad_clip)
        agent.optimizer.step()


@pytest.mark.parametrize("cls", list(SMALL))
@pytest.mark.parametrize("family", ["vb", "flipflop"])
def test_source_none_is_todays_agent(cls, family, horizons):
    stream = horizons if family == "vb" else make_flipflop_periods(periods=(6, 4), length=10, n_train=32, n_test=8)
    config = cls.Config(updates=10, batch_size=8, **SMALL[cls])
    assert config.source == "none"
    agent, reference = cls(stream=stream, config=config, seed=5), cls(stream=stream, config=config, seed=5)
    for experience in stream.experiences:
        stats = agent.learn(experience)
        _todays_learn(reference, experience)
        assert stats["replay_samples"] == 0 and "replay_stored" not in stats
    for experience in stream.experiences:
        assert torch.equal(agent.predict(experience.test_x), reference.predict(experience.test_x))
    assert agent.memory is None and agent.state_bytes() == {}


def test_the_first_experience_is_learned_alike_by_every_source(horizons):
    """The memory draws from its own generator, so replay changes nothing before there is something to replay."""
    first = horizons.experiences[0]
    outputs = []
    for source in ("none", "buffer", "wave"):
        agent = ElmanAgent(stream=horizons, config=ElmanAgent.Config(updates=10, hidden=8, source=source), seed=1)
        agent.learn(first)
        outputs.append(agent.predict(first.test_x))
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


@pytest.mark.parametrize(
    "agent, options",
    [
        ("elman", {"hidden": 32, "lr": 3e-3}),
        ("wave-lbc", {"slots": 8, "features": 8}),
    ],
)
@pytest.mark.parametrize("source", ["buffer", "wave"])
def test_replay_reduces_forgetting(agent, options, source, compose):
    """T1 then T2, 150 updates of 32 each, 50,000 bytes (65 stored sequences; the wave 64).

    Measured (seed 0; seeds 1 and 2 alike), R[1][0] = T1 after T2 and forgetting_max:

    ========  ======  =================  =================  =================
    agent     R[0,0]  none               buffer             wave
    ========  ======  =================  =================  =================
    elman     0.680   0.546, F = 0.134   0.658, F = 0.022   0.645, F = 0.035
    wave-lbc  1.000   0.560, F = 0.440   0.765, F = 0.235   0.767, F = 0.233
    ========  ======  =================  =================  =================

    T2's accuracy falls with replay (elman 0.773 -> 0.728, wave-lbc 0.913 -> 0.745): the same
    updates now serve both tasks.
    """
    results = {}
    for src in ("none", source):
        spec = RunSpec(
            stream=compose.name,
            agent=agent,
            agent_options={**options, "updates": 150, "batch_size": 32, "source": src, "memory_bytes": 50_000},
        )
        results[src] = run(spec, stream=compose)
    before, after = results["none"], results[source]
    assert before.R[0] == after.R[0]  # nothing to replay while T1 is learned
    assert forgetting_max(after.R) <= forgetting_max(before.R) - 0.08
    assert after.R[1][0] >= before.R[1][0] + 0.08
    assert before.costs["replay_samples"] == 0 and after.costs["replay_samples"] == 150 * 32  # during T2 only


def _rows_of(experience, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether every (x, y) pair is one of the experience's training sequences."""
    train = torch.cat([experience.train_x.flatten(1), experience.train_y.flatten(1).float()], dim=1)
    held = torch.cat([x.flatten(1), y.flatten(1).float()], dim=1)
    return bool((held[:, None] == train[None]).all(-1).any(-1).all())


def test_wave_holds_only_the_latest_experience_within_budget(horizons):
    budget = 10 * (4 * 2 * 10 * 4 + 8) + 10  # ten slots of the longest experience, and its mask
    config = ElmanAgent.Config(updates=5, batch_size=4, hidden=8, source="wave", memory_bytes=budget)
    agent = ElmanAgent(stream=horizons, config=config, seed=0)
    for experience in horizons.experiences:
        stats = agent.learn(experience)
        wave = agent.memory.source
        rows, labels = wave.items()
        length = experience.train_x.shape[1]
        assert (labels == experience.index).all() and wave.filled == wave.slots < len(experience.train_x)
        assert stats["replay_stored"] == wave.slots
        x = rows[:, : length * 4].view(-1, length, 4)
        y = rows[:, length * 4 :].view(-1, length, 4)
        assert _rows_of(experience, x, y)
        assert sum(agent.state_bytes().values()) <= budget
        assert stats["replay_samples"] == (0 if experience.index == 0 else 5 * 4)
    ((x, y, mask),) = agent.memory.draw(6)
    last = horizons.experiences[-1]
    assert x.shape == y.shape == (6, 10, 4) and torch.equal(mask, last.info["output_mask"])
    assert _rows_of(last, x, y)


def test_wave_keeps_integer_targets_exact():
    stream = make_flipflop_periods(periods=(6, 4), length=10, n_train=16, n_test=4)
    wave = SequenceWave(budget_bytes=100_000, generator=torch.Generator().manual_seed(0))
    experience = stream.experiences[1]
    wave.add(experience.train_x, experience.train_y, experience.info["output_mask"], experience.index)
    ((x, y, _),) = wave.draw(8)
    assert y.dtype == torch.long and _rows_of(experience, x, y)


def test_buffer_keeps_equal_shares_of_every_experience(horizons):
    budget = 12_000  # shares of 3,992 bytes: 20, 15 and 12 of the 32 sequences of each experience
    config = ElmanAgent.Config(updates=5, batch_size=4, hidden=8, source="buffer", memory_bytes=budget)
    agent = ElmanAgent(stream=horizons, config=config, seed=0)
    for experience in horizons.experiences:
        agent.learn(experience)
    memory = agent.memory
    assert memory.experiences == [0, 1, 2]
    share = (budget - sum(len(e.info["output_mask"]) for e in horizons.experiences)) // 3
    for (x, y, mask), experience in zip(memory.groups, horizons.experiences):
        per_sequence = SequenceShares.sequence_bytes(x[0], y[0])
        assert len(x) == min(len(experience.train_x), share // per_sequence) < len(experience.train_x)
        assert torch.equal(mask, experience.info["output_mask"]) and _rows_of(experience, x, y)
    draws = memory.draw(64)
    assert sum(len(x) for x, _, _ in draws) == 64
    assert [x.shape[1] for x, _, _ in draws] == [6, 8, 10]  # one group per experience, each at its own length
    assert torch.isfinite(agent.replay_loss(draws))


def test_state_bytes_is_the_memory(horizons):
    for source in ("buffer", "wave"):
        config = ElmanAgent.Config(updates=2, batch_size=4, hidden=8, source=source, memory_bytes=5_000)
        spec = RunSpec(stream=horizons.name, agent="elman", agent_options=_options(config))
        costs = run(spec, stream=horizons).costs
        agent = ElmanAgent(stream=horizons, config=config, seed=0)
        for experience in horizons.experiences:
            agent.learn(experience)
        parts = agent.state_bytes()
        if source == "buffer":
            groups = agent.memory.groups
            assert parts["replay_sequences"] == sum(x.nbytes + y.nbytes for x, y, _ in groups)
            assert parts["replay_masks"] == sum(len(mask) for _, _, mask in groups)
        else:
            wave = agent.memory.source
            assert parts["replay_sequences"] == wave.filled * (4 * wave.n_features + 8) == wave.nbytes
            assert parts["replay_masks"] == len(horizons.experiences[-1].info["output_mask"])
        totals = [p["state_bytes"] for p in costs["per_experience"]]
        assert totals[-1] == sum(parts.values()) > 0 and costs["state_bytes"] == max(totals) <= 5_000


def _options(config) -> dict:
    return {k: v for k, v in config.to_dict().items() if v is not None}


def test_a_budget_that_holds_no_sequence_is_refused_in_one_line(horizons):
    # The longest sequence (10 steps of 4 inputs and 4 targets) and its mask: 320 + 10 bytes; the wave adds a label.
    for source, need in (("buffer", 330), ("wave", 338)):
        config = ElmanAgent.Config(source=source, memory_bytes=need - 1)
        with pytest.raises(ConfigError, match=f"memory_bytes={need - 1} holds no sequence") as caught:
            ElmanAgent(stream=horizons, config=config, seed=0)
        assert "\n" not in str(caught.value) and f"needs {need} bytes" in str(caught.value)
        ElmanAgent(stream=horizons, config=ElmanAgent.Config(source=source, memory_bytes=need), seed=0)


def test_an_unknown_source_gets_the_standard_error():
    with pytest.raises(ConfigError) as caught:
        WaveLBCAgent.Config.from_dict({"source": "bufer"})
    assert str(caught.value) == (
        "The 'source' parameter of WaveLBCAgent must be one of 'none', 'buffer', 'wave'. "
        "Got 'bufer' instead. Did you mean 'buffer'?"
    )
    with pytest.raises(ConfigError, match="'replay_batch_size' parameter of ElmanAgent"):
        ElmanAgent.Config(replay_batch_size=0)
