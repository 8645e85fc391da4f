"""Neuron populations: input nodes, LIF and adaptive-threshold LIF neurons.

Every state tensor is ``[B, *shape]``; the adaptive threshold ``theta`` is
shared across the batch. The step follows BindsNET's clock-based semantics
(``network/nodes.py``, ``LIFNodes`` and ``DiehlAndCookNodes``), dt in ms:

1. decay: ``v <- rest + (v - rest) * exp(-dt / tau_m)``;
2. integrate the input unless refractory;
3. spike where ``v >= thresh + theta``; spikers become refractory and reset;
4. adaptive threshold (learning only): ``theta *= exp(-dt / tau_theta)``,
   then ``theta += theta_plus * R_b(s)``, ``R_b`` the sum over the batch
   (BindsNET) or, as configured, its mean or max (see ``AdaptiveParams.reduction``);
5. trace: ``x <- x * exp(-dt / tau_trace)``, then ``x[s] = 1``.

Example:
    >>> nodes = LIFNodes(shape=(3,), params=LIFParams())
    >>> nodes.configure(dt=1.0, batch_size=2)
    >>> nodes.step(torch.full((2, 3), 20.0)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from replaybench.errors import ConfigError
from replaybench.params import Config, InstanceOf, Interval, OneOf, param
from replaybench.spiking import _cpu_kernels

_POSITIVE = Interval(float, 0, None, closed="neither")
_REAL = Interval(float, None, None)


def check_shape(owner: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of positive ints or raise :class:`ConfigError`."""
    if (
        not isinstance(shape, (tuple, list))
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise ConfigError(
            f"The 'shape' parameter of {owner} must be a non-empty tuple of positive ints. Got {shape!r} instead."
        )
    return tuple(shape)


@dataclass(frozen=True)
class LIFParams(Config):
    """Constants of a leaky integrate-and-fire population (mV, ms).

    Defaults are Diehl & Cook's excitatory neurons (BindsNET ``models.py``).
    """

    rest: float = param(-65.0, _REAL)
    """Resting potential."""
    reset: float = param(-60.0, _REAL)
    """Potential after a spike."""
    thresh: float = param(-52.0, _REAL)
    """Spike threshold (before the adaptive part)."""
    tau_m: float = param(100.0, _POSITIVE)
    """Membrane time constant."""
    refractory: float = param(5.0, Interval(float, 0, None))
    """Refractory period."""
    tau_trace: float = param(20.0, _POSITIVE)
    """Time constant of the spike trace used by STDP."""


@dataclass(frozen=True)
class AdaptiveParams(Config):
    """The adaptive threshold of Diehl & Cook's excitatory neurons."""

    theta_plus: float = param(0.05, Interval(float, 0, None))
    """Threshold increment per spike (summed over the batch)."""
    tau_theta: float = param(1e7, _POSITIVE)
    """Time constant of the threshold's decay."""
    one_spike: bool = param(False, InstanceOf(bool))
    """Emit at most one spike per sample per step, picked at random among the
    neurons that crossed threshold (all of them still reset); BindsNET's
    ``DiehlAndCookNodes`` default."""
    reduction: str = param("sum", OneOf("sum", "mean", "max"))
    """How a step's threshold increments are reduced over the batch: ``"sum"``
    (BindsNET: every sample's spike raises theta), ``"mean"``, or ``"max"``
    (theta rises once if the neuron spiked in any sample). The last two keep
    theta in step with max-reduced weights over many epochs at large batches
    (docs/spiking.md, "Batch reduction")."""


class _SpikeEvents:
    """Per-step state of the spike event lists, outside ``nn.Module.__setattr__`` (slow per step)."""

    __slots__ = ("valid", "version", "ptrs")

    def __init__(self) -> None:
        self.valid, self.version, self.ptrs = False, 0, ()


class Nodes(nn.Module):
    """A population with spikes ``s`` and a spike trace ``x``, both ``[B, *shape]``."""

    def __init__(self, *, shape: tuple[int, ...], tau_trace: float = 20.0) -> None:
        super().__init__()
        owner = type(self).__name__
        self.shape = check_shape(owner, shape)
        self.n = math.prod(self.shape)
        if not (isinstance(tau_trace, (int, float)) and tau_trace > 0):
            raise ConfigError(
                f"The 'tau_trace' parameter of {owner} must be a float in the range (0, inf). "
                f"Got {tau_trace!r} instead."
            )
        self.tau_trace = float(tau_trace)
        self.dt = 1.0
        self.batch_size = 1
        self.learning = True
        self.trace_decay = math.exp(-self.dt / self.tau_trace)
        # Batch-shaped state moves with .to() but stays out of state_dict.
        self.register_buffer("s", torch.zeros(1, *self.shape, dtype=torch.bool), persistent=False)
        self.register_buffer("x", torch.zeros(1, *self.shape), persistent=False)
        self._kernels = None  # the fused CPU kernels, chosen in configure()
        self._events = _SpikeEvents()
        self.track_traces = True
        """Update ``x``; the network turns it off for layers no learning rule reads."""

    def configure(self, *, dt: float, batch_size: int, learning: bool = True) -> None:
        """Set the step, the batch size (reallocating state) and the learning mode."""
        self.dt = float(dt)
        self.learning = learning
        self.trace_decay = math.exp(-self.dt / self.tau_trace)
        self._decays()
        if batch_size != self.batch_size or self.s.shape[0] != batch_size:
            self.batch_size = batch_size
            self._allocate(batch_size)
        self.reset_state()
        on_cpu = self.x.device.type == "cpu" and self.x.dtype == torch.float32
        self._kernels = _cpu_kernels.library() if on_cpu else None
        if self._kernels is not None:
            self._cache_kernel_args()

    def _cache_kernel_args(self) -> None:
        """Bind the kernel's arguments once per run (state is updated in place)."""
        self._trace_args = (self.x.data_ptr(), self.s.data_ptr(), self.x.numel(), self.trace_decay)
        if self._event_buffers[0].numel() != self.n + 1 or self._event_buffers[1].numel() != self.s.numel():
            self._event_buffers = (
                torch.empty(self.n + 1, dtype=torch.int32),
                *(torch.empty(self.s.numel(), dtype=torch.int32) for _ in range(3)),
            )
        self._events.ptrs = tuple(buffer.data_ptr() for buffer in self._event_buffers)
        self._events.valid = False

    _event_buffers = (torch.empty(0, dtype=torch.int32), torch.empty(0, dtype=torch.int32))

    @property
    def spikes_version(self) -> int:
        """Counts changes of ``s`` on the kernels' path (a connection's precomputed current checks it)."""
        return self._events.version

    def _spikes_changed(self) -> None:
        events = self._events
        events.valid = False
        events.version += 1

    def spike_events(self) -> tuple[int, int]:
        """This step's spikes as events sorted by neuron, then sample (CPU kernels only).

        Built on first request after the spikes changed, then shared by every
        connection that reads them (the current of the next step and this
        step's STDP use the same spikes). Returns pointers to ``starts``
        (``[n + 1]``; neuron ``i``'s events are ``starts[i]:starts[i + 1]``) and
        to the events' sample indices.
        """
        events = self._events
        starts, samples, raw_i, raw_b = events.ptrs
        if not events.valid:
            self._kernels.spike_events(
                self._buffers["s"].data_ptr(), self.batch_size, self.n, starts, samples, raw_i, raw_b
            )
            events.valid = True
        return starts, samples

    def _decays(self) -> None:
        """Recompute per-step decay factors after ``dt`` changed."""

    def _allocate(self, batch_size: int) -> None:
        device = self.x.device
        self.s = torch.zeros(batch_size, *self.shape, dtype=torch.bool, device=device)
        self.x = torch.zeros(batch_size, *self.shape, device=device)

    def reset_state(self) -> None:
        """Return to rest between samples (weights and ``theta`` are kept)."""
        self.s.zero_()
        self.x.zero_()
        self._spikes_changed()

    def _update_trace(self) -> None:
        if self.track_traces:
            self.x.mul_(self.trace_decay).masked_fill_(self.s, 1.0)


class InputNodes(Nodes):
    """Nodes whose spikes are set from an encoded input each step."""

    def reset_state(self) -> None:
        # ``s`` may be a view of the caller's input (set_spikes does not copy): replace it, never zero it.
        self._buffers["s"] = torch.zeros_like(self._buffers["s"])
        self.x.zero_()
        self._spikes_changed()

    def set_spikes(self, spikes: torch.Tensor) -> None:
        """Take this step's input spikes ``[B, *shape]`` (bool)."""
        if self._kernels is not None and spikes.is_contiguous():
            x_ptr, _, count, decay = self._trace_args
            self._buffers["s"] = spikes
            self._spikes_changed()
            if self.track_traces:
                self._kernels.trace_step(x_ptr, spikes.data_ptr(), count, decay)
            return
        self.s = spikes
        self._spikes_changed()
        self._update_trace()


class LIFNodes(Nodes):
    """Leaky integrate-and-fire neurons with a refractory period."""

    def __init__(self, *, shape: tuple[int, ...], params: LIFParams) -> None:
        if not isinstance(params, LIFParams):
            raise ConfigError(
                f"The 'params' parameter of {type(self).__name__} must be a LIFParams. "
                f"Got {type(params).__name__} instead."
            )
        super().__init__(shape=shape, tau_trace=params.tau_trace)
        self.params = params
        self.decay = math.exp(-self.dt / params.tau_m)
        self.register_buffer("v", torch.full((1, *self.shape), params.rest), persistent=False)
        self.register_buffer("refrac", torch.zeros(1, *self.shape), persistent=False)

    def _decays(self) -> None:
        self.decay = math.exp(-self.dt / self.params.tau_m)

    def _allocate(self, batch_size: int) -> None:
        super()._allocate(batch_size)
        self.v = torch.full((batch_size, *self.shape), self.params.rest, device=self.x.device)
        self.refrac = torch.zeros(batch_size, *self.shape, device=self.x.device)

    def reset_state(self) -> None:
        super().reset_state()
        self.v.fill_(self.params.rest)
        self.refrac.zero_()

    def threshold(self) -> torch.Tensor | float:
        """The firing threshold, broadcastable to ``v``."""
        return self.params.thresh

    def step(self, current: torch.Tensor | None) -> torch.Tensor:
        """Advance one step with input ``current`` ``[B, *shape]`` (or ``None``)."""
        if self._kernels is not None:
            return self._fused_step(current)
        p = self.params
        self._start_step()
        self.v.mul_(self.decay).add_(p.rest * (1.0 - self.decay))
        if current is not None:
            self.v.add_(current.masked_fill(self.refrac > 0, 0.0))
        self.refrac.sub_(self.dt)
        self.s = self.v >= self.threshold()
        self.refrac.masked_fill_(self.s, p.refractory)
        self.v.masked_fill_(self.s, p.reset)
        self._after_spike()
        self._update_trace()
        return self.s

    def _cache_kernel_args(self) -> None:
        super()._cache_kernel_args()
        p = self.params
        theta, theta_decay, theta_plus, theta_max, one_spike = self._fused_adaptive_args()
        self._one_spike = one_spike
        buffers = self._buffers
        self._lif_head = (buffers["v"].data_ptr(), buffers["refrac"].data_ptr())
        x = buffers["x"].data_ptr() if self.track_traces and not one_spike else None
        self._scratch = torch.empty(self.n)
        self._sample_spikes = torch.empty(self.batch_size, dtype=torch.int32)
        self._lif_tail = (
            buffers["s"].data_ptr(),
            x,
            theta,
            self.batch_size,
            self.n,
            self.decay,
            p.rest * (1.0 - self.decay),
            p.reset,
            p.thresh,
            p.refractory,
            self.dt,
            self.trace_decay,
            theta_decay,
            theta_plus,
            theta_max,
            int(self.learning),
            self._scratch.data_ptr(),
            self._sample_spikes.data_ptr(),
        )

    def _fused_step(self, current: torch.Tensor | None) -> torch.Tensor:
        """The same step in one pass of the C kernel (see ``_cpu_kernels``)."""
        kernels = self._kernels
        if current is not None:  # keep the contiguous float32 copy alive during the call
            current = current.to(torch.float32).contiguous()
        most = kernels.lif_step(*self._lif_head, None if current is None else current.data_ptr(), *self._lif_tail)
        self._spikes_changed()
        if self._one_spike:
            if most > 1:
                self._keep_one_spike()
            if self.track_traces:
                kernels.trace_step(*self._trace_args)
        return self._buffers["s"]

    def _fused_adaptive_args(self) -> tuple[int | None, float, float, int, bool]:
        """Pointer to theta, its decay, increment and max flag, and one_spike, for the kernel."""
        return None, 1.0, 0.0, 0, False

    def _start_step(self) -> None:
        """Hook for subclasses, run before the voltage decays."""

    def _after_spike(self) -> None:
        """Hook for subclasses, run once the spikes are known."""


class AdaptiveLIFNodes(LIFNodes):
    """LIF neurons with Diehl & Cook's homeostatic threshold ``theta`` [shape]."""

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        params: LIFParams,
        adaptive: AdaptiveParams,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(shape=shape, params=params)
        if not isinstance(adaptive, AdaptiveParams):
            raise ConfigError(
                f"The 'adaptive' parameter of {type(self).__name__} must be an AdaptiveParams. "
                f"Got {type(adaptive).__name__} instead."
            )
        self.adaptive = adaptive
        self.generator = generator
        self.theta_decay = math.exp(-self.dt / adaptive.tau_theta)
        self.register_buffer("theta", torch.zeros(*self.shape))

    def _decays(self) -> None:
        super()._decays()
        self.theta_decay = math.exp(-self.dt / self.adaptive.tau_theta)

    def threshold(self) -> torch.Tensor:
        return self.theta + self.params.thresh

    def _theta_increment(self) -> float:
        """theta_plus per spike after the batch reduction ("mean" divides by B)."""
        a = self.adaptive
        return a.theta_plus / self.batch_size if a.reduction == "mean" else a.theta_plus

    def _fused_adaptive_args(self) -> tuple[int | None, float, float, int, bool]:
        a = self.adaptive
        return (
            self.theta.data_ptr(),
            self.theta_decay,
            self._theta_increment(),
            int(a.reduction == "max"),
            a.one_spike,
        )

    def _start_step(self) -> None:
        if self.learning:
            self.theta.mul_(self.theta_decay)

    def _after_spike(self) -> None:
        # BindsNET order: every crossing neuron resets and raises theta, then
        # one_spike keeps a single emitted spike per sample.
        if self.learning and self.adaptive.theta_plus:
            spikes = self.s.any(0) if self.adaptive.reduction == "max" else self.s.sum(0)
            self.theta.add_(spikes, alpha=self._theta_increment())
        if self.adaptive.one_spike and (self.s.view(self.batch_size, -1).sum(1) > 1).any():
            self._keep_one_spike()

    def _keep_one_spike(self) -> None:
        """Keep one spike per sample, uniform among its spikes (as BindsNET's multinomial draw).

        One uniform ``u`` per sample picks the ``floor(u * count)``-th spike in index order;
        the kernel and the tensor code pick the same one.
        """
        flat = self.s.view(self.batch_size, -1)
        u = torch.rand(self.batch_size, generator=self.generator, device=flat.device)
        if self._kernels is not None:
            self._kernels.keep_one_spike(
                flat.data_ptr(), u.data_ptr(), self._sample_spikes.data_ptr(), self.batch_size, self.n
            )
            return
        count = flat.sum(1, keepdim=True)
        keep = (u[:, None] * count).long().clamp_max(count - 1)
        rank = flat.cumsum(1) - 1
        chosen = flat & (rank == keep)
        self.s = torch.where(count > 1, chosen, flat).view_as(self.s)
