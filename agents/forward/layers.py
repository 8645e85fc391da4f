"""Layer stacks for forward-only learners, and the minibatch loop they share.

A forward-only learner trains each layer from a signal that reaches it in
the forward direction (sigprop's target signal, EFP's looped-back output), so
the network is held as a list of separately trainable blocks plus a linear
output head rather than one ``nn.Sequential``. A plain forward pass through
the blocks and the head is the inference network; it is the same network
:func:`replaybench.agents._nets.build_network` gives backprop (Linear-ReLU or
Conv-ReLU-MaxPool), optionally with a per-sample normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from replaybench import progress
from replaybench.agents._nets import make_optimizer
from replaybench.agents._supervised import TrainingConfig
from replaybench.errors import ConfigError, DivergenceError
from replaybench.params import InstanceOf, OneOf, param
from replaybench.protocols import Experience, Stream

ACTIVATIONS = {"relu": nn.ReLU, "leaky-relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}

_LEAKY_SLOPE = nn.LeakyReLU().negative_slope
ACTIVATION_BACKWARD = {
    "relu": lambda grad, out: torch.ops.aten.threshold_backward(grad, out, 0.0),
    "leaky-relu": lambda grad, out: torch.ops.aten.leaky_relu_backward(grad, out, _LEAKY_SLOPE, True),
    "tanh": torch.ops.aten.tanh_backward,
    "sigmoid": torch.ops.aten.sigmoid_backward,
}
"""``(dL/dout, out) -> dL/dpre`` for each activation: the kernels autograd's own backward runs, from the output."""


@dataclass(frozen=True)
class LocalConfig(TrainingConfig):
    """Options every forward-only learner has, on top of the minibatch loop's."""

    activation: str = param("relu", OneOf(*ACTIVATIONS))
    norm: str = param("none", OneOf("layer", "none"))
    """Per-sample normalisation after each layer's weights: "layer" (LayerNorm; GroupNorm(1) on maps) or "none"."""
    cosine_lr: bool = param(False, InstanceOf(bool))
    """Anneal the learning rate to 0 over each experience's epochs (cosine); off keeps it constant."""


class LocalBlock(nn.Module):
    """One trainable layer: weights, optional per-sample norm, activation, optional pool.

    ``forward(x, drive)`` adds ``drive`` to the weights' output before the
    norm and activation; EFP's loop enters the first layer this way.

    Args:
        weights: An ``nn.Linear`` or ``nn.Conv2d``.
        norm: "none" or "layer" (LayerNorm over features; over C×H×W for conv).
        activation: A key of :data:`ACTIVATIONS`.
        pool: Max-pool by 2 after the activation (conv blocks).
    """

    def __init__(self, weights: nn.Linear | nn.Conv2d, *, norm: str, activation: str, pool: bool) -> None:
        super().__init__()
        self.weights = weights
        self.conv = isinstance(weights, nn.Conv2d)
        width = weights.out_channels if self.conv else weights.out_features
        if norm == "layer":
            # Per-sample normalisation keeps one sample's output independent of the
            # batch, which sigprop's per-class targets rely on (see sigprop.py).
            self.norm: nn.Module = nn.GroupNorm(1, width) if self.conv else nn.LayerNorm(width)
        else:
            self.norm = nn.Identity()
        self.activation = ACTIVATIONS[activation]()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    @property
    def in_width(self) -> int:
        """Input features (linear) or channels (conv)."""
        return self.weights.in_channels if self.conv else self.weights.in_features

    @property
    def out_width(self) -> int:
        """Output features (linear) or channels (conv)."""
        return self.weights.out_channels if self.conv else self.weights.out_features

    def forward(self, x: torch.Tensor, drive: torch.Tensor | None = None) -> torch.Tensor:
        pre = self.weights(x)
        if drive is not None:
            pre = pre + drive
        return self.pool(self.activation(self.norm(pre)))


class ForwardNet(nn.Module):
    """Blocks then a linear head; ``forward`` is the plain inference pass.

    Args:
        blocks: The hidden layers, in order. Their widths must chain.
        head: The linear output layer, fed the last block's flattened output.
        input_shape: Shape of one input (without the batch dimension).

    Raises:
        ConfigError: The widths do not chain, or the first layer does not fit
            the input.
    """

    def __init__(self, blocks: Sequence[LocalBlock], head: nn.Linear, input_shape: Sequence[int]) -> None:
        super().__init__()
        if not blocks:
            raise ConfigError("A ForwardNet needs at least one hidden layer; got none.")
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.input_shape = tuple(input_shape)
        self.conv = blocks[0].conv
        expected = self.input_shape[0] if self.conv else math.prod(self.input_shape)
        if blocks[0].in_width != expected:
            raise ConfigError(
                f"Layer 1 of ForwardNet takes {blocks[0].in_width} inputs but the input "
                f"{self.input_shape} gives {expected}."
            )
        for i in range(1, len(blocks)):
            if blocks[i].in_width != blocks[i - 1].out_width:
                raise ConfigError(
                    f"Layer {i + 1} of ForwardNet takes {blocks[i].in_width} inputs but layer {i} gives "
                    f"{blocks[i - 1].out_width}; the layer widths must chain."
                )
        # Each block's pre-activation shape (what a drive must match) and output shape.
        self.pre_shapes: list[tuple[int, ...]] = []
        self.out_shapes: list[tuple[int, ...]] = []
        shape = self.input_shape if self.conv else (expected,)
        for block in blocks:
            if block.conv:  # 3×3 conv with padding 1 keeps H×W; the pool halves it
                self.pre_shapes.append((block.out_width, *shape[1:]))
                shape = (block.out_width, shape[1] // 2, shape[2] // 2)
            else:
                self.pre_shapes.append((block.out_width,))
                shape = (block.out_width,)
            self.out_shapes.append(shape)
        if head.in_features != math.prod(self.out_shapes[-1]):
            raise ConfigError(
                f"The head of ForwardNet takes {head.in_features} inputs but layer {len(blocks)} gives "
                f"{math.prod(self.out_shapes[-1])}; the layer widths must chain."
            )

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The first block's input: images as-is for conv, flattened for linear."""
        return x if self.conv else x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.prepare(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h.flatten(1))


def build_forward_net(
    architecture: str,
    input_shape: Sequence[int],
    hidden: Sequence[int],
    n_classes: int,
    *,
    norm: str = "none",
    activation: str = "relu",
) -> ForwardNet:
    """The MLP or small CNN of :mod:`replaybench.agents._nets` as separately trainable blocks.

    "mlp": Linear(→h)-act per width in ``hidden``; "cnn": Conv3×3(→c)-act-MaxPool2
    per channel count in ``hidden``; then a linear head to ``n_classes``.
    """
    blocks: list[LocalBlock] = []
    if architecture == "mlp":
        width = math.prod(input_shape)
        for h in hidden:
            blocks.append(LocalBlock(nn.Linear(width, h), norm=norm, activation=activation, pool=False))
            width = h
        head_in = width
    else:
        c_in, side_h, side_w = input_shape
        for c in hidden:
            blocks.append(LocalBlock(nn.Conv2d(c_in, c, 3, padding=1), norm=norm, activation=activation, pool=True))
            c_in, side_h, side_w = c, side_h // 2, side_w // 2
        head_in = c_in * side_h * side_w
    return ForwardNet(blocks, nn.Linear(head_in, n_classes), input_shape)


def check_architecture(owner: str, config: TrainingConfig, stream: Stream) -> None:
    """Refuse, at construction, a network that cannot be built for ``stream``."""
    if not config.hidden or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in config.hidden):
        raise ConfigError(
            f"The 'hidden' parameter of {owner} must be a non-empty tuple of positive ints. "
            f"Got {config.hidden!r} instead."
        )
    if config.architecture == "cnn":
        if len(stream.input_shape) != 3:
            raise ConfigError(
                f"The 'cnn' architecture needs image input [C, H, W]; stream {stream.name} gives {stream.input_shape}."
            )
        side = min(stream.input_shape[1:])
        if side >> len(config.hidden) < 1:
            raise ConfigError(
                f"{len(config.hidden)} conv blocks pool the {side}-pixel input of stream "
                f"{stream.name} below one pixel; use at most {side.bit_length() - 1}."
            )


class LocalLearner:
    """The minibatch loop of a forward-only learner.

    A subclass builds ``self.network`` (a :class:`ForwardNet`), any extra
    modules and ``self.optimizer``, then implements :meth:`step`: the
    algorithm's own computation of the layers' gradients for one minibatch.
    The loop then takes one optimiser step.
    """

    kinds: ClassVar[frozenset[str]] = frozenset({"supervised"})

    def __init__(self, *, stream: Stream, config: LocalConfig, seed: int, device: str = "cpu") -> None:
        check_architecture(type(self).__name__, config, stream)
        self.config = config
        self.device = torch.device(device)
        self.n_classes = stream.n_classes
        self.multi_head = stream.scenario == "task-il"
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # weight initialisation below draws from the global generator
        self.last_epoch_losses: list[float] = []
        """Mean local loss of each epoch of the last ``learn`` (:class:`~replaybench.protocols.KeepsEpochLosses`)."""

    def make_optimizer(self, modules: Sequence[nn.Module]) -> torch.optim.Optimizer:
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        return make_optimizer(
            self.config.optimizer, params, self.config.lr, self.config.momentum, self.config.weight_decay
        )

    def step(self, x: torch.Tensor, y: torch.Tensor, head_mask: torch.Tensor | None) -> torch.Tensor:
        """Accumulate this minibatch's gradients (``.grad``) and return its summed local loss."""
        raise NotImplementedError

    def learn(self, experience: Experience) -> dict[str, float]:
        x_all, y_all = experience.train_x, experience.train_y
        n, bs = len(x_all), self.config.batch_size
        head_mask = self.head_mask(experience.classes)
        self.network.train()
        total, steps = torch.zeros(()), 0
        self.last_epoch_losses = []
        base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        for epoch in progress.track(range(self.config.epochs), f"experience {experience.index}: epochs"):
            epoch_total, epoch_steps = torch.zeros(()), 0  # a separate sum: total's arithmetic is unchanged
            if self.config.cosine_lr:
                for group, lr in zip(self.optimizer.param_groups, base_lrs):
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / self.config.epochs))
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                x, y = x_all[idx].to(self.device), y_all[idx].to(self.device)
                replay = self.replay_batch(len(idx))
                if replay is not None:  # replayed items join the minibatch (the layers' losses are means over it)
                    x = torch.cat([x, replay[0].to(self.device)])
                    y = torch.cat([y, replay[1].to(self.device)])
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.step(x, y, head_mask)
                self.optimizer.step()
                total += loss.detach().cpu()
                epoch_total += loss.detach().cpu()
                steps += 1
                epoch_steps += 1
            self.last_epoch_losses.append(epoch_total.item() / max(epoch_steps, 1))
            if not torch.isfinite(total):
                raise DivergenceError(
                    f"{type(self).__name__} local loss became {total.item()} on experience "
                    f"{experience.index}; lower the learning rate."
                )
        for group, lr in zip(self.optimizer.param_groups, base_lrs):
            group["lr"] = lr
        stats = {"train_loss": total.item() / max(steps, 1), "steps": float(steps)}
        stats.update(self.after_experience(experience) or {})
        return stats

    def after_experience(self, experience: Experience) -> dict[str, float] | None:
        """Called after training on ``experience``; may return statistics."""
        return None

    def replay_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Items (x, y) to add to a minibatch of ``n`` new ones (:mod:`replaybench.agents.replay`)."""
        return None

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        self.network.eval()
        return self.network(x.to(self.device))

    def head_mask(self, classes: tuple[int, ...]) -> torch.Tensor | None:
        """Task-IL trains only the current task's outputs, as :class:`SupervisedAgent` does."""
        if not self.multi_head:
            return None
        mask = torch.full((self.n_classes,), float("-inf"), device=self.device)
        mask[list(classes)] = 0.0
        return mask


def masked_cross_entropy(logits: torch.Tensor, y: torch.Tensor, head_mask: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy over the unmasked outputs (all of them when ``head_mask`` is None)."""
    return F.cross_entropy(logits if head_mask is None else logits + head_mask, y)
