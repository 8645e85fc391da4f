"""The ``learner`` choice of :class:`~replaybench.agents.replay.ReplayAgent`: what replayed items train.

Each learner is the project's own agent for that algorithm with one change:
its minibatch loop takes replayed items from the replay agent (its
``replayer``). ``backprop`` is the MLP or CNN of the supervised baselines
(replayed items enter through their own loss, so latent replay can feed only
the upper layers); ``sigprop`` and ``efp`` are the forward-only learners of
``agents/forward/`` (replayed items join the minibatch, and every layer's
local loss sees them); ``stdp`` is the Diehl & Cook or LC-SNN network of
``agents/snn.py`` (replayed items are presented with the new ones, STDP
learns from both, and the readout records their labels).
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from replaybench.agents._nets import make_optimizer, mlp
from replaybench.agents._supervised import SupervisedAgent, TrainingConfig
from replaybench.agents.forward.efp import EFPAgent, EFPConfig
from replaybench.agents.forward.sigprop import SigpropAgent, SigpropConfig
from replaybench.agents.snn import SNNClassifier, SNNConfig
from replaybench.errors import ConfigError
from replaybench.protocols import Experience, Stream, module_bytes


class Replayer(Protocol):
    """What a learner asks of the replay agent during its minibatch loop."""

    def draw(self, n: int) -> tuple[Tensor, Tensor] | None:
        """``n`` replay items (rows as stored, labels), or None when there is nothing to replay now."""
        ...

    def feedback(self, losses: Tensor, correct: Tensor) -> None:
        """Per-item losses and correctness of the last draw (prioritised replay)."""
        ...


class _Replays:
    """The replay hook of a learner whose loop concatenates replayed items to its batch."""

    replayer: Replayer | None = None
    input_shape: tuple[int, ...] = ()

    def replay_batch(self, n: int) -> tuple[Tensor, Tensor] | None:
        draw = None if self.replayer is None else self.replayer.draw(n)
        if draw is None:
            return None
        x, y = draw
        return x.view(len(x), *self.input_shape), y

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """The shape of one stored row before flattening: an input."""
        return self.input_shape

    def encode(self, x: Tensor) -> Tensor:
        """The rows a source stores for inputs ``x``: the flattened inputs."""
        return x.flatten(1).float()

    def extra_state_bytes(self) -> dict[str, int]:
        """Bytes the learner keeps across experiences besides its weights (e.g. a slow copy)."""
        return {}

    def linear_layers(self) -> list[nn.Linear]:
        """The weight layers, input to output, for Sleep Replay Consolidation."""
        raise ConfigError(f"{type(self).__name__} has no ANN layers to put to sleep")


class SigpropLearner(_Replays, SigpropAgent):
    """Sigprop (Kohan et al. 2023) whose every layer's local loss also sees the replayed items."""

    def __init__(self, *, stream: Stream, config: SigpropConfig, seed: int, device: str = "cpu") -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        self.input_shape = tuple(stream.input_shape)

    def linear_layers(self) -> list[nn.Linear]:
        return _mlp_layers(self.network, self.config)


class EFPLearner(_Replays, EFPAgent):
    """EFP (Kohan et al. 2018), its two settling phases run on new and replayed items together."""

    def __init__(self, *, stream: Stream, config: EFPConfig, seed: int, device: str = "cpu") -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        self.input_shape = tuple(stream.input_shape)

    def linear_layers(self) -> list[nn.Linear]:
        return _mlp_layers(self.network, self.config)


class STDPLearner(_Replays, SNNClassifier):
    """The STDP feature network and its label-assignment readout, presented new and replayed items."""

    def __init__(self, *, stream: Stream, config: SNNConfig, seed: int, device: str = "cpu") -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        self.input_shape = tuple(stream.input_shape)


class BackpropLearner(SupervisedAgent):
    """The supervised baselines' network trained by backprop, with replay, latent replay and CLS.

    Replayed items get their own cross-entropy (the mean over the replay
    minibatch, added to the new items' mean, as ER). With ``latent_layer``
    = k the stored rows are hidden layer k's outputs, replayed into the
    layers above; the layers below freeze after the first experience so that
    stored latents stay valid (Pellegrini et al. 2020). With ``cls_distill``
    > 0 a slow learner (an EMA of the weights, CLS-ER: Arani et al. 2022)
    makes the predictions, and the fast learner's logits on replayed items
    are pulled toward the slow learner's.
    """

    replayer: Replayer | None = None

    def __init__(
        self,
        *,
        stream: Stream,
        config: TrainingConfig,
        seed: int,
        device: str = "cpu",
        latent_layer: int = 0,
        cls_distill: float = 0.0,
        cls_ema: float = 0.95,
        bias: bool = True,
    ) -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        if not bias:
            if config.architecture != "mlp":
                raise ConfigError("bias=False needs the backprop learner's architecture 'mlp'")
            self.network = mlp(stream.input_shape, config.hidden, stream.n_classes, bias=False).to(self.device)
            self.optimizer = make_optimizer(
                config.optimizer, self.network.parameters(), config.lr, config.momentum, config.weight_decay
            )
        if latent_layer and config.architecture != "mlp":
            raise ConfigError("latent_layer needs the backprop learner's architecture 'mlp'")
        if latent_layer > len(config.hidden):
            raise ConfigError(
                f"latent_layer must be in the range [0, {len(config.hidden)}] for hidden={config.hidden}; "
                f"got {latent_layer}"
            )
        self.latent_layer, self.cls_distill, self.cls_ema = latent_layer, cls_distill, cls_ema
        split = 1 + 2 * latent_layer if latent_layer else 0  # Flatten, then (Linear, ReLU) per hidden layer
        self.lower, self.upper = self.network[:split], self.network[split:]
        self.stored_shape = (config.hidden[latent_layer - 1],) if latent_layer else tuple(stream.input_shape)
        self.slow = copy.deepcopy(self.network).requires_grad_(False) if cls_distill > 0 else None

    def extra_loss(self, x: Tensor, y: Tensor, logits: Tensor) -> Tensor | float:
        if self.slow is not None:
            self._ema()  # the previous step's update reaches the slow learner (the loop has no after-step hook)
        draw = None if self.replayer is None else self.replayer.draw(len(x))
        if draw is None:
            return 0.0
        rx, ry = draw[0].to(self.device), draw[1].to(self.device)
        rx = rx.view(len(rx), *self.stored_shape)
        replay_logits = self.upper(rx)
        per_item = F.cross_entropy(replay_logits, ry, reduction="none")
        self.replayer.feedback(per_item.detach().cpu(), (replay_logits.argmax(1) == ry).cpu())
        loss = per_item.mean()
        if self.slow is not None:
            with torch.no_grad():
                target = self.slow[len(self.lower) :](rx)
            loss = loss + self.cls_distill * F.mse_loss(replay_logits, target)
        return loss

    def after_experience(self, experience: Experience) -> dict[str, float] | None:
        if self.latent_layer and experience.index == 0:
            self.lower.requires_grad_(False)
        if self.slow is not None:
            self._ema()
        return None

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Stored rows: the inputs, or hidden layer ``latent_layer``'s outputs."""
        if not self.latent_layer:
            return x.flatten(1).float()
        self.lower.eval()
        return torch.cat([self.lower(x[i : i + 1024].to(self.device)).cpu() for i in range(0, len(x), 1024)])

    def extra_state_bytes(self) -> dict[str, int]:
        return {"slow_network": module_bytes(self.slow)} if self.slow is not None else {}

    def linear_layers(self) -> list[nn.Linear]:
        if self.config.architecture != "mlp":
            raise ConfigError("Sleep Replay Consolidation needs an MLP learner (architecture 'mlp')")
        return [m for m in self.network if isinstance(m, nn.Linear)]

    @torch.no_grad()
    def predict(self, x: Tensor, task_id: int | None = None) -> Tensor:
        if self.slow is None:
            return super().predict(x, task_id)
        self.slow.eval()
        return self.slow(x.to(self.device))

    def _ema(self) -> None:
        """Slow ← ema·slow + (1 − ema)·fast."""
        with torch.no_grad():
            for slow, fast in zip(self.slow.parameters(), self.network.parameters()):
                slow.mul_(self.cls_ema).add_(fast, alpha=1 - self.cls_ema)


def _mlp_layers(network: nn.Module, config: Any) -> list[nn.Linear]:
    if config.architecture != "mlp" or config.norm != "none":
        raise ConfigError("Sleep Replay Consolidation needs an MLP learner without norm layers")
    return [block.weights for block in network.blocks] + [network.head]


LEARNERS: dict[str, tuple[type, type]] = {
    "backprop": (BackpropLearner, TrainingConfig),
    "sigprop": (SigpropLearner, SigpropConfig),
    "efp": (EFPLearner, EFPConfig),
    "stdp": (STDPLearner, SNNConfig),
}
"""learner name → (class, its Config)."""

ANN_LEARNERS = ("backprop", "sigprop", "efp")
"""Learners with ReLU/tanh weight layers that SRC converts to integrate-and-fire layers."""
