"""Connections: they own their weights, ``compute()`` and the update layout.

- :class:`DenseConnection`: ``W[n_pre, n_post]``.
- :class:`LocalConnection2d`: a separate ``k x k`` receptive field per output
  location and filter (LC-SNN, Saunders et al. 2019); ``W[L, C*k*k, F]``.
  Unlike BindsNET's ``LocalConnection`` it keeps the batch dimension
  (bindsnet#567, #435).
- :class:`Conv2dConnection`: filters shared over locations; ``W[F, C, k, k]``.
- :class:`OneToOne` and :class:`LateralInhibition`: fixed structured
  connections computed in O(B n) instead of a dense matrix product.

Each connection's input to its target is computed from the source's spikes
of the previous step (the network calls ``compute`` before updating layers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from replaybench.errors import ConfigError
from replaybench.params import Interval, Optional, check_param
from replaybench.spiking import _cpu_kernels
from replaybench.spiking.learning import LearningRule, batch_outer
from replaybench.spiking.nodes import Nodes


class Connection(nn.Module):
    """Base: source and target populations, bounds, normalisation and a rule.

    Args:
        source: Presynaptic population.
        target: Postsynaptic population.
        wmin: Lower weight bound (clamped after every learning step).
        wmax: Upper weight bound.
        norm: If set, each postsynaptic unit's incoming weights are rescaled
            to sum to ``norm`` after every presentation (Diehl & Cook: 78.4).
        rule: STDP rule, or ``None`` for a fixed connection.
    """

    def __init__(
        self,
        *,
        source: Nodes,
        target: Nodes,
        wmin: float = 0.0,
        wmax: float = 1.0,
        norm: float | None = None,
        rule: LearningRule | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        for name, nodes in (("source", source), ("target", target)):
            if not isinstance(nodes, Nodes):
                raise ConfigError(
                    f"The {name!r} parameter of {owner} must be a Nodes population. Got {type(nodes).__name__} instead."
                )
        check_param(owner, "wmin", wmin, Interval(float, None, None, infinite=True))
        check_param(owner, "wmax", wmax, Interval(float, wmin, None, infinite=True))
        check_param(owner, "norm", norm, Optional(Interval(float, 0, None, closed="neither")))
        if rule is not None and not isinstance(rule, LearningRule):
            raise ConfigError(
                f"The 'rule' parameter of {owner} must be a LearningRule or None. Got {type(rule).__name__} instead."
            )
        # Not submodules: the network owns the populations.
        self.__dict__["source"], self.__dict__["target"] = source, target
        self.wmin, self.wmax, self.norm, self.rule = float(wmin), float(wmax), norm, rule

    def _check_weight(self, weight: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        if not torch.is_tensor(weight) or tuple(weight.shape) != tuple(shape):
            got = tuple(weight.shape) if torch.is_tensor(weight) else type(weight).__name__
            raise ConfigError(
                f"The 'weight' parameter of {type(self).__name__} must have shape {tuple(shape)} "
                f"for a source of shape {self.source.shape} and a target of shape "
                f"{self.target.shape}. Got {got} instead."
            )
        return weight.detach().clone().float()

    def configure(self, *, batch_size: int) -> None:
        """Called by the network before each run; binds the CPU kernels where they apply."""
        weight = self._buffers["weight"]
        on_cpu = weight.device.type == "cpu" and weight.dtype == torch.float32
        self._kernels = _cpu_kernels.library() if on_cpu else None
        if self._kernels is not None and self._out.shape[:1] != (batch_size,):
            self._out = torch.empty(batch_size, *self.target.shape)

    _kernels = None
    _out = torch.empty(0)
    """The kernels' output buffer, reused every step (fresh pages each step cost page faults)."""

    @property
    def n_synapses(self) -> int:
        """Number of plastic weights (0 for a fixed connection)."""
        return self.weight.numel() if self.rule is not None else 0

    def compute(self, spikes: torch.Tensor) -> torch.Tensor:
        """Input to the target ``[B, *target.shape]`` from source spikes.

        On the CPU kernels' path the result is a buffer that the next call overwrites.
        """
        raise NotImplementedError

    def compute_add_(self, spikes: torch.Tensor, out: torch.Tensor) -> None:
        """Add the input to the target into ``out`` in place (several connections into one layer)."""
        out.add_(self.compute(spikes))

    def outer(self, pre, post, reduction, *, alpha, out=None) -> torch.Tensor:
        """Add ``alpha * R_b(pre x post)`` laid out like ``weight`` into ``out`` (default the weight)."""
        raise NotImplementedError

    def clamp_(self) -> None:
        self.weight.clamp_(self.wmin, self.wmax)

    def normalize_(self) -> None:
        """Rescale each postsynaptic unit's incoming weights to sum to ``norm``."""
        if self.norm is None:
            return
        incoming = self._incoming_view()
        totals = incoming.abs().sum(-2, keepdim=True)
        totals[totals == 0] = 1.0
        incoming.mul_(self.norm / totals)

    def _incoming_view(self) -> torch.Tensor:
        """The weight as ``[..., fan_in, units]`` (a view)."""
        return self.weight


class _DenseStep:
    """Per-step state of a dense connection, outside ``nn.Module.__setattr__`` (slow per step)."""

    __slots__ = ("unmarked_change", "pending_rows", "precomputed")

    def __init__(self) -> None:
        self.unmarked_change = True
        """A change the row/column marks do not cover: the next clamp sees the whole weight."""
        self.pending_rows = None
        """A deferred presynaptic-spike term: (post pointer, scale, mode, post tensor)."""
        self.precomputed = -1
        """The source's ``spikes_version`` whose next-step current ``_out`` already holds."""


class DenseConnection(Connection):
    """All-to-all connection with ``weight[n_pre, n_post]``.

    On the CPU kernels' path the update is event-driven (``_cpu_kernels``). The
    presynaptic-spike term of a step is deferred to ``clamp_``, which applies it,
    clamps its rows and, from the same rows and the same input spikes, computes
    the next step's input current in one pass over the touched weights.

    Args:
        weight: Initial weights; shape ``[source.n, target.n]``.
        **common: See :class:`Connection` (explicit keywords only).
    """

    def __init__(
        self,
        *,
        source: Nodes,
        target: Nodes,
        weight: torch.Tensor,
        wmin: float = 0.0,
        wmax: float = 1.0,
        norm: float | None = None,
        rule: LearningRule | None = None,
    ) -> None:
        super().__init__(source=source, target=target, wmin=wmin, wmax=wmax, norm=norm, rule=rule)
        self.register_buffer("weight", self._check_weight(weight, (source.n, target.n)))
        # Rows/columns changed by the event-driven updates since the last clamp.
        self._row_marks = torch.zeros(source.n, dtype=torch.uint8)
        self._col_marks = torch.zeros(target.n, dtype=torch.uint8)
        self._scratch = torch.empty(max(source.n, target.n))
        self._row_scratch = torch.zeros(target.n)  # outer_rows keeps it zero between calls
        self._support = torch.empty(0, dtype=torch.int32)
        self._step = _DenseStep()

    def configure(self, *, batch_size: int) -> None:
        self._flush_rows()
        super().configure(batch_size=batch_size)
        self._step.precomputed = -1
        if self._kernels is not None:
            weight = self._buffers["weight"]
            if not weight.is_contiguous():
                self._buffers["weight"] = weight = weight.contiguous()
            self._shape_args = (self.source.n, self.target.n)
            self._weight_ptr = weight.data_ptr()
            self._mark_args = (self._row_marks.data_ptr(), self._col_marks.data_ptr())
            self._scratch_ptr = self._scratch.data_ptr()
            if self._support.numel() != batch_size * self.target.n:  # non-zero entries of the post traces
                self._support = torch.empty(batch_size * self.target.n, dtype=torch.int32)
                self._support_size = torch.empty(batch_size, dtype=torch.int32)
            self._support_args = (self._support.data_ptr(), self._support_size.data_ptr())

    def _events(self, nodes: Nodes, spikes: torch.Tensor):
        """The event lists of ``nodes`` if ``spikes`` are its current spikes and the kernels apply."""
        if (
            self._kernels is not None
            and nodes._kernels is not None
            and spikes is nodes._buffers["s"]
            and spikes.is_contiguous()
        ):
            return nodes.spike_events()
        return None

    def _source_events(self, spikes: torch.Tensor):
        return self._events(self.source, spikes)

    def compute(self, spikes: torch.Tensor) -> torch.Tensor:
        if self._step.precomputed == self.source.spikes_version and spikes is self.source._buffers["s"]:
            self._step.precomputed = -1  # computed by the last clamp_ from these spikes; used once
            return self._out
        events = self._source_events(spikes)
        if events is not None:  # event-driven: each row of an input that spiked, once per step
            out = self._out
            self._kernels.dense_forward(
                *events, self._weight_ptr, out.data_ptr(), spikes.shape[0], *self._shape_args, 0
            )
            return out
        flat = spikes.reshape(spikes.shape[0], -1)
        return (flat.to(self.weight.dtype) @ self.weight).view(-1, *self.target.shape)

    def compute_add_(self, spikes: torch.Tensor, out: torch.Tensor) -> None:
        events = self._source_events(spikes)
        if events is not None and out.is_contiguous() and out.dtype == torch.float32:
            self._kernels.dense_forward(
                *events, self._weight_ptr, out.data_ptr(), spikes.shape[0], *self._shape_args, 1
            )
            return
        super().compute_add_(spikes, out)

    def outer(self, pre, post, reduction, *, alpha, out=None) -> torch.Tensor:
        self._flush_rows()
        self._step.precomputed = -1
        if (
            out is None
            and self._kernels is not None
            and post.is_contiguous()
            and (
                (pre.dtype != torch.bool and pre.is_contiguous() and self._events(self.target, post) is not None)
                or (post.dtype != torch.bool and self._source_events(pre) is not None)
            )
        ):
            self._fused_outer(pre, post, reduction, alpha)
            return self._buffers["weight"]
        batch = pre.shape[0]
        # Any update outside the event-driven kernels (into the weight, or into a scratch tensor
        # that a rule then adds to it, as WeightDependentPostPre does) is clamped in full.
        self._step.unmarked_change = True
        out = self.weight if out is None else out
        return batch_outer(pre.reshape(batch, -1), post.reshape(batch, -1), reduction, out=out, alpha=alpha)

    def _fused_outer(self, pre, post, reduction, alpha) -> None:
        batch = pre.shape[0]
        scale = alpha / batch if reduction == "mean" else alpha
        mode = 1 if reduction == "max" else 0
        if pre.dtype == torch.bool:  # rows of the presynaptic neurons that spiked: deferred to clamp_
            self._step.pending_rows = (post.data_ptr(), scale, mode, post)
        else:  # columns of the postsynaptic neurons that spiked
            self._kernels.outer_cols(
                *self.target.spike_events(),
                pre.data_ptr(),
                self._weight_ptr,
                *self._shape_args,
                scale,
                mode,
                self._mark_args[1],
                self._scratch_ptr,
            )

    def _flush_rows(self, *, clamp: bool = False) -> None:
        """Apply a deferred presynaptic-spike term; with ``clamp`` also clamp its rows and
        precompute the next step's current from them."""
        if self._step.pending_rows is None:
            return
        post, scale, mode, _ = self._step.pending_rows
        self._step.pending_rows = None
        starts, samples = self.source.spike_events()
        out = self._out.data_ptr() if clamp else None
        self._kernels.outer_rows(
            starts,
            samples,
            post,
            self._weight_ptr,
            *self._shape_args,
            scale,
            mode,
            self._mark_args[0],
            self._row_scratch.data_ptr(),
            int(clamp),
            self.wmin,
            self.wmax,
            out,
            self._out.shape[0],
            *self._support_args,
        )
        if clamp:
            self._step.precomputed = self.source.spikes_version

    def clamp_(self) -> None:
        # If every change since the last clamp was event-driven, only the marked rows
        # and columns (and the deferred rows, clamped as they are applied) can have left the bounds.
        if self._kernels is not None and not self._step.unmarked_change:
            self._flush_rows(clamp=True)
            self._kernels.clamp_marked(self._weight_ptr, *self._shape_args, *self._mark_args, self.wmin, self.wmax)
        else:
            self._flush_rows()
            super().clamp_()
            self._row_marks.zero_()
            self._col_marks.zero_()
        self._step.unmarked_change = False

    def normalize_(self) -> None:
        self._flush_rows()
        self._step.precomputed = -1
        super().normalize_()
        self._step.unmarked_change = True  # renormalised weights may exceed wmax: the next clamp sees all


def _check_image_source(owner: str, source: Nodes, kernel_size: int, stride: int) -> tuple[int, int]:
    check_param(owner, "kernel_size", kernel_size, Interval(int, 1, None))
    check_param(owner, "stride", stride, Interval(int, 1, None))
    if len(source.shape) != 3:
        raise ConfigError(f"{owner} needs a source of shape (channels, height, width). Got {source.shape} instead.")
    _, height, width = source.shape
    if kernel_size > min(height, width):
        raise ConfigError(
            f"The 'kernel_size' parameter of {owner} must be at most {min(height, width)} for a "
            f"source of shape {source.shape}. Got {kernel_size} instead."
        )
    return (height - kernel_size) // stride + 1, (width - kernel_size) // stride + 1


def _check_image_target(owner: str, target: Nodes, expected: tuple[int, ...]) -> None:
    if target.shape != expected:
        raise ConfigError(
            f"{owner} needs a target of shape {expected} (filters, out_h, out_w). Got {target.shape} instead."
        )


def _image_geometry(conn: Connection, kernel_size: int, stride: int) -> tuple[int, int, int]:
    """Check an image source and a [F, out_h, out_w] target for a k×k, stride-s
    connection; set its ``kernel_size``/``stride``; return ``(out_h, out_w, F)``."""
    owner = type(conn).__name__
    out_h, out_w = _check_image_source(owner, conn.source, kernel_size, stride)
    n_filters = conn.target.shape[0]
    _check_image_target(owner, conn.target, (n_filters, out_h, out_w))
    conn.kernel_size, conn.stride = kernel_size, stride
    return out_h, out_w, n_filters


class LocalConnection2d(Connection):
    """Locally connected layer: unshared ``k x k`` filters at each output location.

    Args:
        weight: ``[L, C*k*k, F]`` with ``L = out_h * out_w``.
        kernel_size: Receptive-field side ``k``.
        stride: Step between receptive fields.
        **common: See :class:`Connection`.
    """

    def __init__(
        self,
        *,
        source: Nodes,
        target: Nodes,
        weight: torch.Tensor,
        kernel_size: int,
        stride: int,
        wmin: float = 0.0,
        wmax: float = 1.0,
        norm: float | None = None,
        rule: LearningRule | None = None,
    ) -> None:
        super().__init__(source=source, target=target, wmin=wmin, wmax=wmax, norm=norm, rule=rule)
        out_h, out_w, n_filters = _image_geometry(self, kernel_size, stride)
        fan_in = source.shape[0] * kernel_size**2
        self.register_buffer("weight", self._check_weight(weight, (out_h * out_w, fan_in, n_filters)))

    def _patches(self, tensor: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` to ``[L, B, C*k*k]``, bool kept bool."""
        cols = F.unfold(tensor.to(self.weight.dtype), self.kernel_size, stride=self.stride)
        cols = cols.permute(2, 0, 1)
        return cols > 0.5 if tensor.dtype == torch.bool else cols

    def _locations(self, tensor: torch.Tensor) -> torch.Tensor:
        """``[B, F, h, w]`` to ``[L, B, F]``."""
        return tensor.reshape(tensor.shape[0], tensor.shape[1], -1).permute(2, 0, 1)

    def compute(self, spikes: torch.Tensor) -> torch.Tensor:
        cols = self._patches(spikes.to(self.weight.dtype))
        current = torch.bmm(cols, self.weight)  # [L, B, F]
        return current.permute(1, 2, 0).reshape(-1, *self.target.shape)

    def outer(self, pre, post, reduction, *, alpha, out=None) -> torch.Tensor:
        out = self.weight if out is None else out
        return batch_outer(self._patches(pre), self._locations(post), reduction, out=out, alpha=alpha)


class Conv2dConnection(Connection):
    """Convolution with filters shared over locations, ``weight[F, C, k, k]``.

    Per sample, a weight's update is summed over the locations it is used at;
    then the batch reduction applies (max keeps ``[B, F, C*k*k]``, the size of
    the filters times B, never ``[B, n_pre, n_post]``).
    """

    def __init__(
        self,
        *,
        source: Nodes,
        target: Nodes,
        weight: torch.Tensor,
        kernel_size: int,
        stride: int,
        wmin: float = 0.0,
        wmax: float = 1.0,
        norm: float | None = None,
        rule: LearningRule | None = None,
    ) -> None:
        super().__init__(source=source, target=target, wmin=wmin, wmax=wmax, norm=norm, rule=rule)
        _, _, n_filters = _image_geometry(self, kernel_size, stride)
        shape = (n_filters, source.shape[0], kernel_size, kernel_size)
        self.register_buffer("weight", self._check_weight(weight, shape))

    def compute(self, spikes: torch.Tensor) -> torch.Tensor:
        return F.conv2d(spikes.to(self.weight.dtype), self.weight, stride=self.stride)

    def outer(self, pre, post, reduction, *, alpha, out=None) -> torch.Tensor:
        out = self.weight if out is None else out
        cols = F.unfold(pre.to(out.dtype), self.kernel_size, stride=self.stride)  # [B, P, L]
        post = post.to(out.dtype).reshape(post.shape[0], post.shape[1], -1)  # [B, F, L]
        batch, n_filters = post.shape[0], post.shape[1]
        flat_out = out.view(n_filters, -1)
        if reduction == "max":
            per_sample = torch.bmm(post, cols.transpose(1, 2))  # [B, F, P]
            flat_out.add_(per_sample.amax(0), alpha=alpha)
        else:
            scale = alpha / batch if reduction == "mean" else alpha
            lhs = post.permute(1, 0, 2).reshape(n_filters, -1)
            flat_out.addmm_(lhs, cols.transpose(1, 2).reshape(-1, cols.shape[1]), alpha=scale)
        return out

    def _incoming_view(self) -> torch.Tensor:
        return self.weight.view(self.weight.shape[0], -1).t()


class OneToOne(Connection):
    """Each source neuron drives the target neuron at the same index with ``strength``."""

    def __init__(self, *, source: Nodes, target: Nodes, strength: float) -> None:
        super().__init__(source=source, target=target, wmin=-math.inf, wmax=math.inf)
        if source.shape != target.shape:
            raise ConfigError(
                f"OneToOne needs equal source and target shapes. Got {source.shape} and {target.shape} instead."
            )
        check_param("OneToOne", "strength", strength, Interval(float, None, None))
        self.strength = float(strength)
        self.register_buffer("weight", torch.tensor(self.strength))

    def compute(self, spikes: torch.Tensor) -> torch.Tensor:
        if self._kernels is not None and spikes.dtype == torch.bool and spikes.is_contiguous():
            out = self._out
            self._kernels.one_to_one(spikes.data_ptr(), out.data_ptr(), spikes.numel(), self.strength, 0)
            return out
        return spikes.to(self.weight.dtype) * self.strength

    def compute_add_(self, spikes: torch.Tensor, out: torch.Tensor) -> None:
        if (
            self._kernels is not None
            and spikes.dtype == torch.bool
            and spikes.is_contiguous()
            and out.is_contiguous()
            and out.dtype == torch.float32
        ):
            self._kernels.one_to_one(spikes.data_ptr(), out.data_ptr(), spikes.numel(), self.strength, 1)
            return
        super().compute_add_(spikes, out)

    def dense_weight(self) -> torch.Tensor:
        """The equivalent ``[n, n]`` matrix (for checks)."""
        return torch.eye(self.source.n) * self.strength


class LateralInhibition(Connection):
    """Every neuron inhibits its competitors (not itself) by ``strength``.

    Args:
        strength: Positive inhibition; the current is ``-strength`` per spike.
        competition_dim: ``None``: all neurons compete (Diehl & Cook).
            An axis of the population's shape: neurons compete only with those
            that differ along that axis (LC-SNN: axis 0, the filters at one
            location).
    """

    def __init__(
        self,
        *,
        source: Nodes,
        target: Nodes,
        strength: float,
        competition_dim: int | None = None,
    ) -> None:
        super().__init__(source=source, target=target, wmin=-math.inf, wmax=math.inf)
        if source.shape != target.shape:
            raise ConfigError(
                f"LateralInhibition needs equal source and target shapes. Got {source.shape} "
                f"and {target.shape} instead."
            )
        check_param("LateralInhibition", "strength", strength, Interval(float, 0, None))
        if competition_dim is not None:
            check_param(
                "LateralInhibition", "competition_dim", competition_dim, Interval(int, 0, len(source.shape) - 1)
            )
        self.strength, self.competition_dim = float(strength), competition_dim
        self.register_buffer("weight", torch.tensor(-self.strength))

    def _fused(self, spikes: torch.Tensor) -> bool:
        return (
            self.competition_dim is None
            and self._kernels is not None
            and spikes.dtype == torch.bool
            and spikes.is_contiguous()
        )

    def compute_add_(self, spikes: torch.Tensor, out: torch.Tensor) -> None:
        if self._fused(spikes) and out.is_contiguous() and out.dtype == torch.float32:
            self._kernels.inhibit_all(
                spikes.data_ptr(), out.data_ptr(), spikes.shape[0], self.source.n, self.strength, 1
            )
            return
        super().compute_add_(spikes, out)

    def compute(self, spikes: torch.Tensor) -> torch.Tensor:
        if self._fused(spikes):
            out = self._out
            self._kernels.inhibit_all(
                spikes.data_ptr(), out.data_ptr(), spikes.shape[0], self.source.n, self.strength, 0
            )
            return out
        s = spikes.to(self.weight.dtype)
        if self.competition_dim is None:
            total = s.reshape(s.shape[0], -1).sum(1).view(-1, *([1] * (s.dim() - 1)))
        else:
            total = s.sum(self.competition_dim + 1, keepdim=True)
        return (total - s).mul_(-self.strength)

    def dense_weight(self) -> torch.Tensor:
        """The equivalent ``[n, n]`` matrix (for checks)."""
        index = torch.arange(self.source.n).view(self.source.shape)
        if self.competition_dim is None:
            same_group = torch.ones(self.source.n, self.source.n, dtype=torch.bool)
        else:
            group = index.movedim(self.competition_dim, -1)[..., 0]
            group_of = torch.empty(self.source.n, dtype=torch.long)
            group_of[index.movedim(self.competition_dim, -1).reshape(-1)] = torch.arange(
                group.numel()
            ).repeat_interleave(self.source.shape[self.competition_dim])
            same_group = group_of[:, None] == group_of[None, :]
        same_group.fill_diagonal_(False)
        return same_group.float() * -self.strength
