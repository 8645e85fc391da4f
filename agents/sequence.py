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
from replaybench.params import Config, InstanceOf, Interval, OneOf, param
from replaybench.protocols import Experience, Stream


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

    def build_core(self, d_in: int, d_out: int) -> nn.Module:
        """The network mapping [B, T, d_in] to [B, T, d_out]."""
        raise NotImplementedError

    def learn(self, experience: Experience) -> dict[str, float]:
        """Train for ``config.updates`` minibatch updates on the experience."""
        return self.train_updates(experience, self.config.updates)

    def train_updates(
        self, experience: Experience, updates: int, on_update: Callable[[int, float], None] | None = None
    ) -> dict[str, float]:
        """Run ``updates`` minibatch updates; ``on_update(update, loss)`` after each one."""
        x_all, y_all = experience.train_x, experience.train_y
        mask = experience.info["output_mask"].to(self.device)
        self.core.train()
        loss_value = float("nan")
        for update in range(updates):
            idx = torch.randint(len(x_all), (self.config.batch_size,), generator=self.generator)
            x, y = x_all[idx].to(self.device), y_all[idx].to(self.device)
            loss = self.sequence_loss(self.core(x), y, mask)
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
            loss_value = loss.item()
            if on_update is not None:
                on_update(update, loss_value)
        return {"loss": loss_value, "updates": float(updates)}

    @staticmethod
    def sequence_loss(outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE over the output phase (float targets) or cross-entropy over masked steps (int states)."""
        if targets.dtype == torch.long:
            return F.cross_entropy(outputs[:, mask].flatten(0, 1), targets[:, mask].flatten())
        return F.mse_loss(outputs[:, mask], targets[:, mask])

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
        """Adam learning rate: the lattice's few weights learn fastest at 3e-2 (docs/wave.md, Table 1)."""

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
