"""Sigprop's input-target similarity losses (Kohan, Rietman, Siegelmann 2023).

At layer i the batch's inputs h_i are compared with the batch's targets t_i
through the B×B similarity ``y = h_i t_iᵀ`` (for feature maps, the dot product
averaged over positions). Which target each input should match is read off
the previous layer's target similarity ``yy = t_{i-1} t_{i-1}ᵀ``:

- ``max-rand`` (reference ``v14_input_target_max_rand``): cross-entropy of y
  against ``argmax yy`` in each row.
- ``top-k`` (reference ``v15_input_target_topk``, k = 6 there): soft-target
  cross-entropy against the multi-hot of the k most similar targets.
- ``max-all`` (reference ``v9_input_target_max_all``): soft-target
  cross-entropy against the multi-hot of all maximal targets.

Source: github amassivek/signalpropagation,
``sigprop/loss/functional/input_target.py`` (read, not copied).

Targets are class-level: c is the one-hot label, so every sample of a class
has the same target at every layer. The functions therefore take the
K per-class targets and the batch's labels, and compute the B×K products
before indexing their columns by label; this gives exactly the B×B matrices
above at a fraction of the cost. Which of several identical columns an
argmax picks does not change the loss, since those columns are equal.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def similarity(h: torch.Tensor, class_targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``y[a, b] = <h_a, t_{labels[b]}> / P``: inputs against the batch's targets, [B, B].

    Args:
        h: Inputs [B, ...] (features, or maps [B, C, H, W] with P = H·W positions).
        class_targets: One target per class, [K, ...] shaped like ``h``.
        labels: The batch's labels [B].
    """
    positions = h[0, 0].numel() if h.dim() > 2 else 1
    per_class = h.flatten(1) @ class_targets.flatten(1).t() / positions  # [B, K]
    return per_class[:, labels]


def target_similarity(prev_class_targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``yy[a, b] = <t_{labels[a]}, t_{labels[b]}> / P`` at the previous layer, [B, B]."""
    t = prev_class_targets
    positions = t[0, 0].numel() if t.dim() > 2 else 1
    gram = t.flatten(1) @ t.flatten(1).t() / positions  # [K, K]
    return gram[labels][:, labels]


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-Σ target · log_softmax(logits)`` (targets need not sum to 1)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def max_rand_loss(y: torch.Tensor, yy: torch.Tensor, topk: int) -> torch.Tensor:
    """Each input should be most similar to the target most similar to its own."""
    return F.cross_entropy(y, yy.argmax(1))


def topk_loss(y: torch.Tensor, yy: torch.Tensor, topk: int) -> torch.Tensor:
    """Each input should be similar to the ``topk`` targets most similar to its own."""
    k = min(topk, yy.shape[1])
    chosen = torch.zeros_like(yy).scatter_(1, yy.topk(k, dim=1).indices, 1.0)
    return soft_target_cross_entropy(y, chosen)


def max_all_loss(y: torch.Tensor, yy: torch.Tensor, topk: int) -> torch.Tensor:
    """Each input should be similar to every target tied for most similar to its own."""
    return soft_target_cross_entropy(y, (yy == yy.max(1, keepdim=True).values).float())


INPUT_TARGET_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "max-rand": max_rand_loss,
    "top-k": topk_loss,
    "max-all": max_all_loss,
}
"""The loss variants by name: ``fn(y, yy, topk) -> scalar``."""
