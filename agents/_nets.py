"""Network builders shared by the agents."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def mlp(input_shape: Sequence[int], hidden: Sequence[int], n_outputs: int, bias: bool = True) -> nn.Sequential:
    """A ReLU MLP that flattens its input: ``in → hidden… → n_outputs`` (optionally without biases)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h, bias=bias), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_outputs, bias=bias))
    return nn.Sequential(*layers)


def small_cnn(input_shape: Sequence[int], n_outputs: int, channels: Sequence[int] = (32, 64)) -> nn.Sequential:
    """Conv(3×3)-ReLU-MaxPool blocks, then a linear head."""
    c_in, h, w = input_shape
    layers: list[nn.Module] = []
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c_in, h, w = c, h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(c_in * h * w, n_outputs)]
    return nn.Sequential(*layers)


def build_network(architecture: str, input_shape: Sequence[int], hidden: Sequence[int], n_outputs: int) -> nn.Module:
    """Build ``"mlp"`` or ``"cnn"`` for a stream's input shape."""
    if architecture == "mlp":
        return mlp(input_shape, hidden, n_outputs)
    return small_cnn(input_shape, n_outputs, channels=hidden)


def make_optimizer(
    name: str, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """``"sgd"`` or ``"adam"``; ``weight_decay`` is decoupled from the gradient for Adam (AdamW)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if weight_decay:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr)
