"""STDP rules and the batch reduction of their weight updates.

Each step, with pre/post spikes ``s`` and traces ``x`` (BindsNET
``learning/learning.py``; Saunders et al. 2019, arXiv 1909.02549)::

    PostPre:                   dW = -nu_pre R(s_pre x x_post) + nu_post R(x_pre x s_post)
    WeightDependentPostPre:    the first term times (W - wmin), the second times (wmax - W)
    Hebbian:                   dW = +nu_pre R(s_pre x x_post) + nu_post R(x_pre x s_post)

then ``W`` is clamped to ``[wmin, wmax]``. ``R`` reduces the per-sample outer
products over the batch: ``"sum"`` (BindsNET's default), ``"mean"`` or ``"max"``.
:func:`batch_outer` computes it without a ``[B, n_pre, n_post]`` tensor:
sum and mean are one matrix product ``pre^T @ post``; max scatters only the
spike events (one factor of every STDP term is a spike tensor).

A rule never looks at the connection's type: connections present their pre-
and postsynaptic tensors as ``[G, B, n]`` groups (one group for a dense
layer, one per location for a local one) through ``Connection.outer``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from replaybench.errors import ConfigError
from replaybench.params import Config, Interval, OneOf, param

REDUCTIONS = ("sum", "mean", "max")


def batch_outer(
    pre: torch.Tensor,
    post: torch.Tensor,
    reduction: str,
    *,
    out: torch.Tensor | None = None,
    alpha: float = 1.0,
) -> torch.Tensor:
    """Batch-reduced outer products ``R_b(pre[g, b] x post[g, b])``.

    Args:
        pre: ``[B, n]`` or ``[G, B, n]``; bool for spikes, float for traces.
        post: ``[B, m]`` or ``[G, B, m]``.
        reduction: ``"sum"``, ``"mean"`` or ``"max"``. ``"max"`` needs
            non-negative factors, one of them bool (spikes and traces are).
        out: If given, ``alpha * result`` is added into it in place.
        alpha: Scale of the result.

    Returns:
        ``[n, m]`` (or ``[G, n, m]``); ``out`` itself when given.
    """
    grouped = pre.dim() == 3
    if not grouped:
        pre, post = pre.unsqueeze(0), post.unsqueeze(0)
    groups, batch, n = pre.shape
    m = post.shape[2]
    if out is None:
        target = torch.zeros(groups, n, m, device=pre.device, dtype=torch.float32)
    else:
        target = out if grouped else out.unsqueeze(0)
    if reduction == "max":
        _scatter_max(pre, post, target, alpha)
    else:
        scale = alpha / batch if reduction == "mean" else alpha
        _accumulate_sum(pre, post, target, scale)
    if out is not None:
        return out
    return target if grouped else target.squeeze(0)


def _accumulate_sum(pre: torch.Tensor, post: torch.Tensor, target: torch.Tensor, scale: float):
    # A bool factor with few events: add only the rows (or columns) it touches.
    if pre.dtype == torch.bool and target.shape[0] == 1 and pre.shape[1] > 1:
        b, i = pre[0].nonzero(as_tuple=True)
        target[0].index_add_(0, i, post[0, b].to(target.dtype), alpha=scale)
        return
    if post.dtype == torch.bool and target.shape[0] == 1 and post.shape[1] > 1:
        b, j = post[0].nonzero(as_tuple=True)
        target[0].index_add_(1, j, pre[0, b].to(target.dtype).t(), alpha=scale)
        return
    target.baddbmm_(pre.transpose(1, 2).to(target.dtype), post.to(target.dtype), alpha=scale)


def _scatter_max(pre: torch.Tensor, post: torch.Tensor, target: torch.Tensor, alpha: float):
    groups, _, n = pre.shape
    m = post.shape[2]
    if pre.dtype == torch.bool:
        g, b, i = pre.nonzero(as_tuple=True)
        rows = post[g, b].to(target.dtype)
        index, width, transpose = g * n + i, n, False
    elif post.dtype == torch.bool:
        g, b, j = post.nonzero(as_tuple=True)
        rows = pre[g, b].to(target.dtype)
        index, width, transpose = g * m + j, m, True
    else:
        raise ValueError("max reduction needs one bool (spike) factor")
    if index.numel() == 0:
        return
    flat = torch.zeros(groups * width, rows.shape[1], device=rows.device, dtype=target.dtype)
    flat.scatter_reduce_(0, index[:, None].expand_as(rows), rows, "amax", include_self=True)
    flat = flat.view(groups, width, -1)
    target.add_(flat.transpose(1, 2) if transpose else flat, alpha=alpha)


@dataclass(frozen=True)
class STDPParams(Config):
    """Learning rates of a pair-based STDP rule."""

    nu_pre: float = param(1e-4, Interval(float, 0, None))
    """Rate of the presynaptic-spike term (depression in PostPre)."""
    nu_post: float = param(1e-2, Interval(float, 0, None))
    """Rate of the postsynaptic-spike term (potentiation)."""


class LearningRule:
    """Base of the STDP rules: holds the rates and a multiplier for schedules.

    Args:
        params: The learning rates.
        reduction: How updates are reduced over the batch.
    """

    depression_sign = -1.0

    def __init__(self, *, params: STDPParams = STDPParams(), reduction: str = "sum") -> None:
        if not isinstance(params, STDPParams):
            raise ConfigError(
                f"The 'params' parameter of {type(self).__name__} must be an STDPParams. "
                f"Got {type(params).__name__} instead."
            )
        if reduction not in REDUCTIONS:
            raise ConfigError(
                f"The 'reduction' parameter of {type(self).__name__} must be "
                f"{OneOf(*REDUCTIONS).describe()}. Got {reduction!r} instead."
            )
        self.params = params
        self.reduction = reduction
        self.rate_scale = 1.0
        """Multiplies both rates (LC-SNN decays it by 0.99 every 250 samples)."""

    def update(self, connection) -> None:
        """Apply one step's update to ``connection.weight`` and clamp it."""
        nu_pre = self.params.nu_pre * self.rate_scale
        nu_post = self.params.nu_post * self.rate_scale
        source, target = connection.source, connection.target
        # Both terms come from this step's spikes and traces, so their order only affects rounding.
        # The presynaptic term goes last: the CPU kernels then clamp its rows in the same pass
        # and compute from them the next step's input current (``DenseConnection``).
        if nu_post:
            connection.outer(source.x, target.s, self.reduction, alpha=nu_post)
        if nu_pre:
            connection.outer(source.s, target.x, self.reduction, alpha=self.depression_sign * nu_pre)
        connection.clamp_()


class PostPre(LearningRule):
    """Pair-based STDP: depression at presynaptic spikes, potentiation at postsynaptic ones."""


class Hebbian(LearningRule):
    """Both spike-pairing terms potentiate."""

    depression_sign = 1.0


class WeightDependentPostPre(LearningRule):
    """PostPre with soft bounds: depression scales with ``W - wmin``, potentiation with ``wmax - W``."""

    def update(self, connection) -> None:
        nu_pre = self.params.nu_pre * self.rate_scale
        nu_post = self.params.nu_post * self.rate_scale
        source, target, weight = connection.source, connection.target, connection.weight
        delta = torch.zeros_like(weight)
        if nu_pre:
            depression = connection.outer(
                source.s, target.x, self.reduction, alpha=nu_pre, out=torch.zeros_like(weight)
            )
            delta.sub_(depression * (weight - connection.wmin))
        if nu_post:
            potentiation = connection.outer(
                source.x, target.s, self.reduction, alpha=nu_post, out=torch.zeros_like(weight)
            )
            delta.add_(potentiation * (connection.wmax - weight))
        weight.add_(delta)
        connection.clamp_()
