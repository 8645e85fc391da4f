"""Reinforcement-learning metrics that the R matrix alone cannot give.

Average performance and forgetting of an RL stream come from
:mod:`replaybench.metrics` applied to the normalised-return matrix
(Continual World's AP is ``accuracy`` and its forgetting is
``forgetting_first_last``). What lives here:

- :func:`normalised_return`, which turns raw returns into the scores that
  fill R;
- Continual World's forward transfer, which needs learning curves over each
  task's training window, not only the scores at its end (Wołczyk et al.,
  2021, "Continual World", §4; ``results_processing/tables.py`` of
  awarelab/continual_world).

Example:
    >>> round(forward_transfer_auc([0.2, 0.6, 1.0], [0.0, 0.4, 0.8]), 3)
    0.333
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalised_return(
    returns: float | Sequence[float] | np.ndarray, *, max_return: float, min_return: float = 0.0
) -> np.ndarray:
    """Scale returns so that ``min_return`` maps to 0 and ``max_return`` to 1.

    With ``min_return = 0`` this is the return divided by the task's maximum
    (CartPole: R/200), the normalisation of Continual World and CORA; tasks
    whose returns are negative (Acrobot, MountainCar) need the lower bound.
    """
    if max_return == min_return:
        raise ValueError(f"max_return and min_return must differ, both are {max_return}")
    return (np.asarray(returns, dtype=np.float64) - min_return) / (max_return - min_return)


def curve_auc(curve: Sequence[float] | np.ndarray) -> float:
    """AUC_i = (1/Δ) ∫ p_i dt over a training window, from p sampled on a uniform grid."""
    values = np.asarray(curve, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"a curve must be a non-empty 1-d sequence, got shape {values.shape}")
    return float(values.mean())


def forward_transfer_auc(curve: Sequence[float] | np.ndarray, reference_curve: Sequence[float] | np.ndarray) -> float:
    """Continual World's forward transfer of one task: (AUC − AUC_b) / (1 − AUC_b).

    Args:
        curve: Normalised performance on the task over its training window in
            the continual run, on a uniform grid.
        reference_curve: The same for a single-task reference run (a fresh
            agent trained on this task alone), on the same grid.

    Returns:
        Positive when the continual run learns the task faster than from
        scratch; ``nan`` when the reference is already perfect (AUC_b = 1).
    """
    auc, reference_auc = curve_auc(curve), curve_auc(reference_curve)
    if len(np.asarray(curve)) != len(np.asarray(reference_curve)):
        raise ValueError("curve and reference_curve must be sampled on the same grid")
    if reference_auc >= 1.0:
        return float("nan")
    return (auc - reference_auc) / (1.0 - reference_auc)


def episode_curve_on_grid(
    episodes: Sequence[tuple[int, float]],
    *,
    step_budget: int,
    n_points: int,
    max_return: float,
    min_return: float = 0.0,
) -> np.ndarray:
    """Resample ``(env step, episode return)`` pairs onto ``n_points`` equally spaced steps.

    The value at a grid step is the normalised return of the last episode
    finished by then (0 before the first), so curves of agents whose
    episodes end at different steps become comparable.
    """
    grid = np.linspace(step_budget / n_points, step_budget, n_points)
    steps = np.array([s for s, _ in episodes], dtype=np.float64)
    scores = normalised_return([r for _, r in episodes], max_return=max_return, min_return=min_return)
    last = np.searchsorted(steps, grid, side="right") - 1
    return np.where(last >= 0, scores[np.maximum(last, 0)] if len(scores) else 0.0, 0.0)
