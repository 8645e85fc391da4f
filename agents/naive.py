"""Naive fine-tuning: train on each experience in turn with no protection.

It is the lower bound every continual-learning method is measured against.
"""

from __future__ import annotations

from replaybench.agents._supervised import SupervisedAgent


class NaiveAgent(SupervisedAgent):
    """Plain minibatch SGD on the current experience only."""

    def state_bytes(self) -> dict[str, int]:
        """Nothing is kept across experiences but the network (:class:`~replaybench.protocols.CountsState`)."""
        return {}
