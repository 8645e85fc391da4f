"""Traveling-wave working memory: lattice dynamics, LBC, SBC, and the sequence agents."""

from __future__ import annotations

import math

import pytest
import torch

from replaybench.agents.sequence import ElmanAgent, LSTMAgent, WaveLBCAgent, WaveSBCAgent
from replaybench.errors import ConfigError
from replaybench.memories.wave import WaveLattice
from replaybench.streams.sequence_tasks import make_flipflop_periods, make_vb_repeat_copy, score_sequence


def test_copy_boundary_stores_any_sequence_for_exactly_s_steps() -> None:
    s, d, T = 5, 3, 13
    drive = torch.randn(4, T, d, generator=torch.Generator().manual_seed(0))
    states = WaveLattice(slots=s, features=d, boundary="copy")(drive)
    for t in range(T):
        for slot in range(s):
            age = s - 1 - slot  # slot s-1 holds the newest drive, slot 0 the one from s-1 steps ago
            expected = drive[:, t - age] if t - age >= 0 else torch.zeros(4, d)
            assert torch.equal(states[:, t, slot], expected)


def test_copy_lattice_gradient_is_flat_until_s_then_zero() -> None:
    s, d = 6, 2
    drive = torch.randn(1, 2 * s, d, requires_grad=True)
    states = WaveLattice(slots=s, features=d, boundary="copy")(drive)
    norms = []
    for horizon in range(2 * s):
        (grad,) = torch.autograd.grad(states[:, horizon].sum(), drive, retain_graph=True)
        norms.append(grad[:, 0].norm().item())
    assert norms[:s] == pytest.approx([math.sqrt(d)] * s) and norms[s:] == [0.0] * s


@pytest.mark.parametrize("order", [2, 3, 5])
def test_lbc_companion_reproduces_generalised_fibonacci(order: int) -> None:
    d, steps = 2, 30
    lattice = WaveLattice(slots=order, features=d, boundary="linear").double()
    with torch.no_grad():  # f = sum of every slot: w(t) = w(t-1) + ... + w(t-order)
        lattice.boundary.weight.copy_(torch.eye(d, dtype=torch.float64).repeat(1, order))
    seeds = [[1, 2], [0, 1], [3, 1], [1, 1], [2, 0]][:order]
    series = [list(v) for v in seeds]
    for _ in range(steps):
        series.append([sum(series[-k][j] for k in range(1, order + 1)) for j in range(d)])
    start = torch.tensor(seeds, dtype=torch.float64).unsqueeze(0)
    states = lattice(torch.zeros(1, steps, d, dtype=torch.float64), start)
    assert states[0, :, -1].tolist() == series[order:]  # exact integers in float64
    # The same numbers through the block companion matrix: v(t) = A^t v(0).
    A = lattice.boundary.companion_matrix()
    v = start.flatten()
    for t in range(steps):
        v = A @ v
        assert torch.equal(v, states[0, t].flatten())
    # Its spectral radius is the recurrence's growth rate (the golden ratio for order 2).
    growth = torch.linalg.eigvals(A).abs().max().item()
    assert growth == pytest.approx(series[-1][1] / series[-2][1], rel=1e-6)
    if order == 2:
        assert growth == pytest.approx((1 + math.sqrt(5)) / 2)


def test_lbc_is_a_linear_rnn_with_drive_into_the_last_block() -> None:
    s, d = 4, 3
    lattice = WaveLattice(slots=s, features=d, boundary="linear", bias=True)
    drive = torch.randn(2, 6, d)
    states = lattice(drive)
    A = lattice.boundary.companion_matrix()
    b = torch.cat([torch.zeros((s - 1) * d), lattice.boundary.map.bias])
    v = torch.zeros(2, s * d)
    for t in range(6):
        v = v @ A.T + b + torch.cat([torch.zeros(2, (s - 1) * d), drive[:, t]], dim=1)
        assert torch.allclose(v, states[:, t].flatten(1), atol=1e-6)


@pytest.mark.parametrize("heads, position_bias", [(1, False), (2, True)])
def test_sbc_step_equals_attention_only_transformer_step(heads: int, position_bias: bool) -> None:
    torch.manual_seed(0)
    s, d, batch, steps = 5, 4, 3, 7
    lattice = WaveLattice(slots=s, features=d, boundary="attention", heads=heads, position_bias=position_bias)
    sbc = lattice.boundary
    if position_bias:
        with torch.no_grad():
            sbc.position_bias.normal_()
    transformer = torch.nn.MultiheadAttention(d, heads, bias=False, batch_first=True)
    with torch.no_grad():
        transformer.in_proj_weight.copy_(torch.cat([sbc.query.weight, sbc.key.weight, sbc.value.weight]))
        transformer.out_proj.weight.copy_(sbc.out.weight)
    # Autoregressive loop: the last s tokens are the context, the newest token queries, the output is appended.
    tokens = torch.randn(batch, s, d)
    states = lattice(torch.zeros(batch, steps, d), tokens.clone())
    for t in range(steps):
        context = tokens[:, -s:]
        mask = sbc.position_bias.detach().repeat(batch, 1).unsqueeze(1)  # [B*heads, 1, s], added to scores
        nxt, _ = transformer(context[:, -1:], context, context, attn_mask=mask, need_weights=False)
        tokens = torch.cat([tokens, nxt], dim=1)
        assert torch.allclose(states[:, t], tokens[:, -s:], atol=1e-5)


def test_lattice_is_trainable_by_backpropagation_through_time() -> None:
    # Learn the Fibonacci boundary (f = slot 1 + slot 2) from sequences alone.
    torch.manual_seed(1)
    lattice = WaveLattice(slots=2, features=1, boundary="linear")
    opt = torch.optim.Adam(lattice.parameters(), lr=0.05)
    for _ in range(300):
        start = torch.randn(32, 2, 1)
        target = [start[:, 0], start[:, 1]]
        for _ in range(4):
            target.append(target[-1] + target[-2])
        states = lattice(torch.zeros(32, 4, 1), start)
        loss = ((states[:, :, -1] - torch.stack(target[2:], 1)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.allclose(lattice.boundary.weight, torch.ones(1, 2), atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"slots": 0, "features": 4}, "The 'slots' parameter of WaveLattice must be an int in the range"),
        ({"slots": 4, "features": -2}, "'features' parameter of WaveLattice"),
        ({"slots": 4, "features": 4, "boundary": "cyclic"}, "'boundary'"),
        ({"slots": 4, "features": 6, "boundary": "attention", "heads": 4}, "must divide features=6"),
    ],
)
def test_bad_lattice_config_is_a_one_line_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        WaveLattice(**kwargs)
    assert "\n" not in str(info.value)


def test_drive_width_must_match_features() -> None:
    with pytest.raises(ConfigError, match=r"must have shape \[B, T, 4\]. Got \(2, 3, 5\) instead."):
        WaveLattice(slots=3, features=4)(torch.zeros(2, 3, 5))


# --- agents --------------------------------------------------------------------------------


def test_wave_lbc_agent_learns_repeat_copy() -> None:
    torch.manual_seed(0)
    stream = make_vb_repeat_copy(d=4, s=4, horizons=(8,), n_train=512, n_test=128)
    exp = stream.experiences[0]
    config = WaveLBCAgent.Config(slots=4, features=4, lr=0.03, batch_size=32, updates=200)
    agent = WaveLBCAgent(stream=stream, config=config, seed=0)
    before = score_sequence(exp, agent.predict(exp.test_x))
    agent.learn(exp)
    after = score_sequence(exp, agent.predict(exp.test_x))
    assert before < 0.75 and after >= 0.97


@pytest.mark.parametrize("cls", [ElmanAgent, LSTMAgent, WaveLBCAgent, WaveSBCAgent])
def test_agents_are_deterministic_and_learn_flipflops(cls: type) -> None:
    stream = make_flipflop_periods(periods=(6,), length=12, n_train=256, n_test=64)
    exp = stream.experiences[0]
    options = (
        {"hidden": 16}
        if cls in (ElmanAgent, LSTMAgent)
        else {"slots": 6, "features": 4, "heads": 2}
        if cls is WaveSBCAgent
        else {"slots": 6, "features": 4}
    )
    config = cls.Config(updates=40, lr=0.01, bias=True, **options)
    outputs = []
    for _ in range(2):
        agent = cls(stream=stream, config=config, seed=3)
        before = score_sequence(exp, agent.predict(exp.test_x))
        stats = agent.learn(exp)
        outputs.append(agent.predict(exp.test_x))
    assert torch.equal(outputs[0], outputs[1]) and outputs[0].shape == (64, 12, 3)
    assert stats["updates"] == 40 and score_sequence(exp, outputs[0]) > max(before, 0.6)


def test_agent_config_refuses_unknown_and_bad_options() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'slots'"):
        WaveLBCAgent.Config.from_dict({"slot": 4})
    with pytest.raises(ConfigError, match="'slots' parameter of WaveLBCAgent"):
        WaveLBCAgent.Config(slots=0)


def test_runner_trains_and_scores_a_wave_agent_on_a_sequence_stream() -> None:
    from replaybench.runner import RunSpec, run

    spec = RunSpec(
        stream="replaybench.streams.sequence_tasks:make_vb_repeat_copy",
        agent="replaybench.agents.sequence:WaveLBCAgent",
        stream_options={"d": 4, "s": 4, "horizons": [4, 8], "n_train": 256, "n_test": 64},
        agent_options={"slots": 4, "features": 4, "lr": 0.03, "batch_size": 32, "updates": 100},
    )
    result = run(spec)
    R = torch.tensor(result.R)
    assert R.shape == (2, 2) and (R[-1] > 0.9).all()


@pytest.mark.parametrize("boundary", ["linear", "attention"])
def test_zero_boundary_turns_the_lattice_into_a_delay_line(boundary: str) -> None:
    drive = torch.randn(2, 9, 4)
    lattice = WaveLattice(slots=3, features=4, boundary=boundary, bias=boundary == "linear", heads=2)
    assert not torch.equal(lattice(drive), WaveLattice(slots=3, features=4, boundary="copy")(drive))
    lattice.zero_boundary()
    assert torch.equal(lattice(drive), WaveLattice(slots=3, features=4, boundary="copy")(drive))
    assert all(p.requires_grad for name, p in lattice.boundary.named_parameters() if name != "position_bias")
