"""Error Forward-Propagation (EFP): the output error enters the first layer
through one loop and travels forward through the feedforward weights.

Kohan, Rietman, Siegelmann, "Error Forward-Propagation: Reusing Feedforward
Connections to Propagate Errors in Deep Learning", arXiv 1808.03357 (2018).
There is no public code; ``docs/forward.md`` separates what the paper states
from what is chosen here.

The network is recurrent: the outputs ŷ are fed back through a single loop
connection L (a fixed random matrix, output → layer 1's pre-activation) into
the layer that receives the input. There are no other feedback weights.
The loop carries r, a leaky trace of what it is sent (rate ``rate``):

    h_1 = f(W_1 x + L r),  h_i = f(W_i h_{i-1}),  z = W_out h_n,  ŷ = softmax(z)
    free phase:   r ← r + rate · (ŷ − r)                      (``free_steps`` sweeps from r = 0)
    error phase:  r ← r + rate · ((1 − β) ŷ + β c − r)        (``error_steps`` sweeps from the free state)

Between the phases the loop's input changes by β(c − ŷ), the output error.
That change enters layer 1 and propagates forward through W_2 … W_n, so
every hidden layer sees the error as the difference between its two
settled states. Each hidden layer then moves its free state towards its
error-phase state, with the local loss ‖h_i^err − h_i‖² / (2β) (inputs and
the loop signal are the free phase's, detached); the output layer is
trained with cross-entropy, i.e. the delta rule (c − ŷ) h_nᵀ. Inference is
the free phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from replaybench.agents.forward.layers import (
    ACTIVATIONS,
    LocalConfig,
    LocalLearner,
    build_forward_net,
    masked_cross_entropy,
)
from replaybench.params import Interval, OneOf, param
from replaybench.protocols import Experience, Stream


@dataclass(frozen=True)
class EFPConfig(LocalConfig):
    """EFP's options on top of the minibatch loop's."""

    optimizer: str = param("adam", OneOf("sgd", "adam"))
    lr: float = param(1e-3, Interval(float, 0, None, closed="neither"))
    activation: str = param("tanh", OneOf(*ACTIVATIONS))
    free_steps: int = param(4, Interval(int, 1, None))
    """Sweeps of the free phase (the loop carrying ŷ) before the settled free state."""
    error_steps: int = param(2, Interval(int, 1, None))
    """Sweeps of the error phase (the loop carrying the target mix)."""
    rate: float = param(0.5, Interval(float, 0, 1, closed="right"))
    """Leak rate of the loop trace r per sweep (1: r is the last thing sent)."""
    beta: float = param(1.0, Interval(float, 0, 1, closed="right"))
    """How far the error phase clamps the looped output towards the label c."""
    loop_gain: float = param(1.0, Interval(float, 0, None, closed="neither"))
    """Scale of the fixed random loop: entries ~ N(0, loop_gain² / n_classes)."""
    dropout: float = param(0.0, Interval(float, 0, 1, closed="left"))
    """Probability of dropping each hidden unit while training (0: off). A minibatch drops the same
    units in both phases, so that its two settled states differ by the error alone."""


class EFPAgent(LocalLearner):
    """Two-phase recurrent settling with a single output → layer-1 loop."""

    Config = EFPConfig

    def __init__(self, *, stream: Stream, config: EFPConfig, seed: int, device: str = "cpu") -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        self.network = build_forward_net(
            config.architecture,
            stream.input_shape,
            config.hidden,
            stream.n_classes,
            norm=config.norm,
            activation=config.activation,
        ).to(self.device)
        drive_shape = self.network.pre_shapes[0]
        if self.network.conv:  # the same drive at every position, as a conv layer could produce
            drive_shape = (drive_shape[0], 1, 1)
        loop = torch.randn(stream.n_classes, math.prod(drive_shape), generator=self.generator)
        # The single loop connection: fixed (a buffer), output → layer 1 only.
        self.network.register_buffer("loop", (loop * config.loop_gain / math.sqrt(stream.n_classes)).to(self.device))
        self.drive_shape = drive_shape
        self.class_codes = torch.eye(stream.n_classes, device=self.device)
        self.optimizer = self.make_optimizer([self.network])
        self._residual_sum, self._residual_n = 0.0, 0

    # --- the dynamics ---------------------------------------------------------------
    def sweep(
        self, x: torch.Tensor, r: torch.Tensor, detach_inputs: bool = False, masks: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One pass around the loop: the hidden states and the logits for loop signal ``r``.

        With ``detach_inputs`` every layer's input is detached, so a loss on
        layer i's output reaches only layer i's weights. ``masks`` (dropout,
        one per hidden layer) multiply the layers' outputs.
        """
        drive = (r @ self.network.loop).view(len(r), *self.drive_shape)
        h = self.network.prepare(x)
        states = []
        for i, block in enumerate(self.network.blocks):
            h = block(h.detach() if detach_inputs else h, drive)
            if masks is not None:
                h = h * masks[i]
            drive = None
            states.append(h)
        logits = self.network.head((h.detach() if detach_inputs else h).flatten(1))
        return states, logits

    def free_phase(
        self, x: torch.Tensor, head_mask: torch.Tensor | None = None, masks: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, float]:
        """Settle with the loop carrying the outputs.

        Returns:
            The loop signal r at the end, and the largest change of r in the
            last sweep (how far from settled the free phase stopped).
        """
        r = torch.zeros(len(x), self.n_classes, device=x.device)
        with torch.no_grad():
            for _ in range(self.config.free_steps):
                _, logits = self.sweep(x, r, masks=masks)
                r_next = r + self.config.rate * (_probabilities(logits, head_mask) - r)
                residual = (r_next - r).abs().max()
                r = r_next
        return r, float(residual)

    @torch.no_grad()
    def error_phase(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        r: torch.Tensor,
        logits: torch.Tensor,
        head_mask: torch.Tensor | None = None,
        masks: list[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """Settle from the free state with the loop carrying (1 − β) ŷ + β c; return the hidden states."""
        beta, rate = self.config.beta, self.config.rate
        target = self.class_codes[y]
        for _ in range(self.config.error_steps):
            r = r + rate * ((1 - beta) * _probabilities(logits, head_mask) + beta * target - r)
            states, logits = self.sweep(x, r, masks=masks)
        return states

    def dropout_masks(self, n: int) -> list[torch.Tensor] | None:
        """One inverted-dropout mask per hidden layer for a minibatch of ``n``, or None when dropout is off."""
        keep = 1.0 - self.config.dropout
        if keep == 1.0:
            return None
        return [
            torch.empty(n, *shape).bernoulli_(keep, generator=self.generator).div_(keep).to(self.device)
            for shape in self.network.out_shapes
        ]

    # --- one minibatch ----------------------------------------------------------------
    def local_losses(
        self, x: torch.Tensor, y: torch.Tensor, head_mask: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Each hidden layer's loss towards its error-phase state, then the head's cross-entropy."""
        masks = self.dropout_masks(len(x))
        r, residual = self.free_phase(x, head_mask, masks)
        self._residual_sum, self._residual_n = self._residual_sum + residual, self._residual_n + 1
        free_states, logits = self.sweep(x, r, detach_inputs=True, masks=masks)
        error_states = self.error_phase(x, y, r, logits.detach(), head_mask, masks)
        scale = 1.0 / (2 * self.config.beta * len(x))
        losses = [scale * (target - h).pow(2).sum() for h, target in zip(free_states, error_states)]
        losses.append(masked_cross_entropy(logits, y, head_mask))
        return losses

    def step(self, x: torch.Tensor, y: torch.Tensor, head_mask: torch.Tensor | None) -> torch.Tensor:
        total = sum(self.local_losses(x, y, head_mask))
        total.backward()
        return total.detach()

    def after_experience(self, experience: Experience) -> dict[str, float]:
        residual = self._residual_sum / max(self._residual_n, 1)
        self._residual_sum, self._residual_n = 0.0, 0
        return {"free_residual": residual}

    def state_bytes(self) -> dict[str, int]:
        """Nothing: the loop matrix L is part of the network, and the loop trace starts at 0 for every input."""
        return {}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Logits at the end of the free phase (the loop is part of the network)."""
        self.network.eval()
        x = x.to(self.device)
        out = []
        for start in range(0, len(x), 4096):
            chunk = x[start : start + 4096]
            _, logits = self.sweep(chunk, self.free_phase(chunk)[0])
            out.append(logits)
        return torch.cat(out)


def _probabilities(logits: torch.Tensor, head_mask: torch.Tensor | None) -> torch.Tensor:
    return F.softmax(logits if head_mask is None else logits + head_mask, dim=1)
