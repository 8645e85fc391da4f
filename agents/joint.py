"""Joint training: the upper bound.

On each experience the network is re-initialised and trained on the union of
all training data seen so far. Its last row of R is the usual "joint" upper
bound, and its diagonal R[k][k] is the jointly trained reference a*_k that
Chaudhry et al. 2018's intransigence needs.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from replaybench.agents._supervised import SupervisedAgent
from replaybench.protocols import Experience, Stream, tensor_bytes


class JointAgent(SupervisedAgent):
    """Retrain from the initial weights on everything seen so far."""

    def __init__(self, *, stream: Stream, config, seed: int, device: str = "cpu") -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        self._initial_state = {k: v.clone() for k, v in self.network.state_dict().items()}
        self._seen: list[Experience] = []

    def learn(self, experience: Experience) -> dict[str, float]:
        self._seen.append(experience)
        self.network.load_state_dict(self._initial_state)
        self.optimizer = type(self.optimizer)(self.network.parameters(), **self.optimizer.defaults)
        union = replace(
            experience,
            train_x=torch.cat([e.train_x for e in self._seen]),
            train_y=torch.cat([e.train_y for e in self._seen]),
            classes=tuple(sorted({c for e in self._seen for c in e.classes})),
        )
        return super().learn(union)

    def state_bytes(self) -> dict[str, int]:
        """Every input and label seen so far, and the initial weights each retraining starts from."""
        return {
            "seen_data": tensor_bytes(t for e in self._seen for t in (e.train_x, e.train_y)),
            "initial_weights": tensor_bytes(self._initial_state.values()),
        }
