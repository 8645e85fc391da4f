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
has the same target at every layer, and the B columns of y and yy fall into
at most K groups of identical columns. The losses are therefore computed
from the B×K input-class similarities Y, the K×K class-target similarities G
and the batch's class counts n: the softmax over B columns of y has log
partition log Σ_k n_k exp(Y[a, k]), and choosing target columns reduces to
choosing classes (with multiplicity up to n_k). This equals the B×B
formulas exactly (``tests/test_forward_sigprop.py`` checks it) at a
fraction of the cost. Which of several identical columns an argmax or top-k
picks does not change the loss; ties between different classes' targets
(which the B×B form breaks by batch position) are broken by class index.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def class_similarity(h: torch.Tensor, class_targets: torch.Tensor) -> torch.Tensor:
    """``Y[a, k] = <h_a, t_k> / P``: each input against each class's target, [B, K].

    Args:
        h: Inputs [B, ...] (features, or maps [B, C, H, W] with P = H·W positions).
        class_targets: One target per class, [K, ...] shaped like ``h``.
    """
    y = h.flatten(1) @ class_targets.flatten(1).t()
    return y / h[0, 0].numel() if h.dim() > 2 else y


def target_gram(prev_class_targets: torch.Tensor) -> torch.Tensor:
    """``G[j, k] = <t_j, t_k> / P`` between the previous layer's class targets, [K, K]."""
    return class_similarity(prev_class_targets, prev_class_targets)


def _present(gram: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Target similarities with the classes absent from the batch at -inf (they have no column)."""
    return gram.masked_fill(counts == 0, float("-inf"))


def max_rand_loss(y: torch.Tensor, gram: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor,
                  topk: int) -> torch.Tensor:
    """Each input should be most similar to the target most similar to its own.

    With n_k columns per class, the B-column cross-entropy is
    ``CE(Y + log n, m) + log n_m`` for the chosen class m; the second term
    carries no gradient and keeps the value equal to the B×B form.

    Args:
        y: Input-class similarities Y [B, K].
        gram: Class-target similarities G of the previous layer [K, K].
        labels: The batch's labels [B].
        counts: How many samples of each class the batch holds [K].
        topk: Unused (the signature is shared).
    """
    chosen = _present(gram, counts).argmax(1)[labels]  # decided per class, then looked up
    log_counts = counts.log()
    return F.cross_entropy(y + log_counts, chosen) + log_counts[chosen].mean()


def topk_loss(y: torch.Tensor, gram: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor,
              topk: int) -> torch.Tensor:
    """Each input should be similar to the ``topk`` targets most similar to its own."""
    order = _present(gram, counts).argsort(dim=1, descending=True)  # [K, K], per class
    n_sorted = counts[order].to(y.dtype)
    before = n_sorted.cumsum(1) - n_sorted  # columns already taken by more similar classes
    taken = torch.zeros_like(gram, dtype=y.dtype).scatter_(1, order, (topk - before).clamp(min=0).minimum(n_sorted))
    return _soft_target_loss(y, counts, taken[labels])


def max_all_loss(y: torch.Tensor, gram: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor,
                 topk: int) -> torch.Tensor:
    """Each input should be similar to every target tied for most similar to its own."""
    gram = _present(gram, counts)
    taken = (gram == gram.max(1, keepdim=True).values) * counts
    return _soft_target_loss(y, counts, taken.to(y.dtype)[labels])


def _soft_target_loss(y: torch.Tensor, counts: torch.Tensor, taken: torch.Tensor) -> torch.Tensor:
    """``-Σ_b target_b log p_b`` with ``taken[a, k]`` target columns of class k (targets need not sum to 1)."""
    log_counts = counts.log()
    log_p = y - torch.logsumexp(y + log_counts, dim=1, keepdim=True)
    return -(taken * log_p).sum(1).mean()


INPUT_TARGET_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "max-rand": max_rand_loss,
    "top-k": topk_loss,
    "max-all": max_all_loss,
}
"""The loss variants by name: ``fn(Y, G, labels, counts, topk) -> scalar``."""
