"""Sequence task generators: EMT variable binding and temporal flip-flops."""

from __future__ import annotations

import pytest
import torch

from replaybench.errors import ConfigError, ReplaybenchError
from replaybench.protocols import Stream
from replaybench.streams.sequence_tasks import (
    VB_TABLE1_TASK_IDS,
    flipflop_accuracies,
    flipflop_sequences,
    make_flipflop_periods,
    make_vb_compose,
    make_vb_repeat_copy,
    repeat_copy_task_id,
    score_sequence,
    sign_agreement,
    time_dependent_symbols,
    vb_operator,
    vb_sequences,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- variable binding --------------------------------------------------------------------


def test_repeat_copy_gives_x_t_minus_s() -> None:
    d, s, horizon = 3, 4, 9
    x, y, mask = vb_sequences(vb_operator(repeat_copy_task_id(d), d=d, s=s), n=5, horizon=horizon, generator=gen())
    assert x.shape == y.shape == (5, s + horizon, d)
    assert mask.tolist() == [False] * s + [True] * horizon
    assert (x[:, s:] == 0).all() and (y[:, :s] == 0).all()
    for t in range(s, s + horizon):  # y(t) = w(t - s), and w repeats the input with period s
        assert torch.equal(y[:, t], x[:, t % s])


def test_operator_worked_by_hand_d2_s2() -> None:
    # id1 = 0b0110 chooses positions 1 and 2: (slot 0, feature 1) and (slot 1, feature 0).
    # id2 = 1 swaps the two choices; id3 = 0b10 negates output feature 1.
    operator = vb_operator((0b0110, 1, 0b10), d=2, s=2)
    expected = torch.tensor([[0.0, 0.0], [0.0, -1.0], [1.0, 0.0], [0.0, 0.0]])
    assert torch.equal(operator, expected)
    # So y(t)[0] = w(t-1)[0] and y(t)[1] = -w(t-2)[1]; worked through by hand for one sequence:
    x, y, _ = vb_sequences(operator, n=1, horizon=3, generator=gen(3))
    w = [x[0, 0], x[0, 1]]
    for _ in range(3):
        w.append(torch.stack([w[-1][0], -w[-2][1]]))
    assert torch.equal(y[0, 2:], torch.stack(w[2:]))


def test_table1_t2_reads_feature_j_from_slot_j() -> None:
    operator = vb_operator(VB_TABLE1_TASK_IDS["T2"], d=8, s=8)
    rows = operator.abs().argmax(0)
    assert rows.tolist() == [j * 8 + j for j in range(8)]
    t3 = vb_operator(VB_TABLE1_TASK_IDS["T3"], d=8, s=8)
    assert (t3.abs().sum(0) == 1).all() and (t3 < 0).sum() == bin(189).count("1")


@pytest.mark.parametrize(
    "task_id, match",
    [((7, 0, 0), "exactly d=2"), ((0b0110, 2, 0), "Digit 1"), ((0b0110, 0, 4), "id3"), ((1, 2), "three ints")],
)
def test_bad_task_ids_are_refused(task_id: tuple, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        vb_operator(task_id, d=2, s=2)


def test_vb_compose_stream_and_score() -> None:
    stream = make_vb_compose(horizon=8, n_train=16, n_test=8)
    assert isinstance(stream, Stream) and stream.scenario == "sequence"
    assert [e.info["task"] for e in stream.experiences] == ["T1", "T2", "T3", "T4"]
    exp = stream.experiences[2]
    assert score_sequence(exp, exp.test_y) == 1.0
    assert score_sequence(exp, -exp.test_y) == 0.0
    # Only the output phase counts: garbage in the input phase changes nothing.
    noisy = exp.test_y.clone()
    noisy[:, :8] = torch.randn(8, 8, 8)
    assert score_sequence(exp, noisy) == 1.0
    flipped = exp.test_y.clone()
    flipped[:, 8:, 0] *= -1
    assert sign_agreement(flipped, exp.test_y, exp.info["output_mask"]) == pytest.approx(7 / 8)
    with pytest.raises(ReplaybenchError, match=r"Expected outputs of shape \[N, T, ...\] = \(8, 16\)"):
        score_sequence(exp, exp.test_y[:, :3])


def test_fingerprints_are_content_hashes() -> None:
    a = make_vb_repeat_copy(d=4, s=4, horizons=(4, 8), n_train=8, n_test=4, seed=1)
    b = make_vb_repeat_copy(d=4, s=4, horizons=(4, 8), n_train=8, n_test=4, seed=1)
    c = make_vb_repeat_copy(d=4, s=4, horizons=(4, 8), n_train=8, n_test=4, seed=2)
    d = make_vb_repeat_copy(d=4, s=4, horizons=(4, 8), n_train=8, n_test=4, seed=1, version="2")
    assert a.fingerprint == b.fingerprint != c.fingerprint != d.fingerprint != a.fingerprint
    assert a.describe()["tasks"] == ["repeat-copy@4", "repeat-copy@8"] and a.describe()["output_size"] == 4
    assert [e.train_x.shape[1] for e in a.experiences] == [8, 12]


def test_stream_builders_refuse_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="'d' parameter of vb-compose"):
        make_vb_compose(d=0)
    with pytest.raises(ConfigError, match="tasks"):
        make_vb_compose(tasks=("T9",))
    with pytest.raises(ConfigError, match="horizons"):
        make_vb_repeat_copy(horizons=(10, -1))


# --- flip-flops --------------------------------------------------------------------------


def test_time_of_day_transition_table() -> None:
    seq = flipflop_sequences(n=2000, length=12, period=6, generator=gen())
    table = {}
    prev = torch.cat([torch.zeros(2000, 1, dtype=torch.long), seq.states[:, :-1]], dim=1)
    for theta, state, symbol, nxt in zip(
        seq.clock.flatten().tolist(),
        prev.flatten().tolist(),
        seq.symbols.flatten().tolist(),
        seq.states.flatten().tolist(),
    ):
        table.setdefault((theta, state, symbol), set()).add(nxt)
    for state in range(3):
        # day: a→1, b→2, c→3; night: a→1, b→3, c→2; null keeps the state (states 1..3 as 0..2)
        assert table[(0, state, 0)] == {0} and table[(0, state, 1)] == {1} and table[(0, state, 2)] == {2}
        assert table[(1, state, 0)] == {0} and table[(1, state, 1)] == {2} and table[(1, state, 2)] == {1}
        assert table[(0, state, -1)] == {state} == table[(1, state, -1)]
    assert seq.clock[0].tolist() == [0, 0, 0, 1, 1, 1] * 2
    assert time_dependent_symbols().tolist() == [False, True, True]


def test_symbol_frequencies_and_encoding() -> None:
    seq = flipflop_sequences(n=500, length=40, generator=gen(1))
    frequencies = torch.bincount(seq.symbols.flatten() + 1, minlength=4).float() / seq.symbols.numel()
    assert torch.allclose(frequencies, torch.tensor([0.1, 0.3, 0.3, 0.3]), atol=0.01)
    present = seq.symbols >= 0
    assert torch.equal(seq.x[present].argmax(-1), seq.symbols[present]) and (seq.x[~present] == 0).all()


def test_relative_timing_clock() -> None:
    seq = flipflop_sequences(n=50, length=30, clock="relative", tau=2, null_prob=0.5, generator=gen(2))
    for row_symbols, row_clock in zip(seq.symbols.tolist(), seq.clock.tolist()):
        last = -1
        for t, (symbol, theta) in enumerate(zip(row_symbols, row_clock)):
            assert theta == int(t - last > 2)
            if symbol >= 0:
                last = t
    assert 0 < seq.clock.float().mean() < 1


def test_flipflop_stream_and_ti_td_scores() -> None:
    stream = make_flipflop_periods(periods=(6, 4), length=24, n_train=8, n_test=64)
    assert [e.info["period"] for e in stream.experiences] == [6, 4]
    exp = stream.experiences[0]
    perfect = torch.nn.functional.one_hot(exp.test_y, 3).float()
    assert flipflop_accuracies(exp, perfect) == {"accuracy": 1.0, "ti_accuracy": 1.0, "td_accuracy": 1.0}
    # A clock-blind guesser that always uses the day rule: TI stays perfect, TD drops.
    symbol = torch.where(exp.test_x.sum(-1) > 0, exp.test_x.argmax(-1), -1)
    day_guess = perfect.clone()
    day_guess[symbol >= 0] = torch.nn.functional.one_hot(symbol[symbol >= 0], 3).float()
    scores = flipflop_accuracies(exp, day_guess)
    assert scores["ti_accuracy"] == 1.0 and 0.3 < scores["td_accuracy"] < 0.7
    assert score_sequence(exp, day_guess) == scores["accuracy"] < 1.0
