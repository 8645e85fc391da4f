"""Every metric formula against matrices worked by hand."""

import math

import pytest

from replaybench import metrics

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


def test_forgetting_max_uses_best_earlier_score():
    # j=0: max(0.9, 0.6) - 0.5 = 0.4 ; j=1: max(0.2, 0.8) - 0.7 = 0.1
    assert metrics.forgetting_max(R) == pytest.approx((0.4 + 0.1) / 2)


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


def test_single_experience_has_no_forgetting_or_transfer():
    assert metrics.forgetting_max([[0.7]]) == 0.0
    assert metrics.bwt([[0.7]]) == 0.0
    assert metrics.fwt([[0.7]], [0.1]) == 0.0


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
    assert all(math.isfinite(v) for k, v in s.items() if k != "average_accuracy_curve")
    assert set(metrics.HIGHER_IS_BETTER) <= set(s)


@pytest.mark.parametrize("bad", [[], [[1.0, 0.5]], [[[1.0]]]])
def test_non_square_matrices_are_refused(bad):
    with pytest.raises(ValueError):
        metrics.accuracy(bad)


def test_baseline_length_must_match():
    with pytest.raises(ValueError):
        metrics.fwt(R, [0.1])
