"""Sequence agents for the variable-binding and flip-flop streams.

Four recurrent cores share one training loop (:class:`SequenceAgent`):

- ``ElmanAgent``: ``nn.RNN`` (tanh, no bias) with a linear readout without
  bias, EMT's model (Karuvally et al., arXiv 2310.02430).
- ``LSTMAgent``: ``nn.LSTM`` without bias, the same readout.
- ``WaveLBCAgent`` / ``WaveSBCAgent``: an input encoder writes into the start
  boundary of a :class:`~replaybench.memories.wave.WaveLattice` with the linear (LBC) or
  self-attention (SBC) boundary; a linear readout reads the whole lattice.

Training follows EMT's recipe: Adam (lr 1e-3), gradient clipping at 1.0,
batches of 64, MSE on the output phase for variable binding and cross-entropy
on every step for flip-flops. Each experience gets ``updates`` minibatch
updates drawn from its training sequences.

**Replay** (``source``, ``memory_bytes``, ``replay_batch_size``; every agent
here has them). After an experience is learned, a memory keeps whole training
sequences (inputs and targets) of it, with the experience's output mask; each
later update adds the loss on ``replay_batch_size`` stored sequences to the
loss on the current minibatch (the two means are summed, as in ER's loop in
``agents/_supervised.py``). Experiences may differ in length and mask
(vb-repeat-copy's horizons), so stored sequences stay grouped by experience:
a replay draw is split into its groups, each group's loss is computed with
its own mask, and the groups' losses are averaged weighted by their number of
sequences, so every replayed sequence counts once (its loss the mean over its
own scored steps), whatever its length.

- ``source="buffer"`` (:class:`SequenceShares`): equal byte shares of
  ``memory_bytes`` for every experience seen, each a uniform random subset of
  that experience's sequences; a draw is uniform over all stored sequences.
- ``source="wave"`` (:class:`SequenceWave`): the latest experience only, one
  flattened sequence per slot of a copy-boundary
  :class:`~replaybench.memories.wave_replay.WaveSource`, read out as
  contiguous stretches of the wave (awake replay).
- ``source="none"``: no memory; the agent is exactly the one without these
  options (the replay draws use their own generator).

Example:
    >>> from replaybench.streams.sequence_tasks import make_vb_repeat_copy
    >>> stream = make_vb_repeat_copy(d=4, s=4, horizons=(4,), n_train=64, n_test=8)
    >>> agent = WaveLBCAgent(stream=stream, config=WaveLBCAgent.Config(updates=2, slots=4), seed=0)
    >>> agent.predict(stream.experiences[0].test_x).shape
    torch.Size([8, 8, 4])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from replaybench.errors import ConfigError, DivergenceError
from replaybench.memories.wave import WaveLattice
from replaybench.memories.wave_replay import WaveSource
from replaybench.params import Config, InstanceOf, Interval, OneOf, Optional, param
from replaybench.protocols import Experience, Stream

SOURCES = ("none", "buffer", "wave")
"""Where replayed sequences come from (``SequenceTrainingConfig.source``)."""


@dataclass(frozen=True)
class SequenceTrainingConfig(Config):
    """The training loop's hyperparameters (EMT's recipe by default)."""

    updates: int = param(2000, Interval(int, 1, None))
    """Minibatch updates per experience."""
    batch_size: int = param(64, Interval(int, 1, None))
    lr: float = param(1e-3, Interval(float, 0, None, closed="neither"))
    """Adam learning rate."""
    grad_clip: float = param(1.0, Interval(float, 0, None, closed="neither"))
    """Maximum gradient norm."""
    weight_decay: float = param(0.0, Interval(float, 0, None))
    """L2 penalty (Adam's weight_decay, as EMT's l2_penalty)."""
    source: str = param("none", OneOf(*SOURCES))
    """Replay with every update: none, equal per-experience shares of every experience seen ("buffer"),
    or the latest experience held in a traveling-wave lattice ("wave"); see the module docstring."""
    memory_bytes: int = param(1_000_000, Interval(int, 1, None))
    """source != none: bytes kept across experiences: stored inputs and targets (and the wave's label
    column), plus one bool output mask per stored experience."""
    replay_batch_size: int | None = param(None, Optional(Interval(int, 1, None)))
    """source != none: stored sequences replayed per update; None: ``batch_size``."""


class ElmanCore(nn.Module):
    """Elman RNN, tanh, optional bias, linear readout."""

    def __init__(self, d_in: int, d_out: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.rnn = nn.RNN(d_in, hidden, nonlinearity="tanh", bias=bias, batch_first=True)
        self.readout = nn.Linear(hidden, d_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.rnn(x)[0])


class LSTMCore(nn.Module):
    """LSTM, optional bias, linear readout."""

    def __init__(self, d_in: int, d_out: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.rnn = nn.LSTM(d_in, hidden, bias=bias, batch_first=True)
        self.readout = nn.Linear(hidden, d_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.rnn(x)[0])


class WaveCore(nn.Module):
    """Encoder into the start boundary, a wave lattice, a readout of the flattened lattice."""

    def __init__(self, d_in: int, d_out: int, lattice: WaveLattice, bias: bool) -> None:
        super().__init__()
        self.encoder = nn.Linear(d_in, lattice.features, bias=bias)
        self.lattice = lattice
        self.readout = nn.Linear(lattice.slots * lattice.features, d_out, bias=bias)
        lattice.zero_boundary()  # start as a pure traveling wave and learn f from there

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = self.lattice(self.encoder(x))
        return self.readout(states.flatten(2))


Group = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Replayed sequences of one experience: inputs [n, T, d_in], targets [n, T, ...] and its mask [T]."""


class SequenceShares:
    """Whole sequences of every experience seen, ``budget_bytes`` split equally between experiences.

    Experience k's sequences are kept as a uniform random subset (a random
    permutation, cut to what its share holds); when another experience
    arrives every share becomes ``(budget_bytes - masks) // experiences`` and
    each group keeps a prefix of its permutation, still a uniform subset. A
    sequence costs the bytes of its stored input and target rows (float32
    inputs; targets in the stream's dtype, float32 or int64), an experience
    its bool output mask. An experience whose share holds no sequence is not
    kept. :meth:`draw` is uniform over all stored sequences.

    Equal shares rather than one reservoir: sequence lengths differ between
    experiences, so one reservoir would need slots as long as the longest
    sequence, while a share per experience stores each at its own length and
    keeps the grouping by experience that the masked loss needs. The
    sequence streams give every experience the same number of training
    sequences, so a reservoir would hold equal shares in expectation anyway.
    """

    def __init__(self, *, budget_bytes: int, generator: torch.Generator) -> None:
        self.budget_bytes, self.generator = budget_bytes, generator
        self.groups: list[Group] = []
        self.experiences: list[int] = []
        """The experience index of each group."""

    @staticmethod
    def sequence_bytes(x: torch.Tensor, y: torch.Tensor) -> int:
        """Bytes of one stored sequence: its input and target rows ``x [T, d_in]``, ``y [T, ...]``."""
        return x.nelement() * 4 + y.nelement() * y.element_size()

    def add(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, index: int) -> None:
        """Keep a uniform random subset of experience ``index``'s sequences, and shrink the older shares."""
        order = torch.randperm(len(x), generator=self.generator)
        self.groups.append((x[order].float(), y[order], mask.clone()))
        self.experiences.append(index)
        masks = sum(m.nelement() for _, _, m in self.groups)
        share = max(0, self.budget_bytes - masks) // len(self.groups)
        kept, experiences = [], []
        for (gx, gy, gm), k in zip(self.groups, self.experiences):
            keep = min(len(gx), share // self.sequence_bytes(gx[0], gy[0]))
            if keep:
                kept.append((gx[:keep].clone(), gy[:keep].clone(), gm))
                experiences.append(k)
        self.groups, self.experiences = kept, experiences

    def draw(self, n: int) -> list[Group]:
        """``n`` stored sequences drawn uniformly with replacement, grouped by experience."""
        sizes = torch.tensor([len(gx) for gx, _, _ in self.groups])
        idx = torch.randint(int(sizes.sum()), (n,), generator=self.generator)
        ends = sizes.cumsum(0)
        which = torch.bucketize(idx, ends, right=True)
        local = idx - (ends - sizes)[which]
        draws = []
        for g, (gx, gy, gm) in enumerate(self.groups):
            rows = local[which == g]
            if len(rows):
                draws.append((gx[rows], gy[rows], gm))
        return draws

    def __len__(self) -> int:
        return sum(len(gx) for gx, _, _ in self.groups)

    @property
    def nbytes(self) -> int:
        return sum(self.parts().values())

    def parts(self) -> dict[str, int]:
        """Bytes by part: the stored sequences and the experiences' output masks."""
        return {
            "replay_sequences": sum(gx.nbytes + gy.nbytes for gx, gy, _ in self.groups),
            "replay_masks": sum(m.nelement() for _, _, m in self.groups),
        }


class SequenceWave:
    """The latest experience's sequences in a :class:`WaveSource`, one flattened sequence per slot.

    A sequence becomes one row, ``flat(x) ++ flat(y)`` in float32 (inputs,
    ±1/0 targets and flip-flop states 0..2 are all exact in float32); the
    source's label column carries the experience index. With ``s = (budget -
    T) // (4 row + 8)`` slots (T bytes for the mask), an experience of more
    than s sequences is written as s evenly spaced ones, so the lattice spans
    it. Every experience gets a fresh lattice: a lattice's width is fixed and
    sequence lengths may change between experiences, and the source then
    holds the latest experience only, whatever the budget (the buffer is the
    source for older ones). An experience none of whose sequences fits holds
    nothing. :meth:`draw` reads contiguous stretches of the wave, each
    forward or reversed at random (:meth:`WaveSource.sequence`); a minibatch
    loss does not depend on the order of its sequences, so the direction is
    not an option here.
    """

    def __init__(self, *, budget_bytes: int, generator: torch.Generator) -> None:
        self.budget_bytes, self.generator = budget_bytes, generator
        self.source: WaveSource | None = None
        self.layout: tuple[torch.Size, torch.Size, torch.dtype, torch.Tensor] | None = None
        """Input and target shapes of one sequence, the target dtype and the experience's mask."""

    @staticmethod
    def sequence_bytes(x: torch.Tensor, y: torch.Tensor) -> int:
        """Bytes of one slot: the float32 row of ``x [T, d_in]`` and ``y [T, ...]``, and the int64 label."""
        return 4 * (x.nelement() + y.nelement()) + 8

    def add(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, index: int) -> None:
        """Write experience ``index`` into a fresh lattice (the index rides in the label column)."""
        width = x[0].nelement() + y[0].nelement()
        budget = self.budget_bytes - mask.nelement()
        self.source = self.layout = None
        if budget < 1 or WaveSource.capacity_for(budget, width) < 1:
            return
        self.source = WaveSource(budget_bytes=budget, n_features=width, generator=self.generator, direction="both")
        rows = torch.cat([x.flatten(1).float(), y.flatten(1).float()], dim=1)
        self.source.add(rows, torch.full((len(x),), index, dtype=torch.long))
        self.layout = (x.shape[1:], y.shape[1:], y.dtype, mask.clone())

    def draw(self, n: int) -> list[Group]:
        """``n`` sequences read from the wave as stretches of slots (one group: the latest experience)."""
        x_shape, y_shape, y_dtype, mask = self.layout
        rows, _ = self.source.sequence(n)
        split = x_shape.numel()
        x = rows[:, :split].reshape(n, *x_shape)
        y = rows[:, split:].reshape(n, *y_shape)
        return [(x, y.round().to(y_dtype) if not y_dtype.is_floating_point else y.to(y_dtype), mask)]

    def __len__(self) -> int:
        return 0 if self.source is None else len(self.source)

    @property
    def nbytes(self) -> int:
        return sum(self.parts().values())

    def parts(self) -> dict[str, int]:
        """Bytes by part: the wave's filled slots (rows and labels) and the experience's output mask."""
        if self.source is None:
            return {"replay_sequences": 0, "replay_masks": 0}
        return {"replay_sequences": self.source.nbytes, "replay_masks": self.layout[3].nelement()}


class SequenceAgent:
    """Base: one recurrent core trained by BPTT on each experience in turn.

    Subclasses set ``Config`` and implement :meth:`build_core`.
    """

    kinds: ClassVar[frozenset[str]] = frozenset({"sequence"})
    Config: ClassVar[type[SequenceTrainingConfig]] = SequenceTrainingConfig

    def __init__(self, *, stream: Stream, config: SequenceTrainingConfig, seed: int, device: str = "cpu") -> None:
        if stream.scenario != "sequence":
            raise ConfigError(
                f"{type(self).__name__} needs a sequence stream. Got scenario {stream.scenario!r} "
                f"from stream {stream.name!r} instead."
            )
        self.config = config
        self.device = torch.device(device)
        self.d_in = stream.input_shape[-1]
        self.d_out = getattr(stream, "output_size", None) or stream.experiences[0].info["d_out"]
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.core = self.build_core(self.d_in, self.d_out).to(self.device)
        self.optimizer = torch.optim.Adam(self.core.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.updates_done = 0
        self.memory = self.build_memory(stream, seed)
        self.replay_batch_size = config.replay_batch_size or config.batch_size
        self.replayed = 0

    def build_memory(self, stream: Stream, seed: int) -> SequenceShares | SequenceWave | None:
        """The memory ``config.source`` names; refused when ``memory_bytes`` holds no sequence of the stream.

        The check takes the stream's longest sequence (with its experience's
        mask), so that every experience fits on its own. The memory draws from
        its own generator, so the current minibatches are those of
        ``source="none"``.
        """
        c = self.config
        if c.source == "none":
            return None
        memory_cls = SequenceShares if c.source == "buffer" else SequenceWave
        need = max(
            memory_cls.sequence_bytes(e.train_x[0], e.train_y[0]) + e.info["output_mask"].nelement()
            for e in stream.experiences
        )
        if c.memory_bytes < need:
            raise ConfigError(
                f"memory_bytes={c.memory_bytes:,} holds no sequence of stream {stream.name!r} for source={c.source!r}: "
                f"its longest, with its experience's output mask, needs {need:,} bytes."
            )
        generator = torch.Generator().manual_seed(seed + 2**32)  # apart from every batch generator's seed
        return memory_cls(budget_bytes=c.memory_bytes, generator=generator)

    def build_core(self, d_in: int, d_out: int) -> nn.Module:
        """The network mapping [B, T, d_in] to [B, T, d_out]."""
        raise NotImplementedError

    def learn(self, experience: Experience) -> dict[str, float]:
        """Train for ``config.updates`` minibatch updates on the experience, then store it (source != none).

        Stats: the last update's loss, the updates, ``replay_samples`` (sequences replayed while
        learning this experience) and, with a memory, ``replay_stored`` (sequences held after it).
        """
        self.replayed = 0
        stats = self.train_updates(experience, self.config.updates)
        stats["replay_samples"] = float(self.replayed)
        if self.memory is not None:
            self.memory.add(experience.train_x, experience.train_y, experience.info["output_mask"], experience.index)
            stats["replay_stored"] = float(len(self.memory))
        return stats

    def train_updates(
        self, experience: Experience, updates: int, on_update: Callable[[int, float], None] | None = None
    ) -> dict[str, float]:
        """Run ``updates`` minibatch updates; ``on_update(update, loss)`` after each one.

        With a non-empty memory each update adds :meth:`replay_loss` on ``replay_batch_size`` stored sequences.
        """
        x_all, y_all = experience.train_x, experience.train_y
        mask = experience.info["output_mask"]
        loss_value = float("nan")
        for update in range(updates):
            idx = torch.randint(len(x_all), (self.config.batch_size,), generator=self.generator)
            loss_value, _ = self.train_batch(x_all[idx], y_all[idx], mask)
            if on_update is not None:
                on_update(update, loss_value)
        return {"loss": loss_value, "updates": float(updates)}

    def train_batch(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> tuple[float, torch.Tensor]:
        """One update on the minibatch ``(x, y)`` scored on ``mask`` (plus replay with a non-empty memory).

        Returns the loss and the batch's outputs before the update (detached).

        Callers that draw fresh data for every update (EMT's protocol,
        ``benchmarks/emt_protocol.py``) call this directly.
        """
        self.core.train()
        outputs = self.core(x.to(self.device))
        loss = self.sequence_loss(outputs, y.to(self.device), mask.to(self.device))
        if self.memory is not None and len(self.memory):
            loss = loss + self.replay_loss(self.memory.draw(self.replay_batch_size))
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"{type(self).__name__}'s loss became {loss.item()} at update "
                f"{self.updates_done}; lower 'lr' or 'grad_clip'."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.core.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.updates_done += 1
        return loss.item(), outputs.detach()

    @staticmethod
    def sequence_loss(outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE over the output phase (float targets) or cross-entropy over masked steps (int states)."""
        if targets.dtype == torch.long:
            return F.cross_entropy(outputs[:, mask].flatten(0, 1), targets[:, mask].flatten())
        return F.mse_loss(outputs[:, mask], targets[:, mask])

    def replay_loss(self, groups: list[Group]) -> torch.Tensor:
        """The mean over replayed sequences of each one's masked loss: groups weighted by their size.

        Each group (one experience) runs through the core on its own, since lengths may differ,
        and is scored with its own mask.
        """
        total = sum(len(x) for x, _, _ in groups)
        self.replayed += total
        loss = torch.zeros((), device=self.device)
        for x, y, mask in groups:
            outputs = self.core(x.to(self.device))
            group_loss = self.sequence_loss(outputs, y.to(self.device), mask.to(self.device))
            loss = loss + group_loss * (len(x) / total)
        return loss

    def state_bytes(self) -> dict[str, int]:
        """The replay memory by part (sequences, masks); nothing else is kept besides the core's weights
        (the core's wave lattice is emptied for every sequence)."""
        return {} if self.memory is None else self.memory.parts()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Per-step outputs [N, T, d_out] (regression outputs or state logits)."""
        self.core.eval()
        outputs = [self.core(chunk.to(self.device)).cpu() for chunk in x.split(1024)]
        return torch.cat(outputs)


class ElmanAgent(SequenceAgent):
    """Elman RNN (EMT's model: tanh, no bias, hidden 128)."""

    @dataclass(frozen=True)
    class Config(SequenceTrainingConfig):
        owner_name: ClassVar[str] = "ElmanAgent"
        hidden: int = param(128, Interval(int, 1, None))
        """Hidden units."""
        bias: bool = param(False, InstanceOf(bool))
        """Biases in the RNN and readout (EMT: none)."""

    def build_core(self, d_in: int, d_out: int) -> nn.Module:
        return ElmanCore(d_in, d_out, self.config.hidden, self.config.bias)


class LSTMAgent(SequenceAgent):
    """LSTM baseline."""

    @dataclass(frozen=True)
    class Config(SequenceTrainingConfig):
        owner_name: ClassVar[str] = "LSTMAgent"
        hidden: int = param(128, Interval(int, 1, None))
        """Hidden units."""
        bias: bool = param(False, InstanceOf(bool))
        """Biases in the LSTM and readout."""

    def build_core(self, d_in: int, d_out: int) -> nn.Module:
        return LSTMCore(d_in, d_out, self.config.hidden, self.config.bias)


@dataclass(frozen=True)
class WaveConfig(SequenceTrainingConfig):
    """Lattice options shared by the wave agents."""

    slots: int = param(8, Interval(int, 1, None))
    """s: history slots of the lattice."""
    features: int = param(8, Interval(int, 1, None))
    """d: independent waves (width of each slot)."""
    activation: str = param("tanh", OneOf("identity", "tanh"))
    """Nonlinearity at the start boundary."""
    bias: bool = param(False, InstanceOf(bool))
    """Biases in the encoder, the boundary and the readout."""


class WaveLBCAgent(SequenceAgent):
    """Wave lattice with the linear boundary condition."""

    @dataclass(frozen=True)
    class Config(WaveConfig):
        owner_name: ClassVar[str] = "WaveLBCAgent"
        lr: float = param(3e-2, Interval(float, 0, None, closed="neither"))
        """Adam learning rate. 3e-2 comes from an early probe at a fixed horizon, scored on test accuracy;
        under EMT's protocol validation chose 3e-3 (s = 8) and 1e-2 (s = 16) (docs/wave.md)."""

    def build_core(self, d_in: int, d_out: int) -> nn.Module:
        c = self.config
        lattice = WaveLattice(
            slots=c.slots, features=c.features, boundary="linear", activation=c.activation, bias=c.bias
        )
        return WaveCore(d_in, d_out, lattice, c.bias)


class WaveSBCAgent(SequenceAgent):
    """Wave lattice with the self-attention boundary condition."""

    @dataclass(frozen=True)
    class Config(WaveConfig):
        owner_name: ClassVar[str] = "WaveSBCAgent"
        heads: int = param(8, Interval(int, 1, None))
        """Attention heads (must divide ``features``)."""
        position_bias: bool = param(True, InstanceOf(bool))
        """Learn a per-slot score bias (the slots' relative position)."""

    def build_core(self, d_in: int, d_out: int) -> nn.Module:
        c = self.config
        lattice = WaveLattice(
            slots=c.slots,
            features=c.features,
            boundary="attention",
            activation=c.activation,
            heads=c.heads,
            position_bias=c.position_bias,
        )
        return WaveCore(d_in, d_out, lattice, c.bias)
