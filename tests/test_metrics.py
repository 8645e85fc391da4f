"""Every metric formula against matrices worked by hand."""

import math

import numpy as np
import pytest

from replaybench import metrics
from replaybench.errors import DivergenceError

# T = 3. Rows: after learning experience i; columns: evaluated on j.
R = [
    [0.9, 0.2, 0.1],
    [0.6, 0.8, 0.3],
    [0.5, 0.7, 0.9],
]
B = [0.1, 0.1, 0.2]


def test_accuracy_is_mean_of_last_row():
    assert metrics.accuracy(R) == pytest.approx((0.5 + 0.7 + 0.9) / 3)


def test_average_accuracy_after_k():
    assert metrics.average_accuracy(R, 1) == pytest.approx(0.9)
    assert metrics.average_accuracy(R, 2) == pytest.approx((0.6 + 0.8) / 2)
    assert metrics.average_accuracy_curve(R) == pytest.approx([0.9, 0.7, 0.7])


def test_forgetting_max_uses_best_score_once_learned():
    # j=0: max(R[0][0], R[1][0]) - R[2][0] = 0.9 - 0.5 ; j=1: R[1][1] - R[2][1] = 0.8 - 0.7 (R[0][1] not counted)
    assert metrics.forgetting_max(R) == pytest.approx((0.4 + 0.1) / 2)


def test_forgetting_max_ignores_zero_shot_accuracy_before_the_task_was_learned():
    # Experience 1 scores 0.8 zero-shot (row 0, before it is learned), 0.6 once learned (row 1), 0.5 at the end.
    # Experience 0 peaks after it was learned (0.95 in row 1), which does count.
    r = [
        [0.9, 0.8, 0.1],
        [0.95, 0.6, 0.2],
        [0.4, 0.5, 0.9],
    ]
    # Rows j <= l < T only: j=0: 0.95 - 0.4 ; j=1: 0.6 - 0.5 (the 0.8 zero-shot score is not forgetting)
    assert metrics.forgetting_max(r) == pytest.approx((0.55 + 0.1) / 2)
    # The former definition, max over every earlier row, counts it: j=1: 0.8 - 0.5
    assert metrics.forgetting_max_all_rows(r) == pytest.approx((0.55 + 0.3) / 2)
    assert metrics.forgetting_first_last(r) == pytest.approx((0.5 + 0.1) / 2)


def test_forgetting_max_is_at_least_first_last_forgetting():
    rng = np.random.default_rng(0)
    for t in range(2, 7):
        for _ in range(20):
            r = rng.uniform(size=(t, t))
            explicit = np.mean([max(r[l, j] for l in range(j, t - 1)) - r[-1, j] for j in range(t - 1)])
            assert metrics.forgetting_max(r) == pytest.approx(explicit)
            assert metrics.forgetting_max(r) >= metrics.forgetting_first_last(r) - 1e-12
            assert metrics.forgetting_max_all_rows(r) >= metrics.forgetting_max(r) - 1e-12


def test_forgetting_first_last_uses_score_right_after_learning():
    # j=0: 0.9 - 0.5 = 0.4 ; j=1: 0.8 - 0.7 = 0.1
    assert metrics.forgetting_first_last(R) == pytest.approx(0.25)


def test_the_two_forgetting_definitions_differ_when_a_task_improves_later():
    # Experience 0 scores 0.5 right after learning, peaks at 0.9, ends at 0.4.
    r = [[0.5, 0.0, 0.0], [0.9, 0.9, 0.0], [0.4, 0.9, 0.9]]
    assert metrics.forgetting_max(r) == pytest.approx(((0.9 - 0.4) + 0.0) / 2)
    assert metrics.forgetting_first_last(r) == pytest.approx(((0.5 - 0.4) + 0.0) / 2)


def test_bwt_is_negative_first_last_forgetting():
    assert metrics.bwt(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert metrics.bwt(R) == pytest.approx(-metrics.forgetting_first_last(R))


def test_fwt_compares_the_score_before_learning_with_the_untrained_baseline():
    # j=1: R[0][1] - b1 = 0.2 - 0.1 ; j=2: R[1][2] - b2 = 0.3 - 0.2
    assert metrics.fwt(R, B) == pytest.approx(0.1)


def test_plasticity_is_mean_diagonal():
    assert metrics.plasticity(R) == pytest.approx((0.9 + 0.8 + 0.9) / 3)


def test_intransigence_against_joint_diagonal():
    joint = [[0.95, 0, 0], [0, 0.9, 0], [0, 0, 0.85]]
    assert metrics.intransigence(R, joint) == pytest.approx(((0.95 - 0.9) + (0.9 - 0.8) + (0.85 - 0.9)) / 3)


def test_single_experience_leaves_forgetting_and_transfer_undefined():
    one = [[0.7]]
    assert metrics.forgetting_max(one) is None
    assert metrics.forgetting_max_all_rows(one) is None
    assert metrics.forgetting_first_last(one) is None
    assert metrics.bwt(one) is None
    assert metrics.fwt(one, [0.1]) is None
    s = metrics.summarize(one, [0.1], joint_R=[[0.9]])
    assert {k: s[k] for k in ("forgetting_max", "forgetting_first_last", "bwt", "fwt")} == dict.fromkeys(
        ("forgetting_max", "forgetting_first_last", "bwt", "fwt")
    )
    # What one experience does define is still a number.
    assert s["acc"] == pytest.approx(0.7) and s["plasticity"] == pytest.approx(0.7)
    assert s["intransigence"] == pytest.approx(0.2) and s["average_accuracy_curve"] == pytest.approx([0.7])


def test_two_experiences_define_every_metric():
    s = metrics.summarize([[0.9, 0.3], [0.6, 0.8]], [0.1, 0.2])
    assert s["forgetting_max"] == pytest.approx(0.3) and s["bwt"] == pytest.approx(-0.3)
    assert s["fwt"] == pytest.approx(0.3 - 0.2)


def test_fwt_is_undefined_on_class_il_streams_only():
    assert metrics.summarize(R, B, scenario="class-il")["fwt"] is None
    for scenario in ("domain-il", "task-il", "unsupervised", "rl", "sequence", None):
        assert metrics.summarize(R, B, scenario=scenario)["fwt"] == pytest.approx(0.1), scenario
    # The other metrics do not depend on the scenario.
    class_il, domain_il = metrics.summarize(R, B, scenario="class-il"), metrics.summarize(R, B, scenario="domain-il")
    assert {k: v for k, v in class_il.items() if k != "fwt"} == {k: v for k, v in domain_il.items() if k != "fwt"}


@pytest.mark.parametrize(
    ("r", "b", "joint", "entry"),
    [
        ([[0.9, 0.2, 0.1], [0.6, 0.8, math.nan], [0.5, 0.7, 0.9]], B, None, r"R\[1\]\[2\] = nan"),
        (R, [0.1, math.inf, 0.2], None, r"baseline\[1\] = inf"),
        (R, B, [[0.9, 0, 0], [0, -math.inf, 0], [0, 0, 0.9]], r"joint R\[1\]\[1\] = -inf"),
    ],
)
def test_non_finite_scores_are_refused_naming_the_entry(r, b, joint, entry):
    with pytest.raises(metrics.NonFiniteScoreError, match=entry) as caught:
        metrics.summarize(r, b, joint_R=joint)
    # One line, and both a user-facing divergence (exit 2, sweeps record "nan") and a ValueError.
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, DivergenceError) and isinstance(caught.value, ValueError)


def test_require_finite_passes_finite_scores_and_names_rows():
    metrics.require_finite([0.1, 0.2], "R[0]")
    with pytest.raises(metrics.NonFiniteScoreError, match=r"^R\[3\]\[1\] = nan \(agent 'x' evaluated"):
        metrics.require_finite([0.1, math.nan], "R[3]", context="agent 'x' evaluated after experience 3")


def test_t_interval_leaves_undefined_values_out():
    assert metrics.t_interval([0.70, None, 0.74, None]) == pytest.approx(metrics.t_interval([0.70, 0.74]))
    assert metrics.t_interval([0.70, None, math.nan]) == (0.70, pytest.approx(math.nan, nan_ok=True))
    mean, half = metrics.t_interval([None, None])
    assert math.isnan(mean) and math.isnan(half)


def test_summarize_names_every_metric():
    s = metrics.summarize(R, B, joint_R=R)
    assert set(s) >= {
        "acc",
        "forgetting_max",
        "forgetting_first_last",
        "bwt",
        "fwt",
        "plasticity",
        "average_accuracy_curve",
        "intransigence",
    }
    assert all(v is not None and math.isfinite(v) for k, v in s.items() if k != "average_accuracy_curve")
    assert set(metrics.HIGHER_IS_BETTER) <= set(s)


@pytest.mark.parametrize("bad", [[], [[1.0, 0.5]], [[[1.0]]]])
def test_non_square_matrices_are_refused(bad):
    with pytest.raises(ValueError):
        metrics.accuracy(bad)


def test_baseline_length_must_match():
    with pytest.raises(ValueError):
        metrics.fwt(R, [0.1])
