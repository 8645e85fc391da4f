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

All three variants are one soft-target cross-entropy; they differ only in
the target weights W[j, k], the number of class-k target columns an input of
class j is pulled towards (:data:`TARGET_SELECTIONS`). With
p_a(k) = n_k exp(Y[a, k]) / Σ_j n_j exp(Y[a, j]) and W_a = W[label_a]:

    L = -(1/B) Σ_a Σ_k W_a[k] (Y[a, k] - log Σ_j n_j exp(Y[a, j]))
    dL/dY[a, k] = (p_a(k) Σ_j W_a[j] - W_a[k]) / B

:func:`loss_and_grad` computes both; sigprop's hand-written layer step uses
the gradient directly, and :func:`input_target_loss` wraps it for autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F


def class_similarity(h: torch.Tensor, class_targets: torch.Tensor) -> torch.Tensor:
    """``Y[a, k] = <h_a, t_k> / P``: each input against each class's target, [B, K].

    Args:
        h: Inputs [B, ...] (features, or maps [B, C, H, W] with P = H·W positions).
        class_targets: One target per class, [K, ...] shaped like ``h``.
    """
    y = class_products(h.flatten(1), class_targets.flatten(1))
    return y / h[0, 0].numel() if h.dim() > 2 else y


def class_products(h: torch.Tensor, class_targets: torch.Tensor) -> torch.Tensor:
    """``h @ class_targetsᵀ`` [B, K] for rows [B, D] and [K, D], as the transpose of ``class_targets @ hᵀ``.

    With few classes on the right, BLAS computes the [K, B] product two to three
    times faster on the CPU than the [B, K] one (measured for D from 400 to 6272);
    the result is a transposed view with the same values."""
    return (class_targets @ h.t()).t()


def target_gram(prev_class_targets: torch.Tensor) -> torch.Tensor:
    """``G[j, k] = <t_j, t_k> / P`` between the previous layer's class targets, [K, K]."""
    return class_similarity(prev_class_targets, prev_class_targets)


def _present(gram: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Target similarities with the classes absent from the batch at -inf (they have no column)."""
    return gram.masked_fill(counts == 0, float("-inf"))


def max_rand_choice(gram: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The one class whose target each class's inputs should match: the present class most similar
    to its own target (lowest index on ties), [K]."""
    return _present(gram, counts).argmax(1)


def max_rand_targets(gram: torch.Tensor, counts: torch.Tensor, topk: int) -> torch.Tensor:
    """Each input should be most similar to the target most similar to its own.

    Args:
        gram: Class-target similarities G of the previous layer [K, K].
        counts: How many samples of each class the batch holds [K].
        topk: Unused (the signature is shared).

    Returns:
        Target weights W [K, K]: one column of the chosen class per row.
    """
    chosen = max_rand_choice(gram, counts)  # decided per class
    return torch.zeros_like(gram).scatter_(1, chosen[:, None], 1.0)


def topk_targets(gram: torch.Tensor, counts: torch.Tensor, topk: int) -> torch.Tensor:
    """Each input should be similar to the ``topk`` targets most similar to its own."""
    order = _present(gram, counts).argsort(dim=1, descending=True)  # [K, K], per class
    n_sorted = counts[order].to(gram.dtype)
    before = n_sorted.cumsum(1) - n_sorted  # columns already taken by more similar classes
    return torch.zeros_like(gram).scatter_(1, order, (topk - before).clamp(min=0).minimum(n_sorted))


def max_all_targets(gram: torch.Tensor, counts: torch.Tensor, topk: int) -> torch.Tensor:
    """Each input should be similar to every target tied for most similar to its own."""
    gram = _present(gram, counts)
    return ((gram == gram.max(1, keepdim=True).values) * counts).to(gram.dtype)


TARGET_SELECTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "max-rand": max_rand_targets,
    "top-k": topk_targets,
    "max-all": max_all_targets,
}
"""The loss variants by name: ``select(G, counts, topk) -> W [K, K]``."""


ONE_HOT_CHOICES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "max-rand": max_rand_choice,
}
"""The variants whose target weights are one-hot, by name: ``choose(G, counts) -> chosen class [K]``.
Their loss is a plain cross-entropy, :func:`one_hot_loss_and_grad`."""


def log_counts(counts: torch.Tensor) -> torch.Tensor:
    """log n_k, with the absent classes at -1e30 rather than -inf.

    exp(-1e30 - ...) is exactly 0, as exp(-inf) would be, but the absent
    classes' log-probabilities stay finite, so their zero target weights
    give 0 rather than 0 · inf = NaN.
    """
    return counts.log().clamp_(min=-1e30)


def loss_and_grad(y: torch.Tensor, log_n: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The soft-target loss L and its gradient dL/dY, in closed form (module docstring).

    Args:
        y: Input-class similarities Y [B, K].
        log_n: :func:`log_counts` of the batch's class counts [K].
        weights: Each input's target weights W_a [B, K] (zero for absent classes).
    """
    n = len(y)
    log_p = (y + log_n).log_softmax(1)  # log p_a(k) = Y[a, k] + log n_k - log Σ_j n_j exp(Y[a, j])
    loss = torch.vdot(weights.flatten(), (log_n - log_p).flatten()) / n  # log Σ ... - Y = log n - log p
    grad = log_p.exp_().mul_(weights.sum(1, keepdim=True)).sub_(weights).div_(n)
    return loss, grad


def one_hot_loss_and_grad(
    y: torch.Tensor, log_n: torch.Tensor, target: torch.Tensor, class_codes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`loss_and_grad` for one-hot weights W_a = e_{target_a} (``max-rand``), in fewer operations.

    With Σ_k W_a[k] = 1 the soft-target loss is the cross-entropy of the
    offset log-probabilities against the chosen class,
    L = (1/B) Σ_a (log n_{c_a} − log p_a(c_a)), and dL/dY[a] = (p_a − e_{c_a}) / B.

    Args:
        y: Input-class similarities Y [B, K].
        log_n: :func:`log_counts` of the batch's class counts [K].
        target: The chosen class c_a of each input [B]; always a class present in the batch.
        class_codes: The K × K identity (one-hot rows).
    """
    log_p = (y + log_n).log_softmax(1)
    loss = F.nll_loss(log_p - log_n, target)
    grad = log_p.exp_().sub_(class_codes[target]).div_(len(y))
    return loss, grad


class _SoftTargetLoss(torch.autograd.Function):
    """:func:`loss_and_grad` as an autograd node (gradient to Y only)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, counts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        loss, grad = loss_and_grad(y.detach(), log_counts(counts), weights)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss, None, None


def input_target_loss(
    select: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
    y: torch.Tensor,
    gram: torch.Tensor,
    labels: torch.Tensor,
    counts: torch.Tensor,
    topk: int,
) -> torch.Tensor:
    """A differentiable input-target loss from Y [B, K], G [K, K], labels [B] and counts [K]."""
    return _SoftTargetLoss.apply(y, counts, select(gram, counts, topk)[labels])


INPUT_TARGET_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    name: partial(input_target_loss, select) for name, select in TARGET_SELECTIONS.items()
}
"""The loss variants by name: ``fn(Y, G, labels, counts, topk) -> scalar`` (differentiable in Y)."""
