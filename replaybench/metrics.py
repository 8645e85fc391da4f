"""Continual-learning metrics as pure functions of the R matrix.

``R[i, j]`` is the score on experience j after learning experience i (0-based
here; the papers index from 1), for T experiences. ``b[j]`` is the untrained
agent's score on j. Every formula lives here once and is documented, with its
source, in ``docs/metrics.md``. Scores are accuracies for supervised streams
and normalised returns for RL streams; the formulas do not care which.

A metric that a run cannot define is ``None``, never a number: forgetting,
BWT and FWT need a second experience (T ≥ 2), and FWT means nothing on a
class-IL stream (:data:`FWT_UNDEFINED_SCENARIOS`). A score, unlike a metric,
is never undefined: NaN or an infinity in R or the baseline is refused with
:class:`NonFiniteScoreError`.

Example:
    >>> R = [[0.9, 0.1], [0.5, 0.8]]
    >>> round(accuracy(R), 3), round(bwt(R), 3)
    (0.65, -0.4)
    >>> print(bwt([[0.9]]))  # one experience: nothing to forget
    None
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from replaybench.errors import DivergenceError

Matrix = Sequence[Sequence[float]] | np.ndarray

FWT_UNDEFINED_SCENARIOS = frozenset({"class-il"})
"""Scenarios where :func:`summarize` reports FWT as undefined.

In class-IL the single head has never been trained on experience j's classes
before j, so R[j−1][j] is ~0 for every agent, and b_j (the untrained net) is
about the same for every agent too: FWT = mean(R[j−1][j] − b_j) ≈ −mean(b_j)
ranks agents by their random initialisation, not by what they transfer."""


class NonFiniteScoreError(DivergenceError, ValueError):
    """R or the baseline holds NaN or an infinity: the agent or the stream's scorer broke.

    A :class:`~replaybench.errors.DivergenceError` (the executors record the run
    as diverged and the CLI prints one line) and a ``ValueError``.
    """


def require_finite(scores: Matrix | Sequence[float], name: str, *, context: str = "") -> None:
    """Raise :class:`NonFiniteScoreError` naming the first NaN or infinity in ``scores``.

    Args:
        scores: A row of scores or a matrix of them.
        name: What ``scores`` is called in the message, e.g. ``"R"``, ``"R[2]"``, ``"baseline"``.
        context: Appended to the message in parentheses (which agent, which stage).

    Example:
        >>> require_finite([[0.9, 0.1], [float("nan"), 0.8]], "R")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        replaybench.metrics.NonFiniteScoreError: R[1][0] = nan: a score must be a finite number; ...
    """
    values = np.asarray(scores, dtype=float)
    bad = np.argwhere(~np.isfinite(values))
    if len(bad) == 0:
        return
    index = tuple(int(k) for k in bad[0])
    where = name + "".join(f"[{k}]" for k in index)
    where_context = f" ({context})" if context else ""
    raise NonFiniteScoreError(
        f"{where} = {values[index]}{where_context}: a score must be a finite number; "
        "the agent's output or the stream's scorer is broken (an undefined metric is None, a score never is)."
    )


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


def metric_curve(metric: Callable[[np.ndarray], float | None], R: Matrix) -> list[float | None]:
    """``metric`` after each experience k: on R's first k rows and columns, the run as if it stopped at k.

    ``metric_curve(accuracy, R)`` is :func:`average_accuracy_curve`.

    Example:
        >>> R = [[0.9, 0.1, 0.0], [0.5, 0.8, 0.1], [0.4, 0.6, 0.7]]
        >>> [None if v is None else round(v, 2) for v in metric_curve(bwt, R)]
        [None, -0.4, -0.35]
    """
    r = _square(R)
    return [metric(r[:k, :k]) for k in range(1, len(r) + 1)]


def forgetting_max(R: Matrix) -> float | None:
    """Average forgetting F_T (Chaudhry et al. 2018, RWalk), from the rows after each task was learned.

    f_j = max_{j ≤ l < T} R[l][j] − R[T][j] (1-based), averaged over j < T:
    the drop from the best score experience j reached *once learned* to its
    final score. RWalk writes the max over l ∈ {1..T−1}, but defines its
    accuracies a_{l,j} only for j ≤ l (tasks already seen), so the rows
    before j was learned are not in it; counting them would score zero-shot
    accuracy on an unseen task as forgetting. Mammoth's ``forgetting`` leaves
    the unseen tasks out too (it pads them with 0). Since l = j is included,
    ``forgetting_max ≥ forgetting_first_last``. ``None`` when T = 1.
    """
    per_experience = forgetting_per_experience(R)
    return float(np.mean(per_experience)) if per_experience else None


def forgetting_per_experience(R: Matrix) -> list[float]:
    """[f_1, …, f_{T−1}]: each experience's forgetting, whose mean is :func:`forgetting_max`.

    f_j = max_{j ≤ l < T} R[l][j] − R[T][j] (1-based): the drop from the best
    score experience j reached once learned to its final score. The last
    experience has none; empty when T = 1.

    Example:
        >>> [round(f, 2) for f in forgetting_per_experience([[0.9, 0.1, 0.0], [0.7, 0.8, 0.1], [0.5, 0.6, 0.9]])]
        [0.4, 0.2]
    """
    r = _square(R)
    t = len(r)
    return [float(r[j : t - 1, j].max() - r[-1, j]) for j in range(t - 1)]


def forgetting_max_all_rows(R: Matrix) -> float | None:
    """The former ``forgetting_max``: the max over *every* earlier row, before j was learned too.

    f_j = max_{l < T} R[l][j] − R[T][j], averaged over j < T: RWalk's formula
    read literally on an R that also holds the scores of tasks not yet seen
    (the suite evaluates every experience at every step; RWalk does not).
    Zero-shot accuracy above the final score counts as forgetting, notably in
    domain-IL. Kept, not reported in results, to compare with numbers made
    before the fix. ``None`` when T = 1.
    """
    r = _square(R)
    t = len(r)
    if t == 1:
        return None
    return float(np.mean([r[: t - 1, j].max() - r[-1, j] for j in range(t - 1)]))


def forgetting_first_last(R: Matrix) -> float | None:
    """Avalanche's forgetting: score right after learning j minus the final
    score, (1/(T−1)) Σ_{j<T} (R[j][j] − R[T][j]). ``None`` when T = 1.

    Continual World's forgetting F_i = p_i(i·Δ) − p_i(T·Δ) is the same formula.
    """
    r = _square(R)
    t = len(r)
    if t == 1:
        return None
    return float(np.mean([r[j, j] - r[-1, j] for j in range(t - 1)]))


def bwt(R: Matrix) -> float | None:
    """Backward transfer (GEM): (1/(T−1)) Σ_{j<T} (R[T][j] − R[j][j]). ``None`` when T = 1.

    It equals −forgetting_first_last (Avalanche's BWT).
    """
    f = forgetting_first_last(R)
    return None if f is None else -f


def fwt(R: Matrix, baseline: Sequence[float]) -> float | None:
    """Forward transfer (GEM): (1/(T−1)) Σ_{j≥2} (R[j−1][j] − b_j). ``None`` when T = 1.

    Meaningless on class-IL streams (:data:`FWT_UNDEFINED_SCENARIOS`), where
    :func:`summarize` reports it as ``None``; this function computes the
    formula whatever the scenario.
    """
    r = _square(R)
    b = np.asarray(baseline, dtype=float)
    if b.shape != (len(r),):
        raise ValueError(f"baseline must have {len(r)} entries, got {b.shape}")
    t = len(r)
    if t == 1:
        return None
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


def summarize(
    R: Matrix, baseline: Sequence[float], joint_R: Matrix | None = None, *, scenario: str | None = None
) -> dict[str, float | list[float] | None]:
    """Every metric of a run, under the names used in results and tables.

    Args:
        R: The score matrix.
        baseline: The untrained agent's score on each experience.
        joint_R: R of a ``joint`` run on the same stream and seed, for intransigence.
        scenario: The stream's scenario (:data:`replaybench.protocols.Scenario`);
            FWT is ``None`` in :data:`FWT_UNDEFINED_SCENARIOS`. ``None``: unknown,
            FWT is computed.

    Returns:
        The metrics; an undefined one is ``None`` (written as ``null``).

    Raises:
        NonFiniteScoreError: R, the baseline or ``joint_R`` holds NaN or an infinity.

    Example:
        >>> s = summarize([[0.9, 0.1], [0.5, 0.8]], [0.1, 0.1], scenario="class-il")
        >>> round(s["bwt"], 3), s["fwt"]
        (-0.4, None)
    """
    require_finite(_square(R), "R")
    require_finite(baseline, "baseline")
    if joint_R is not None:
        require_finite(joint_R, "joint R")
    out: dict[str, float | list[float] | None] = {
        "acc": accuracy(R),
        "forgetting_max": forgetting_max(R),
        "forgetting_first_last": forgetting_first_last(R),
        "bwt": bwt(R),
        "fwt": None if scenario in FWT_UNDEFINED_SCENARIOS else fwt(R, baseline),
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
def t_interval(values: Sequence[float | None], confidence: float = 0.90) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean over seeds.

    ``mean ± t_{(1+c)/2, n-1} · s / √n`` with ``s`` the sample standard
    deviation. One value has no interval: the half-width is NaN. Undefined
    values (``None``) and non-finite ones are left out; with none left, both
    are NaN.

    Example:
        >>> m, h = t_interval([0.70, 0.72, 0.74])
        >>> round(m, 3), round(h, 4)
        (0.72, 0.0337)
        >>> t_interval([0.70, None])
        (0.7, nan)
    """
    from scipy.stats import t

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan")
    half = t.ppf((1 + confidence) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)
