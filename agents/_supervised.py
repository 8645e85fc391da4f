"""What every supervised agent shares: a network, an optimiser and the
minibatch loop over an experience.

An agent file subclasses :class:`SupervisedAgent` and overrides at most the
named hooks: ``replay_batch`` (extra items for each step), ``extra_loss``
(a regulariser), ``before_experience`` and ``after_experience``. The loop
itself is written once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from replaybench import progress
from replaybench.agents._nets import build_network, make_optimizer
from replaybench.errors import ConfigError, DivergenceError
from replaybench.params import Config, InstanceOf, Interval, OneOf, param
from replaybench.protocols import Experience, Stream


@dataclass(frozen=True)
class TrainingConfig(Config):
    """Hyperparameters of the minibatch loop, common to the supervised agents."""

    architecture: str = param("mlp", OneOf("mlp", "cnn"))
    """"mlp" (ReLU MLP on flattened input) or "cnn" (conv blocks + linear head)."""
    hidden: tuple = param((400, 400), InstanceOf(tuple))
    """Hidden widths of the MLP, or channels of the CNN's blocks."""
    epochs: int = param(1, Interval(int, 1, None))
    """Passes over each experience's training data."""
    batch_size: int = param(128, Interval(int, 1, None))
    """Minibatch size for the current experience's data."""
    optimizer: str = param("sgd", OneOf("sgd", "adam"))
    lr: float = param(0.1, Interval(float, 0, None, closed="neither"))
    momentum: float = param(0.0, Interval(float, 0, 1, closed="left"))
    """SGD momentum (ignored by Adam)."""
    weight_decay: float = param(0.0, Interval(float, 0, None, closed="left"))
    """Weight decay: SGD's L2 term, or AdamW's decoupled decay for "adam" (0: none)."""


class SupervisedAgent:
    """Base for agents that learn one network by minibatch gradient descent."""

    kinds: ClassVar[frozenset[str]] = frozenset({"supervised"})
    Config: ClassVar[type[TrainingConfig]] = TrainingConfig

    def __init__(self, *, stream: Stream, config: TrainingConfig, seed: int, device: str = "cpu") -> None:
        if not all(isinstance(h, int) and h > 0 for h in config.hidden):
            raise ConfigError(
                f"The 'hidden' parameter of {type(self).__name__} must be positive ints. Got {config.hidden!r} instead."
            )
        if config.architecture == "cnn" and len(stream.input_shape) != 3:
            raise ConfigError(
                f"The 'cnn' architecture needs image input [C, H, W]; stream {stream.name} gives {stream.input_shape}."
            )
        self.config = config
        self.device = torch.device(device)
        self.n_classes = stream.n_classes
        self.multi_head = stream.scenario == "task-il"
        self.generator = torch.Generator().manual_seed(seed)
        self.network = build_network(config.architecture, stream.input_shape, config.hidden, stream.n_classes).to(
            self.device
        )
        self.optimizer = make_optimizer(
            config.optimizer, self.network.parameters(), config.lr, config.momentum, config.weight_decay
        )
        self.last_epoch_losses: list[float] = []
        """Mean step loss of each epoch of the last ``learn`` (:class:`~replaybench.protocols.KeepsEpochLosses`)."""

    # --- the loop -----------------------------------------------------------
    def learn(self, experience: Experience) -> dict[str, float]:
        self.before_experience(experience)
        x_all, y_all = experience.train_x, experience.train_y
        n, bs = len(x_all), self.config.batch_size
        head = self._head_mask(experience.classes)
        self.network.train()
        total_loss, steps = torch.zeros((), device=self.device), 0  # on the device: += of a CUDA loss
        self.last_epoch_losses = []
        for _ in progress.track(range(self.config.epochs), f"experience {experience.index}: epochs"):
            # a separate sum: total_loss's arithmetic is unchanged
            epoch_loss, epoch_steps = torch.zeros((), device=self.device), 0
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                x, y = x_all[idx].to(self.device), y_all[idx].to(self.device)
                replay = self.replay_batch(len(idx))
                if replay is None:
                    logits = self._masked(self.network(x), head)
                    loss = F.cross_entropy(logits, y)
                else:  # one forward pass over current + replayed items; their losses stay separate means
                    rx, ry = replay
                    both = self.network(torch.cat([x, rx.to(self.device)]))
                    logits = self._masked(both[: len(idx)], head)
                    loss = F.cross_entropy(logits, y) + F.cross_entropy(both[len(idx) :], ry.to(self.device))
                loss = loss + self.extra_loss(x, y, logits)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total_loss += loss.detach()
                epoch_loss += loss.detach()
                steps += 1
                epoch_steps += 1
            self.last_epoch_losses.append(epoch_loss.item() / max(epoch_steps, 1))
            if not torch.isfinite(total_loss):
                raise DivergenceError(
                    f"{type(self).__name__} loss became {total_loss.item()} on experience {experience.index}; "
                    "lower the learning rate."
                )
        stats = {"train_loss": total_loss.item() / max(steps, 1), "steps": float(steps)}
        stats.update(self.after_experience(experience) or {})
        return stats

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        self.network.eval()
        return self.network(x.to(self.device))

    # --- hooks for subclasses -------------------------------------------------
    def before_experience(self, experience: Experience) -> None:
        """Called before training on ``experience``."""

    def after_experience(self, experience: Experience) -> dict[str, float] | None:
        """Called after training on ``experience``; may return statistics."""
        return None

    def replay_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Items to add to the current step (their loss is averaged separately)."""
        return None

    def extra_loss(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | float:
        """A term added to each step's loss."""
        return 0.0

    # --- helpers --------------------------------------------------------------
    def _head_mask(self, classes: tuple[int, ...]) -> torch.Tensor | None:
        """Task-IL trains only the current task's outputs (a multi-head network)."""
        if not self.multi_head:
            return None
        mask = torch.full((self.n_classes,), float("-inf"), device=self.device)
        mask[list(classes)] = 0.0
        return mask

    @staticmethod
    def _masked(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return logits if mask is None else logits + mask
