"""RL metrics: normalised returns and Continual World's forward transfer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from replaybench import metrics
from replaybench.rl_metrics import curve_auc, episode_curve_on_grid, forward_transfer_auc, normalised_return


def test_normalised_return_divides_by_the_maximum_or_spans_the_bounds():
    np.testing.assert_allclose(normalised_return([0, 100, 200], max_return=200.0), [0.0, 0.5, 1.0])
    # Acrobot: -500 (never swung up) is 0, 0 is 1.
    np.testing.assert_allclose(normalised_return([-500, -100], max_return=0.0, min_return=-500.0), [0.0, 0.8])
    with pytest.raises(ValueError):
        normalised_return(1.0, max_return=1.0, min_return=1.0)


def test_forward_transfer_matches_the_continual_world_formula():
    curve, reference = [0.2, 0.6, 1.0], [0.0, 0.4, 0.8]
    auc, auc_b = np.mean(curve), np.mean(reference)
    assert curve_auc(curve) == pytest.approx(0.6)
    assert forward_transfer_auc(curve, reference) == pytest.approx((auc - auc_b) / (1 - auc_b))
    assert forward_transfer_auc(reference, reference) == 0.0
    assert forward_transfer_auc([0.0, 0.0, 0.0], reference) < 0  # slower than from scratch
    assert math.isnan(forward_transfer_auc([1.0, 1.0], [1.0, 1.0]))
    with pytest.raises(ValueError):
        forward_transfer_auc([0.1, 0.2], [0.1, 0.2, 0.3])


def test_episode_curve_holds_the_last_finished_episode():
    episodes = [(30, 30.0), (130, 100.0), (330, 200.0)]
    grid = episode_curve_on_grid(episodes, step_budget=400, n_points=4, max_return=200.0)
    # Grid steps 100, 200, 300, 400.
    np.testing.assert_allclose(grid, [0.15, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(episode_curve_on_grid([], step_budget=10, n_points=2, max_return=1.0), [0, 0])


def test_continual_world_forgetting_and_ap_are_the_shared_formulas():
    # p_i(t) rows: after task 0, after task 1.
    R = [[0.9, 0.1], [0.2, 0.8]]
    assert metrics.accuracy(R) == pytest.approx(0.5)  # AP
    assert metrics.forgetting_first_last(R) == pytest.approx(0.7)  # p_0(0) - p_0(T)
