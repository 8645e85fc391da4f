"""The forward learners' layer stacks: chaining checks and the plain forward pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from replaybench.agents._nets import build_network
from replaybench.agents._supervised import TrainingConfig
from replaybench.agents.forward.layers import ForwardNet, LocalBlock, build_forward_net, check_architecture
from replaybench.errors import ConfigError


def _linear(n_in: int, n_out: int) -> LocalBlock:
    return LocalBlock(nn.Linear(n_in, n_out), norm="none", activation="relu", pool=False)


def test_widths_that_do_not_chain_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="Layer 2 of ForwardNet takes 30 inputs but layer 1 gives 40") as info:
        ForwardNet([_linear(64, 40), _linear(30, 20)], nn.Linear(20, 10), (1, 8, 8))
    assert "\n" not in str(info.value)


def test_first_layer_must_fit_the_input_and_the_head_the_last_layer():
    with pytest.raises(ConfigError, match="Layer 1 of ForwardNet takes 60 inputs"):
        ForwardNet([_linear(60, 20)], nn.Linear(20, 10), (1, 8, 8))
    with pytest.raises(ConfigError, match="The head of ForwardNet takes 15 inputs but layer 1 gives 20"):
        ForwardNet([_linear(64, 20)], nn.Linear(15, 10), (1, 8, 8))
    with pytest.raises(ConfigError, match="at least one hidden layer"):
        ForwardNet([], nn.Linear(64, 10), (1, 8, 8))


@pytest.mark.parametrize("architecture, hidden", [("mlp", (32, 16)), ("cnn", (4, 8))])
def test_plain_forward_pass_matches_the_backprop_network(architecture, hidden):
    torch.manual_seed(0)
    net = build_forward_net(architecture, (1, 8, 8), hidden, 10)
    reference = build_network(architecture, (1, 8, 8), hidden, 10)
    # Copy the weights across: same layers in the same order.
    ours = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    theirs = [m for m in reference.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    for a, b in zip(ours, theirs):
        b.load_state_dict(a.state_dict())
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(net(x), reference(x))


def test_cnn_shapes_are_traced_for_drives_and_head():
    net = build_forward_net("cnn", (1, 8, 8), (4, 8), 10)
    assert net.pre_shapes == [(4, 8, 8), (8, 4, 4)]
    assert net.out_shapes == [(4, 4, 4), (8, 2, 2)]
    assert net.head.in_features == 32


class _Stream:
    name, scenario, n_classes, input_shape, experiences = "toy", "class-il", 10, (1, 8, 8), ()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden": ()}, "non-empty tuple of positive ints"),
        ({"hidden": (16, 0)}, "non-empty tuple of positive ints"),
        ({"architecture": "cnn", "hidden": (4, 4, 4, 4)}, "pool the 8-pixel input"),
    ],
)
def test_unbuildable_networks_are_refused_at_construction(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_architecture("Agent", TrainingConfig(**overrides), _Stream())
