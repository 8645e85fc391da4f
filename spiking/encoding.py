"""Spike encoders: intensities ``[B, ...]`` in [0, 1] to spikes ``[T, B, ...]`` (bool).

- Poisson: each input is a Poisson process with rate ``intensity * max_rate_hz``
  (Diehl & Cook use 63.75 Hz; BindsNET's examples 128 Hz). A step of ``dt`` ms
  holds at least one event with probability ``1 - exp(-rate * dt / 1000)``;
  that is the exact binary discretisation of the process.
- Bernoulli: each step spikes with probability ``intensity * max_prob``
  (BindsNET's ``bernoulli`` encoder), independent of ``dt``.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> poisson(torch.ones(2, 4), time_steps=10, generator=g).shape
    torch.Size([10, 2, 4])
"""

from __future__ import annotations

import math

import torch

from replaybench.errors import ConfigError
from replaybench.params import Interval, check_param


def _check_intensities(name: str, intensities: torch.Tensor) -> None:
    if not torch.is_tensor(intensities) or not intensities.is_floating_point():
        raise ConfigError(f"{name} expects a float tensor of intensities in [0, 1].")
    if intensities.numel() and (intensities.min() < 0 or intensities.max() > 1):
        raise ConfigError(
            f"{name} expects intensities in [0, 1]. Got values in "
            f"[{intensities.min().item():g}, {intensities.max().item():g}] instead."
        )


def poisson(
    intensities: torch.Tensor,
    *,
    time_steps: int,
    dt: float = 1.0,
    max_rate_hz: float = 128.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Poisson spike trains ``[time_steps, *intensities.shape]`` (bool).

    Args:
        intensities: Values in [0, 1], any shape (usually ``[B, ...]``).
        time_steps: Number of steps ``T``.
        dt: Step in ms.
        max_rate_hz: Rate of an input at intensity 1.
        generator: Source of randomness (its device must match the data's).
    """
    check_param("poisson", "time_steps", time_steps, Interval(int, 1, None))
    check_param("poisson", "dt", dt, Interval(float, 0, None, closed="neither"))
    check_param("poisson", "max_rate_hz", max_rate_hz, Interval(float, 0, None))
    _check_intensities("poisson", intensities)
    prob = 1.0 - torch.exp(-intensities * (max_rate_hz * dt / 1000.0))
    return _bernoulli_trains(prob, time_steps, generator)


def bernoulli(
    intensities: torch.Tensor,
    *,
    time_steps: int,
    max_prob: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bernoulli spike trains ``[time_steps, *intensities.shape]`` (bool).

    Args:
        intensities: Values in [0, 1].
        time_steps: Number of steps ``T``.
        max_prob: Spike probability per step at intensity 1.
        generator: Source of randomness.
    """
    check_param("bernoulli", "time_steps", time_steps, Interval(int, 1, None))
    check_param("bernoulli", "max_prob", max_prob, Interval(float, 0, 1))
    _check_intensities("bernoulli", intensities)
    return _bernoulli_trains(intensities * max_prob, time_steps, generator)


def _bernoulli_trains(prob: torch.Tensor, time_steps: int, generator: torch.Generator | None):
    uniform = torch.rand((time_steps, *prob.shape), generator=generator, device=prob.device, dtype=prob.dtype)
    return uniform < prob


def expected_rate(intensity: float, *, dt: float = 1.0, max_rate_hz: float = 128.0) -> float:
    """Expected spikes per step of :func:`poisson` at ``intensity``."""
    return 1.0 - math.exp(-intensity * max_rate_hz * dt / 1000.0)
