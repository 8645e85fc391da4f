"""Learning without forgetting (Li & Hoiem 2017, TPAMI).

Before each new experience the network is copied as a frozen teacher. The
student then minimises cross-entropy on the new data plus ``alpha · T²`` times
the KL divergence between the teacher's and its own temperature-softened
outputs over the classes seen before (Hinton et al. 2015's distillation).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from replaybench.agents._supervised import SupervisedAgent, TrainingConfig
from replaybench.params import Interval, param
from replaybench.protocols import Experience, Stream, module_bytes


@dataclass(frozen=True)
class LwFConfig(TrainingConfig):
    alpha: float = param(1.0, Interval(float, 0, None))
    """Weight of the distillation term."""
    temperature: float = param(2.0, Interval(float, 0, None, closed="neither"))
    """Softmax temperature T of the distillation."""


class LwFAgent(SupervisedAgent):
    """Naive training plus distillation from the previous network."""

    Config = LwFConfig

    def __init__(self, *, stream: Stream, config: LwFConfig, seed: int, device: str = "cpu") -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        self.teacher: torch.nn.Module | None = None
        self.seen_classes: list[int] = []

    def before_experience(self, experience: Experience) -> None:
        if self.seen_classes:
            self.teacher = copy.deepcopy(self.network).eval().requires_grad_(False)

    def after_experience(self, experience: Experience) -> None:
        self.seen_classes = sorted(set(self.seen_classes) | set(experience.classes))

    def state_bytes(self) -> dict[str, int]:
        """The frozen teacher, a copy of the network (from the second experience on)."""
        return {"teacher": module_bytes(self.teacher)} if self.teacher is not None else {}

    def extra_loss(self, x, y, logits) -> torch.Tensor | float:
        if self.teacher is None:
            return 0.0
        old = self.seen_classes
        t = self.config.temperature
        with torch.no_grad():
            target = F.softmax(self.teacher(x)[:, old] / t, dim=1)
        student = (
            F.log_softmax(self.network(x)[:, old] / t, dim=1)
            if self.multi_head
            else F.log_softmax(logits[:, old] / t, dim=1)
        )
        return self.config.alpha * t * t * F.kl_div(student, target, reduction="batchmean")
