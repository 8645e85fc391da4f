"""Elastic weight consolidation (Kirkpatrick et al. 2017, PNAS).

After each experience the diagonal of the empirical Fisher information is
estimated from per-sample gradients of the log-likelihood at the true label,
and later training pays ``λ/2 Σ_k Σ_i F_k,i (θ_i − θ*_k,i)²``. In "online"
mode (Schwarz et al. 2018) one running Fisher, decayed by ``decay``, and the
latest parameters replace the per-experience terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from replaybench.agents._supervised import SupervisedAgent, TrainingConfig
from replaybench.params import Interval, OneOf, param
from replaybench.protocols import Experience, Stream, tensor_bytes


@dataclass(frozen=True)
class EWCConfig(TrainingConfig):
    ewc_lambda: float = param(100.0, Interval(float, 0, None))
    """Strength λ of the quadratic penalty."""
    mode: str = param("separate", OneOf("separate", "online"))
    """"separate": one penalty per past experience; "online": one decayed running penalty."""
    decay: float = param(1.0, Interval(float, 0, 1))
    """Online mode's decay γ of the running Fisher."""
    fisher_samples: int = param(1024, Interval(int, 1, None))
    """Training items used to estimate the Fisher diagonal."""


class EWCAgent(SupervisedAgent):
    """Naive training plus a Fisher-weighted pull towards earlier parameters."""

    Config = EWCConfig

    def __init__(self, *, stream: Stream, config: EWCConfig, seed: int, device: str = "cpu") -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        # Σ_k F_k (θ − θ*_k)² = Σ (A θ² − 2 B θ) + C with A = Σ_k F_k, B = Σ_k F_k θ*_k and
        # C = Σ_k F_k θ*_k², so the penalty costs the same however many experiences it covers.
        self.fisher_sum: dict[str, torch.Tensor] = {}
        self.weighted_anchor_sum: dict[str, torch.Tensor] = {}
        self.constant = 0.0

    def extra_loss(self, x, y, logits) -> torch.Tensor | float:
        if not self.fisher_sum:
            return 0.0
        penalty = self.constant
        for name, p in self.network.named_parameters():
            penalty = penalty + (self.fisher_sum[name] * p * p - 2 * self.weighted_anchor_sum[name] * p).sum()
        return 0.5 * self.config.ewc_lambda * penalty

    def after_experience(self, experience: Experience) -> None:
        fisher = self._fisher_diagonal(experience)
        online = self.config.mode == "online"
        if online:  # one running Fisher, decayed, anchored at the latest parameters
            self.constant = 0.0
        for name, p in self.network.named_parameters():
            anchor = p.detach().clone()
            if online:
                a = self.config.decay * self.fisher_sum.get(name, 0.0) + fisher[name]
                self.fisher_sum[name], self.weighted_anchor_sum[name] = a, a * anchor
                self.constant += float((a * anchor * anchor).sum())
            else:
                self.fisher_sum[name] = self.fisher_sum.get(name, 0.0) + fisher[name]
                self.weighted_anchor_sum[name] = self.weighted_anchor_sum.get(name, 0.0) + fisher[name] * anchor
                self.constant += float((fisher[name] * anchor * anchor).sum())

    def state_bytes(self) -> dict[str, int]:
        """The summed Fisher diagonal A and the Fisher-weighted anchors B: two copies of the parameters.

        However many experiences the penalty covers it costs these two (and one float, C, not counted).
        """
        return {
            "fisher": tensor_bytes(self.fisher_sum.values()),
            "anchor_weights": tensor_bytes(self.weighted_anchor_sum.values()),
        }

    def _fisher_diagonal(self, experience: Experience) -> dict[str, torch.Tensor]:
        n = min(self.config.fisher_samples, len(experience.train_x))
        idx = torch.randperm(len(experience.train_x), generator=self.generator)[:n]
        x, y = experience.train_x[idx].to(self.device), experience.train_y[idx].to(self.device)
        params = {k: v.detach() for k, v in self.network.named_parameters()}
        head = self._head_mask(experience.classes)
        self.network.eval()

        def nll(p, xi, yi):
            logits = self._masked(functional_call(self.network, p, (xi[None],)), head)
            return F.cross_entropy(logits, yi[None])

        per_sample = vmap(grad(nll), in_dims=(None, 0, 0))
        fisher = {k: torch.zeros_like(v) for k, v in params.items()}
        for start in range(0, n, 256):
            grads = per_sample(params, x[start : start + 256], y[start : start + 256])
            for k, g in grads.items():
                fisher[k] += (g**2).sum(0)
        return {k: f / n for k, f in fisher.items()}
