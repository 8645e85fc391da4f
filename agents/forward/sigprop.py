"""Signal propagation (sigprop): learning from a target signal sent forward.

Kohan, Rietman, Siegelmann, "Signal Propagation: The Framework for Learning
and Inference in a Forward Pass", IEEE TNNLS 2023 (arXiv 2204.01723).
Reference code: github amassivek/signalpropagation (``propagators/learn.py``,
``signals/generators.py``); read, not copied.

Training, for a minibatch (x, c) with c the one-hot label:

1. h_1 = layer_1(x), and the target t_1 = f(S c) through a learned projection
   S (Linear, then the block's norm and activation, as the reference's
   ``signal_modules_lpi``), shaped like h_1.
2. For i ≥ 2: h_i = layer_i(h_{i-1}) and t_i = layer_i(t_{i-1}), through the
   same weights, with the inputs detached.
3. Layer i's loss is an input-target similarity loss L(h_i, t_i; t_{i-1})
   (:mod:`replaybench.agents.forward.losses`); it reaches only layer i (and S, for
   layer 1). Each layer's backward runs as soon as its loss exists, so only
   one layer's graph is alive at a time: the memory saving the paper claims.
4. The output layer is trained with cross-entropy on the detached h_n.

All gradients land first and one optimiser step follows; since the losses
touch disjoint parameters this equals the reference's per-layer steps.
Inference is the plain forward pass of :class:`ForwardNet`; S is unused.

For an MLP without norm (the default network) each layer's gradient is
written out by hand (``manual_gradients``): the layer's local loss reaches
only its own weights through one activation, so its chain rule is three
products, and skipping the autograd engine (a fixed cost per ``backward``
call, paid once per layer) makes the step cheaper than backprop's. The
values are autograd's (``tests/test_forward_sigprop.py`` compares them).

Layer-local replay (``local_replay_size > 0``) replays in several regions at
once, element 10 of Hayes et al. 2021 ("Replay in deep learning: current
approaches and missing biological elements"): every layer, the head
included, keeps its own reservoir of (layer input, label) pairs stored at the
end of each experience, and draws its own replay minibatch into its own local
loss. The stored inputs of layers ≥ 2 are activations of the layers below as
they were when stored; they drift as those layers keep learning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from replaybench.agents.forward.layers import (
    ACTIVATION_BACKWARD,
    LocalConfig,
    LocalLearner,
    build_forward_net,
    masked_cross_entropy,
)
from replaybench.agents.forward.losses import (
    INPUT_TARGET_LOSSES,
    ONE_HOT_CHOICES,
    TARGET_SELECTIONS,
    class_products,
    class_similarity,
    log_counts,
    loss_and_grad,
    one_hot_loss_and_grad,
    target_gram,
)
from replaybench.memories.reservoir import ReservoirBuffer
from replaybench.params import InstanceOf, Interval, OneOf, param
from replaybench.protocols import Experience, Stream


@dataclass(frozen=True)
class SigpropConfig(LocalConfig):
    """Sigprop's options on top of the minibatch loop's."""

    optimizer: str = param("adam", OneOf("sgd", "adam"))
    lr: float = param(5e-4, Interval(float, 0, None, closed="neither"))
    """Adam 5e-4 is the reference configuration."""
    loss: str = param("max-rand", OneOf(*INPUT_TARGET_LOSSES))
    """The layers' input-target loss: "max-rand", "top-k" or "max-all"."""
    topk: int = param(6, Interval(int, 1, None))
    """k of the "top-k" loss (6 in the reference)."""
    local_replay_size: int = param(0, Interval(int, 0, None))
    """Items each layer's own replay memory holds; 0 turns layer-local replay off."""
    manual_gradients: bool = param(True, InstanceOf(bool))
    """Write an MLP's local gradients out by hand when it has no norm (same values as autograd, faster)."""


class SigpropAgent(LocalLearner):
    """Each layer learns from a label signal sent forward through the same weights."""

    Config = SigpropConfig

    def __init__(self, *, stream: Stream, config: SigpropConfig, seed: int, device: str = "cpu") -> None:
        super().__init__(stream=stream, config=config, seed=seed, device=device)
        self.network = build_forward_net(
            config.architecture,
            stream.input_shape,
            config.hidden,
            stream.n_classes,
            norm=config.norm,
            activation=config.activation,
        ).to(self.device)
        first = self.network.blocks[0]
        first_shape = self.network.out_shapes[0]
        norm = nn.LayerNorm(math.prod(first_shape)) if config.norm == "layer" else nn.Identity()
        # S: the learned projection of c onto layer 1's output (reference: Linear, norm, activation).
        self.signal = nn.Sequential(
            nn.Linear(stream.n_classes, math.prod(first_shape), bias=False),
            norm,
            type(first.activation)(),
            nn.Unflatten(1, first_shape),
        ).to(self.device)
        self.optimizer = self.make_optimizer([self.network, self.signal])
        self.layer_loss = INPUT_TARGET_LOSSES[config.loss]
        self.class_codes = torch.eye(stream.n_classes, device=self.device)
        self.first_gram = target_gram(self.class_codes)  # t_0 = c: layer 1's target similarities never change
        self.manual = config.manual_gradients and config.architecture == "mlp" and config.norm == "none"
        self.memories: list[ReservoirBuffer] = []
        if config.local_replay_size:
            # One memory per region: each hidden layer and the head.
            self.memories = [
                ReservoirBuffer(capacity=config.local_replay_size, generator=self.generator)
                for _ in range(len(self.network.blocks) + 1)
            ]

    # --- one minibatch ----------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor, head_mask: torch.Tensor | None) -> torch.Tensor:
        if self.manual:
            return self._manual_step(x, y, head_mask)
        total = torch.zeros((), device=self.device)
        for loss in self.local_losses(x, y, head_mask):
            loss.backward()  # frees this layer's graph before the next layer runs
            total += loss.detach()
        return total

    def local_losses(self, x: torch.Tensor, y: torch.Tensor, head_mask: torch.Tensor | None = None):
        """Yield each layer's loss in order (the hidden layers', then the head's).

        Every loss depends only on its own layer's parameters (and S for the
        first); the caller may backpropagate each before asking for the next.
        """
        h = self.network.prepare(x)
        labels = y
        targets_prev = self.class_codes  # t_0 = c, one row per class
        targets = self.signal(self.class_codes)
        for i, block in enumerate(self.network.blocks):
            h, labels = self._with_replay(i, h.detach(), labels)
            counts = torch.bincount(labels, minlength=self.n_classes)
            if i == 0:
                h = block(h)
            else:  # inputs and targets through the same weights, as one batch
                h, targets = block(torch.cat([h, targets_prev])).split([len(h), len(targets_prev)])
            with torch.no_grad():  # yy only selects which targets to match
                gram = self.first_gram if i == 0 else target_gram(targets_prev)
            yield self.layer_loss(class_similarity(h, targets), gram, labels, counts, self.config.topk)
            targets_prev = targets.detach()
        h, labels = self._with_replay(len(self.network.blocks), h.detach().flatten(1), labels)
        yield masked_cross_entropy(self.network.head(h), labels, head_mask)

    @torch.no_grad()
    def _manual_step(self, x: torch.Tensor, y: torch.Tensor, head_mask: torch.Tensor | None) -> torch.Tensor:
        """:meth:`local_losses` and their backward passes, for Linear-activation layers, by hand.

        Each layer pushes its inputs and the previous targets through its
        weights as one stacked batch, ``out = f(pre)`` with rows [h_i; t_i]
        (layer 1: ``pre`` = [x W_1ᵀ + b_1; c Sᵀ]). Its loss reaches its weights
        only through ``out``: dL/dout = [dL/dY t_i; dL/dYᵀ h_i] with dL/dY from
        :func:`losses.loss_and_grad` (or its one-hot form for ``max-rand``),
        dL/dpre = dL/dout ⊙ f'(out), and the weight gradient is dL/dpreᵀ times
        the stacked inputs.
        """
        select, backward = TARGET_SELECTIONS[self.config.loss], ACTIVATION_BACKWARD[self.config.activation]
        choose = ONE_HOT_CHOICES.get(self.config.loss)
        activation = self.network.blocks[0].activation
        projection = self.signal[0].weight
        h, labels = self.network.prepare(x), y
        counts = torch.bincount(y, minlength=self.n_classes)
        log_n = log_counts(counts)
        targets_prev, gram = self.class_codes, self.first_gram
        out = targets = None
        losses = []
        for i, block in enumerate(self.network.blocks):
            replayed = bool(self.memories) and len(self.memories[i]) > 0
            if replayed:
                h, labels = self._with_replay(i, h, labels)
                counts = torch.bincount(labels, minlength=self.n_classes)
                log_n = log_counts(counts)
            n, weight, bias = len(h), block.weights.weight, block.weights.bias
            if i == 0:
                inputs = h
                pre = torch.empty(n + self.n_classes, weight.shape[0], device=h.device)
                torch.addmm(bias, h, weight.t(), out=pre[:n])
                pre[n:] = projection.t()  # S c with c the identity: t_1 = f(Sᵀ rows)
                out = activation(pre)
            else:  # the previous layer's output is already [h; t] unless replay added rows to h
                inputs = torch.cat([h, targets_prev]) if replayed else out
                out = activation(F.linear(inputs, weight, bias))
            h, targets = out[:n], out[n:]
            similarities = class_products(out, targets)  # rows [h; t]: Y, and the next layer's target similarities
            if choose is None:
                loss, grad_y = loss_and_grad(similarities[:n], log_n, select(gram, counts, self.config.topk)[labels])
            else:  # at layer 1, G is the identity (t_0 = c): every class chooses its own target
                chosen = labels if i == 0 else choose(gram, counts)[labels]
                loss, grad_y = one_hot_loss_and_grad(similarities[:n], log_n, chosen, self.class_codes)
            losses.append(loss)
            grad_out = torch.empty_like(out)
            torch.mm(grad_y, targets, out=grad_out[:n])  # dL/dh = dL/dY t
            torch.mm(grad_y.t(), h, out=grad_out[n:])  # dL/dt = dL/dYᵀ h
            grad_pre = backward(grad_out, out)
            if i == 0:
                _accumulate(weight, grad_pre[:n].t() @ inputs)
                _accumulate(bias, grad_pre[:n].sum(0))
                _accumulate(projection, grad_pre[n:].t().contiguous())  # c is the identity: dL/dS = dL/dpre_tᵀ c
            else:
                _accumulate(weight, grad_pre.t() @ inputs)
                _accumulate(bias, grad_pre.sum(0))
            targets_prev, gram = targets, similarities[n:]
        h, labels = self._with_replay(len(self.network.blocks), h, labels)
        head = self.network.head
        logits = torch.addmm(head.bias[:, None], head.weight, h.t()).t()  # the K-wide product as class_products
        if head_mask is not None:
            logits = logits + head_mask
        log_p = logits.log_softmax(1)
        losses.append(F.nll_loss(log_p, labels))
        grad_logits = log_p.exp_().sub_(self.class_codes[labels]).div_(len(h))  # cross-entropy's (p - c) / B
        _accumulate(head.weight, grad_logits.t() @ h)
        _accumulate(head.bias, grad_logits.sum(0))
        return torch.stack(losses).sum()

    def _with_replay(self, region: int, h: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this region's own replayed (input, label) pairs to its minibatch."""
        if not self.memories or len(self.memories[region]) == 0:
            return h, labels
        rx, ry = self.memories[region].sample(len(h))
        return torch.cat([h, rx.to(h.device)]), torch.cat([labels, ry.to(labels.device)])

    # --- between experiences ----------------------------------------------------
    @torch.no_grad()
    def after_experience(self, experience: Experience) -> dict[str, float] | None:
        if not self.memories:
            return None
        self.network.eval()
        for start in range(0, len(experience.train_x), 1024):
            x = experience.train_x[start : start + 1024].to(self.device)
            y = experience.train_y[start : start + 1024]
            h = self.network.prepare(x)
            for region, block in enumerate(self.network.blocks):
                self.memories[region].add(h.cpu(), y)
                h = block(h)
            self.memories[-1].add(h.flatten(1).cpu(), y)
        return {"memory_bytes": float(sum(m.nbytes for m in self.memories))}

    def state_bytes(self) -> dict[str, int]:
        """The layer-local replay memories (stored layer inputs and labels), when on; else nothing."""
        return {"local_replay_items": sum(m.nbytes for m in self.memories)} if self.memories else {}


def _accumulate(parameter: torch.Tensor, grad: torch.Tensor) -> None:
    """Add ``grad`` to ``parameter.grad``, as a backward pass would."""
    if parameter.grad is None:
        parameter.grad = grad
    else:
        parameter.grad += grad
