"""Continual-learning metrics as pure functions of the R matrix.

``R[i, j]`` is the score on experience j after learning experience i (0-based
here; the papers index from 1), for T experiences. ``b[j]`` is the untrained
agent's score on j. Every formula lives here once and is documented, with its
source, in ``docs/metrics.md``. Scores are accuracies for supervised streams
and normalised returns for RL streams; the formulas do not care which.

Example:
    >>> R = [[0.9, 0.1], [0.5, 0.8]]
    >>> round(accuracy(R), 3), round(bwt(R), 3)
    (0.65, -0.4)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Matrix = Sequence[Sequence[float]] | np.ndarray


def _square(R: Matrix) -> np.ndarray:
    r = np.asarray(R, dtype=float)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"R must be a non-empty square matrix, got shape {r.shape}")
    return r


def accuracy(R: Matrix) -> float:
    """ACC (GEM, Lopez-Paz & Ranzato 2017): mean of the last row, (1/T) Σ_j R[T][j].

    Continual World's average performance AP is the same quantity.
    """
    r = _square(R)
    return float(r[-1].mean())


def average_accuracy(R: Matrix, k: int) -> float:
    """A_k (Chaudhry et al. 2018): mean score on the first k experiences after learning k."""
    r = _square(R)
    if not 1 <= k <= len(r):
        raise ValueError(f"k must be in [1, {len(r)}], got {k}")
    return float(r[k - 1, :k].mean())


def average_accuracy_curve(R: Matrix) -> list[float]:
    """[A_1, …, A_T]."""
    return [average_accuracy(R, k) for k in range(1, len(_square(R)) + 1)]


def forgetting_max(R: Matrix) -> float:
    """Average forgetting F_T (Chaudhry et al. 2018, RWalk).

    f_j = max_{l<T} R[l][j] − R[T][j], averaged over j < T. 0 when T = 1.
    """
    r = _square(R)
    t = len(r)
    if t == 1:
        return 0.0
    return float(np.mean([r[: t - 1, j].max() - r[-1, j] for j in range(t - 1)]))


def forgetting_first_last(R: Matrix) -> float:
    """Avalanche's forgetting: score right after learning j minus the final
    score, (1/(T−1)) Σ_{j<T} (R[j][j] − R[T][j]). 0 when T = 1.

    Continual World's forgetting F_i = p_i(i·Δ) − p_i(T·Δ) is the same formula.
    """
    r = _square(R)
    t = len(r)
    if t == 1:
        return 0.0
    return float(np.mean([r[j, j] - r[-1, j] for j in range(t - 1)]))


def bwt(R: Matrix) -> float:
    """Backward transfer (GEM): (1/(T−1)) Σ_{j<T} (R[T][j] − R[j][j]). 0 when T = 1.

    It equals −forgetting_first_last (Avalanche's BWT).
    """
    return -forgetting_first_last(R)


def fwt(R: Matrix, baseline: Sequence[float]) -> float:
    """Forward transfer (GEM): (1/(T−1)) Σ_{j≥2} (R[j−1][j] − b_j). 0 when T = 1."""
    r = _square(R)
    b = np.asarray(baseline, dtype=float)
    if b.shape != (len(r),):
        raise ValueError(f"baseline must have {len(r)} entries, got {b.shape}")
    t = len(r)
    if t == 1:
        return 0.0
    return float(np.mean([r[j - 1, j] - b[j] for j in range(1, t)]))


def plasticity(R: Matrix) -> float:
    """Mean of the diagonal: how well each experience is learned when it is current."""
    return float(np.diag(_square(R)).mean())


def intransigence(R: Matrix, joint_R: Matrix) -> float:
    """Mean intransigence (Chaudhry et al. 2018): (1/T) Σ_k (a*_k − R[k][k]).

    a*_k is the accuracy on experience k of a model trained jointly on
    experiences 1..k: the diagonal of a ``joint`` agent's R on the same stream.
    """
    r, j = _square(R), _square(joint_R)
    if r.shape != j.shape:
        raise ValueError(f"joint R has shape {j.shape}, R has {r.shape}")
    return float(np.mean(np.diag(j) - np.diag(r)))


def summarize(R: Matrix, baseline: Sequence[float], joint_R: Matrix | None = None) -> dict[str, float | list[float]]:
    """Every metric of a run, under the names used in results and tables."""
    out: dict[str, float | list[float]] = {
        "acc": accuracy(R),
        "forgetting_max": forgetting_max(R),
        "forgetting_first_last": forgetting_first_last(R),
        "bwt": bwt(R),
        "fwt": fwt(R, baseline),
        "plasticity": plasticity(R),
        "average_accuracy_curve": average_accuracy_curve(R),
    }
    if joint_R is not None:
        out["intransigence"] = intransigence(R, joint_R)
    return out


HIGHER_IS_BETTER = {
    "acc": True,
    "forgetting_max": False,
    "forgetting_first_last": False,
    "bwt": True,
    "fwt": True,
    "plasticity": True,
    "intransigence": False,
}
"""Direction of each scalar metric, for ranking."""


# --- across seeds -------------------------------------------------------------------------------
def t_interval(values: Sequence[float], confidence: float = 0.90) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean over seeds.

    ``mean ± t_{(1+c)/2, n-1} · s / √n`` with ``s`` the sample standard
    deviation. One value has no interval: the half-width is NaN. Non-finite
    values (undefined metrics) are left out.

    Example:
        >>> m, h = t_interval([0.70, 0.72, 0.74])
        >>> round(m, 3), round(h, 4)
        (0.72, 0.0337)
    """
    from scipy.stats import t

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan")
    half = t.ppf((1 + confidence) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)
